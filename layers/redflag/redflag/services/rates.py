"""The rate check (every minute): each ``rate`` rule's share of runs over its window, against its levels;
a crossing or a recovery becomes one item, written once (the stream takes it to customer success and
the webhook). Pure: the rules, the stats buckets and the flag items come in through ports.

Per rule and run: one query of the window's per-minute buckets (the stats table), one query of the
rule's latest change (the timers table), and one conditional write when its state changes. The write
is ``attribute_not_exists`` on the change's number, so two runs that race (a retried schedule) write
one change between them, and a replayed stream changes no bucket (the stats fold writes each window
once), so a replay cannot make a second alert either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field

from redflag import kinds
from redflag.kinds import rate
from redflag.kinds.base import Kind
from redflag.kinds.rate import RateChange
from redflag.services.ports import RuleSource


class RateBuckets(Protocol):
    def rate_window(self, name: str, first: int, end: int) -> dict[str, int]: ...


class FlagLog(Protocol):
    def flags(self, group: str, latest: int | None = None) -> list[tuple[str, BaseModel]]: ...

    def put_flag(self, kind: Kind[Any], subject: BaseModel, retention_seconds: int, now: float) -> bool: ...


class RateReport(BaseModel):
    rules: int = 0
    crossed: int = 0
    recovered: int = 0
    already: int = 0  # changes another run wrote first
    unwatchable: dict[str, str] = Field(default_factory=dict)  # rule -> why it watches nothing


def latest(log: FlagLog, task: str) -> RateChange | None:
    for _, subject in log.flags(rate.group_of(task), latest=1):
        if isinstance(subject, RateChange):
            return subject
    return None


def settle_of(book: kinds.RuleBook, rule: kinds.Rule) -> tuple[str, int] | str:
    """The stats name a rate rule reads and how long its runs take to settle, from the watched rule's kind."""
    assert rule.watch is not None
    watched = book.rules.get(rule.watch)
    if watched is None:
        return f"no valid rule '{rule.watch}' to watch"
    return kinds.get(watched.kind).watched(watched, rule.watch, rule.step)


class RateService:
    def __init__(
        self, rules: RuleSource, buckets: RateBuckets, log: FlagLog, clock: Callable[[], float], retention: int
    ) -> None:
        self._rules, self._buckets, self._log = rules, buckets, log
        self._clock = clock
        self._retention = retention

    def run(self) -> RateReport:
        now = self._clock()
        book = self._rules.rulebook()
        report = RateReport()
        for task, rule in sorted(book.of_kind(rate.KIND.name).items()):
            report.rules += 1
            found = settle_of(book, rule)
            if isinstance(found, str):
                report.unwatchable[task] = found
                continue
            name, settle = found
            first, end = rate.window_of(rule, settle, now)
            counts = self._buckets.rate_window(name, first, end)
            change = rate.evaluate(task, rule, name, counts, latest(self._log, task), (first * 60.0, end * 60.0), now)
            if change is None:
                continue
            if not self._log.put_flag(rate.KIND, change, self._retention, now):
                report.already += 1
            elif change.crossed:
                report.crossed += 1
            else:
                report.recovered += 1
        return report
