"""The ``funnel`` kind: ordered steps (checkout: cart -> shipping -> payment -> confirmed), each with a
threshold of its own; a user who reached a step and has not reached a later one after that step's
threshold is stuck there. Pure.

Events: the funnel's own task events, naming the funnel as ``task`` and the step in
``properties.step``. Any of them with a step reaches that step; without one, ``task_started`` reaches
the first step and ``task_completed`` the last (the end). ``task_failed`` is a failure at the step the
user is at (counted for failure rates; it never moves the user or flags).

One timer per (user, funnel, instance), as a task's; a run is one wait at one step (``started_at``:
when the step was reached), so a user stuck at ``shipping`` is flagged once, and if they move on and
get stuck at ``payment`` that is a new run, flagged once too.

    (none) --a step--> open at step s --a later step--> open at that step (re-armed: a new run)
      |                 |   \\--the last step--> completed (the end)
      |                 \\--due, swept--> flagged --a later step--> open there, or completed
      \\--the last step--> completed

- reaching a later step (or the end) cancels the wait at the current one, whatever lies between;
  skipping an ``optional`` step is the ordinary path, skipping a required one moves the user all the
  same (they are at least that far) and is counted as ``skipped`` in that step's stats;
- an event for the step the user is at, or an earlier one, changes nothing (``recorded``): a funnel
  never moves back, and a duplicate or late step event cannot re-arm a wait;
- after the end, a step event later than the completion begins a new pass through the funnel.

Learned step thresholds read the times from reaching the step to reaching a later one, kept by the
stats fold in the step's own row ``{funnel}/{step}`` (a name no task can have).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from redflag.core.errors import invalid, missing
from redflag.core.events import EventType, Outcome, TaskEvent
from redflag.core.rules import FunnelStep, RuleFields
from redflag.core.templates import EmailTemplate
from redflag.core.text import humanize
from redflag.core.timers import Decision, FlagReason, Timer, TimerState
from redflag.core.tracking import Interaction
from redflag.kinds.base import (
    CLOSING,
    Applied,
    CsMessage,
    Tally,
    TimerKind,
    arm,
    completed,
    fixed,
    iso,
    threshold_of,
    usual_of,
)

STEP = "step"  # the property of an event that names its step
SETTLE_SECONDS = 120  # the stats windows and the sweeper, after a threshold: when a run's fate is known

EMAILS = {
    FlagReason.STUCK: EmailTemplate(
        subject="Need a hand with {task_label}?",
        text="Hi {first_name},\n\nWe noticed you've been at {step} of {task_label} for {elapsed}. "
        "Is something in the way? We'd be glad to help you finish.\n\n" + CLOSING,
    ),
}


def step_name(funnel: str, step: str) -> str:
    """The stats row of one step of a funnel."""
    return f"{funnel}/{step}"


def steps_of(rule: RuleFields) -> list[FunnelStep]:
    assert rule.steps is not None, "a funnel rule has steps"
    return list(rule.steps)


def step_rule(rule: RuleFields, step: FunnelStep) -> RuleFields:
    """The funnel's rule with one step's threshold fields: what a wait at that step is armed with."""
    update = {"threshold_seconds": step.threshold_seconds, "threshold": step.threshold,
              "expected_seconds": step.expected_seconds}  # fmt: skip
    return rule.model_copy(update=update)


def _index(rule: RuleFields, name: str | None) -> int | None:
    for i, step in enumerate(steps_of(rule)):
        if step.name == name:
            return i
    return None


def _target(rule: RuleFields, event_type: EventType, properties: Mapping[str, Any]) -> int | str:
    """The step an event reaches (its index), or why it names none of the funnel's."""
    steps = steps_of(rule)
    named = properties.get(STEP)
    if named is None:
        return 0 if event_type is EventType.TASK_STARTED else len(steps) - 1
    found = _index(rule, named) if isinstance(named, str) else None
    if found is None:
        shown = named if isinstance(named, str) and len(named) <= 64 else "that"
        return f"'{rule.label}' has no step '{shown}'; its steps: {', '.join(s.name for s in steps)}"
    return found


