"""The sweeper: find open timers past due through the sparse, sharded due index and flag them
with a conditional write. The flag shows up on the stream, where the alerting path takes it,
so there is one way in to alerts whether TTL or the sweeper expired the timer."""

from __future__ import annotations

from pydantic import BaseModel

from redflag import timers
from redflag.ports import TimerStore, VersionConflict


class SweepReport(BaseModel):
    due: int = 0
    flagged: int = 0
    lost_races: int = 0  # completed, flagged or deleted by someone else between query and write


class SweepService:
    def __init__(self, store: TimerStore, shards: int, page_size: int = 100, policy: timers.Policy = timers.Policy()):
        self._store = store
        self._shards = shards
        self._page = page_size
        self._policy = policy

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
