"""One stored change, as the stream carries it, typed: what ``redflag.adapters.stream`` decodes a record
into and what the alerting and stats services take. Pure.

    TimerChanged     a timer was written or deleted (by TTL: ``by_ttl``): maybe a red flag
    ActivityChanged  a user's activity record was written
    AccountFlagged   the weekly check wrote an account's usage drop
    Flagged          a kind that keeps no timer wrote its red flag (a rate's change, an account moving into red)
    DeferredDue      an email kept for quiet hours fell due (the sweeper flagged it, or TTL deleted it)
    Unrelated        anything else (a marker, a log): nothing to do
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from redflag.core.activity import Activity
from redflag.core.timers import Timer
from redflag.kinds.usage_drop import AccountFlag

Event = Literal["INSERT", "MODIFY", "REMOVE"]


@dataclass(frozen=True)
class TimerChanged:
    event: Event
    by_ttl: bool  # a REMOVE by DynamoDB's TTL (the stream's service identity), not by a person
    old: Timer | None
    new: Timer | None


@dataclass(frozen=True)
class ActivityChanged:
    event: Event
    old: Activity | None
    new: Activity | None


@dataclass(frozen=True)
class AccountFlagged:
    flag: AccountFlag


@dataclass(frozen=True)
class Flagged:
    kind: str  # the kind's name (redflag.kinds)
    subject: Any  # its red flag (the kind's ``subject_model``)


@dataclass(frozen=True)
class DeferredDue:
    timer: Timer  # the red flag whose email was kept


@dataclass(frozen=True)
class Unrelated:
    pass


Change = TimerChanged | ActivityChanged | AccountFlagged | Flagged | DeferredDue | Unrelated
