"""The composition root: builds each function's service from its settings model. The only place
adapters meet the domain; handlers call one of these at cold start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redflag.core import clock, timers
from redflag.edge.settings import (
    AlertSettings,
    FeedbackSettings,
    IngestSettings,
    RatesSettings,
    SlackSettings,
    StatsSettings,
    SweepSettings,
    TrackingSettings,
    UsageSettings,
    UsersSettings,
)

if TYPE_CHECKING:  # each builder imports what it uses: a function loads only its own adapters
    from redflag.adapters.stats_table import DynamoStats
    from redflag.services import ingest
    from redflag.services.alerting import AlertingService
    from redflag.services.feedback import FeedbackService
    from redflag.services.ingest import IngestService
    from redflag.services.rates import RateService
    from redflag.services.relay import Relay
    from redflag.services.sweeping import SweepService
    from redflag.services.tracking import Gate, TrackingService
    from redflag.services.users import UsersService
    from redflag.services.weekly import UsageDropService


def _policy(retention_days: int) -> timers.Policy:
    return timers.Policy(retention_seconds=retention_days * 86400)


def _limits(s: IngestSettings) -> ingest.Limits:
    from redflag.services import ingest

    return ingest.Limits(
        max_future_skew_seconds=s.max_future_skew_seconds,
        max_age_seconds=s.max_event_age_days * 86400,
        workers=s.ingest_concurrency,
    )


def ingest_service(s: IngestSettings | None = None) -> IngestService:
    from redflag.adapters.dynamodb import DynamoTimerStore
    from redflag.adapters.ssm_rules import SsmRuleSource
    from redflag.adapters.stats_table import DynamoStats
    from redflag.services.ingest import IngestService

    s = s or IngestSettings()
    limits = _limits(s)
    rules = SsmRuleSource(s.rules_path, s.rules_cache_seconds)
    store = DynamoTimerStore(s.table_name, s.due_shards)
    baselines = DynamoStats(s.stats_table_name, cache_seconds=s.rules_cache_seconds, now=clock.SYSTEM.now)
    return IngestService(store, rules, clock.SYSTEM.now, _policy(s.completed_retention_days), limits, baselines)


def tracking_service(s: TrackingSettings | None = None) -> tuple[TrackingService, Gate]:
    """The tracking API: the ingest service under the Segment Spec's calls, and the gate of its write keys."""
    from redflag.adapters.secrets import Secret, WriteKeys
    from redflag.services.tracking import Gate, TrackingService

    s = s or TrackingSettings()
    events = ingest_service(s)
    keys = WriteKeys(Secret(s.write_keys_secret_arn, s.secrets_cache_seconds))
    gate = Gate(keys, Secret(s.tracking_webhook_secret_arn, s.secrets_cache_seconds))
    return TrackingService(events, clock.SYSTEM.now, _limits(s), s.profile_retention_days * 86400), gate


def alerting_service(s: AlertSettings | None = None) -> AlertingService:
    from redflag.adapters.dynamodb import DynamoTimerStore
    from redflag.adapters.outbound import WebhookPoster
    from redflag.adapters.parking import SqsParking
    from redflag.adapters.people import DynamoPeople
    from redflag.adapters.secrets import Secret, suppression_keys, unsubscribe_links
    from redflag.adapters.send_once import DynamoSendOnce
    from redflag.adapters.ses import SesDeliverer
    from redflag.adapters.signed_post import WebhookDeliverer
    from redflag.adapters.sns import SnsDeliverer
    from redflag.core.interventions import QuietHours
    from redflag.services.alerting import AlertingService, Interventions
    from redflag.services.ports import Deliverer
    from redflag.services.sending import Sender

    s = s or AlertSettings()
    width = s.alert_channel_concurrency
    unsubscribe_secret = Secret(s.unsubscribe_secret_arn, s.secrets_cache_seconds)
    webhook_secret = Secret(s.webhook_secret_arn, s.secrets_cache_seconds)
    webhook = WebhookPoster(s.webhook_url, webhook_secret, clock.SYSTEM.now) if s.webhook_url else None
    senders: dict[str, Deliverer] = {  # one adapter per channel (redflag.channels.REGISTRY)
        "user": SesDeliverer(s.sender_email, configuration_set=s.email_configuration_set),
        "cs": SnsDeliverer(s.alert_topic_arn, s.cs_message_format),
        "webhook": WebhookDeliverer(webhook),
    }
    once = DynamoSendOnce(s.idempotency_table_name, now=clock.SYSTEM.now, sleep=clock.SYSTEM.sleep)
    policy = Interventions(
        cap=s.email_cap,
        cap_window=s.email_cap_window_hours * 3600,
        quiet=QuietHours.parse(s.quiet_hours),
        default_timezone=s.default_timezone,
        escalate_after=s.escalate_after,
        escalation_window=s.escalation_window_hours * 3600,
    )
    keep = max(policy.cap_window, 2 * policy.escalation_window)
    store = DynamoTimerStore(s.table_name, s.due_shards)
    people = DynamoPeople(store, suppression_keys(unsubscribe_secret), s.due_shards, keep, workers=width)
    links = unsubscribe_links(s.unsubscribe_url, unsubscribe_secret, s.unsubscribe_token_days, clock.SYSTEM.now)
    sender = Sender(senders, once, SqsParking(s.parked_queue_url), workers=width)
    return AlertingService(sender, people, policy, links)


