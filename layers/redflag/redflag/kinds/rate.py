"""The ``rate`` kind: for the product team, a share of a task's runs (or a funnel's, or one funnel step's)
over a rolling window crossing a level: abandonment (started, then flagged for time: not done within
the threshold), failure (a run with at least one ``task_failed``) or conversion (started, then
completed; for a step, a later step reached). Pure.

Counted by the stats fold in per-minute buckets of the minute each run started in
(``redflag.services.learning``); the rate check (``redflag.services.rates``, every minute) sums the
``window_minutes`` of buckets that ended ``settle`` ago, where ``settle`` is the watched rule's
threshold (for a whole funnel, its steps' thresholds added up) plus two minutes for the stats windows:
the runs counted have all had their chance to finish. A share of fewer than ``min_started`` runs is
not judged (no alert, no recovery).

Hysteresis: the rate alerts once when it crosses ``alert_percent`` (above it; for conversion, below
it), and says it recovered once when it comes back past ``recover_percent`` (default four fifths of
the alert level; for conversion, a fifth of the way from it to 100): between the two levels nothing
changes, so a rate hovering at its level never flaps. Each change is one item, written once (its
number: odd a crossing, even a recovery), which the stream takes to customer success (SNS, Slack) and
the webhook. Its severity says how far over: ``critical`` when the rate is half again past the level
(15 % -> 22.5 %; for conversion 60 % -> 40 %), ``warning`` else; a recovery is ``info``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from redflag.core.errors import invalid, missing
from redflag.core.events import EventType
from redflag.core.rules import RuleFields
from redflag.core.text import humanize, one_line
from redflag.core.timers import FlagReason
from redflag.kinds.base import CsMessage, Kind, iso

COUNTER = {"abandonment": "abandoned", "failure": "failed", "conversion": "converted"}
WORDS = {"abandonment": "abandoned", "failure": "failed", "conversion": "converted"}


def recover_level(rule: RuleFields) -> float:
    assert rule.alert_percent is not None
    if rule.recover_percent is not None:
        return rule.recover_percent
    if rule.measure == "conversion":
        return round(rule.alert_percent + (100 - rule.alert_percent) / 5, 2)
    return round(rule.alert_percent * 4 / 5, 2)


def _worse(rule: RuleFields, rate: float, level: float) -> bool:
    """``rate`` is past ``level`` on the bad side (above it; for conversion, below it)."""
    return rate < level if rule.measure == "conversion" else rate > level


def group_of(task: str) -> str:
    """Where a rate rule's changes are written, in order (``Kind.flag_ref``)."""
    return f"rate:{task}"


class RateChange(BaseModel):
    """One change of a rate rule's state: a crossing (``n`` odd) or a recovery (``n`` even)."""

    model_config = ConfigDict(frozen=True)

    task: str  # the rate rule's name
    rule: RuleFields
    n: int
    watched: str  # the stats name: a task, a funnel, or a funnel's step ("checkout/payment")
    rate: float  # percent
    count: int  # runs abandoned, failed or converted
    started: int
    window_start: float
    window_end: float
    at: float

    @property
    def crossed(self) -> bool:
        return self.n % 2 == 1

    @property
    def status(self) -> Literal["crossed", "recovered"]:
        return "crossed" if self.crossed else "recovered"


def severity(change: RateChange) -> str:
    if not change.crossed:
        return "info"
    level = change.rule.alert_percent or 0
    if change.rule.measure == "conversion":
        return "critical" if change.rate <= level / 1.5 else "warning"
    return "critical" if change.rate >= level * 1.5 else "warning"


