"""The ``task`` kind (the default): a started task still open after its threshold, and optionally the
Nth ``task_failed`` of one open run. Pure.

    (none) --started--> open --completed--> completed
      |                  |  \\--due, swept----------> flagged --completed--> completed (late)
      |--failed--> idle  |  \\--Nth failure (max_failures) --^
                         \\----TTL delete (item gone, the stream carries the red flag)

The threshold is fixed (``threshold_seconds``) or learned from real durations (``threshold``: a
factor of the usual time, with a fallback until enough completions were seen). Out-of-order delivery
is resolved by event time: a start that predates the latest completion ever seen never arms a timer;
a completion before the open run's start only moves ``last_completed_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from redflag.core.baselines import Threshold
from redflag.core.errors import invalid
from redflag.core.events import EventType, Outcome, UserInfo
from redflag.core.rules import RuleFields
from redflag.core.templates import EmailTemplate
from redflag.core.text import humanize
from redflag.core.timers import Decision, FlagReason, Policy, Timer, TimerState, retained
from redflag.kinds.base import (
    CLOSING,
    Applied,
    Tally,
    TimerKind,
    arm,
    completed,
    fixed,
    threshold_checks,
    threshold_of,
    usual_of,
)

SETTLE_SECONDS = 120  # the stats windows and the sweeper, after a threshold: when a run's fate is known

EMAILS = {
    FlagReason.TIME: EmailTemplate(
        subject="Need a hand with {task_label}?",
        text="Hi {first_name},\n\nWe noticed you've been working on {task_label} for over {threshold}. "
        "{expected_sentence} Can we help?\n\n" + CLOSING,
    ),
    FlagReason.FAILURES: EmailTemplate(
        subject="Trouble with {task_label}?",
        text="Hi {first_name},\n\nWe noticed {task_label} didn't go through, {failures} times now. That's "
        "frustrating, and often it's something small we can sort out together. Can we help?\n\n" + CLOSING,
    ),
}


class Task(TimerKind):
    name = "task"
    reasons = (FlagReason.TIME, FlagReason.FAILURES)
    arms = EventType.TASK_STARTED
    takes = frozenset({EventType.TASK_STARTED, EventType.TASK_COMPLETED, EventType.TASK_FAILED})
    fields = frozenset({"threshold_seconds", "threshold", "expected_seconds", "max_failures", "track"})
    track_keys: ClassVar[dict[str, EventType]] = {
        "started": EventType.TASK_STARTED,
        "completed": EventType.TASK_COMPLETED,
        "failed": EventType.TASK_FAILED,
    }
    counts_runs = True
    doc = "docs/rules.md#task"
    sample_rule = "rules/create_landing_page.yaml"
    sample_event = "events/timers_to_alerts/sweeper_flagged_timer.json"
    raised_by: ClassVar[str] = "SweepDueTimersFunction"

    def check(self, rule: RuleFields) -> None:
        threshold_checks(rule)
        self.check_track(rule)
        if rule.track is not None and not rule.track.started:
            invalid("track.started", "name the track events that start the task")

    def threshold_text(self, rule: RuleFields) -> str:
        failures = f", {rule.max_failures} failures" if rule.max_failures else ""
        if rule.threshold is not None:
            t = rule.threshold
            return f"{t.factor:g} x {t.relative_to} ({t.fallback_seconds} s until {t.min_samples})" + failures
        return f"{rule.threshold_seconds} s" + failures

    def learns(self, rule: RuleFields, event_type: EventType) -> bool:
        return rule.threshold is not None and event_type is EventType.TASK_STARTED

    def apply(self, current: Timer | None, event: Applied) -> Decision:
        key, event_type, at, rule, now = event.key, event.event_type, event.at, event.rule, event.now
        user, properties, policy, threshold = event.user, event.properties, event.policy, event.threshold
        cur = current or Timer(key=key, state=TimerState.IDLE)
        new = current is None
        armed_with = threshold or fixed(rule)
        if event_type is EventType.TASK_STARTED:
            return _started(cur, at, rule, armed_with, user, properties)
        if event_type is EventType.TASK_COMPLETED:
            return _completed(cur, new, at, rule, now, user, policy)
        if event_type is EventType.TASK_FAILED:
            return _failed(cur, new, at, rule, now, user, policy)
        raise ValueError(f"{event_type} is not a task event")

    def tallies(self, change: str, by_ttl: bool, old: Timer | None, new: Timer | None) -> list[Tally]:
        """Per-minute buckets of the minute each run started in, for rate rules: runs started, abandoned
        (flagged for time, or deleted by TTL while open), with a failure, and completed."""
        timer = new or old
        if timer is None:
            return []
        task = timer.key.task
        if change == "REMOVE":
            if by_ttl and old is not None and old.state is TimerState.OPEN and old.started_at is not None:
                return [Tally(task, "abandoned", at=old.started_at)]
            return []
        if new is None or new.started_at is None:
            return []
        was = old.state if old is not None else None
        out = []
        if new.state is TimerState.OPEN and was is not TimerState.OPEN:
            out.append(Tally(task, "started", at=new.started_at, account=True))
        if new.state is TimerState.FLAGGED and was is TimerState.OPEN and new.flag_reason is not FlagReason.FAILURES:
            out.append(Tally(task, "abandoned", at=new.started_at))
        first_failure = old is None or old.run_failures == 0 or old.started_at != new.started_at
        if new.run_failures > 0 and first_failure and new.state in (TimerState.OPEN, TimerState.FLAGGED):
            out += [Tally(task, "failed"), Tally(task, "failed", at=new.started_at, account=True)]
        if new.state is TimerState.COMPLETED and was in (TimerState.OPEN, TimerState.FLAGGED):
            out.append(Tally(task, "converted", at=new.started_at))
        return out

    def watched(self, rule: RuleFields, task: str, step: str | None) -> tuple[str, int] | str:
        if step is not None:
            return f"'{task}' is a task rule: it has no steps"
        return task, fixed(rule).seconds + SETTLE_SECONDS

    def default_emails(self) -> Mapping[FlagReason, EmailTemplate]:
        return EMAILS

    def said(self, timer: Timer, reason: FlagReason, who: str, elapsed: float) -> str:
        rule = timer.rule
        assert rule is not None
        if reason is FlagReason.FAILURES:
            return f"{who} failed {rule.label} {timer.run_failures or timer.failures} times in one run"
        said = f"{who} has been on {rule.label} for {humanize(elapsed)} (red flag at {humanize(threshold_of(timer))})"
        usual = usual_of(timer)
        return said + (f"; usually about {humanize(usual)}" if usual else "")

    def run_facts(self, m: Mapping[str, Any]) -> list[tuple[str, Any]]:
        if m.get("reason") == FlagReason.FAILURES:
            return [("Failures in this run", m.get("run_failures") or m.get("failures"))]
        return super().run_facts(m)


def _started(
    cur: Timer, at: float, rule: RuleFields, threshold: Threshold, user: UserInfo, props: dict[str, Any]
) -> Decision:
    if cur.last_completed_at is not None and at <= cur.last_completed_at:
        return Decision(Outcome.RECORDED, None, "start predates the last completion; no timer")
    if cur.state is TimerState.OPEN:
        if cur.started_at is not None and at < cur.started_at:
            moved = arm(cur, at, rule, threshold, user, props, FlagReason.TIME)
            return Decision(Outcome.ARMED, moved.model_copy(update={"run_failures": cur.run_failures}),
                            "earlier start moved the timer")  # fmt: skip
        return Decision(Outcome.RECORDED, None, "timer already armed")
    if cur.state is TimerState.FLAGGED and cur.due_at is not None and at <= cur.due_at:
        return Decision(Outcome.RECORDED, None, "this run was already flagged")
    return Decision(Outcome.ARMED, arm(cur, at, rule, threshold, user, props, FlagReason.TIME))


def _completed(
    cur: Timer, new: bool, at: float, rule: RuleFields, now: float, user: UserInfo, policy: Policy
) -> Decision:
    last = max(at, cur.last_completed_at or at)
    if cur.state in (TimerState.OPEN, TimerState.FLAGGED) and cur.started_at is not None:
        if at < cur.started_at:
            moved = cur.model_copy(update={"last_completed_at": last})
            return Decision(Outcome.RECORDED, moved, "completion predates the open run")
        done: dict[str, Any] = {"duration_seconds": round(at - cur.started_at, 3)}
        if cur.state is TimerState.FLAGGED and cur.flagged_at is not None:
            done["completed_after_flag_seconds"] = round(max(0.0, at - cur.flagged_at), 3)
        return Decision(Outcome.COMPLETED, completed(cur, at, last, now, policy, done))
    if cur.state is TimerState.COMPLETED and not new:
        return Decision(Outcome.RECORDED, cur.model_copy(update={"last_completed_at": last}), "already completed")
    # idle or unseen: remember the completion so a late start cannot arm this run
    return Decision(Outcome.COMPLETED, completed(cur, at, last, now, policy, {"rule": rule, "user": user}))


def _failed(cur: Timer, new: bool, at: float, rule: RuleFields, now: float, user: UserInfo, policy: Policy) -> Decision:
    update: dict[str, Any] = {"failures": cur.failures + 1, "last_failed_at": max(at, cur.last_failed_at or at)}
    if new:
        update |= {"rule": rule, "user": user, "expires_at": retained(now, policy)}
    in_run = cur.state is TimerState.OPEN and cur.started_at is not None and at >= cur.started_at
    if not in_run:
        return Decision(Outcome.RECORDED, cur.model_copy(update=update))
    update["run_failures"] = cur.run_failures + 1
    limit = (cur.rule or rule).max_failures
    if limit is not None and update["run_failures"] >= limit:
        update |= {
            "state": TimerState.FLAGGED,
            "flagged_at": now,
            "flag_reason": FlagReason.FAILURES,
            "expires_at": retained(now, policy),
        }
        return Decision(Outcome.FLAGGED, cur.model_copy(update=update), f"failure {limit} of this run")
    return Decision(Outcome.RECORDED, cur.model_copy(update=update))


KIND = Task()
