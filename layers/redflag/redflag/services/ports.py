"""The small interfaces the services need. AWS adapters and in-memory fakes both fit them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol

from redflag.channels.base import Alert
from redflag.core.activity import Activity, ActivityKey
from redflag.core.baselines import Histogram
from redflag.core.interventions import Escalation, Standing, UserState
from redflag.core.timers import Timer, TimerKey
from redflag.kinds import RuleBook

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
    def load(self, keys: Sequence[RecordKey], consistent: bool = True) -> dict[RecordKey, Record]:
        """The stored records for ``keys`` (absent ones left out), in as few calls as the store allows;
        read consistently unless ``consistent`` is False (then a record may be a little stale: only a
        write conditional on its version may rest on it). Raises StoreUnavailable."""
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
    """What the alerting path keeps per user (and account) to intervene without annoying: opt-out and
    suppression markers, the email log behind the cap, escalation state, emails kept for quiet hours."""

    def load(self, users: Mapping[str, str | None], accounts: Collection[str]) -> Standing:
        """For each user (id -> the address an email would go to, if any): whether the user or the
        address must never be emailed, and their state; each account's escalation state. Read
        consistently, in as few calls as the store allows. Raises StoreUnavailable."""
        ...

    def save(self, users: Sequence[UserState], accounts: Sequence[Escalation]) -> dict[tuple[str, str], str]:
        """Write each state (its ``version`` is the one read) if the stored one is still that version,
        concurrently. Returns the (scope, id) of those not written: ``lost`` (someone else changed it
        meanwhile: read it again) or ``unavailable`` (a passing fault: try later)."""
        ...

    def defer(self, kept: Sequence[tuple[Timer, float]]) -> list[Timer]:
        """Keep each red flag's email until its time (quiet hours); one kept already stays as it was.
        Returns the red flags whose email could not be kept now (a passing fault)."""
        ...


class Claim(StrEnum):
    NEW = "new"  # claimed now: send it
    DONE = "done"  # sent (or refused for good) before: its result is kept
    BUSY = "busy"  # another attempt claimed it and has not finished: try again later


class SendOnce(Protocol):
    """Exactly once per alert id: claim before sending, keep the result after (``redflag.adapters.send_once``)."""

    def record_id(self, alert_id: str) -> str:
        """The id of the alert's record (named in a parked message, so a replay can forget it)."""
        ...

    def claim(self, alert_ids: Sequence[str], until: float) -> dict[str, tuple[Claim, dict[str, str] | None]]:
        """Claim each alert until ``until`` (the invocation's deadline: a crashed attempt's claim
        lapses then); with the kept result of those done. Raises StoreUnavailable (nothing claimed
        is then assumed: the caller sends nothing)."""
        ...

    def complete(self, results: Mapping[str, dict[str, str]]) -> None:
        """Keep the result of each claimed alert, in as few calls as the store allows. Raises
        StoreUnavailable (the claims then block a second send until they lapse)."""
        ...

    def release(self, alert_ids: Sequence[str]) -> None:
        """Give up claims whose send failed for now, so the retry sends. Raises StoreUnavailable."""
        ...


@dataclass(frozen=True)
class Refused:
    """The provider refused this message for good (a bad address, a bad request): it is parked."""

    error: str  # an error code, never a provider's message


class Deliverer(Protocol):
    """One channel's adapter: sends one alert, knows nothing of exactly once."""

    def deliver(self, alert: Alert) -> str | Refused:
        """The provider's message id, or why it refused the message for good. Raises ChannelFailed
        for a passing fault (throttled, unavailable, no answer)."""
        ...


class Parking(Protocol):
    def park(self, alert: Alert, error: str, record_id: str) -> None:
        """Keep an alert that cannot be delivered, with why (ids and an error code, no content), for
        ``redflag dlq``. Raises ChannelFailed when it cannot be kept either."""
        ...


class RuleSource(Protocol):
    def rulebook(self) -> RuleBook: ...


class ChannelFailed(Exception):
    """One channel could not deliver now; the record is retried. Carries ids and an error class,
    never a message (provider messages quote addresses)."""

    def __init__(self, channel: str, error: str) -> None:
        super().__init__(f"{channel}: {error}")
        self.channel = channel
        self.error = error
