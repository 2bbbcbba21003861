"""The ``health`` kind: each account's health score for an ISO week, from signals Red Flag already keeps,
weighted by the rule, in green, yellow and red bands; customer success hears when an account moves into
red. Pure.

The signals of an account for a week (its stats row, ``redflag.adapters.stats_table``), each scored
0-100:

    trend        weekly actives against the week before, c %    100 + 2c   (0 at -50 %, 100 at 0 % or more)
    stickiness   DAU / WAU: user-days / (days x weekly actives)  200 x it   (100 from one day in two)
    flags        red flags of its users per active user, f       100 - 100 f (0 at one per user)
    failures     runs with a failure of runs started, q          100 - 200 q (0 at one in two)
    first_week   of the users new the week before, the share     100 x it
                 active on a second day within their first seven

each kept within 0-100. The score is the weighted mean of the signals an account has (a signal with
nothing to go on, such as no runs started, is left out and the weights of the others count); bands:
green from ``bands.green`` (default 70), yellow from ``bands.yellow`` (40), red below. An account with
fewer than ``min_weekly_actives`` weekly actives in both weeks is not scored. The signals that cost the
most points (``weight x (100 - score) / total weight``) are its top contributors.

The weekly run (Mondays, ``redflag.services.weekly``) scores the week that ended and the one before it;
an account red now and not red before (or not scored before) has moved into red: one flag per rule,
account and week, written once, for customer success and the webhook.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from redflag.core.events import EventType
from redflag.core.rules import HealthBands, HealthWeights, RuleFields
from redflag.core.text import one_line
from redflag.core.timers import FlagReason
from redflag.kinds.base import CsMessage, Kind

Band = Literal["green", "yellow", "red"]
SIGNALS = ("trend", "stickiness", "flags", "failures", "first_week")


class Signal(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    value: float  # the signal itself (percent, or flags per active user)
    score: float  # 0-100
    weight: float
    lost: float  # points of the total it costs: weight x (100 - score) / total weight

    @property
    def text(self) -> str:
        return describe(self)


class Health(BaseModel):
    """One account's score for one week."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    week: str
    score: float
    band: Band
    signals: list[Signal]

    def top(self, n: int = 3) -> list[Signal]:
        """The signals that cost the most points (those that cost any)."""
        return [s for s in sorted(self.signals, key=lambda s: -s.lost) if s.lost >= 0.5][:n]


def describe(s: Signal) -> str:
    if s.name == "trend":
        return f"weekly actives {s.value:+.0f}%"
    if s.name == "stickiness":
        return f"stickiness {s.value:.0f}%"
    if s.name == "flags":
        return f"{s.value:.2f} red flags per active user"
    if s.name == "failures":
        return f"{s.value:.0f}% of runs failed"
    return f"{s.value:.0f}% of new users back in week one"


def _clamp(x: float) -> float:
    return max(0.0, min(100.0, x))


def band_of(score: float, bands: HealthBands) -> Band:
    return "green" if score >= bands.green else "yellow" if score >= bands.yellow else "red"


def score(
    rule: RuleFields,
    account: str,
    week: str,
    row: Mapping[str, int],
    before: Mapping[str, int] | None,
    days: int = 7,
) -> Health | None:
    """An account's health for ``week`` from its row (``actives``, ``active_days``, ``flags``,
    ``started``, ``failed``) and the week before's (``actives``; ``new_users`` and ``returned``: the
    first-week cohort). ``days``: the days of the week counted (7 for a week that ended)."""
    weights, bands = rule.weights or HealthWeights(), rule.bands or HealthBands()
    prior = before or {}
    actives, previous = int(row.get("actives", 0)), int(prior.get("actives", 0))
    if max(actives, previous) < rule.min_weekly_actives:
        return None
    raw: list[tuple[str, float, float]] = []  # (signal, value, score)
    if previous:
        change = 100 * (actives - previous) / previous
        raw.append(("trend", change, _clamp(100 + 2 * change)))
    active_days = int(row.get("active_days", 0))
    if actives and active_days:
        sticky = active_days / (days * actives)
        raw.append(("stickiness", 100 * sticky, _clamp(200 * sticky)))
    if actives:
        per_user = int(row.get("flags", 0)) / actives
        raw.append(("flags", per_user, _clamp(100 - 100 * per_user)))
    started = int(row.get("started", 0))
    if started:
        failed = min(started, int(row.get("failed", 0))) / started
        raw.append(("failures", 100 * failed, _clamp(100 - 200 * failed)))
    new_users = int(prior.get("new_users", 0))
    if new_users:
        back = min(new_users, int(prior.get("returned", 0))) / new_users
        raw.append(("first_week", 100 * back, _clamp(100 * back)))
    present = [(name, value, s, float(getattr(weights, name))) for name, value, s in raw if getattr(weights, name)]
    total = sum(w for *_, w in present)
    if not present or total == 0:
        return None
    overall = round(sum(s * w for _, _, s, w in present) / total, 1)
    signals = [Signal(name=n, value=round(v, 2), score=round(s, 1), weight=w, lost=round(w * (100 - s) / total, 1))
               for n, v, s, w in present]  # fmt: skip
    return Health(account_id=account, week=week, score=overall, band=band_of(overall, bands), signals=signals)


