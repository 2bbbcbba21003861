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
before its Lambda deadline; whatever is left is picked up by the next run.

A backlog larger than one small function should flag alone (``fanout_at`` timers already due, after
an outage or a burst) is handed out: the run keeps one group of shards and asks a ``Dispatcher`` to
start a worker per other group (an asynchronous invoke of the same function), each of which drains
its shards and stops. Overlapping work is harmless: every flag is a conditional write.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pydantic import BaseModel

from redflag.core import timers
from redflag.core.clock import Clock
from redflag.core.timers import DeferredKey, TimerKey
from redflag.services.ports import Dispatcher, StoreUnavailable, TimerStore

DueKey = TimerKey | DeferredKey

_Entry = tuple[int, str, int, DueKey]  # (due_at, tie-break, shard, key): a heap entry


class SweepReport(BaseModel):
    due: int = 0  # due timers found (each counted once per run)
    flagged: int = 0
    lost_races: int = 0  # completed, flagged or deleted by someone else between the read and the write
    failed: int = 0  # writes that hit a passing fault; the next read retries them
    passes: int = 0  # reads of the due index (every shard of the run each time)
    dispatched: int = 0  # workers started for a backlog
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
    fanout_at: int = 2000  # timers already due that make a run hand shards to workers
    shards_per_worker: int = 1


class SweepService:
    def __init__(
        self,
        store: TimerStore,
        plan: SweepPlan,
        clock: Clock,
        policy: timers.Policy = timers.Policy(),
        dispatcher: Dispatcher | None = None,
    ):
        self._store = store
        self._plan = plan
        self._clock = clock
        self._policy = policy
        self._dispatcher = dispatcher
        self._runs = 0

    def run(self, time_left: Callable[[], float], shards: Sequence[int] | None = None) -> SweepReport:
        """A scheduled run over every shard, or (``shards`` given) a worker draining a backlog.
        ``time_left()``: seconds until the Lambda deadline."""
        with ThreadPoolExecutor(max_workers=self._plan.workers) as pool:
            if shards is not None:
                return self._drain(pool, list(shards), time_left)
            return self._scheduled(pool, time_left)

    # --- a scheduled run ---------------------------------------------------------------------------

    def _scheduled(self, pool: ThreadPoolExecutor, time_left: Callable[[], float]) -> SweepReport:
        plan, clock = self._plan, self._clock
        start = clock.now()
        interval = plan.poll_seconds if plan.lookahead else plan.period / plan.passes
        cover = plan.period + (plan.overlap if plan.lookahead else 0)
        deadline = start + time_left() - plan.margin
        stop = min(start + cover, deadline)
        first = self._runs % plan.shards
        self._runs += 1
        mine = [(first + i) % plan.shards for i in range(plan.shards)]
        report = SweepReport()
        queue: list[_Entry] = []
        known: set[DueKey] = set()
        next_read = start
        while True:
            now = clock.now()
            if now >= next_read and now < stop:
                until = min(stop, now + cover) if plan.lookahead else now
                self._read(pool, mine, until, queue, known, report)
                if report.passes == 1:
                    mine = self._fan_out(mine, queue, known, now, report)
                next_read += interval
            now = clock.now()
            ready = []
            while queue and queue[0][0] <= now:
                ready.append(heapq.heappop(queue))
            if ready:
                self._flag(pool, ready, known, report, deadline)
            if clock.now() >= stop or (not plan.lookahead and next_read >= start + plan.period):
                return report
            wake = min(next_read, stop, queue[0][0] if queue else math.inf)
            clock.sleep(wake - clock.now())

    def _fan_out(
        self, mine: list[int], queue: list[_Entry], known: set[DueKey], now: float, report: SweepReport
    ) -> list[int]:
        """A backlog too large to flag alone: keep one group of shards, start a worker per other group."""
        backlog: dict[int, int] = {}
        for due_at, _, shard, _ in queue:
            if due_at <= now:
                backlog[shard] = backlog.get(shard, 0) + 1
        if self._dispatcher is None or sum(backlog.values()) < self._plan.fanout_at:
            return mine
        heavy = [s for s in mine if backlog.get(s)]
        size = self._plan.shards_per_worker
        groups = [heavy[i : i + size] for i in range(0, len(heavy), size)]
        handed = {s for group in groups[1:] for s in group}
        for group in groups[1:]:
            self._dispatcher.dispatch(group)
            report.dispatched += 1
        kept = [e for e in queue if e[2] not in handed]
        for e in queue:
            if e[2] in handed:
                known.discard(e[3])
        queue[:] = kept
        heapq.heapify(queue)
        return [s for s in mine if s not in handed]

    # --- a worker: drain a backlog and stop ------------------------------------------------------

    def _drain(self, pool: ThreadPoolExecutor, shards: list[int], time_left: Callable[[], float]) -> SweepReport:
        deadline = self._clock.now() + time_left() - self._plan.margin
        report = SweepReport()
        while self._clock.now() < deadline:
            queue: list[_Entry] = []
            self._read(pool, shards, self._clock.now(), queue, set(), report)
            if not queue:
                break
            self._flag(pool, sorted(queue), set(), report, deadline)
        return report

    # --- reading the index and writing flags ------------------------------------------------------

    def _read(
        self,
        pool: ThreadPoolExecutor,
        shards: list[int],
        until: float,
        queue: list[_Entry],
        known: set[DueKey],
        report: SweepReport,
    ) -> None:
        def read(shard: int) -> list[tuple[DueKey, int]]:
            try:
                return list(self._store.due(shard, until, self._plan.page_size))
            except StoreUnavailable:
                return []  # the next read tries this shard again

        report.passes += 1
        for shard, found in zip(shards, pool.map(read, shards), strict=True):
            for key, due_at in found:
                if key not in known:
                    known.add(key)
                    report.due += 1
                    heapq.heappush(queue, (due_at, key.model_dump_json(), shard, key))

    def _flag(
        self, pool: ThreadPoolExecutor, ready: list[_Entry], known: set[DueKey], report: SweepReport, deadline: float
    ) -> None:
        chunk = self._plan.workers * 4  # look at the clock between chunks: stop before the deadline
        for i in range(0, len(ready), chunk):
            now = self._clock.now()
            if now >= deadline:
                return  # the rest is read again by the next run
            part = ready[i : i + chunk]
            expires_at = math.ceil(now + self._policy.retention_seconds)

            def flag(entry: _Entry, now: float = now, expires_at: int = expires_at) -> bool | None:
                try:
                    return self._store.flag_due(entry[3], now, expires_at)
                except StoreUnavailable:
                    return None

            for entry, flagged in zip(part, pool.map(flag, part), strict=True):
                if flagged is None:
                    report.failed += 1
                    known.discard(entry[3])  # read it again next time
                elif flagged:
                    report.flagged += 1
                    report.max_lateness = max(report.max_lateness, now - entry[0])
                else:
                    report.lost_races += 1
