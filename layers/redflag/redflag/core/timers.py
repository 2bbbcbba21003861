r"""The timer state machine: one timer per (user, task, instance). Pure Python: no AWS, no storage format.

    (none) --started--> open --completed--> completed
      |                  |  \--due, swept----------> flagged --completed--> completed (late)
      |--failed--> idle  |  \--Nth failure (max_failures) --^
                         \----TTL delete (item gone, the stream carries the red flag)

An ``inactivity`` timer (one per user and inactivity rule) is armed by ``user_active`` and re-armed by
each later one; when it falls due the user has been silent for the rule's threshold.

Every transition is computed here and written by the store with a condition on ``version``,
so whoever wins the write owns the side effect (see ``redflag.adapters.dynamodb``).
Out-of-order delivery is resolved by event time: ``last_completed_at`` remembers the latest
completion ever seen, and a start that predates it never arms a timer.

Duplicates: a timer remembers the fingerprints of the last ``SEEN_EVENTS`` event ids applied to
it, and the write that applies an event records its id in the same conditional write, so a client
retry is recognised without a second item or a transaction.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from redflag.core.baselines import Threshold
from redflag.core.events import EventType, Outcome, UserInfo
from redflag.core.rules import Rule

SEEN_EVENTS = 10  # event ids remembered per timer (and per activity record) for duplicate detection


class TimerState(StrEnum):
    IDLE = "idle"  # known instance, no timer (only failures seen so far)
    OPEN = "open"  # armed: TTL and the due index point at due_at
    COMPLETED = "completed"
    FLAGGED = "flagged"  # the sweeper expired it; the stream turns that into alerts


class TimerKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    task: str
    instance_id: str = "default"


class DeferredKey(BaseModel):
    """A deferred email's record (``redflag.services.alerting``): it sits in the due index like a timer."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    tag: str


def fingerprint(event_id: str) -> str:
    """A short, fixed-size stand-in for an event id (64 bits): what a record remembers."""
    return base64.urlsafe_b64encode(hashlib.blake2b(event_id.encode(), digest_size=8).digest()).decode().rstrip("=")


def seen_before(seen: tuple[str, ...], event_id: str | None) -> bool:
    return event_id is not None and fingerprint(event_id) in seen


def remember(seen: tuple[str, ...], event_id: str | None) -> tuple[str, ...]:
    if event_id is None:
        return seen
    return (*seen, fingerprint(event_id))[-SEEN_EVENTS:]


class FlagReason(StrEnum):
    TIME = "time"  # open past its threshold
    FAILURES = "failures"  # the Nth task_failed of the run
    INACTIVITY = "inactivity"  # no user_active for the rule's threshold


