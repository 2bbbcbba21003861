"""The sweeper at 100,000 due timers, modelled on the deployed sweeper functions.

Two cases, each run through the services the two handlers build at import (their real stores,
clients and settings, as the template deploys them):

- **a minute**: 100,000 timers falling due evenly over one minute (1,667 a second), the scheduled run
  starting as the first falls due: lateness is what it costs;
- **a backlog**: 100,000 timers already due (an outage), found by one scheduled run: how long until
  the last is flagged.

The scheduled run (``SweepDueTimersFunction`` at its MemorySize) counts the first page of each shard,
hands the other shards to drain workers (``SweepDrainFunction`` at ``SweepDrainMemory``) and sweeps
the one it kept. One drain worker is then run on one handed-out shard, starting when its invoke was
answered plus its cold start; the timers are spread evenly over the shards, so the other workers are
taken to do the same (their lateness counted as this one's).

What answers: an in-memory due index (``Index``) answers the Query and BatchExecuteStatement calls as
DynamoDB does for this access pattern (``KEYS_ONLY`` pages of ``Limit`` entries by due time, with a
cursor; a statement flags an entry still in the index and due by its ``now``, else
ConditionalCheckFailed), after the latency model's 5 ms a call; nothing reaches moto.

Lambda's CPU share: each function runs on a clock of its own (``Dilated``) whose time is this
process's CPU time (every thread) divided by the function's share of a vCPU (memory / 1,769 MB), plus
one 5 ms round trip for each round of calls the service sends at once (``Rounds``: a thread-pool
``map``, its calls concurrent, their CPU going through the one share), plus the waits the sweeper asks
for (for its next due time or read: nothing runs then, so they pass at once). CPU time, not wall
time: other work on this shared machine does not slow the model down, though a busy machine still
inflates CPU time somewhat (caches, shared cores), so the backlog case is run twice and the better
kept. The index's own work is taken off. This machine's core counts as one vCPU. A worker's cold
start is its handler's import (the cold section's median when it ran, else timed here in a fresh
interpreter, CPU), stretched by the same share (Lambda may give an init more CPU; this is the
pessimistic side); Lambda's event queue adds its own delay before a worker starts, not modelled.

Peak memory: tracemalloc's peak over a scheduled run of a backlog (the count, the fan-out, its own
shard drained page by page), at a tenth of the backlog and at the whole of it, on the same answers at
full speed; and each function's process after import (peak RSS of a
fresh interpreter that imported the handler).
"""

from __future__ import annotations

import bisect
import math
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from redflag.core import clock as redflag_clock
from redflag_local.bench.goals import DELAY, FULL_VCPU_MB
from redflag_local.bench.wire import Answer, Wire, json_answer

DUE = 100_000
TASK_SK = "task#bench_task#default"


class Dilated:
    """Model time for one function at ``share`` of a vCPU, from ``start``: the process's CPU time
    (every thread) / ``share``, plus one network round trip (``delay``) per round of concurrent calls,
    plus the waits the sweeper asked for (they pass at once: nothing runs then). CPU time, not wall
    time, so other work on this shared machine does not slow the model down; the index's own work is
    taken off."""

    def __init__(self, share: float, start: float) -> None:
        self.share = share
        self.start = start
        self.waited = 0.0  # model seconds: the sweeper's sleeps, and round trips
        self.excluded = 0.0  # CPU seconds the index spent answering
        self._cpu0 = time.process_time()
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.start + self.waited + (time.process_time() - self._cpu0 - self.excluded) / self.share

    __call__ = now

    def sleep(self, seconds: float) -> None:
        """The sweeper waiting for its next due time or read: its pool is idle then (every call of
        the last chunk answered), so the wait passes at once, in model time only."""
        self.wait(seconds)

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self.waited += seconds

    def exclude(self, cpu_seconds: float) -> None:
        with self._lock:
            self.excluded += cpu_seconds


class Rounds:
    """The service's thread pool, with one round trip of model time per ``map``: its calls go out at
    once, and their CPU (counted by the clock) runs through the function's one share of a vCPU."""

    def __init__(self, pool: Any, clock: Dilated, delay: float) -> None:
        self._pool, self._clock, self._delay = pool, clock, delay

    def map(self, fn: Callable[..., Any], *iterables: Any) -> Any:
        results = list(self._pool.map(fn, *iterables))
        self._clock.wait(self._delay)
        return iter(results)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class Instant(Dilated):
    """Full speed (a memory run: only the allocations matter)."""

    def __init__(self, start: float) -> None:
        super().__init__(1.0, start)