class HealthFlag(BaseModel):
    """An account that moved into red: one per rule, account and week."""

    model_config = ConfigDict(frozen=True)

    task: str  # the health rule's name
    rule: RuleFields
    health: Health
    previous: Health | None
    flagged_at: float

    @property
    def account_id(self) -> str:
        return self.health.account_id


def moved_into_red(
    task: str, rule: RuleFields, now: Health | None, before: Health | None, at: float
) -> HealthFlag | None:
    if now is None or now.band != "red" or (before is not None and before.band == "red"):
        return None
    return HealthFlag(task=task, rule=rule, health=now, previous=before, flagged_at=at)


class AccountHealth(Kind[HealthFlag]):
    name = "health"
    about = "account"
    reasons = (FlagReason.HEALTH,)
    fields = frozenset({"weights", "bands", "min_weekly_actives"})
    default_notify = ("cs",)
    doc = "docs/rules.md#health"
    sample_rule = "rules/account_health.yaml"
    sample_event = "events/weekly_usage_to_flags/scheduled.json"
    raised_by = "WeeklyUsageToFlagsFunction"
    subject_model = HealthFlag

    def refusal(self, field: str) -> str:
        return f"a health rule scores accounts from weights and bands: it takes no {field}"

    def threshold_text(self, rule: RuleFields) -> str:
        bands = rule.bands or HealthBands()
        return f"score: red < {bands.yellow:g} <= yellow < {bands.green:g} <= green"

    def ignored(self, event_type: EventType, rule: RuleFields) -> str:
        return f"'{rule.label}' is a health rule: it reads account activity, not events"

    def alert_id(self, subject: HealthFlag, channel: str) -> str:
        return json.dumps([f"account:{subject.account_id}", subject.task, subject.health.week, "health", channel])

    def flag_ref(self, subject: HealthFlag) -> tuple[str, str]:
        return f"account:{subject.account_id}", f"health#{subject.task}#{subject.health.week}"

    def cs_message(self, subject: HealthFlag, now: float) -> CsMessage:
        f, h = subject, subject.health
        was = f" (from {f.previous.band} {f.previous.score:g})" if f.previous else ""
        why = "; ".join(f"{s.text} (-{s.lost:g})" for s in h.top())
        summary = f"Account {h.account_id} is red: health {h.score:g} in {h.week}{was}. Most of it: {why or 'n/a'}"
        message = {
            "summary": one_line(summary, 300),
            "reason": FlagReason.HEALTH.value,
            "severity": f.rule.severity,
            "task": f.task,
            "label": f.rule.label,
            "account_id": h.account_id,
            "week": h.week,
            "score": h.score,
            "band": h.band,
            "previous_score": f.previous.score if f.previous else None,
            "previous_band": f.previous.band if f.previous else None,
            "signals": [s.model_dump() | {"text": s.text} for s in h.signals],
            "top": [s.text for s in h.top()],
        }
        attributes = {"task": f.task, "severity": f.rule.severity, "account_id": h.account_id}
        return CsMessage(f"Account health red: {h.account_id} ({h.week})", message, attributes)

    def webhook_payload(self, subject: HealthFlag, now: float) -> dict[str, Any]:
        h = subject.health
        return {
            "type": "health",
            "id": self.alert_id(subject, "webhook"),
            "account_id": h.account_id,
            "task": subject.task,
            "week": h.week,
            "score": h.score,
            "band": h.band,
            "signals": {s.name: {"value": s.value, "score": s.score} for s in h.signals},
        }

    def facts(self, message: Mapping[str, Any]) -> list[tuple[str, Any]]:
        m = message
        was = f" (was {m.get('previous_band')} {m.get('previous_score')})" if m.get("previous_band") else ""
        return [
            ("Account", m.get("account_id")),
            ("Week", m.get("week")),
            ("Health", f"{m.get('score')} {m.get('band')}{was}"),
        ]

    def lines(self, message: Mapping[str, Any]) -> list[str]:
        top = message.get("top")
        return [f"• {one_line(str(t))}" for t in top] if isinstance(top, list) else []


KIND = AccountHealth()