class Timer(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: TimerKey
    state: TimerState
    version: int = 0  # 0: not stored yet
    kind: str = "task"  # the rule's kind: task or inactivity
    started_at: float | None = None  # inactivity: the latest activity
    due_at: int | None = None
    completed_at: float | None = None
    last_completed_at: float | None = None
    flagged_at: float | None = None
    flag_reason: FlagReason | None = None
    duration_seconds: float | None = None
    failures: int = 0  # every task_failed this instance has seen
    run_failures: int = 0  # those of the current run
    last_failed_at: float | None = None
    expires_at: int | None = None  # when the store may forget it (DynamoDB TTL)
    rule: Rule | None = None  # snapshot at start (segment applied): a rule edit never changes an armed timer
    threshold_seconds: int | None = None  # the threshold this run was armed with
    threshold_basis: str | None = None  # fixed, learned or fallback
    usual_seconds: float | None = None  # what "usual" meant when armed (the median, or expected_seconds)
    completed_after_flag_seconds: float | None = None  # a flagged run completed this long after its flag
    user: UserInfo = UserInfo()
    properties: dict[str, Any] = {}
    seen: tuple[str, ...] = ()  # fingerprints of the last event ids applied

    @property
    def run_id(self) -> str:
        """Identifies one run (one arming) of this instance; alerts are idempotent per run."""
        return f"{round((self.started_at or 0) * 1000)}"

    def alert_id(self, channel: str) -> str:
        return json.dumps([self.key.user_id, self.key.task, self.key.instance_id, self.run_id, channel])


@dataclass(frozen=True)
class Policy:
    retention_seconds: int = 30 * 86400  # how long finished timers stay (for statistics)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    timer: Timer | None  # the next state to write; None = nothing changes
    reason: str | None = None


def _retained(now: float, policy: Policy) -> int:
    return math.ceil(now + policy.retention_seconds)


def fixed(rule: Rule) -> Threshold:
    """The threshold of a rule that does not learn (or before anything was learned)."""
    seconds = rule.threshold_seconds or (rule.threshold.fallback_seconds if rule.threshold else None)
    assert seconds is not None, "a usage_drop rule arms no timer"
    return Threshold(seconds, "fixed" if rule.threshold is None else "fallback", rule.expected_seconds)


def _arm(base: Timer, at: float, rule: Rule, threshold: Threshold, user: UserInfo, properties: dict[str, Any]) -> Timer:
    due = math.ceil(at + threshold.seconds)
    return base.model_copy(
        update={
            "state": TimerState.OPEN,
            "kind": rule.kind,
            "started_at": at,
            "due_at": due,
            "expires_at": due,
            "completed_at": None,
            "flagged_at": None,
            "flag_reason": None,
            "duration_seconds": None,
            "run_failures": 0,
            "completed_after_flag_seconds": None,
            "rule": rule,
            "threshold_seconds": threshold.seconds,
            "threshold_basis": threshold.basis,
            "usual_seconds": threshold.usual_seconds,
            "user": user,
            "properties": properties,
        }
    )


def _completed(cur: Timer, at: float, last: float, now: float, policy: Policy, extra: dict[str, Any]) -> Timer:
    update = {"state": TimerState.COMPLETED, "completed_at": at, "last_completed_at": last}
    return cur.model_copy(update=update | {"expires_at": _retained(now, policy)} | extra)


def apply_event(
    current: Timer | None,
    key: TimerKey,
    kind: EventType,
    at: float,
    rule: Rule,
    now: float,
    user: UserInfo = UserInfo(),
    properties: dict[str, Any] | None = None,
    policy: Policy = Policy(),
    threshold: Threshold | None = None,
) -> Decision:
    """Decide what one event does to its timer. ``at`` is the event time (epoch s); ``rule`` is the
    rule as it applies to the user's segment; ``threshold`` the one a new run is armed with (default:
    the rule's fixed threshold, or its fallback)."""
    props = properties or {}
    cur = current or Timer(key=key, state=TimerState.IDLE)
    new = current is None
    armed_with = threshold or fixed(rule)

    if rule.kind == "inactivity":
        return _activity(cur, kind, at, rule, armed_with, user, props)

    if kind is EventType.TASK_STARTED:
        if cur.last_completed_at is not None and at <= cur.last_completed_at:
            return Decision(Outcome.RECORDED, None, "start predates the last completion; no timer")
        if cur.state is TimerState.OPEN:
            if cur.started_at is not None and at < cur.started_at:
                moved = _arm(cur, at, rule, armed_with, user, props).model_copy(
                    update={"run_failures": cur.run_failures}
                )
                return Decision(Outcome.ARMED, moved, "earlier start moved the timer")
            return Decision(Outcome.RECORDED, None, "timer already armed")
        if cur.state is TimerState.FLAGGED and cur.due_at is not None and at <= cur.due_at:
            return Decision(Outcome.RECORDED, None, "this run was already flagged")
        return Decision(Outcome.ARMED, _arm(cur, at, rule, armed_with, user, props))

    if kind is EventType.TASK_COMPLETED:
        last = max(at, cur.last_completed_at or at)
        if cur.state in (TimerState.OPEN, TimerState.FLAGGED) and cur.started_at is not None:
            if at < cur.started_at:
                return Decision(
                    Outcome.RECORDED,
                    cur.model_copy(update={"last_completed_at": last}),
                    "completion predates the open run",
                )
            done = {"duration_seconds": round(at - cur.started_at, 3)}
            if cur.state is TimerState.FLAGGED and cur.flagged_at is not None:
                done["completed_after_flag_seconds"] = round(max(0.0, at - cur.flagged_at), 3)
            return Decision(Outcome.COMPLETED, _completed(cur, at, last, now, policy, done))
        if cur.state is TimerState.COMPLETED and not new:
            return Decision(Outcome.RECORDED, cur.model_copy(update={"last_completed_at": last}), "already completed")
        # idle or unseen: remember the completion so a late start cannot arm this run
        return Decision(Outcome.COMPLETED, _completed(cur, at, last, now, policy, {"rule": rule, "user": user}))

    if kind is EventType.TASK_FAILED:
        update: dict[str, Any] = {
            "failures": cur.failures + 1,
            "last_failed_at": max(at, cur.last_failed_at or at),
        }
        if new:
            update |= {"rule": rule, "user": user, "expires_at": _retained(now, policy)}
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
                "expires_at": _retained(now, policy),
            }
            return Decision(Outcome.FLAGGED, cur.model_copy(update=update), f"failure {limit} of this run")
        return Decision(Outcome.RECORDED, cur.model_copy(update=update))

    raise ValueError(f"{kind} is not a task event")