@dataclass
class Index:
    """The due index of ``shards`` shards, answering the sweeper's calls. Entries ``x{shard}-{n}``."""

    table: str
    shards: int
    clock: Dilated | None = None
    delay: float = 0.0  # model seconds a call takes (added to a flag's time: the round trip)
    entries: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # shard -> sorted (due_at, pk)
    alive: dict[str, int] = field(default_factory=dict)  # pk -> due_at, while in the index
    head: dict[int, int] = field(default_factory=dict)  # shard -> first position that may be alive
    flags: list[tuple[int, float, int]] = field(default_factory=list)  # (shard, flag time, due_at)
    invokes: list[tuple[float, list[int]]] = field(default_factory=list)  # (model time, shards)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fill(self, n: int, due: Callable[[int], int]) -> None:
        """``n`` entries, the i-th in shard i % shards, due at ``due(i)``."""
        self.entries = {s: [] for s in range(self.shards)}
        self.alive, self.head, self.flags, self.invokes = {}, dict.fromkeys(range(self.shards), 0), [], []
        for i in range(n):
            pk = f"x{i % self.shards}-{i:06d}"
            self.entries[i % self.shards].append((due(i), pk))
            self.alive[pk] = due(i)
        for entries in self.entries.values():
            entries.sort()

    def left(self, shard: int) -> int:
        return sum(1 for _, pk in self.entries[shard] if pk in self.alive)

    def _timed(self, answer: Callable[[dict[str, Any]], Answer], body: dict[str, Any]) -> Answer:
        began = time.thread_time()
        try:
            return answer(body)
        finally:
            if self.clock is not None:
                self.clock.exclude(time.thread_time() - began)

    def responders(self) -> dict[tuple[str, str], Callable[[dict[str, Any]], Answer]]:
        return {
            ("dynamodb", "Query"): lambda body: self._timed(self._query, body),
            ("dynamodb", "BatchExecuteStatement"): lambda body: self._timed(self._batch, body),
            ("lambda", "Invoke"): lambda body: self._timed(self._invoke, body),
        }

    def _key(self, shard: int, due_at: int, pk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": TASK_SK}, "due_shard": {"N": str(shard)}, "due_at": {"N": str(due_at)}}

    def _query(self, body: dict[str, Any]) -> Answer:
        values = body["ExpressionAttributeValues"]
        shard, until = int(values[":s"]["N"]), int(values[":until"]["N"])
        limit = int(body.get("Limit", 1000))
        entries = self.entries.get(shard, [])
        with self.lock:
            start = body.get("ExclusiveStartKey")
            if start:
                i = bisect.bisect_right(entries, (int(start["due_at"]["N"]), start["pk"]["S"]))
            else:
                i = self.head[shard]
                while i < len(entries) and entries[i][1] not in self.alive:
                    i += 1
                self.head[shard] = i
            page: list[tuple[int, str]] = []
            while i < len(entries) and entries[i][0] <= until and len(page) < limit:
                if entries[i][1] in self.alive:
                    page.append(entries[i])
                i += 1
            more = any(due <= until and pk in self.alive for due, pk in entries[i : i + 50])
        out: dict[str, Any] = {"Count": len(page), "ScannedCount": len(page)}
        if body.get("Select") != "COUNT":
            out["Items"] = [self._key(shard, d, pk) for d, pk in page]
        if page and len(page) == limit and more:
            out["LastEvaluatedKey"] = self._key(shard, page[-1][0], page[-1][1])
        return json_answer(out)

    def _batch(self, body: dict[str, Any]) -> Answer:
        at = (self.clock.now() if self.clock else 0.0) + self.delay  # answered after its round trip
        responses: list[dict[str, Any]] = []
        with self.lock:
            for statement in body["Statements"]:
                params = statement["Parameters"]
                pk, now = params[4]["S"], float(params[7]["N"])
                due = self.alive.get(pk)
                if due is not None and due <= now:
                    del self.alive[pk]
                    self.flags.append((int(pk[1:].split("-", 1)[0]), at, due))
                    responses.append({"TableName": self.table})
                else:
                    error = {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
                    responses.append({"TableName": self.table, "Error": error})
        return json_answer({"Responses": responses})

    def _invoke(self, body: dict[str, Any]) -> Answer:
        if self.clock is not None:
            self.clock.wait(self.delay)  # the dispatcher's invoke is a call of its own, not in a round
        self.invokes.append((self.clock.now() if self.clock else 0.0, list(body["shards"])))
        return 202, {}, b""


@dataclass
class Lane:
    function: str
    memory: int
    start: float  # model time the function started (after its cold start, for a worker)
    end: float  # model time its run returned
    report: dict[str, Any]
    shards: list[int]
    cpu: float  # this process's CPU seconds for the run (the index's taken off)


def _run(stack: Any, w: Wire, index: Index, function: str, memory: int, start: float, shards: list[int] | None,
         instant: bool = False) -> Lane:  # fmt: skip

    share = min(1.0, memory / FULL_VCPU_MB)
    clk: Dilated = Instant(start) if instant else Dilated(share, start)
    index.clock, index.delay = clk, 0.0 if instant else DELAY
    w.delay = 0.0  # the round trips are the clock's (Rounds), not slept
    service = stack.handlers[function].service
    timeout = stack.template.function_timeout(function)
    if service._pool is None:
        service._pool = ThreadPoolExecutor(max_workers=service._plan.workers, thread_name_prefix="sweep")
    pool = service._pool
    service._pool = Rounds(pool, clk, index.delay)
    redflag_clock.set_clock(clk.now, clk.sleep)
    cpu = time.process_time()
    try:
        report = service.run(time_left=lambda: start + timeout - clk.now(), shards=shards)
    finally:
        cpu = time.process_time() - cpu - clk.excluded
        redflag_clock.set_clock(stack.clock, stack.clock.sleep)
        service._pool = pool
    kept = shards if shards is not None else sorted(set(range(index.shards)) - {s for _, g in index.invokes for s in g})
    return Lane(function, memory, start, clk.now(), report.model_dump(), kept, cpu)


def _case(b: Any, w: Wire, index: Index, due: Callable[[int], int], n: int, t0: float, cold: dict[str, float]):
    """One scheduled run at ``t0``, a drain worker on the first shard it handed out (started cold), and
    one on the second (warm: a minute after a heavy one, Lambda still has its containers)."""
    index.fill(n, due)
    scheduled = _run(b.stack, w, index, b.sweep_fn, b.memory(b.sweep_fn), t0, None)
    lanes = [scheduled]
    invokes = list(index.invokes)
    memory = b.memory(b.drain_fn)
    for (sent, shards), start in zip(invokes, (cold["drain"], 0.0), strict=False):
        lanes.append(_run(b.stack, w, index, b.drain_fn, memory, sent + start, shards))
    return lanes, invokes


def _lateness(index: Index, lanes: list[Lane], invokes: list[tuple[float, list[int]]], worker: int) -> list[float]:
    """Every flag's lateness; the worker lane ``worker`` stands for each of the workers started."""
    by_shard: dict[int, list[float]] = {}
    for shard, at, due_at in index.flags:
        by_shard.setdefault(shard, []).append(at - due_at)
    out = [x for s in lanes[0].shards for x in by_shard.get(s, [])]
    if len(lanes) > worker:
        out += [x for s in lanes[worker].shards for x in by_shard.get(s, [])] * len(invokes)
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def cold_import(stack: Any, function: str) -> dict[str, Any]:
    """The handler's import in a fresh interpreter (its environment from the template): CPU seconds,
    and the process's peak RSS after it (VmHWM: the fork's pages before exec are not counted), MiB."""
    from redflag_local.standin.stack import LOCAL_ENV

    folder = stack.functions[function]
    probe = (
        "import importlib.util, time\n"
        "t = time.process_time()\n"
        f"spec = importlib.util.spec_from_file_location('app', {str(folder / 'app.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "print(time.process_time() - t, int(hwm.split()[1]) / 1024)\n"
    )
    env = os.environ | LOCAL_ENV | stack.function_env[function] | {"POWERTOOLS_METRICS_DISABLED": "true"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the second import finds its bytecode, as a built layer has it
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True,
                             cwd=folder)  # fmt: skip
        runs.append(tuple(float(x) for x in out.stdout.split()[-2:]))
    seconds, rss = runs[-1]
    measured: dict[str, Any] = {"seconds": seconds, "rss_mib": rss}
    return measured


def peak_memory(b: Any, w: Wire, index: Index, n: int, t0: float) -> dict[str, float]:
    """tracemalloc's peak (MiB) over one scheduled run finding ``n`` due, and the most keys it held."""
    index.fill(n, lambda i: int(t0) - 3600)
    tracemalloc.start()
    try:
        lane = _run(b.stack, w, index, b.sweep_fn, b.memory(b.sweep_fn), t0, None, instant=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"due": n, "peak_mib": peak / 2**20, "held": lane.report["held"], "flagged": lane.report["flagged"]}


def run(b: Any, w: Wire, due: int = DUE, repeat: int = 2, cold: dict[str, float] | None = None,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Both cases (the backlog best of ``repeat``: load only ever slows a run), the memory runs and the
    cold imports: a dict for the report.
    ``cold``: import seconds by function folder, as the cold section measured them (else timed here)."""

    stack = b.stack
    shards = int(stack.function_env[b.sweep_fn]["DUE_SHARDS"])
    index = Index(stack.table_name, shards)
    saved = dict(w.responders)
    w.responders.update(index.responders())
    w.mode, w.keep_bodies = "replay", False
    out: dict[str, Any] = {"due": due, "shards": shards, "delay": DELAY, "repeat": repeat}
    try:
        starts = {}
        for key, fn in (("scheduled", b.sweep_fn), ("drain", b.drain_fn)):
            measured = cold_import(stack, fn)  # the process's memory after import, and its CPU
            folder = stack.functions[fn].name
            if cold and folder in cold:  # the cold section's figure: a Lambda-like layer, medians
                measured |= {"seconds": cold[folder], "source": "cold section"}
            out[f"import_{key}"] = measured
            starts[key] = measured["seconds"] / min(1.0, b.memory(fn) / FULL_VCPU_MB)
        out["cold_start"] = starts
        t0 = float(math.ceil(stack.clock()))
        cases = {
            "minute": lambda i: int(t0) + (i * 60) // due,  # evenly over [t0, t0 + 60)
            "backlog": lambda i: int(t0) - 3600,  # an hour overdue
        }
        for name, when in cases.items():
            best = None
            for _ in range(repeat if name == "backlog" else 1):  # the drain time is the goal: best of repeat
                if progress:
                    progress(f"  sweeper: {due:,} due, {name} ...")
                lanes, invokes = _case(b, w, index, when, due, t0, starts)
                late, warm = _lateness(index, lanes, invokes, 1), _lateness(index, lanes, invokes, 2)
                flagged = lanes[0].report["flagged"] + (lanes[1].report["flagged"] * len(invokes) if invokes else 0)
                cold_lanes = lanes[:2]  # the run and a cold worker: what a heavy minute after a quiet one does
                last = max((at for s, at, _ in index.flags if any(s in lane.shards for lane in cold_lanes)),
                           default=t0)  # fmt: skip
                result = {
                    "lanes": [lane.__dict__ for lane in lanes],
                    "workers": len(invokes),
                    "worker_start": lanes[1].start - t0 if len(lanes) > 1 else None,
                    "flagged": flagged,
                    "left": sum(index.left(s) for lane in lanes for s in lane.shards),
                    "drain_seconds": last - t0,
                    "p50": pct(late, 0.5),
                    "p99": pct(late, 0.99),
                    "max": max(late, default=math.nan),
                    "warm": {"p50": pct(warm, 0.5), "p99": pct(warm, 0.99), "max": max(warm, default=math.nan)},
                    "rates": {lane.function: _rate(index, lane) for lane in lanes},
                    "cpu_per_flag": {lane.function: lane.cpu / max(1, lane.report["flagged"]) for lane in lanes},
                }
                key = "drain_seconds" if name == "backlog" else "p99"
                if best is None or result[key] < best[key]:
                    best = result
            out[name] = best
        w.delay = 0.0
        if progress:
            progress("  sweeper: peak memory ...")
        out["memory"] = [peak_memory(b, w, index, n, t0) for n in (due // 10, due)]
    finally:
        w.responders.clear()
        w.responders.update(saved)
        w.delay = 0.0
        index.clock = None
    return out


def _rate(index: Index, lane: Lane) -> float:
    """Flags a second from the function's start to its last flag (a backlog: its capacity)."""
    times = [at for shard, at, _ in index.flags if shard in lane.shards]
    return len(times) / (max(times) - lane.start) if times and max(times) > lane.start else math.nan


def summary(out: dict[str, Any]) -> str:
    m, bl = out["minute"], out["backlog"]
    return (
        f"minute: p50 {m['p50']:.2f} s, p99 {m['p99']:.2f} s, max {m['max']:.2f} s ({m['workers']} workers); "
        f"backlog: {bl['drain_seconds']:.1f} s, rates {bl['rates']}; memory: "
        + ", ".join(f"{x['due']:,} due {x['peak_mib']:.1f} MiB (held {x['held']})" for x in out["memory"])
    )