def _skipped(rule: RuleFields, after: int | None, upto: int) -> list[str]:
    """The required steps strictly between ``after`` (None: before the first) and ``upto``."""
    start = 0 if after is None else after + 1
    return [s.name for s in steps_of(rule)[start:upto] if not s.optional]


class Funnel(TimerKind):
    name = "funnel"
    reasons = (FlagReason.STUCK,)
    arms = EventType.TASK_STARTED
    takes = frozenset({EventType.TASK_STARTED, EventType.TASK_COMPLETED, EventType.TASK_FAILED})
    fields = frozenset({"steps", "track"})
    track_keys: ClassVar[dict[str, EventType]] = {"steps": EventType.TASK_STARTED, "failed": EventType.TASK_FAILED}
    doc = "docs/rules.md#funnel"
    sample_rule = "rules/checkout.yaml"
    sample_event = "events/timers_to_alerts/funnel_step_flagged.json"
    raised_by: ClassVar[str] = "SweepDueTimersFunction"

    # --- its rule ------------------------------------------------------------------------------------

    def check(self, rule: RuleFields) -> None:
        if rule.steps is None:
            missing("steps")
        seen: set[str] = set()
        last = len(rule.steps) - 1
        for i, step in enumerate(rule.steps):
            at = f"steps.{i}"
            if step.name in seen:
                invalid(f"{at}.name", f"'{step.name}' is named twice; step names are unique")
            seen.add(step.name)
            if i == last:
                if step.threshold_seconds is not None or step.threshold is not None or step.expected_seconds:
                    invalid(at, "the last step is the end: it takes no threshold")
                if step.optional:
                    invalid(f"{at}.optional", "the last step is the end: it cannot be optional")
                continue
            if step.threshold_seconds is not None and step.threshold is not None:
                invalid(at, "give threshold_seconds or threshold (learned), not both")
            if step.threshold_seconds is None and step.threshold is None:
                invalid(f"{at}.threshold_seconds", "every step but the last needs a threshold")
            limit = step.threshold_seconds or (step.threshold.fallback_seconds if step.threshold else None)
            if step.expected_seconds is not None and limit is not None and step.expected_seconds >= limit:
                invalid(f"{at}.expected_seconds", "must be below the step's threshold")
        self._check_track(rule)

    def refusal(self, field: str) -> str:
        return f"a funnel rule sets thresholds per step (steps[].threshold_seconds): it takes no {field}"

    def threshold_text(self, rule: RuleFields) -> str:
        parts = []
        for step in steps_of(rule)[:-1]:
            t = step.threshold
            parts.append(
                f"{step.name} {t.factor:g} x {t.relative_to}" if t else f"{step.name} {step.threshold_seconds} s"
            )
        return f"{len(steps_of(rule))} steps: " + ", ".join(parts)

    def _check_track(self, rule: RuleFields) -> None:
        self.check_track(rule)
        if rule.track is None:
            return
        if not rule.track.steps:
            invalid("track.steps", "name the track events that reach each step")
        names = {s.name for s in steps_of(rule)}
        seen: dict[str, str] = {}
        for step, events in rule.track.steps.items():
            if step not in names:
                invalid(f"track.steps.{step}", f"'{rule.label}' has no step '{step}'; its steps: {', '.join(names)}")
            for event in events:
                if event in seen:
                    invalid(f"track.steps.{step}", f"'{event}' reaches {seen[event]} already")
                seen[event] = step

    # --- which tracking calls are its events ------------------------------------------------------------

    def _step_of(self, rule: RuleFields, call: Interaction) -> str | None:
        mapping = rule.track
        if mapping is None or not mapping.steps or call.type != "track" or not mapping.matches(call.properties):
            return None
        return next((step for step, events in mapping.steps.items() if call.name in events), None)

    def tracked(self, rule: RuleFields, call: Interaction) -> EventType | None:
        """A track the mapping names under a step reaches that step (``properties.step`` set to it); one
        under ``failed`` is a failure at the step the user is at."""
        if self._step_of(rule, call) is not None:
            return EventType.TASK_STARTED
        return super().tracked(rule, call)

    def tracked_properties(self, rule: RuleFields, call: Interaction) -> dict[str, Any]:
        step = self._step_of(rule, call)
        return call.properties if step is None else {**call.properties, STEP: step}

    # --- its timer -------------------------------------------------------------------------------------

    def learning(self, rule: RuleFields, event: TaskEvent) -> tuple[str, RuleFields] | None:
        if EventType(event.type) is EventType.TASK_FAILED or rule.steps is None:
            return None
        target = _target(rule, EventType(event.type), event.properties)
        if isinstance(target, str) or steps_of(rule)[target].threshold is None:
            return None
        step = steps_of(rule)[target]
        return step_name(event.task, step.name), step_rule(rule, step)

    def apply(self, current: Timer | None, event: Applied) -> Decision:
        key, event_type, at, rule, now = event.key, event.event_type, event.at, event.rule, event.now
        user, properties, policy, threshold = event.user, event.properties, event.policy, event.threshold
        cur = current or Timer(key=key, state=TimerState.IDLE)
        running = cur.state in (TimerState.OPEN, TimerState.FLAGGED)
        snapshot = cur.rule if running and cur.rule is not None and cur.rule.steps else rule
        if event_type is EventType.TASK_FAILED:
            return _failed(cur, running, at)
        target = _target(snapshot, event_type, properties)
        if isinstance(target, str):
            return Decision(Outcome.IGNORED, None, target)
        steps = steps_of(snapshot)
        reached = steps[target]
        if not running:
            if cur.state is TimerState.COMPLETED and cur.completed_at is not None and at <= cur.completed_at:
                return Decision(Outcome.RECORDED, None, "this pass through the funnel is complete")
            return _enter(cur, target, event, snapshot)
        position = _index(snapshot, cur.step)
        if position is not None and target <= position:
            why = "already at this step" if target == position else "an earlier step: a funnel never moves back"
            return Decision(Outcome.RECORDED, None, why)
        moved_at = max(at, cur.started_at or at)
        skipped = _skipped(snapshot, position, target)
        note = f"skipped required step {', '.join(skipped)}" if skipped else None
        if target == len(steps) - 1:
            done: dict[str, Any] = {"step": reached.name, "duration_seconds": _since(cur.entered_at, moved_at)}
            if cur.state is TimerState.FLAGGED and cur.flagged_at is not None:
                done["completed_after_flag_seconds"] = round(max(0.0, moved_at - cur.flagged_at), 3)
            last = max(moved_at, cur.last_completed_at or moved_at)
            return Decision(Outcome.COMPLETED, completed(cur, moved_at, last, now, policy, done), note)
        armed_with = threshold or fixed(step_rule(snapshot, reached))
        moved = arm(cur, moved_at, snapshot, armed_with, user, properties, FlagReason.STUCK)
        flags = cur.entry_flags + (1 if cur.state is TimerState.FLAGGED else 0)
        update = {"step": reached.name, "entered_at": cur.entered_at, "entry_flags": flags, "failures": cur.failures}
        return Decision(Outcome.ARMED, moved.model_copy(update=update), note)

    # --- what the stream counts ------------------------------------------------------------------------

    def tallies(self, change: str, by_ttl: bool, old: Timer | None, new: Timer | None) -> list[Tally]:
        if change == "REMOVE":
            return _stuck(old) if by_ttl and old is not None and old.state is TimerState.OPEN else []
        if new is None or new.rule is None or not new.rule.steps or new.step is None:
            return []
        funnel, rule = new.key.task, new.rule
        out: list[Tally] = []
        if new.state is TimerState.FLAGGED and old is not None and old.state is TimerState.OPEN:
            out += _stuck(new)
        new_pass = new.entered_at is not None and (old is None or old.entered_at != new.entered_at)
        position = _index(rule, new.step)
        if position is None:
            return out
        reached_at = new.completed_at if new.state is TimerState.COMPLETED else new.started_at
        if new_pass and new.state in (TimerState.OPEN, TimerState.COMPLETED):
            out += [Tally(funnel, "started"), Tally(funnel, "started", at=new.entered_at, account=True)]
            out += _entered(rule, funnel, None, position, reached_at)
            if new.state is TimerState.COMPLETED:  # in at the end: entered and done at once
                out += [Tally(funnel, "completed", seconds=0.0), Tally(funnel, "converted", at=new.entered_at)]
            return out
        was = _index(rule, old.step) if old is not None else None
        moved = (
            old is not None
            and was is not None
            and position > was
            and old.state in (TimerState.OPEN, TimerState.FLAGGED)
        )
        if moved and old is not None and was is not None and old.started_at is not None and reached_at is not None:
            left = step_name(funnel, old.step or "")
            out += [Tally(left, "completed", seconds=max(0.0, reached_at - old.started_at)),
                    Tally(left, "converted", at=old.started_at)]  # fmt: skip
            if old.state is TimerState.FLAGGED:
                out.append(Tally(left, "done_after_flag"))
            out += _entered(rule, funnel, was, position, reached_at)
            if new.state is TimerState.COMPLETED and new.entered_at is not None:
                out.append(Tally(funnel, "converted", at=new.entered_at))
        if old is not None and new.failures > old.failures and not new_pass:
            if (
                new.run_failures == 1
                and new.started_at is not None
                and new.state in (TimerState.OPEN, TimerState.FLAGGED)
            ):
                out += [Tally(step_name(funnel, new.step), "failed"),
                        Tally(step_name(funnel, new.step), "failed", at=new.started_at)]  # fmt: skip
            if old.failures == 0 and new.entered_at is not None:
                out.append(Tally(funnel, "failed", at=new.entered_at, account=True))
        return out

    def watched(self, rule: RuleFields, task: str, step: str | None) -> tuple[str, int] | str:
        steps = steps_of(rule)
        if step is None:
            return task, sum(fixed(step_rule(rule, s)).seconds for s in steps[:-1]) + SETTLE_SECONDS
        i = _index(rule, step)
        if i is None:
            return f"'{task}' has no step '{step}'; its steps: {', '.join(s.name for s in steps)}"
        if i == len(steps) - 1:
            return f"'{step}' is the end of '{task}': nobody waits there"
        return step_name(task, step), fixed(step_rule(rule, steps[i])).seconds + SETTLE_SECONDS

    # --- what its alert says ---------------------------------------------------------------------------

    def default_emails(self) -> Mapping[FlagReason, EmailTemplate]:
        return EMAILS

    def email_values(self, timer: Timer) -> dict[str, str]:
        return {"step": _title(timer)}

    def said(self, timer: Timer, reason: FlagReason, who: str, elapsed: float) -> str:
        rule = timer.rule
        assert rule is not None
        red = humanize(threshold_of(timer))
        said = f"{who} has been at {_title(timer)} of {rule.label} for {humanize(elapsed)} (red flag at {red})"
        usual = usual_of(timer)
        return said + (f"; usually about {humanize(usual)} at this step" if usual else "")

    def cs_message(self, subject: Timer, now: float) -> CsMessage:
        said = super().cs_message(subject, now)
        step = {"step": subject.step, "step_label": _title(subject), "entered_at": iso(subject.entered_at)}
        return CsMessage(f"Stuck at {_title(subject)}: {said.subject}", said.message | step, said.attributes)

    def webhook_payload(self, subject: Timer, now: float) -> dict[str, Any]:
        return super().webhook_payload(subject, now) | {"step": subject.step, "entered_at": iso(subject.entered_at)}

    def facts(self, message: Mapping[str, Any]) -> list[tuple[str, Any]]:
        facts = super().facts(message)
        return [*facts[:2], ("Step", message.get("step_label") or message.get("step")), *facts[2:]]

    def run_facts(self, m: Mapping[str, Any]) -> list[tuple[str, Any]]:
        if isinstance(m.get("elapsed_seconds"), int | float):
            return [("At this step for", humanize(float(m["elapsed_seconds"])))]
        return []


