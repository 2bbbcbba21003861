"""The small interfaces the services need. AWS adapters and in-memory fakes both fit them."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple, Protocol

from redflag.channels.messages import Alert
from redflag.core.activity import Activity, ActivityKey
from redflag.core.baselines import Histogram
from redflag.core.interventions import Escalation
from redflag.core.rules import RuleBook
from redflag.core.timers import Timer, TimerKey

Record = Timer | Activity
RecordKey = TimerKey | ActivityKey


class VersionConflict(Exception):
    """Someone else changed the record between our read and our write; read again."""


class StoreUnavailable(Exception):
    """A passing fault (throttled, timed out, unavailable): nothing was written; try again later.

    Carries an error code only, never a message (a message can quote data)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


DueRef = tuple[str, ...]
"""A record in the due index as the store names it (DynamoDB: ``(pk, sk)``): plain strings, small and
hashable, so a sweeper holding a page of them holds no models."""


class DuePage(NamedTuple):
    entries: list[tuple[DueRef, int]]  # (ref, due_at), ascending by due_at
    cursor: object | None  # where the next page starts (the store's own token); None: nothing after this page


class FlagResult(StrEnum):
    FLAGGED = "flagged"
    LOST = "lost"  # not open, or not due, or gone: completed, flagged or deleted by someone else first
    RETRY = "retry"  # a passing fault for this item (throttled, a conflict): nothing written; read it again later
    REJECTED = "rejected"  # a permanent error for this item (access, validation): recorded, not retried


class TimerStore(Protocol):
    def load(self, keys: Sequence[RecordKey]) -> dict[RecordKey, Record]:
        """The stored records for ``keys`` (absent ones left out), read consistently, in as few
        calls as the store allows. Raises StoreUnavailable."""
        ...

    def save(self, record: Record, expected_version: int) -> None:
        """Write ``record`` (version bumped) if the stored version is still ``expected_version``
        (0 = must not exist). Raises VersionConflict or StoreUnavailable; writes nothing then."""
        ...

    def due_page(self, shard: int, until: float, limit: int, after: object | None = None) -> DuePage:
        """One page (at most ``limit``) of the open timers (and deferred emails) in one shard of the due
        index with ``due_at <= until``, by due time, starting after ``after`` (a page's ``cursor``).
        Raises StoreUnavailable."""
        ...

    def due_count(self, shard: int, until: float, limit: int) -> int:
        """How many of the first ``limit`` entries of that page there are (at most ``limit``), without
        the entries themselves. Raises StoreUnavailable."""
        ...

    def flag_due_many(self, refs: Sequence[DueRef], now: float, expires_at: int) -> list[FlagResult]:
        """``timers.expire`` for each of ``refs`` as one conditional write each, without reading first,
        in as few calls as the store allows: an open timer due by ``now`` becomes flagged. One result
        per ref, in order. Raises StoreUnavailable when nothing could be asked (every ref: retry)."""
        ...


class Dispatcher(Protocol):
    def dispatch(self, shards: list[int]) -> None:
        """Start a sweeper worker (asynchronously) on these shards of the due index: it sweeps them for
        one run's window, as the run that started it would have, and stops."""
        ...


class BaselineSource(Protocol):
    def histograms(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Histogram]:
        """Duration distributions by (task, segment) (segment ``baselines.ALL``: across segments),
        absent ones left out; may be cached. Raises StoreUnavailable."""
        ...


class People(Protocol):
    """What the alerting path keeps per user (and account) to intervene without annoying."""

    def suppressed(self, user_id: str, email: str | None) -> bool:
        """The user (or the address) opted out: never email them."""
        ...

    def defer(self, timer: Timer, until: float) -> bool:
        """Keep the red flag's email until ``until`` (quiet hours); False if it was kept already."""
        ...

    def reserve_email(self, user_id: str, alert_id: str, now: float, cap: int, window: float) -> bool:
        """A slot under the user's email cap for this alert (its own slot if it has one); False: capped."""
        ...

    def escalate(
        self, scope: str, subject_id: str, flag_id: str, at: float, what: str, n: int, window: float
    ) -> Escalation | None:
        """Record a red flag of a user or account; the state to escalate from when it is the Nth in
        the window (or the flag that escalated, seen again)."""
        ...


class RuleSource(Protocol):
    def rulebook(self) -> RuleBook: ...


class AlertSender(Protocol):
    def send(self, alert: Alert) -> None:
        """Deliver once: a second call with the same ``alert.alert_id`` delivers nothing.
        Raises ChannelFailed (transient: retry the record) after recording nothing."""
        ...


class ChannelFailed(Exception):
    """One channel could not deliver now; the record is retried. Carries ids and an error class,
    never a message (provider messages quote addresses)."""

    def __init__(self, channel: str, error: str) -> None:
        super().__init__(f"{channel}: {error}")
        self.channel = channel
        self.error = error
