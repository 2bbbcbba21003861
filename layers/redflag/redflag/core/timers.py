r"""The timer: one per (user, rule, instance), the record every kind of red flag that waits keeps.
Pure Python: no AWS, no storage format.

    (none) --armed--> open --completed--> completed
                       |  \--due, swept----------> flagged --completed--> completed (late)
                       |  \--flagged at once (a kind's own reason, e.g. the Nth failure) --^
                       \----TTL delete (item gone, the stream carries the red flag)

Which events arm, re-arm, complete or flag a timer is its kind's business (``redflag.kinds``: the
task kind's state machine in ``kinds/task.py``, the inactivity kind's in ``kinds/inactivity.py``);
what is here is the same for every kind: the record, when a due timer becomes flagged (``expire``,
the sweeper's transition) and which stored change is a red flag (``red_flag``).

Every transition is written by the store with a condition on ``version``, so whoever wins the write
owns the side effect (see ``redflag.adapters.dynamodb``). Out-of-order delivery is resolved by event
time: ``last_completed_at`` remembers the latest completion ever seen.

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

from redflag.core.events import Outcome, UserInfo
from redflag.core.rules import RuleFields

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
    USAGE_DROP = "usage_drop"  # an account's weekly actives fell
    ESCALATION = "escalation"  # a user or account tripped several red flags in a window
    EMAIL_SUPPRESSED = "email_suppressed"  # a user's address bounced for good or complained: no more emails
    STUCK = "stuck"  # a funnel's user at one step past that step's threshold
    RATE = "rate"  # a task's or a funnel step's rate crossed its rule's level (or came back)
    HEALTH = "health"  # an account's health score moved into red


class Timer(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: TimerKey
    state: TimerState
    version: int = 0  # 0: not stored yet
    kind: str = "task"  # the rule's kind (redflag.kinds)
    due_reason: FlagReason = FlagReason.TIME  # what it means when it falls due (set by its kind when armed)
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
    rule: RuleFields | None = None  # snapshot at start (segment applied): a rule edit never changes an armed timer
    threshold_seconds: int | None = None  # the threshold this run was armed with
    threshold_basis: str | None = None  # fixed, learned or fallback
    usual_seconds: float | None = None  # what "usual" meant when armed (the median, or expected_seconds)
    completed_after_flag_seconds: float | None = None  # a flagged run completed this long after its flag
    user: UserInfo = UserInfo()
    properties: dict[str, Any] = {}
    seen: tuple[str, ...] = ()  # fingerprints of the last event ids applied
    # a funnel's position (kinds/funnel.py): the step the user is at (a run is one wait at a step,
    # ``started_at`` when it was reached), when this pass through the funnel began, and how many
    # earlier steps of this pass were flagged
    step: str | None = None
    entered_at: float | None = None
    entry_flags: int = 0

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


def retained(now: float, policy: Policy) -> int:
    """When a finished (completed or flagged) timer may be forgotten."""
    return math.ceil(now + policy.retention_seconds)


def expire(current: Timer | None, now: float, policy: Policy = Policy()) -> Timer | None:
    """The sweeper's transition: an open timer past its due time becomes flagged.

    The store applies exactly this as one conditional update without reading the timer first
    (``TimerStore.flag_due_many``); tests/integration/test_sweeper.py holds the two to the same answers."""
    if current is None or current.state is not TimerState.OPEN or current.due_at is None:
        return None
    if current.due_at > now:
        return None
    return current.model_copy(
        update={
            "state": TimerState.FLAGGED,
            "flagged_at": now,
            "flag_reason": current.due_reason,
            "expires_at": retained(now, policy),
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
