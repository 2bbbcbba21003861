"""The sweeper: find open timers past due through the sparse, sharded due index and flag them
with a conditional write. The flag shows up on the stream, where the alerting path takes it,
so there is one way in to alerts whether TTL or the sweeper expired the timer."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from redflag import timers
from redflag.ports import TimerStore, VersionConflict


class SweepReport(BaseModel):
    due: int = 0
    flagged: int = 0
    lost_races: int = 0  # completed, flagged or deleted by someone else between query and write
    passes: int = 0


class SweepService:
    def __init__(
        self,
        store: TimerStore,
        shards: int,
        page_size: int = 100,
        policy: timers.Policy = timers.Policy(),
        passes: int = 1,
    ) -> None:
        self._store = store
        self._shards = shards
        self._passes = passes
        self._page = page_size
        self._policy = policy

    def run(self, now: Callable[[], float], sleep: Callable[[float], None], period: float = 60) -> SweepReport:
        """The configured passes spread evenly over ``period`` seconds: one scheduled run a minute
        (EventBridge's finest rate) still flags a timer within ``period / passes`` of its due time."""
        total = SweepReport()
        start = now()
        for i in range(self._passes):
            sleep(start + i * period / self._passes - now())
            one = self.sweep(now())
            total.due, total.flagged = total.due + one.due, total.flagged + one.flagged
            total.lost_races += one.lost_races
            total.passes += 1
        return total

    def sweep(self, now: float) -> SweepReport:
        report = SweepReport()
        for shard in range(self._shards):
            for key in self._store.due(shard, now, self._page):
                report.due += 1
                current = self._store.get(key)
                flagged = timers.expire(current, now, self._policy)
                if current is None or flagged is None:
                    report.lost_races += 1
                    continue
                try:
                    self._store.commit(flagged, current.version)
                except VersionConflict:
                    report.lost_races += 1
                    continue
                report.flagged += 1
        return report
