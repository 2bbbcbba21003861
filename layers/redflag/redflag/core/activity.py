"""A user's record: the latest activity seen and how much, and the user's profile. Pure Python.

One record per user, versioned like a timer, so the same single conditional write applies an
event and remembers its id (duplicates are recognised, as on timers).

- **Activity**: ``user_active`` events of ``/v1/events`` that no rule takes, and every ``track``,
  ``page`` and ``screen`` call of the tracking API (one update per user and request). The stats
  function counts a user active on a day (and in an account) from this record's changes.
- **Profile** (the tracking API's ``identify`` and ``group``): what an email needs when a call
  carries no traits of its own: address, name, time zone, segment, and the user's account (and its
  name). A later identify replaces what it gives; an older one (by its timestamp, sent again late)
  only fills in what is missing.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from redflag.core import timers
from redflag.core.events import UserInfo

PROFILE_FIELDS = ("email", "name", "timezone", "segment")


class ActivityKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str


class Profile(BaseModel):
    """What ``identify`` and ``group`` told of a user (each value checked as ``/v1/events`` checks it)."""

    model_config = ConfigDict(frozen=True)

    email: str | None = None
    name: str | None = None
    timezone: str | None = None
    segment: str | None = None
    account_name: str | None = None
    identified_at: float | None = None  # the latest identify or group applied (its timestamp)

    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in (*PROFILE_FIELDS, "account_name"))


class Activity(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: ActivityKey
    version: int = 0  # 0: not stored yet
    first_active_at: float | None = None
    last_active_at: float | None = None
    active_events: int = 0
    account_id: str | None = None
    expires_at: int | None = None
    seen: tuple[str, ...] = ()
    profile: Profile = Profile()

    def user(self) -> UserInfo:
        """The profile as a red flag's user (address, name, time zone, segment, account)."""
        p = self.profile
        values: dict[str, Any] = {"email": p.email, "name": p.name, "timezone": p.timezone, "segment": p.segment}
        values["account_id"] = self.account_id
        return UserInfo.model_construct(**{k: v for k, v in values.items() if v is not None})


class UserUpdate(BaseModel):
    """What one request does to a user's record: activity (how many calls, the latest time), and what
    identify and group calls said (``traits``: email, name, timezone, segment, account_name)."""

    model_config = ConfigDict(frozen=True)

    active_events: int = 0
    active_at: float | None = None  # the latest activity
    first_at: float | None = None  # the earliest activity
    account_id: str | None = None
    traits: dict[str, str] = Field(default_factory=dict)
    identified_at: float | None = None  # the latest identify or group's time
    keep_seconds: float | None = None  # how long the record is kept after its latest write (default: policy)


def apply_activity(
    current: Activity | None, key: ActivityKey, at: float, now: float, user: UserInfo, policy: timers.Policy
) -> Activity:
    """Count one ``user_active``; an older event only counts, it never moves the latest time back."""
    update = UserUpdate(active_events=1, active_at=at, first_at=at, account_id=user.account_id)
    return apply_update(current, key, update, now, policy)


def apply_update(
    current: Activity | None, key: ActivityKey, update: UserUpdate, now: float, policy: timers.Policy
) -> Activity:
    cur = current or Activity(key=key)
    changes: dict[str, object] = {}
    if update.active_events:
        at = update.active_at if update.active_at is not None else now
        first = update.first_at if update.first_at is not None else at
        changes |= {
            "first_active_at": min(first, cur.first_active_at or first),
            "last_active_at": max(at, cur.last_active_at or at),
            "active_events": cur.active_events + update.active_events,
        }
    if update.account_id:
        changes["account_id"] = update.account_id
    if update.traits or update.identified_at is not None:
        changes["profile"] = _profiled(cur.profile, update)
    keep = update.keep_seconds if update.keep_seconds is not None else policy.retention_seconds
    last = changes.get("last_active_at", cur.last_active_at)
    expires = math.ceil(max(last if isinstance(last, int | float) else 0.0, now) + keep)
    changes["expires_at"] = max(expires, cur.expires_at or expires)  # a longer-kept profile is not cut short
    return cur.model_copy(update=changes)


def _profiled(profile: Profile, update: UserUpdate) -> Profile:
    """The profile with the update's traits: replaced by a later identify, only filled in by an older one."""
    stored_at = profile.identified_at
    newer = stored_at is None or update.identified_at is None or update.identified_at >= stored_at
    given = {k: v for k, v in update.traits.items() if k in (*PROFILE_FIELDS, "account_name")}
    if not newer:
        given = {k: v for k, v in given.items() if getattr(profile, k) is None}
    times = [t for t in (stored_at, update.identified_at) if t is not None]
    return profile.model_copy(update=given | {"identified_at": max(times) if times else None})
