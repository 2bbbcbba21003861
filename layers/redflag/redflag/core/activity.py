"""A user's activity record: the latest ``user_active`` seen and how many. Pure Python.

One record per user, versioned like a timer, so the same single conditional write applies an
event and remembers its id (duplicates are recognised, as on timers).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from redflag.core import timers
from redflag.core.events import UserInfo


class ActivityKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str


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


def apply_activity(
    current: Activity | None, key: ActivityKey, at: float, now: float, user: UserInfo, policy: timers.Policy
) -> Activity:
    """Count one ``user_active``; an older event only counts, it never moves the latest time back."""
    cur = current or Activity(key=key)
    last = max(at, cur.last_active_at or at)
    first = min(at, cur.first_active_at or at)
    return cur.model_copy(
        update={
            "first_active_at": first,
            "last_active_at": last,
            "active_events": cur.active_events + 1,
            "account_id": user.account_id or cur.account_id,
            "expires_at": math.ceil(max(last, now) + policy.retention_seconds),
        }
    )
