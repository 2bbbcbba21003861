"""Each function's settings, read once from the environment the template gives it.

One model per function, with no default for what the template must provide: a stack that forgot a
setting fails when the function starts (cold start), naming the variable, not at the first send.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from redflag.core import mime
from redflag.core.events import iana_zone

RulesPath = Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]*[A-Za-z0-9_.-]$")]


def _quiet_hours(value: str) -> str:
    from redflag.core.interventions import QuietHours

    QuietHours.parse(value)
    return value


Name = Annotated[str, Field(min_length=1)]
ConfigurationSet = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TopicArn = Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:sns:")]


class _Base(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")


class IngestSettings(_Base):
    """events_to_timers: HTTP event -> timer."""

    table_name: Name = Field(description="DynamoDB table holding timers")
    rules_path: RulesPath
    rules_cache_seconds: int = Field(default=60, ge=0)
    due_shards: int = Field(ge=1, le=256)
    completed_retention_days: int = Field(default=30, ge=1)
    max_future_skew_seconds: int = Field(default=300, ge=0)
    max_event_age_days: int = Field(default=7, ge=1, le=365)
    # by measurement (docs/benchmarks.md, ingest CPU): 4, 8 and 16 wide cost the same CPU, 8 keeps a 100-event
    # request within 0.1 s of its calls at 5 ms each; more threads only add lock hand-offs
    ingest_concurrency: int = Field(default=8, ge=1, le=64)
    stats_table_name: Name = Field(description="learned thresholds read their histograms here")


class TrackingSettings(IngestSettings):
    """tracking_api: Segment-style calls (the tracking API, the webhook destinations) -> timers, profiles."""

    write_keys_secret_arn: Name = Field(description="the write keys: one key, or a JSON list of keys (rotation)")
    tracking_webhook_secret_arn: Name = Field(description="the webhook destinations' shared secret (X-Signature)")
    secrets_cache_seconds: int = Field(default=300, ge=0, description="a rotated key takes effect within this")
    profile_retention_days: int = Field(default=90, ge=1, le=3650, description="a profile is kept this long after")


class SweepSettings(_Base):
    """sweep_due_timers: due timer -> flagged."""

    table_name: Name
    due_shards: int = Field(ge=1, le=256)
    sweep_mode: Literal["lookahead", "passes"] = "lookahead"
    sweeps_per_minute: int = Field(default=3, ge=1, le=6, description="passes mode: reads per run")
    sweep_poll_seconds: float = Field(default=5, ge=1, le=30, description="look-ahead mode: seconds between reads")
    sweep_page_size: int = Field(default=250, ge=1, le=1000, description="due keys a read holds per shard")
    sweep_workers: int = Field(default=32, ge=1, le=64, description="concurrent index reads and flag write calls")
    sweep_fanout_at: int = Field(
        default=2000, ge=1, description="timers due in a run's window (first page of each shard) that start workers"
    )
    sweep_shards_per_worker: int = Field(default=1, ge=1, le=256)
    completed_retention_days: int = Field(default=30, ge=1)
    sweep_drain_function: str = Field(default="", description="workers are invokes of this function (empty: this one)")
    aws_lambda_function_name: Name = Field(description="set by Lambda")


class AlertSettings(_Base):
    """timers_to_alerts: timer -> alert."""

    sender_email: Annotated[str, AfterValidator(mime.checked_address)]
    email_configuration_set: ConfigurationSet = Field(description="every user email goes through it (SES feedback)")
    alert_topic_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:sns:")]
    idempotency_table_name: Name
    parked_queue_url: Annotated[str, Field(pattern=r"^https://")]
    alert_channel_concurrency: int = Field(
        default=16, ge=1, le=64, description="sends (and state writes) of one stream batch at once"
    )
    table_name: Name = Field(description="per-user state: opt-outs, deferred emails, the cap, escalations")
    due_shards: int = Field(ge=1, le=256, description="deferred emails go in the due index like timers")
    unsubscribe_url: Annotated[str, Field(pattern=r"^https?://")]
    unsubscribe_secret_arn: Name
    unsubscribe_token_days: int = Field(default=180, ge=1, le=3650)
    webhook_url: Annotated[str, Field(pattern=r"^(|https?://\S+)$")] = ""
    webhook_secret_arn: Name
    quiet_hours: Annotated[str, AfterValidator(_quiet_hours)] = "22-08"
    default_timezone: Annotated[str, AfterValidator(iana_zone)] = "UTC"
    email_cap: int = Field(default=3, ge=1)
    email_cap_window_hours: float = Field(default=24, gt=0)
    escalate_after: int = Field(default=3, ge=2)
    escalation_window_hours: float = Field(default=24, gt=0)
    cs_message_format: Literal["json", "chatbot"] = "json"
    secrets_cache_seconds: int = Field(default=300, ge=0)


class StatsSettings(_Base):
    """timers_to_stats: timer changes -> histograms, counts, account activity."""

    stats_table_name: Name


class UsageSettings(_Base):
    """weekly_usage_to_flags: weekly actives -> account flags."""

    table_name: Name
    stats_table_name: Name
    rules_path: RulesPath
    rules_cache_seconds: int = Field(default=60, ge=0)
    completed_retention_days: int = Field(default=30, ge=1)


class RatesSettings(_Base):
    """rates_to_flags: each rate rule's window of stats buckets -> a crossing or a recovery, written once."""

    table_name: Name = Field(description="each rate rule's changes (crossed, recovered), one item each")
    stats_table_name: Name = Field(description="the per-minute buckets the stats function keeps")
    rules_path: RulesPath
    rules_cache_seconds: int = Field(default=60, ge=0)
    rate_history_days: int = Field(default=90, ge=1, le=3650, description="how long a change is kept")


class UsersSettings(_Base):
    """users_api: one-click unsubscribe, subscription changes and erasure of a user."""

    table_name: Name = Field(description="the user's records and the opt-out markers")
    stats_table_name: Name = Field(description="the user's member markers, per account")
    unsubscribe_secret_arn: Name = Field(description="verifies unsubscribe tokens and keys the opt-out markers")
    secrets_cache_seconds: int = Field(default=300, ge=0)


class SlackSettings(_Base):
    """cs_alerts_to_slack: CS alert (SNS) -> a Slack message."""

    slack_webhook_parameter: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]+$")] = Field(
        description="name of the SSM SecureString holding the incoming webhook's URL"
    )
    idempotency_table_name: Name
    parked_queue_url: Annotated[str, Field(pattern=r"^https://")]
    cs_link_template: Annotated[str, Field(pattern=r"^(|https://\S+)$")] = ""
    secrets_cache_seconds: int = Field(default=300, ge=0)


class FeedbackSettings(_Base):
    """ses_events_to_state: SES events (SNS) -> suppression markers, one CS notice per suppression, metrics."""

    table_name: Name = Field(description="the suppression markers, beside the opt-out markers")
    stats_table_name: Name = Field(description="each rule's email counts: sent, delivered, bounced, clicked")
    unsubscribe_secret_arn: Name = Field(description="keys the markers, as the opt-out markers are keyed")
    alert_topic_arn: TopicArn = Field(description="customer success is told of each suppression here")
    idempotency_table_name: Name
    parked_queue_url: Annotated[str, Field(pattern=r"^https://")]
    cs_message_format: Literal["json", "chatbot"] = "json"
    secrets_cache_seconds: int = Field(default=300, ge=0)
