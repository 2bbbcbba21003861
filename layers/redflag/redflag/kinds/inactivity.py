"""The ``inactivity`` kind: a user who has not been active (``user_active`` events naming the rule) for
``threshold_seconds``. One timer per user and rule; each activity re-arms it at the activity time, so
when it falls due the user has been silent for the threshold. Pure.

Through the tracking API every ``track``, ``page`` and ``screen`` call of the user is activity for the
rule, or, when the rule's ``track`` mapping names ``active`` events, those tracks only (and ``where``
narrows either to calls whose properties hold its values).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from redflag.core.errors import invalid
from redflag.core.events import EventType, Outcome, TaskEvent
from redflag.core.rules import RuleFields
from redflag.core.templates import EmailTemplate
from redflag.core.text import humanize
from redflag.core.timers import Decision, FlagReason, Timer, TimerKey, TimerState
from redflag.core.tracking import Interaction
from redflag.kinds.base import CLOSING, Applied, TimerKind, arm, fixed, threshold_checks, threshold_of

EMAILS = {
    FlagReason.INACTIVITY: EmailTemplate(
        subject="We miss you at {task_label}",
        text="Hi {first_name},\n\nIt's been {threshold} since your last {task_label}. No pressure: if something "
        "got in the way, we'd love to hear what would make it easier.\n\n" + CLOSING,
    ),
}


class Inactivity(TimerKind):
    name = "inactivity"
    reasons = (FlagReason.INACTIVITY,)
    arms = EventType.USER_ACTIVE
    takes = frozenset({EventType.USER_ACTIVE})
    fields = frozenset({"threshold_seconds", "expected_seconds", "track"})
    track_keys: ClassVar[dict[str, EventType]] = {"active": EventType.USER_ACTIVE}
    counts_activity = True
    doc = "docs/rules.md#inactivity"
    sample_rule = "rules/daily_practice.yaml"
    sample_event = "events/timers_to_alerts/ttl_expired_open_timer.json"
    raised_by = "SweepDueTimersFunction"

    def check(self, rule: RuleFields) -> None:
        threshold_checks(rule)
        self.check_track(rule)
        if rule.track is not None and rule.track.instance_property:
            invalid("track.instance_property", "an inactivity rule keeps one timer per user: it has no instances")

    def refusal(self, field: str) -> str:
        return "an inactivity rule takes threshold_seconds (and a track mapping) only"

    def tracked(self, rule: RuleFields, call: Interaction) -> EventType | None:
        """Every track, page and screen is activity; with ``active`` names, those tracks only."""
        mapping = rule.track
        if mapping is None:
            return EventType.USER_ACTIVE
        if not mapping.matches(call.properties):
            return None
        if mapping.active is None or (call.type == "track" and call.name in mapping.active):
            return EventType.USER_ACTIVE
        return None

    def threshold_text(self, rule: RuleFields) -> str:
        return f"{rule.threshold_seconds} s"

    def ignored(self, event_type: EventType, rule: RuleFields) -> str:
        return f"'{rule.label}' is an inactivity rule: it counts user_active events"

    def key(self, event: TaskEvent) -> TimerKey:
        return TimerKey(user_id=event.user_id, task=event.task)  # one per user and rule, whatever the instance

    def apply(self, current: Timer | None, event: Applied) -> Decision:
        key, event_type, at, rule = event.key, event.event_type, event.at, event.rule
        user, properties, threshold = event.user, event.properties, event.threshold
        if event_type is not EventType.USER_ACTIVE:
            return Decision(Outcome.IGNORED, None, self.ignored(event_type, rule))
        cur = current or Timer(key=key, state=TimerState.IDLE)
        running = cur.state in (TimerState.OPEN, TimerState.FLAGGED)
        if running and cur.started_at is not None and at <= cur.started_at:
            return Decision(Outcome.RECORDED, None, "an older activity; the timer runs from the latest")
        armed = arm(cur, at, rule, threshold or fixed(rule), user, properties, FlagReason.INACTIVITY)
        return Decision(Outcome.ARMED, armed, "re-armed" if running else None)

    def default_emails(self) -> Mapping[FlagReason, EmailTemplate]:
        return EMAILS

    def said(self, timer: Timer, reason: FlagReason, who: str, elapsed: float) -> str:
        rule = timer.rule
        assert rule is not None
        red = humanize(threshold_of(timer))
        return f"{who} has not been active for {rule.label} in {humanize(elapsed)} (red flag at {red})"


KIND = Inactivity()