def _activity(
    cur: Timer, kind: EventType, at: float, rule: Rule, threshold: Threshold, user: UserInfo, props: dict[str, Any]
) -> Decision:
    """An inactivity timer: each ``user_active`` (re)arms it at the activity time."""
    if kind is not EventType.USER_ACTIVE:
        return Decision(Outcome.IGNORED, None, f"'{rule.label}' is an inactivity rule: it counts user_active events")
    if cur.state in (TimerState.OPEN, TimerState.FLAGGED) and cur.started_at is not None and at <= cur.started_at:
        return Decision(Outcome.RECORDED, None, "an older activity; the timer runs from the latest")
    reason = "re-armed" if cur.state in (TimerState.OPEN, TimerState.FLAGGED) else None
    return Decision(Outcome.ARMED, _arm(cur, at, rule, threshold, user, props), reason)


def expire(current: Timer | None, now: float, policy: Policy = Policy()) -> Timer | None:
    """The sweeper's transition: an open timer past its due time becomes flagged.

    The store applies exactly this as one conditional update without reading the timer first
    (``TimerStore.flag_due_many``); tests/integration/test_sweeper.py holds the two to the same answers."""
    if current is None or current.state is not TimerState.OPEN or current.due_at is None:
        return None
    if current.due_at > now:
        return None
    reason = FlagReason.INACTIVITY if current.kind == "inactivity" else FlagReason.TIME
    return current.model_copy(
        update={
            "state": TimerState.FLAGGED,
            "flagged_at": now,
            "flag_reason": reason,
            "expires_at": _retained(now, policy),
        }
    )


def red_flag(change: str, by_ttl: bool, old: Timer | None, new: Timer | None) -> Timer | None:
    """Decide whether a stored change is a red flag, and of which run.

    Two ways in, both re-checked here because a stream filter is not a guarantee:
    - TTL deleted a timer that was still open (REMOVE by the DynamoDB service);
    - the sweeper moved an open timer to flagged (MODIFY open -> flagged).
    A TTL delete of a flagged or completed timer, or any delete by a person, is not.
    """
    if change == "REMOVE" and by_ttl and old is not None and old.state is TimerState.OPEN:
        return old
    if (
        change == "MODIFY"
        and old is not None
        and new is not None
        and old.state is TimerState.OPEN
        and new.state is TimerState.FLAGGED
    ):
        return new
    return None
