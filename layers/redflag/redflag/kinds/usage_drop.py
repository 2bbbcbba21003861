"""Account health: daily and weekly active users per account, and the ``usage_drop`` red flag. Pure.

An account's weekly actives are counted per ISO week (Monday to Sunday, UTC). Once a week has ended,
each ``usage_drop`` rule compares it with the week before: an account that had at least
``min_weekly_actives`` and lost more than ``drop_percent`` of them is flagged, once per rule, account
and week. The flag is for customer success only: it is about an account, never one user.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from redflag.core.rules import Rule


class AccountFlag(BaseModel):
    """A usage drop: one per rule, account and (ended) week."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    task: str  # the usage_drop rule's name
    week: str  # the week that dropped, e.g. 2026-W47
    actives_before: int
    actives_after: int
    rule: Rule
    flagged_at: float

    @property
    def drop_percent(self) -> float:
        return round(100 * (self.actives_before - self.actives_after) / self.actives_before, 1)

    def alert_id(self, channel: str) -> str:
        return json.dumps([f"account:{self.account_id}", self.task, self.week, "usage_drop", channel])


def usage_drops(
    task: str, rule: Rule, week: str, before: dict[str, int], after: dict[str, int], now: float
) -> list[AccountFlag]:
    """The accounts whose weekly actives fell by more than the rule's drop_percent from ``before``
    (the week before) to ``after`` (``week``, which has ended); an account absent from ``after`` had none."""
    assert rule.kind == "usage_drop" and rule.drop_percent is not None
    flags = []
    for account, previous in sorted(before.items()):
        if previous < rule.min_weekly_actives:
            continue
        current = after.get(account, 0)
        if 100 * (previous - current) / previous > rule.drop_percent:
            flags.append(AccountFlag(account_id=account, task=task, week=week, actives_before=previous,
                                     actives_after=current, rule=rule, flagged_at=now))  # fmt: skip
    return flags
