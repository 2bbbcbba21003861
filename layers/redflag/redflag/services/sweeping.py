"""The sweeper: a due timer becomes *flagged*, on time. The flag reaches the table's stream, where the
alerting path takes it, so there is one way into alerts whether TTL or the sweeper expired a timer.

One scheduled run covers a minute (EventBridge's finest rate), in one of two modes:

- **look-ahead** (default): every ``poll_seconds`` the run reads, from each shard of the sparse due
  index, the open timers due before the run ends, and flags each at its due time. Lateness is the
  write plus the stream's delivery, not the interval between reads; a timer armed during the minute
  with a short threshold is picked up by the next read.
- **passes**: ``passes`` reads spread over the minute, each flagging what is already due
  (lateness up to 60 / passes seconds).

Memory is bounded by a page, never by the backlog. A read takes the *first page* of each shard
(``page_size`` entries, by due time) and that page replaces what the run held for the shard, so the
run never holds more than a page per shard, and it holds plain keys (``DueRef``: strings), not models.
When a shard's page was full and the run has flagged all of it, the next page (from the page's
cursor) is read at once, so a shard with more than a page due is worked through page by page. A
short memory of what was just written (a page per shard at most) skips entries the eventually
consistent index still lists.

A flag is one conditional write per timer, with no read first, sent ``batch`` to a call
(``TimerStore.flag_due_many``: PartiQL ``BatchExecuteStatement``, 25 statements a call) and ``workers``
calls at once; each item's outcome is its own: flagged, a lost race (someone else completed or
flagged it), a passing fault (left in the index: the next read finds it again) or a permanent error
(counted as rejected). Between chunks the run looks at the clock, and stops when the next chunk
would take it past its Lambda deadline; whatever is left is picked up by the next run.

A minute too heavy for one small function is handed out. Before its first read a scheduled run
counts the first page of each shard (``fanout_at / shards`` entries at most, due in its window:
``TimerStore.due_count``, which returns no items, so the decision costs a few milliseconds even at
128 MB); when a shard holds its share of ``fanout_at`` or more, the run keeps one group of shards and
asks a ``Dispatcher`` to start a worker per other group with anything due (an asynchronous invoke of
the drain function, sized for it), each sweeping its shards for one run's window, as the run would
have. Overlapping work is harmless: every flag is a conditional write.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pydantic import BaseModel

from redflag.core import timers
from redflag.core.clock import Clock
from redflag.services.ports import Dispatcher, DuePage, DueRef, FlagResult, StoreUnavailable, TimerStore

_Entry = tuple[int, DueRef]  # (due_at, ref): a heap entry


class SweepReport(BaseModel):
    due: int = 0  # due timers written (flagged, lost, failed or rejected): a retried one counts again
    flagged: int = 0
    lost_races: int = 0  # completed, flagged or deleted by someone else between the read and the write
    failed: int = 0  # writes that hit a passing fault; the next read retries them
    rejected: int = 0  # writes refused for good (access, validation): never retried by this run
    passes: int = 0  # reads of the due index (every shard of the run each time)
    pages: int = 0  # index pages read (a pass reads one per shard; a full page is followed by the next)
    calls: int = 0  # flag write calls
    held: int = 0  # the most due keys the run held at once (at most a page per shard)
    dispatched: int = 0  # workers started for a heavy minute
    max_lateness: float = 0.0  # seconds between a due time and its flag write, worst in this run


@dataclass(frozen=True)
class SweepPlan:
    shards: int
    lookahead: bool = True
    passes: int = 3  # passes mode: reads per run
    poll_seconds: float = 5.0  # look-ahead mode: seconds between reads
    period: float = 60.0  # one scheduled run covers this much time
    overlap: float = 5.0  # look-ahead mode: cover a little of the next run too (schedule jitter)
    page_size: int = 250  # due keys held per shard at most (a Query page)
    workers: int = 32  # concurrent calls: shard reads, flag writes (a chunk is workers x batch flags)
    batch: int = 25  # flags per write call (BatchExecuteStatement takes 25 statements)
    margin: float = 2.0  # stop this long before the Lambda deadline
    fanout_at: int = 2000  # timers due in a run's window (fanout_at / shards in one shard) that start workers
    shards_per_worker: int = 1


@dataclass
class _Lane:
    """What a run holds for one shard: at most a page of due keys, where the next page starts, and
    what it wrote lately (a page at most)."""

    shard: int
    queue: list[_Entry] = field(default_factory=list)  # a heap by due time
    cursor: object | None = None  # the last page was full: the next one starts here
    recent: dict[_Entry, None] = field(default_factory=dict)  # written lately, oldest first


@dataclass
class _Tally:
    """A run's counts, kept as plain ints while it runs (a SweepReport at the end)."""

    flagged: int = 0
    lost_races: int = 0
    failed: int = 0
    rejected: int = 0
    passes: int = 0
    pages: int = 0
    calls: int = 0
    held: int = 0
    dispatched: int = 0
    max_lateness: float = 0.0
    chunk_seconds: float = 0.0  # how long the last chunk of flags took: the next is expected to take as long
    turn: int = 0  # which lane a chunk starts with (lanes take turns)

    def report(self) -> SweepReport:
        due = self.flagged + self.lost_races + self.failed + self.rejected
        fields = {k: getattr(self, k) for k in SweepReport.model_fields if k != "due"}
        return SweepReport(due=due, **fields)


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
        self._pool: ThreadPoolExecutor | None = None  # kept across runs: a warm container starts no threads

    def run(self, time_left: Callable[[], float], shards: Sequence[int] | None = None) -> SweepReport:
        """A scheduled run over every shard, or (``shards`` given) a worker a run started: the same
        sweep of one run's window over its shards, without handing anything out.
        ``time_left()``: seconds until the Lambda deadline."""
        plan, clock = self._plan, self._clock
        start = clock.now()
        deadline = start + time_left() - plan.margin
        cover = plan.period + (plan.overlap if plan.lookahead else 0)
        stop = min(start + cover, deadline)
        interval = plan.poll_seconds if plan.lookahead else plan.period / plan.passes
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=plan.workers, thread_name_prefix="sweep")
        pool = self._pool
        if shards is not None:
            return self._sweep(pool, list(shards), start, stop, deadline, interval).report()
        first = self._runs % plan.shards  # the first shard rotates from run to run
        self._runs += 1
        mine = [(first + i) % plan.shards for i in range(plan.shards)]
        tally = _Tally()
        if self._dispatcher is not None:
            mine = self._fan_out(pool, mine, stop if plan.lookahead else start, tally)
        return self._sweep(pool, mine, start, stop, deadline, interval, tally).report()

    def _sweep(
        self,
        pool: ThreadPoolExecutor,
        shards: list[int],
        start: float,
        stop: float,
        deadline: float,
        interval: float,
        tally: _Tally | None = None,
    ) -> _Tally:
        plan, clock = self._plan, self._clock
        lookahead = plan.lookahead
        cover = plan.period + plan.overlap
        tally = tally or _Tally()
        lanes = [_Lane(s) for s in shards]
        next_read = start
        while True:
            now = clock.now()
            if now >= next_read and now < stop:
                self._read(pool, lanes, lanes, min(stop, now + cover) if lookahead else now, tally, fresh=True)
                tally.passes += 1
                next_read += interval
            if not self._flag(pool, lanes, tally, deadline):
                return tally  # the next chunk would overrun the deadline: the next run takes the rest
            now = clock.now()
            end = stop if lookahead else deadline
            more = [lane for lane in lanes if not lane.queue and lane.cursor is not None]
            if more and now < end:  # a full page flagged: the shard's next page, now
                self._read(pool, lanes, more, min(stop, now + cover) if lookahead else now, tally, fresh=False)
                continue
            if now >= stop or (not lookahead and next_read >= stop):
                return tally
            due = min((lane.queue[0][0] for lane in lanes if lane.queue), default=math.inf)
            clock.sleep(min(next_read, stop, due) - now)

    def _fan_out(self, pool: ThreadPoolExecutor, mine: list[int], until: float, tally: _Tally) -> list[int]:
        """Too much due in this run's window for one small function (a shard holding its share of
        ``fanout_at``): keep one group of shards, start a worker per other group with anything due.
        Decided by counting the first page of each shard, before reading any."""
        share = max(1, math.ceil(self._plan.fanout_at / self._plan.shards))

        def count(shard: int) -> int:
            try:
                return self._store.due_count(shard, until, share)
            except StoreUnavailable:
                return 0  # this shard is read (and counted) again by the next run

        counts = dict(zip(mine, pool.map(count, mine), strict=True))
        if max(counts.values(), default=0) < share:
            return mine
        busy = [s for s in mine if counts[s]]
        size = self._plan.shards_per_worker
        groups = [busy[i : i + size] for i in range(0, len(busy), size)]
        assert self._dispatcher is not None
        for group in groups[1:]:
            self._dispatcher.dispatch(group)
            tally.dispatched += 1
        handed = {s for group in groups[1:] for s in group}
        return [s for s in mine if s not in handed]

    # --- reading the index and writing flags ------------------------------------------------------

    def _read(
        self, pool: ThreadPoolExecutor, lanes: list[_Lane], which: list[_Lane], until: float, tally: _Tally, fresh: bool
    ) -> None:
        """One page for each lane of ``which``: from the start of its shard (``fresh``), or after its
        cursor. The page replaces what the lane held: the first page of a shard is its earliest due
        timers, which include whatever the lane still held."""
        limit = self._plan.page_size

        def read(lane: _Lane) -> DuePage | None:
            try:
                return self._store.due_page(lane.shard, until, limit, None if fresh else lane.cursor)
            except StoreUnavailable:
                return None  # the next read tries this shard again

        for lane, page in zip(which, pool.map(read, which), strict=True):
            tally.pages += 1
            if page is None:
                lane.cursor = None
                continue
            lane.queue = [(due_at, ref) for ref, due_at in page.entries if (due_at, ref) not in lane.recent]
            heapq.heapify(lane.queue)
            lane.cursor = page.cursor
        tally.held = max(tally.held, sum(len(lane.queue) for lane in lanes))

    def _flag(self, pool: ThreadPoolExecutor, lanes: list[_Lane], tally: _Tally, deadline: float) -> bool:
        """Everything due by now, ``workers x batch`` at a time (``batch`` to a call, the calls at once),
        the lanes taking turns. False: the next chunk would run past the deadline."""
        plan = self._plan
        chunk = plan.workers * plan.batch
        while True:
            now = self._clock.now()
            ready: list[tuple[_Lane, _Entry]] = []
            tally.turn += 1
            for i in range(len(lanes)):
                lane = lanes[(tally.turn + i) % len(lanes)]
                while lane.queue and lane.queue[0][0] <= now and len(ready) < chunk:
                    ready.append((lane, heapq.heappop(lane.queue)))
            if not ready:
                return True
            if now + tally.chunk_seconds >= deadline:
                for lane, entry in ready:  # not written: back where they were
                    heapq.heappush(lane.queue, entry)
                return False
            expires_at = math.ceil(now + self._policy.retention_seconds)
            calls = math.ceil(len(ready) / plan.batch)
            size = math.ceil(len(ready) / calls)  # even batches: 30 = 2 x 15, not 25 + 5
            parts = [ready[i : i + size] for i in range(0, len(ready), size)]

            def write(
                part: list[tuple[_Lane, _Entry]], now: float = now, expires_at: int = expires_at
            ) -> list[FlagResult]:
                try:
                    return self._store.flag_due_many([ref for _, (_, ref) in part], now, expires_at)
                except StoreUnavailable:
                    return [FlagResult.RETRY] * len(part)

            for part, results in zip(parts, pool.map(write, parts), strict=True):
                tally.calls += 1
                for (lane, entry), result in zip(part, results, strict=True):
                    if result is FlagResult.FLAGGED:
                        tally.flagged += 1
                        if now - entry[0] > tally.max_lateness:
                            tally.max_lateness = now - entry[0]
                    elif result is FlagResult.LOST:
                        tally.lost_races += 1
                    elif result is FlagResult.RETRY:
                        tally.failed += 1
                        continue  # still in the index: the next read finds it again
                    else:
                        tally.rejected += 1
                    lane.recent[entry] = None
                    if len(lane.recent) > plan.page_size:
                        del lane.recent[next(iter(lane.recent))]
            tally.chunk_seconds = self._clock.now() - now
