"""The weekly usage check: the week that just ended against the one before, per ``usage_drop`` rule;
each drop becomes an account flag, written once (the stream takes it to customer success)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel

from redflag.core import weeks
from redflag.kinds import usage_drop
from redflag.services.ports import RuleSource


class WeeklyActives(Protocol):
    def weekly_actives(self, week: str) -> dict[str, int]: ...


class FlagSink(Protocol):
    def put_account_flag(self, flag: usage_drop.AccountFlag, retention_seconds: int) -> bool: ...


class UsageReport(BaseModel):
    week: str
    accounts: int = 0  # accounts with actives in the week before
    flagged: int = 0
    already: int = 0  # flags written by an earlier run of this check


class UsageDropService:
    def __init__(
        self, rules: RuleSource, actives: WeeklyActives, flags: FlagSink, clock: Callable[[], float], retention: int
    ) -> None:
        self._rules, self._actives, self._flags = rules, actives, flags
        self._clock = clock
        self._retention = retention

    def run(self) -> UsageReport:
        now = self._clock()
        ended, before = weeks.weeks_before(now, 1), weeks.weeks_before(now, 2)
        report = UsageReport(week=ended)
        rules = self._rules.rulebook().of_kind("usage_drop")
        if not rules:
            return report
        previous, current = self._actives.weekly_actives(before), self._actives.weekly_actives(ended)
        report.accounts = len(previous)
        for task, rule in sorted(rules.items()):
            for flag in usage_drop.usage_drops(task, rule, ended, previous, current, now):
                if self._flags.put_account_flag(flag, self._retention):
                    report.flagged += 1
                else:
                    report.already += 1
        return report
