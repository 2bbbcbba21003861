"""The ``usage_drop`` kind: an account whose weekly active users fell by more than ``drop_percent`` week
over week. Pure.

An account's weekly actives are counted per ISO week (Monday to Sunday, UTC) by the stats function.
Once a week has ended, the weekly check (``redflag.services.weekly``) compares it with the week
before: an account that had at least ``min_weekly_actives`` and lost more than ``drop_percent`` of
them is flagged, once per rule, account and week (an account flag item, which the stream takes to
the alerting path). The flag is about an account, never one user: customer success and the webhook
hear of it, no user is emailed. It keeps no timer: events naming the rule arm nothing (a
``user_active`` still counts, as the user's activity, which is what the weekly check reads).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from redflag.core.errors import missing
from redflag.core.events import EventType
from redflag.core.rules import RuleFields
from redflag.core.text import one_line
from redflag.core.timers import FlagReason
from redflag.kinds.base import CsMessage, Kind


class AccountFlag(BaseModel):
    """A usage drop: one per rule, account and (ended) week."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    task: str  # the usage_drop rule's name
    week: str  # the week that dropped, e.g. 2026-W47
    actives_before: int
    actives_after: int
    rule: RuleFields
    flagged_at: float

    @property
    def drop_percent(self) -> float:
        return round(100 * (self.actives_before - self.actives_after) / self.actives_before, 1)

    def alert_id(self, channel: str) -> str:
        return json.dumps([f"account:{self.account_id}", self.task, self.week, "usage_drop", channel])


def usage_drops(
    task: str, rule: RuleFields, week: str, before: dict[str, int], after: dict[str, int], now: float
) -> list[AccountFlag]:
    """The accounts whose weekly actives fell by more than the rule's drop_percent from ``before``
    (the week before) to ``after`` (``week``, which has ended); an account absent from ``after`` had none."""
    assert rule.kind == KIND.name and rule.drop_percent is not None
    flags = []
    for account, previous in sorted(before.items()):
        if previous < rule.min_weekly_actives:
            continue
        current = after.get(account, 0)
        if 100 * (previous - current) / previous > rule.drop_percent:
            flags.append(AccountFlag(account_id=account, task=task, week=week, actives_before=previous,
                                     actives_after=current, rule=rule, flagged_at=now))  # fmt: skip
    return flags


class UsageDrop(Kind[AccountFlag]):
    name = "usage_drop"
    about = "account"
    reasons = (FlagReason.USAGE_DROP,)
    fields = frozenset({"drop_percent", "min_weekly_actives"})
    default_notify = ("cs",)
    doc = "docs/rules.md#usage-drop"
    sample_rule = "rules/weekly_usage.yaml"
    sample_event = "events/weekly_usage_to_flags/scheduled.json"
    raised_by = "WeeklyUsageToFlagsFunction"

    def check(self, rule: RuleFields) -> None:
        if rule.drop_percent is None:
            missing("drop_percent")

    def refusal(self, field: str) -> str:
        if field in ("threshold_seconds", "threshold", "max_failures", "expected_seconds"):
            return "a usage_drop rule takes drop_percent, not a threshold or max_failures"
        return f"a usage_drop rule is about an account: it takes no {field}"

    def threshold_text(self, rule: RuleFields) -> str:
        return f"weekly actives -{rule.drop_percent:g}%"

    def ignored(self, event_type: EventType, rule: RuleFields) -> str:
        return f"'{rule.label}' is a usage_drop rule: it reads account activity, not events"

    def alert_id(self, subject: AccountFlag, channel: str) -> str:
        return subject.alert_id(channel)

    def cs_message(self, subject: AccountFlag, now: float) -> CsMessage:
        flag, rule = subject, subject.rule
        summary = (
            f"Account {flag.account_id}: weekly active users fell {flag.drop_percent:g}% in {flag.week} "
            f"({flag.actives_before} -> {flag.actives_after}; {rule.label})"
        )
        message = {
            "summary": one_line(summary, 300),
            "reason": FlagReason.USAGE_DROP.value,
            "severity": rule.severity,
            "task": flag.task,
            "label": rule.label,
            "account_id": flag.account_id,
            "week": flag.week,
            "actives_before": flag.actives_before,
            "actives_after": flag.actives_after,
            "drop_percent": flag.drop_percent,
            "threshold_percent": rule.drop_percent,
        }
        attributes = {"task": flag.task, "severity": rule.severity, "account_id": flag.account_id}
        return CsMessage(f"Usage drop: account {flag.account_id} ({flag.week})", message, attributes)

    def webhook_payload(self, subject: AccountFlag, now: float) -> dict[str, Any]:
        flag = subject
        return {
            "type": "usage_drop",
            "id": flag.alert_id("webhook"),
            "account_id": flag.account_id,
            "task": flag.task,
            "week": flag.week,
            "actives_before": flag.actives_before,
            "actives_after": flag.actives_after,
            "drop_percent": flag.drop_percent,
        }

    def facts(self, message: Mapping[str, Any]) -> list[tuple[str, Any]]:
        m = message
        return [
            ("Account", m.get("account_id")),
            ("Week", m.get("week")),
            ("Weekly actives", f"{m.get('actives_before')} -> {m.get('actives_after')}"),
            ("Drop", f"{m.get('drop_percent')}% (flag at {m.get('threshold_percent')}%)"),
        ]


KIND = UsageDrop()