def _title(timer: Timer) -> str:
    rule = timer.rule
    if rule is not None and rule.steps:
        i = _index(rule, timer.step)
        if i is not None:
            return rule.steps[i].title
    return timer.step or ""


def _since(start: float | None, end: float) -> float:
    return round(max(0.0, end - start), 3) if start is not None else 0.0


def _enter(cur: Timer, target: int, event: Applied, rule: RuleFields) -> Decision:
    """A new pass through the funnel, at the step ``target`` (``rule``: the funnel as this pass keeps it)."""
    at, user = event.at, event.user
    steps = steps_of(rule)
    skipped = _skipped(rule, None, target)
    note = f"skipped required step {', '.join(skipped)}" if skipped else None
    fresh = {"step": steps[target].name, "entered_at": at, "entry_flags": 0, "failures": 0, "last_failed_at": None}
    if target == len(steps) - 1:  # in at the end: entered and done at once
        base = cur.model_copy(update=fresh | {"kind": rule.kind, "rule": rule, "user": user, "started_at": at})
        last = max(at, cur.last_completed_at or at)
        done = completed(base, at, last, event.now, event.policy, {"duration_seconds": 0.0})
        return Decision(Outcome.COMPLETED, done.model_copy(update={"due_at": None, "flagged_at": None}), note)
    armed_with = event.threshold or fixed(step_rule(rule, steps[target]))
    armed = arm(cur, at, rule, armed_with, user, event.properties, FlagReason.STUCK)
    return Decision(Outcome.ARMED, armed.model_copy(update=fresh), note)