def feedback_service(s: FeedbackSettings | None = None) -> FeedbackService:
    from redflag.adapters.markers import DynamoFeedbackMarkers
    from redflag.adapters.parking import SqsParking
    from redflag.adapters.secrets import Secret
    from redflag.adapters.send_once import DynamoSendOnce
    from redflag.adapters.sns import SnsDeliverer
    from redflag.adapters.stats_table import DynamoStats
    from redflag.services.feedback import FeedbackService
    from redflag.services.sending import Sender

    s = s or FeedbackSettings()
    # the CS notices go the way every CS alert goes: once per alert id, parked when SNS refuses them
    once = DynamoSendOnce(s.idempotency_table_name, now=clock.SYSTEM.now, sleep=clock.SYSTEM.sleep)
    sender = Sender({"cs": SnsDeliverer(s.alert_topic_arn, s.cs_message_format)}, once, SqsParking(s.parked_queue_url))
    secret = Secret(s.unsubscribe_secret_arn, s.secrets_cache_seconds)
    responses = DynamoStats(s.stats_table_name)  # each email's sends, deliveries, clicks, per rule
    return FeedbackService(secret, DynamoFeedbackMarkers(s.table_name), sender, responses, clock.SYSTEM.now)


def sweep_service(s: SweepSettings | None = None, drain: bool = False) -> SweepService:
    """The scheduled sweeper (it hands a heavy minute to drain workers), or (``drain``) a worker."""
    from redflag.adapters.dynamodb import DynamoTimerStore
    from redflag.adapters.fanout import LambdaDispatcher
    from redflag.services.sweeping import SweepPlan, SweepService

    s = s or SweepSettings()
    plan = SweepPlan(
        shards=s.due_shards,
        lookahead=s.sweep_mode == "lookahead",
        passes=s.sweeps_per_minute,
        poll_seconds=s.sweep_poll_seconds,
        page_size=s.sweep_page_size,
        workers=s.sweep_workers,
        fanout_at=s.sweep_fanout_at,
        shards_per_worker=s.sweep_shards_per_worker,
    )
    store = DynamoTimerStore(s.table_name, s.due_shards)  # aws.CONFIG: no client-side parameter validation
    dispatcher = None if drain else LambdaDispatcher(s.sweep_drain_function or s.aws_lambda_function_name)
    return SweepService(store, plan, clock.SYSTEM, _policy(s.completed_retention_days), dispatcher)


def stats_store(s: StatsSettings | None = None) -> DynamoStats:
    from redflag.adapters.stats_table import DynamoStats

    s = s or StatsSettings()
    return DynamoStats(s.stats_table_name)


def usage_service(s: UsageSettings | None = None) -> UsageDropService:
    from redflag.adapters.dynamodb import DynamoTimerStore
    from redflag.adapters.ssm_rules import SsmRuleSource
    from redflag.adapters.stats_table import DynamoStats
    from redflag.services.weekly import UsageDropService

    s = s or UsageSettings()
    rules = SsmRuleSource(s.rules_path, s.rules_cache_seconds)
    flags = DynamoTimerStore(s.table_name, shards=1)
    return UsageDropService(
        rules, DynamoStats(s.stats_table_name), flags, clock.SYSTEM.now, s.completed_retention_days * 86400
    )


def rates_service(s: RatesSettings | None = None) -> RateService:
    from redflag.adapters.dynamodb import DynamoTimerStore
    from redflag.adapters.ssm_rules import SsmRuleSource
    from redflag.adapters.stats_table import DynamoStats
    from redflag.services.rates import RateService

    s = s or RatesSettings()
    rules = SsmRuleSource(s.rules_path, s.rules_cache_seconds)
    log = DynamoTimerStore(s.table_name, shards=1)  # plain items only: no due index
    return RateService(rules, DynamoStats(s.stats_table_name), log, clock.SYSTEM.now, s.rate_history_days * 86400)


def users_service(s: UsersSettings | None = None) -> UsersService:
    from redflag.adapters.dynamodb import DynamoTimerStore
    from redflag.adapters.markers import DynamoMembers, DynamoSuppressions
    from redflag.adapters.secrets import Secret
    from redflag.adapters.user_records import DynamoUserRecords
    from redflag.services.users import UsersService

    s = s or UsersSettings()
    secret = Secret(s.unsubscribe_secret_arn, s.secrets_cache_seconds)
    store = DynamoTimerStore(s.table_name, shards=1)  # partitions and plain items only: no due index
    members = DynamoMembers(DynamoTimerStore(s.stats_table_name, shards=1))
    return UsersService(DynamoUserRecords(store), DynamoSuppressions(store), members, secret, clock.SYSTEM.now)


def slack_relay(s: SlackSettings | None = None) -> Relay:
    from redflag.adapters.incoming_webhook import SlackDeliverer
    from redflag.adapters.outbound import Outcome, post_json
    from redflag.adapters.parking import SqsParking
    from redflag.adapters.secrets import SecureString
    from redflag.adapters.send_once import DynamoSendOnce
    from redflag.services.relay import Relay
    from redflag.services.sending import Sender

    s = s or SlackSettings()

    def post(url: str, payload: dict[str, Any]) -> Outcome:
        return post_json(url, payload, sleep=clock.SYSTEM.sleep)

    deliverer = SlackDeliverer(SecureString(s.slack_webhook_parameter, s.secrets_cache_seconds), post)
    once = DynamoSendOnce(s.idempotency_table_name, now=clock.SYSTEM.now, sleep=clock.SYSTEM.sleep, prefix="slack")
    return Relay(Sender({"slack": deliverer}, once, SqsParking(s.parked_queue_url)), s.cs_link_template)
