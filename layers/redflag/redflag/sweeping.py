"""The sweeper: a due timer becomes *flagged*, on time. The flag reaches the table's stream, where the
alerting path takes it, so there is one way into alerts whether TTL or the sweeper expired a timer.

One scheduled run covers a minute (EventBridge's finest rate), in one of two modes:

- **look-ahead** (default): every ``poll_seconds`` the run reads, from each shard of the sparse due
  index, the open timers due before the run ends, and flags each at its due time. Lateness is the
  write plus the stream's delivery, not the interval between reads; a timer armed during the minute
  with a short threshold is picked up by the next read.
- **passes**: ``passes`` reads spread over the minute, each flagging what is already due
  (lateness up to 60 / passes seconds).

A flag is one conditional write per timer, with no read first (``TimerStore.flag_due``), issued
concurrently; shards are read concurrently, the first one rotated from run to run. The run stops
before its Lambda deadline, whatever is left is picked up by the next run.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pydantic import BaseModel

from redflag import timers
from redflag.clock import Clock
from redflag.ports import StoreUnavailable, TimerStore
from redflag.timers import TimerKey


class SweepReport(BaseModel):
    due: int = 0  # due timers found (each counted once per run)
    flagged: int = 0
    lost_races: int = 0  # completed, flagged or deleted by someone else between the read and the write
    failed: int = 0  # writes that hit a passing fault; the next read retries them
    passes: int = 0  # reads of the due index (every shard each time)
    max_lateness: float = 0.0  # seconds between a due time and its flag write, worst in this run


@dataclass(frozen=True)
class SweepPlan:
    shards: int
    lookahead: bool = True
    passes: int = 3  # passes mode: reads per run
    poll_seconds: float = 5.0  # look-ahead mode: seconds between reads
    period: float = 60.0  # one scheduled run covers this much time
    overlap: float = 5.0  # look-ahead mode: cover a little of the next run too (schedule jitter)
    page_size: int = 1000
    workers: int = 32  # concurrent flag writes (and shard reads)
    margin: float = 2.0  # stop this long before the Lambda deadline


class SweepService:
    def __init__(self, store: TimerStore, plan: SweepPlan, clock: Clock, policy: timers.Policy = timers.Policy()):
        self._store = store
        self._plan = plan
        self._clock = clock
        self._policy = policy
        self._runs = 0

    def run(self, time_left: Callable[[], float]) -> SweepReport:
        """One scheduled run. ``time_left()``: seconds until the Lambda deadline."""
        plan, clock = self._plan, self._clock
        start = clock.now()
        interval = plan.poll_seconds if plan.lookahead else plan.period / plan.passes
        cover = plan.period + (plan.overlap if plan.lookahead else 0)
        stop = min(start + cover, start + time_left() - plan.margin)
        first_shard = self._runs % plan.shards
        self._runs += 1
        report = SweepReport()
        queue: list[tuple[int, str, TimerKey]] = []  # (due_at, tie-break, key): a heap
        known: set[TimerKey] = set()
        next_read = start
        with ThreadPoolExecutor(max_workers=plan.workers) as pool:
            while True:
                now = clock.now()
                if now >= next_read and now < stop:
                    until = min(stop, now + cover) if plan.lookahead else now
                    self._read(pool, until, first_shard, queue, known, report)
                    next_read += interval
                now = clock.now()
                ready = []
                while queue and queue[0][0] <= now:
                    ready.append(heapq.heappop(queue))
                if ready:
                    self._flag(pool, ready, now, queue, known, report)
                if clock.now() >= stop or (not plan.lookahead and next_read >= start + plan.period):
                    return report
                wake = min(next_read, stop, queue[0][0] if queue else math.inf)
                clock.sleep(wake - clock.now())

    def _read(
        self,
        pool: ThreadPoolExecutor,
        until: float,
        first: int,
        queue: list[tuple[int, str, TimerKey]],
        known: set[TimerKey],
        report: SweepReport,
    ) -> None:
        order = [(first + i) % self._plan.shards for i in range(self._plan.shards)]

        def read(shard: int) -> list[tuple[TimerKey, int]]:
            try:
                return list(self._store.due(shard, until, self._plan.page_size))
            except StoreUnavailable:
                return []  # the next read tries this shard again

        report.passes += 1
        for found in pool.map(read, order):
            for key, due_at in found:
                if key not in known:
                    known.add(key)
                    report.due += 1
                    heapq.heappush(queue, (due_at, key.model_dump_json(), key))

    def _flag(
        self,
        pool: ThreadPoolExecutor,
        ready: list[tuple[int, str, TimerKey]],
        now: float,
        queue: list[tuple[int, str, TimerKey]],
        known: set[TimerKey],
        report: SweepReport,
    ) -> None:
        expires_at = math.ceil(now + self._policy.retention_seconds)

        def flag(entry: tuple[int, str, TimerKey]) -> bool | None:
            try:
                return self._store.flag_due(entry[2], now, expires_at)
            except StoreUnavailable:
                return None

        for entry, flagged in zip(ready, pool.map(flag, ready), strict=True):
            if flagged is None:
                report.failed += 1
                known.discard(entry[2])  # read it again next time
            elif flagged:
                report.flagged += 1
                report.max_lateness = max(report.max_lateness, now - entry[0])
            else:
                report.lost_races += 1
