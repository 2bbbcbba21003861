r"""The timer state machine: one timer per (user, task, instance). Pure Python: no AWS, no storage format.

    (none) --started--> open --completed--> completed
      |                  |  \--due, swept--> flagged --completed--> completed (late)
      |--failed--> idle  \----TTL delete (item gone, the stream carries the red flag)

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

from redflag.events import EventType, Outcome, UserInfo
from redflag.rules import Rule

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


def fingerprint(event_id: str) -> str:
    """A short, fixed-size stand-in for an event id (64 bits): what a record remembers."""
    return base64.urlsafe_b64encode(hashlib.blake2b(event_id.encode(), digest_size=8).digest()).decode().rstrip("=")


def seen_before(seen: tuple[str, ...], event_id: str | None) -> bool:
    return event_id is not None and fingerprint(event_id) in seen


def remember(seen: tuple[str, ...], event_id: str | None) -> tuple[str, ...]:
    if event_id is None:
        return seen
    return (*seen, fingerprint(event_id))[-SEEN_EVENTS:]


class Timer(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: TimerKey
    state: TimerState
    version: int = 0  # 0: not stored yet
    started_at: float | None = None
    due_at: int | None = None
    completed_at: float | None = None
    last_completed_at: float | None = None
    flagged_at: float | None = None
    duration_seconds: float | None = None
    failures: int = 0
    last_failed_at: float | None = None
    expires_at: int | None = None  # when the store may forget it (DynamoDB TTL)
    rule: Rule | None = None  # snapshot at start: a rule edit never changes an armed timer
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


def _arm(base: Timer, at: float, rule: Rule, user: UserInfo, properties: dict[str, Any]) -> Timer:
    due = math.ceil(at + rule.threshold_seconds)
    return base.model_copy(
        update={
            "state": TimerState.OPEN,
            "started_at": at,
            "due_at": due,
            "expires_at": due,
            "completed_at": None,
            "flagged_at": None,
            "duration_seconds": None,
            "rule": rule,
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
) -> Decision:
    """Decide what one task event does to its timer. ``at`` is the event time (epoch s)."""
    props = properties or {}
    cur = current or Timer(key=key, state=TimerState.IDLE)
    new = current is None

    if kind is EventType.TASK_STARTED:
        if cur.last_completed_at is not None and at <= cur.last_completed_at:
            return Decision(Outcome.RECORDED, None, "start predates the last completion; no timer")
        if cur.state is TimerState.OPEN:
            if cur.started_at is not None and at < cur.started_at:
                return Decision(Outcome.ARMED, _arm(cur, at, rule, user, props), "earlier start moved the timer")
            return Decision(Outcome.RECORDED, None, "timer already armed")
        if cur.state is TimerState.FLAGGED and cur.due_at is not None and at <= cur.due_at:
            return Decision(Outcome.RECORDED, None, "this run was already flagged")
        return Decision(Outcome.ARMED, _arm(cur, at, rule, user, props))

    if kind is EventType.TASK_COMPLETED:
        last = max(at, cur.last_completed_at or at)
        if cur.state in (TimerState.OPEN, TimerState.FLAGGED) and cur.started_at is not None:
            if at < cur.started_at:
                return Decision(
                    Outcome.RECORDED,
                    cur.model_copy(update={"last_completed_at": last}),
                    "completion predates the open run",
                )
            duration = {"duration_seconds": round(at - cur.started_at, 3)}
            return Decision(Outcome.COMPLETED, _completed(cur, at, last, now, policy, duration))
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
        return Decision(Outcome.RECORDED, cur.model_copy(update=update))

    raise ValueError(f"{kind} is not a task event")


def expire(current: Timer | None, now: float, policy: Policy = Policy()) -> Timer | None:
    """The sweeper's transition: an open timer past its due time becomes flagged.

    The store applies exactly this as one conditional update without reading the timer first
    (``TimerStore.flag_due``); a test holds the two to the same answers."""
    if current is None or current.state is not TimerState.OPEN or current.due_at is None:
        return None
    if current.due_at > now:
        return None
    return current.model_copy(
        update={"state": TimerState.FLAGGED, "flagged_at": now, "expires_at": _retained(now, policy)}
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