def window_of(rule: RuleFields, settle_seconds: int, now: float) -> tuple[int, int]:
    """The minutes a check at ``now`` sums: ``window_minutes`` of them, ending ``settle_seconds`` ago
    (first minute, the minute after the last), as epoch minutes."""
    end = int((now - settle_seconds) // 60)
    return end - rule.window_minutes, end


def evaluate(
    task: str,
    rule: RuleFields,
    watched: str,
    counts: Mapping[str, int],
    latest: RateChange | None,
    window: tuple[float, float],
    now: float,
) -> RateChange | None:
    """The change a window's counts make to a rate rule's state (``latest``: its last change), or None."""
    assert rule.measure is not None and rule.alert_percent is not None
    started = int(counts.get("started", 0))
    if started < rule.min_started:
        return None
    count = min(started, int(counts.get(COUNTER[rule.measure], 0)))
    rate = round(100 * count / started, 2)
    alerting = latest is not None and latest.crossed
    if not alerting and not _worse(rule, rate, rule.alert_percent):
        return None
    if alerting and _worse(rule, rate, recover_level(rule)):
        return None
    n = (latest.n if latest is not None else 0) + 1
    return RateChange(task=task, rule=rule, n=n, watched=watched, rate=rate, count=count, started=started,
                      window_start=window[0], window_end=window[1], at=now)  # fmt: skip


def measured(rule: RuleFields, counts: Mapping[str, int]) -> tuple[float | None, int, int]:
    """(rate in percent or None when nothing started, count, started) of a window's counts."""
    assert rule.measure is not None
    started = int(counts.get("started", 0))
    count = min(started, int(counts.get(COUNTER[rule.measure], 0)))
    return (round(100 * count / started, 2) if started else None), count, started


class Rate(Kind[RateChange]):
    name = "rate"
    about = "product"
    reasons = (FlagReason.RATE,)
    fields = frozenset({"watch", "step", "measure", "window_minutes", "alert_percent", "recover_percent",
                        "min_started"})  # fmt: skip
    default_notify = ("cs",)
    doc = "docs/rules.md#rate"
    sample_rule = "rules/checkout_abandonment.yaml"
    sample_event = "events/timers_to_alerts/rate_crossed.json"
    raised_by = "RatesToFlagsFunction"
    subject_model = RateChange

    def check(self, rule: RuleFields) -> None:
        if rule.watch is None:
            missing("watch")
        if rule.measure is None:
            missing("measure")
        if rule.alert_percent is None:
            missing("alert_percent")
        recover = rule.recover_percent
        if recover is not None:
            if rule.measure == "conversion" and recover <= rule.alert_percent:
                invalid("recover_percent", "a conversion rate recovers above the level it alerts at")
            if rule.measure != "conversion" and recover >= rule.alert_percent:
                invalid("recover_percent", "must be below alert_percent: the rate recovers under the level")

    def refusal(self, field: str) -> str:
        return f"a rate rule watches another rule's runs: it takes no {field}"

    def threshold_text(self, rule: RuleFields) -> str:
        side = "<" if rule.measure == "conversion" else ">"
        what = f"{rule.watch}/{rule.step}" if rule.step else rule.watch
        return f"{rule.measure} of {what} {side} {rule.alert_percent:g}% in {rule.window_minutes} min"

    def ignored(self, event_type: EventType, rule: RuleFields) -> str:
        return f"'{rule.label}' is a rate rule: it reads the runs of '{rule.watch}', not events"

    def alert_id(self, subject: RateChange, channel: str) -> str:
        return json.dumps(["rate", subject.task, subject.n, round(subject.at // 60), channel])

    def flag_ref(self, subject: RateChange) -> tuple[str, str]:
        return group_of(subject.task), f"{subject.n:08d}"

    def cs_message(self, subject: RateChange, now: float) -> CsMessage:
        c, rule = subject, subject.rule
        assert rule.measure is not None and rule.alert_percent is not None
        minutes = round((c.window_end - c.window_start) / 60)
        what = f"{c.count} of {c.started} {WORDS[rule.measure]}"
        runs = f"of the runs of {c.watched} started in the {humanize(minutes * 60)} to {_hm(c.window_end)} UTC"
        if c.crossed:
            side = "below" if rule.measure == "conversion" else "above"
            level = f"the alert level is {side} {rule.alert_percent:g}%"
            summary = f"{rule.label}: {c.rate:g}% {runs} ({what}); {level}"
            subject_line = f"Rate: {rule.label} at {c.rate:g}% ({c.watched})"
        else:
            summary = (
                f"{rule.label} recovered: {c.rate:g}% {runs} ({what}); past the recovery level {recover_level(rule):g}%"
            )
            subject_line = f"Recovered: {rule.label} at {c.rate:g}% ({c.watched})"
        message = {
            "summary": one_line(summary, 300),
            "reason": FlagReason.RATE.value,
            "severity": severity(c),
            "status": c.status,
            "task": c.task,
            "label": rule.label,
            "watched": c.watched,
            "measure": rule.measure,
            "rate_percent": c.rate,
            "count": c.count,
            "started": c.started,
            "alert_percent": rule.alert_percent,
            "recover_percent": recover_level(rule),
            "window_start": iso(c.window_start),
            "window_end": iso(c.window_end),
            "change": c.n,
        }
        attributes = {"task": c.task, "severity": severity(c)}
        return CsMessage(subject_line, message, attributes)

    def webhook_payload(self, subject: RateChange, now: float) -> dict[str, Any]:
        c = subject
        return {
            "type": "rate",
            "id": self.alert_id(c, "webhook"),
            "task": c.task,
            "status": c.status,
            "watched": c.watched,
            "measure": c.rule.measure,
            "rate_percent": c.rate,
            "count": c.count,
            "started": c.started,
            "window_start": iso(c.window_start),
            "window_end": iso(c.window_end),
        }

    def facts(self, message: Mapping[str, Any]) -> list[tuple[str, Any]]:
        m = message
        return [
            ("Rate", f"{m.get('rate_percent')}% {m.get('measure')} ({m.get('count')} of {m.get('started')})"),
            ("Watching", m.get("watched")),
            ("Levels", f"alert {m.get('alert_percent')}%, recovered at {m.get('recover_percent')}%"),
            ("Window", f"{m.get('window_start')} to {m.get('window_end')}"),
            ("Status", m.get("status")),
        ]


def _hm(epoch: float) -> str:
    return (iso(epoch) or "")[11:16]


KIND = Rate()
