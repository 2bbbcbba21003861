"""Builds each service from the settings model: the only place adapters meet the domain."""

from __future__ import annotations

from redflag import clock, timers
from redflag.adapters.delivery import AwsDelivery, IdempotentSender
from redflag.adapters.dynamodb import DynamoTimerStore
from redflag.adapters.ssm_rules import SsmRuleSource
from redflag.alerting import AlertingService
from redflag.ingest import IngestService
from redflag.settings import Settings, get_settings
from redflag.sweeping import SweepService


def _store(s: Settings) -> DynamoTimerStore:
    return DynamoTimerStore(s.table_name, s.due_shards, s.event_id_retention_hours * 3600)


def _policy(s: Settings) -> timers.Policy:
    return timers.Policy(retention_seconds=s.completed_retention_days * 86400)


def ingest_service(s: Settings | None = None) -> IngestService:
    s = s or get_settings()
    rules = SsmRuleSource(s.rules_path, s.rules_cache_seconds)
    return IngestService(_store(s), rules, clock.now, _policy(s), s.max_future_skew_seconds)


def alerting_service(s: Settings | None = None) -> tuple[AlertingService, IdempotentSender]:
    s = s or get_settings()
    sender = IdempotentSender(AwsDelivery(s.sender_email, s.alert_topic_arn), s.idempotency_table_name)
    return AlertingService(sender, clock.now), sender


def sweep_service(s: Settings | None = None) -> SweepService:
    s = s or get_settings()
    return SweepService(_store(s), s.due_shards, s.sweep_page_size, _policy(s), s.sweeps_per_minute)
