"""The weekly run: the week that just ended against the one before, per ``usage_drop`` rule (each drop
becomes an account flag, written once), and each account's health score per ``health`` rule (an account
that moved into red becomes a flag, written once); the stream takes both to customer success."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel

from redflag.core import weeks
from redflag.kinds import health, usage_drop
from redflag.kinds.base import Kind
from redflag.services.ports import RuleSource


class WeeklyActives(Protocol):
    def weekly_actives(self, week: str) -> dict[str, int]: ...

    def week_table(self, week: str) -> dict[str, dict[str, int]]: ...


class FlagSink(Protocol):
    def put_account_flag(self, flag: usage_drop.AccountFlag, retention_seconds: int) -> bool: ...

    def put_flag(self, kind: Kind[Any], subject: BaseModel, retention_seconds: int, now: float) -> bool: ...


class UsageReport(BaseModel):
    week: str
    accounts: int = 0  # accounts with actives in the week before
    flagged: int = 0  # usage drops
    already: int = 0  # flags written by an earlier run of this check
    scored: int = 0  # accounts given a health score (per health rule)
    turned_red: int = 0  # of them, moved into red this week


def healths(
    task: str, rule: Any, week: str, rows: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, health.Health]:
    """Every account's health for ``week`` (``rows``), against the week before (``before``)."""
    out = {}
    for account in sorted(set(rows) | set(before)):
        scored = health.score(rule, account, week, rows.get(account, {}), before.get(account))
        if scored is not None:
            out[account] = scored
    return out


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
        book = self._rules.rulebook()
        drops, scores = book.of_kind(usage_drop.KIND.name), book.of_kind(health.KIND.name)
        if drops:
            previous, current = self._actives.weekly_actives(before), self._actives.weekly_actives(ended)
            report.accounts = len(previous)
            for task, rule in sorted(drops.items()):
                for flag in usage_drop.usage_drops(task, rule, ended, previous, current, now):
                    if self._flags.put_account_flag(flag, self._retention):
                        report.flagged += 1
                    else:
                        report.already += 1
        if scores:
            tables = [self._actives.week_table(weeks.weeks_before(now, n)) for n in (1, 2, 3)]
            for task, rule in sorted(scores.items()):
                now_scored = healths(task, rule, ended, tables[0], tables[1])
                then = healths(task, rule, before, tables[1], tables[2])
                report.scored += len(now_scored)
                for account, scored in now_scored.items():
                    red = health.moved_into_red(task, rule, scored, then.get(account), now)
                    if red is None:
                        continue
                    if self._flags.put_flag(health.KIND, red, self._retention, now):
                        report.turned_red += 1
                    else:
                        report.already += 1
        return report