def _failed(cur: Timer, running: bool, at: float) -> Decision:
    if not running or cur.started_at is None or at < cur.started_at:
        return Decision(Outcome.RECORDED, None, "not at a step of the funnel: the failure is not counted")
    update = {"failures": cur.failures + 1, "run_failures": cur.run_failures + 1,
              "last_failed_at": max(at, cur.last_failed_at or at)}  # fmt: skip
    return Decision(Outcome.RECORDED, cur.model_copy(update=update))


def _entered(rule: RuleFields, funnel: str, was: int | None, position: int, reached_at: float | None) -> list[Tally]:
    """Reaching step ``position`` (from ``was``): entered, in its row and (but the end) its bucket; the
    required steps between skipped."""
    steps = steps_of(rule)
    here = step_name(funnel, steps[position].name)
    out = [Tally(here, "started")]
    if position < len(steps) - 1 and reached_at is not None:
        out.append(Tally(here, "started", at=reached_at))
    out += [Tally(step_name(funnel, name), "skipped") for name in _skipped(rule, was, position)]
    return out


def _stuck(timer: Timer) -> list[Tally]:
    """A wait at a step that ran out (swept, or deleted by TTL while open)."""
    if timer.step is None or timer.started_at is None:
        return []
    funnel = timer.key.task
    here = step_name(funnel, timer.step)
    out = [Tally(here, f"flag_{FlagReason.STUCK.value}"), Tally(here, "abandoned", at=timer.started_at)]
    if timer.entry_flags == 0 and timer.entered_at is not None:  # the pass's first: the funnel was abandoned
        out.append(Tally(funnel, "abandoned", at=timer.entered_at))
    return out


KIND = Funnel()
