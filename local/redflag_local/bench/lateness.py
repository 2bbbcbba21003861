"""How late is a red flag? The real handlers on moto, on a simulated clock, in three configurations:
the look-ahead sweeper (the template's default), the sweeper in passes mode, and TTL alone.

Each configuration deploys template.yaml into moto (``LocalStack``) and drives the real handlers:
product events go through the API handler in batches, the sweeper handler runs every simulated
minute (``rate(1 minute)``), DynamoDB TTL deletes each expired item on its own lateness, and stream
records reach the alerts handler after a modelled delivery delay. Lateness is the simulated time
the alerts handler sent a CS alert minus the timer's due time (the ``due_at`` in the alert).

The clock jumps from one thing that happens to the next (a discrete-event simulation). A sweeper
run is a thread that holds the clock while it works and hands it back when it waits (its
``clock.sleep``): only one thread runs at a time, so moto sees one call at a time, and two runs
overlap as they do on Lambda (a look-ahead run covers its minute plus 5 s).
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import random
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redflag.adapters import codec as items
from redflag.core import clock
from redflag.core.timers import TimerKey
from redflag_local.standin.stack import LocalStack, sample_event

SWEEP_EVERY = 60  # the template's SweepSchedule: rate(1 minute)
TTL_LATENESS = (8 * 60, 30 * 60)  # TTL deletes an item uniformly 8-30 min after it expires
# stream write -> alerts handler running: the record reaching the stream and the event source
# mapping's poll (4 polls/s per shard) ~0-1 s, plus MaximumBatchingWindowInSeconds = 1 (template)
DELIVERY_DELAY = (1.0, 2.0)  # uniform, seconds, drawn per stream record
POST_EVERY = 5  # the product's backend flushes the events of each 5 s slot in one request (<= 100 events)
BATCH = 100  # events per POST /v1/events (the API maximum)
GET_RECORDS_MAX = 1000  # records per stream read
QUIET = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}
# the stand-in reads the due index every 20 s (LOCAL_ENV, for test speed); the bench runs the
# template's shipped interval (SweepSettings.sweep_poll_seconds = 5)
SHIPPED_POLL = {"SWEEP_POLL_SECONDS": "5"}


@dataclass(frozen=True)
class Config:
    name: str
    parameters: dict[str, str]  # stack parameters (template.yaml) for this configuration


CONFIGS = (
    Config("look-ahead (default)", {}),
    Config("passes, 3 a minute", {"SweepMode": "passes"}),
    Config("TTL only (8-30 min late)", {"SweepSchedule": "off"}),
)


@dataclass(frozen=True)
class Plan:
    """What the product does: ``timers`` task runs, each on one of ``rules`` tasks."""

    timers: int = 1000
    seed: int = 1
    thresholds: tuple[int, int] = (2 * 60, 40 * 60)  # each rule's threshold_seconds: uniform, whole seconds
    rules: int = 40
    start_window: int = 30 * 60  # starts uniform over this window
    struggle: float = 0.5  # share never completed; the others complete at 10-90 % of the threshold

    def short(self) -> Plan:
        """A plan over a few simulated minutes (the test): thresholds 1-3 min, starts over 2 min."""
        return Plan(self.timers, self.seed, (60, 180), min(self.rules, 8), 120, self.struggle)


@dataclass(frozen=True)
class PlannedTimer:
    user_id: str
    task: str
    start: int  # seconds after the run begins
    threshold: int
    finish: int | None  # None: never completed, so it must alert exactly once
    ttl_lateness: float

    @property
    def due(self) -> int:
        return self.start + self.threshold

    @property
    def key(self) -> TimerKey:
        return TimerKey(user_id=self.user_id, task=self.task)


@dataclass
class Result:
    config: str
    timers: int
    expected: int  # timers never completed
    alerts: int  # CS alerts sent
    emails: int
    duplicates: int  # alerts beyond the first per (user, task, instance), CS and email together
    missing: int  # never-completed timers without a CS alert
    unexpected: int  # CS alerts for timers that were completed
    lateness: list[float] = field(default_factory=list)  # seconds, one per CS alert
    wall_seconds: float = 0.0
    sweeps: int = 0  # scheduled sweeper runs
    queries: int = 0  # due-index queries the sweeper made
    index_checked: bool = True  # the due-index stand-in answered as moto does, every time it was checked
    index_checks: int = 0

    @property
    def ok(self) -> bool:
        counts = self.alerts == self.emails == self.expected
        return counts and self.index_checked and not (self.duplicates or self.missing or self.unexpected)

    def pct(self, q: float) -> float:
        """Nearest-rank percentile (q in 0..1)."""
        ordered = sorted(self.lateness)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def make_plan(plan: Plan) -> tuple[dict[str, dict[str, Any]], list[PlannedTimer]]:
    rng = random.Random(plan.seed)
    rules = {
        f"bench_{i:02d}": {"label": f"bench task {i}", "threshold_seconds": rng.randint(*plan.thresholds)}
        for i in range(plan.rules)
    }
    planned = []
    for i in range(plan.timers):
        task = rng.choice(sorted(rules))
        threshold = rules[task]["threshold_seconds"]
        start = rng.randrange(plan.start_window)
        finish = None if rng.random() < plan.struggle else start + rng.randint(threshold // 10, threshold * 9 // 10)
        planned.append(PlannedTimer(f"bench-{i:05d}", task, start, threshold, finish, rng.uniform(*TTL_LATENESS)))
    return rules, planned


def _events(timer: PlannedTimer, t0: float) -> list[tuple[int, dict[str, Any]]]:
    base = {"task": timer.task, "user_id": timer.user_id, "user": {"email": f"{timer.user_id}@example.com"}}
    out = [(timer.start, base | {"type": "task_started", "event_id": f"{timer.user_id}-s"})]
    if timer.finish is not None:
        out.append((timer.finish, base | {"type": "task_completed", "event_id": f"{timer.user_id}-c"}))
    return [(at, e | {"occurred_at": datetime.fromtimestamp(t0 + at, UTC).isoformat()}) for at, e in out]


@contextmanager
def quiet() -> Iterator[None]:
    """Keep the handlers' output off the table: with metrics disabled, Powertools still prints an
    EMF blob every 100 values of a metric, and warns when a handler recorded none."""
    with open(os.devnull, "w") as devnull, redirect_stdout(devnull), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


# --- the due index, read quickly -----------------------------------------------------------------

WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "BatchExecuteStatement"}
)


class DueIndex:
    """Answers the sweeper's due-index queries from the items moto holds, with DynamoDB's semantics for
    this one access pattern (KEYS_ONLY entries of items that carry both index keys, ``due_shard = :s AND
    due_at <= :until``, ascending by ``due_at``, paged by ``Limit``). moto answers such a query by
    sorting and scanning the whole table, tens of ms a query at a few thousand items, and the look-ahead
    sweeper makes 96 a minute: this keeps the index sorted between writes. Same answers, moto's time
    taken out (``check`` compares them with moto's own)."""

    def __init__(self, stack: LocalStack, index: str = "due-index") -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        self.stack = stack
        self.index = index
        self.table = stack.table_name
        self._backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][stack.ddb.meta.region_name]
        self._shards: dict[int, list[tuple[int, str, str]]] | None = None
        self._bypass = False
        self.rebuilds = 0
        self.answered = 0
        self.checked = 0
        self.mismatches = 0
        self.check_every = 1000  # every Nth query is also asked of moto, and the answers compared

    def observe(self, service: str, operation: str, body: bytes) -> None:
        if service == "dynamodb" and operation in WRITES and self.table.encode() in body:
            self._shards = None

    def _build(self) -> dict[int, list[tuple[int, str, str]]]:
        shards: dict[int, list[tuple[int, str, str]]] = {}
        table = self._backend.get_table(self.table)
        for by_range in table.items.values():
            for item in by_range.values():
                shard, due = item.attrs.get("due_shard"), item.attrs.get("due_at")
                if shard is None or due is None or shard.type != "N" or due.type != "N":
                    continue
                entry = (int(float(due.value)), item.hash_key.value, item.range_key.value)
                shards.setdefault(int(shard.value), []).append(entry)
        for entries in shards.values():
            entries.sort()
        self.rebuilds += 1
        return shards

    def answer(self, body: dict[str, Any]) -> Any:
        if self._bypass or body.get("IndexName") != self.index or body.get("TableName") != self.table:
            return None
        from redflag_local.bench.wire import json_answer

        self.answered += 1
        if self.answered % self.check_every == 0 and "ExclusiveStartKey" not in body:
            values = body["ExpressionAttributeValues"]
            self.check(int(values[":s"]["N"]), int(float(values[":until"]["N"])))

        if self._shards is None:
            self._shards = self._build()
        values = body["ExpressionAttributeValues"]
        shard, until = int(values[":s"]["N"]), int(float(values[":until"]["N"]))
        entries = [e for e in self._shards.get(shard, []) if e[0] <= until]
        start = body.get("ExclusiveStartKey")
        if start:
            after = (int(float(start["due_at"]["N"])), start["pk"]["S"], start["sk"]["S"])
            entries = [e for e in entries if e > after]
        page = entries[: int(body.get("Limit", 1_000_000))]

        def key(e: tuple[int, str, str]) -> dict[str, Any]:
            return {"pk": {"S": e[1]}, "sk": {"S": e[2]}, "due_shard": {"N": str(shard)}, "due_at": {"N": str(e[0])}}

        out: dict[str, Any] = {"Count": len(page), "ScannedCount": len(page)}
        if body.get("Select") != "COUNT":  # a count has no items
            out["Items"] = [key(e) for e in page]
        if len(page) < len(entries):
            out["LastEvaluatedKey"] = key(page[-1])
        return json_answer(out)

    def check(self, shard: int, until: int) -> bool:
        """The stand-in's answer equals moto's for this query (keys, in order)."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": self.index,
            "KeyConditionExpression": "due_shard = :s AND due_at <= :until",
            "ExpressionAttributeValues": {":s": {"N": str(shard)}, ":until": {"N": str(until)}},
        }
        self._bypass = True
        try:
            theirs = self.stack.ddb.query(**query)["Items"]
        finally:
            self._bypass = False
        if self._shards is None:
            self._shards = self._build()
        mine = [e for e in self._shards.get(shard, []) if e[0] <= until]
        same = [(e[1], e[2]) for e in mine] == [(i["pk"]["S"], i["sk"]["S"]) for i in theirs]
        self.checked += 1
        self.mismatches += not same
        return same


# --- the discrete-event world -------------------------------------------------------------------

POST, SWEEP, TTL, DELIVER = range(4)  # what happens first when several fall on the same instant


class World:
    """An agenda of what happens when, and the sweeper runs in flight. The main thread owns the
    clock; a sweeper run (a thread) gets it until it waits, then hands it back."""

    def __init__(self, stack: LocalStack, rng: random.Random) -> None:
        self.stack = stack
        self.t0 = stack.clock()
        self.rng = rng
        self.agenda: list[tuple[float, int, int, Any]] = []  # (at, kind, tie-break, payload): a heap
        self.sleepers: list[tuple[float, int, threading.Event]] = []  # (wake, tie-break, resume): a heap
        self.seq = itertools.count()
        self.back = threading.Event()  # set when the running sweeper thread waits or ends
        self.runs: list[threading.Thread] = []
        self.pending: list[tuple[float, int, dict[str, Any]]] = []  # stream records not yet delivered
        self.delivered: list[float] = []  # simulated send time of each CS alert, in order
        self.errors: list[BaseException] = []

    def at(self, when: float, kind: int, payload: Any = None) -> None:
        heapq.heappush(self.agenda, (when, kind, next(self.seq), payload))

    def now(self) -> float:
        return self.stack.clock() - self.t0

    # --- what a sweeper thread calls ----------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """``redflag.core.clock`` sleep: a sweeper run waits; the world goes on until its wake-up time."""
        if threading.current_thread() is threading.main_thread():
            self.stack.clock.advance(max(0.0, seconds))
            return
        resume = threading.Event()
        heapq.heappush(self.sleepers, (self.stack.clock() + max(0.0, seconds), next(self.seq), resume))
        self.back.set()
        resume.wait()

    def _sweep(self) -> None:
        try:
            function = self.stack.template.function_for("sweep_due_timers")
            self.stack.invoke(function, sample_event("sweep_due_timers/scheduled.json"))
        except BaseException as exc:  # surfaced by run()
            self.errors.append(exc)
        finally:
            self.back.set()

    def _hand_over(self, start: Callable[[], None]) -> None:
        self.back.clear()
        start()
        self.back.wait()
        if self.errors:
            raise self.errors[0]
        self.stack.run_async_invokes()  # workers a run started (a backlog) run now

    # --- the main loop --------------------------------------------------------------------------

    def run(self) -> None:
        while self.agenda or self.sleepers:
            next_event = self.agenda[0][0] + self.t0 if self.agenda else math.inf
            if self.sleepers and self.sleepers[0][0] <= next_event:
                wake, _, resume = heapq.heappop(self.sleepers)
                self.stack.clock.t = max(self.stack.clock.t, wake)
                self._hand_over(resume.set)
            else:
                when, kind, _, payload = heapq.heappop(self.agenda)
                self.stack.clock.t = max(self.stack.clock.t, self.t0 + when)
                self._do(kind, payload, when)
            self._collect()
        for thread in self.runs:
            thread.join()

    def _do(self, kind: int, payload: Any, when: float) -> None:
        stack = self.stack
        if kind == POST:
            status, body = stack.post_events({"events": payload})
            outcomes = {r["status"] for r in body.get("results", [])}
            if status != 202 or not outcomes <= {"armed", "completed"}:
                raise RuntimeError(f"POST /v1/events answered {status}: {sorted(outcomes)}")
        elif kind == SWEEP:
            thread = threading.Thread(target=self._sweep, name="sweep", daemon=True)
            self.runs.append(thread)
            self._hand_over(thread.start)
        elif kind == TTL:
            stack.ttl_delete(**items.key_of(payload), only_if_expired=True)
        else:
            ready = []
            while self.pending and self.pending[0][0] <= when:  # not now(): t0 + when - t0 != when in floats
                ready.append(heapq.heappop(self.pending)[2])
            if ready:
                stack.deliver_stream(ready)
            self.delivered.extend([stack.clock()] * (len(stack.cs_alerts()) - len(self.delivered)))

    def _collect(self) -> None:
        """What was just written reaches the stream now; each record reaches the alerts handler
        after its own modelled delay."""
        while True:
            records = self.stack.read_stream()
            for record in self.stack.filter_stream(records):
                ready = self.now() + self.rng.uniform(*DELIVERY_DELAY)
                heapq.heappush(self.pending, (ready, next(self.seq), record))
                self.at(ready, DELIVER)
            if len(records) < GET_RECORDS_MAX:
                return


def simulate(config: Config, rules: dict[str, dict[str, Any]], planned: list[PlannedTimer], seed: int) -> Result:
    """One configuration, end to end on a fresh stack."""
    began = time.perf_counter()
    sweeper = config.parameters.get("SweepSchedule") != "off"
    from redflag_local.bench.wire import Wire, wire

    w = Wire()
    with quiet(), LocalStack(parameters=config.parameters, env_overrides=QUIET | SHIPPED_POLL) as stack, wire(w):
        index = DueIndex(stack)
        w.observers.append(index.observe)
        w.responders[("dynamodb", "Query")] = index.answer
        stack.put_rules(rules)
        world = World(stack, random.Random(seed))
        clock.set_clock(stack.clock, world.sleep)
        posts: dict[int, list[dict[str, Any]]] = {}
        for timer in planned:
            for when, event in _events(timer, world.t0):
                posts.setdefault(math.ceil(when / POST_EVERY) * POST_EVERY, []).append(event)
        for when, events in posts.items():
            for i in range(0, len(events), BATCH):
                world.at(when, POST, events[i : i + BATCH])
        last_due = max(t.due for t in planned)
        sweeps = list(range(SWEEP_EVERY, last_due + 2 * SWEEP_EVERY, SWEEP_EVERY)) if sweeper else []
        for when in sweeps:
            world.at(when, SWEEP)
        for timer in planned:  # TTL reaches every timer, completed or not; it deletes only expired ones
            world.at(timer.due + timer.ttl_lateness, TTL, timer.key)
        world.run()
        result = _check(config.name, planned, stack, world.delivered, time.perf_counter() - began)
        result.sweeps = len(sweeps)
        for shard in range(8):
            index.check(shard, int(stack.clock()))
        result.index_checked = index.mismatches == 0
        result.index_checks = index.checked
        result.queries = w.calls[("dynamodb", "Query")]
        return result


def _check(config: str, planned: list[PlannedTimer], stack: LocalStack, delivered: list[float], wall: float) -> Result:
    cs = [a["message"] for a in stack.cs_alerts()]
    emails = [e["to"] for e in stack.emails()]
    expected = {t.user_id for t in planned if t.finish is None}
    alerted = Counter((m["user_id"], m["task"], m["instance_id"]) for m in cs)
    duplicates = sum(n - 1 for n in alerted.values()) + sum(n - 1 for n in Counter(emails).values())
    users = {user for user, _, _ in alerted}
    lateness = [sent - datetime.fromisoformat(m["due_at"]).timestamp() for m, sent in zip(cs, delivered, strict=True)]
    return Result(
        config=config,
        timers=len(planned),
        expected=len(expected),
        alerts=len(cs),
        emails=len(emails),
        duplicates=duplicates,
        missing=len(expected - users),
        unexpected=len(users - expected),
        lateness=lateness,
        wall_seconds=wall,
    )


def run(plan: Plan, progress: Callable[[str], None] | None = None, configs=CONFIGS) -> list[Result]:
    """Every configuration on the same planned timers."""
    rules, planned = make_plan(plan)
    results = []
    for config in configs:
        if progress:
            progress(f"lateness: {config.name} ...")
        results.append(simulate(config, rules, planned, plan.seed))
    return results


def table(results: list[Result]) -> str:
    head = f"{'configuration':<26} {'timers':>6} {'expect':>6} {'alerts':>6} {'emails':>6} {'dups':>4}"
    head += f" {'min s':>7} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'wall s':>6}"
    lines = [head, "-" * len(head)]
    for r in results:
        lateness = (min(r.lateness, default=math.nan), r.pct(0.5), r.pct(0.99), max(r.lateness, default=math.nan))
        lines.append(
            f"{r.config:<26} {r.timers:>6} {r.expected:>6} {r.alerts:>6} {r.emails:>6} {r.duplicates:>4} "
            + " ".join(f"{x:>7.1f}" for x in lateness)
            + f" {r.wall_seconds:>6.1f}"
        )
    return "\n".join(lines)
