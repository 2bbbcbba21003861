"""AWS calls, write units and the latency model: the real handlers on moto, their calls counted at
the wire, then replayed without moto at a fixed server time per call (see ``bench_wire``).

Counting (``calls``): one stack, default template, the functions' pools at their shipped widths; each
step is a real request (or sweep, or stream batch) and its calls are counted per service, operation
and table. Item sizes come from the items moto holds after each step (DynamoDB's size rules), and
write units from them: 1 WRU per KB of the larger of the item before and after a write, plus the
sparse index's KEYS_ONLY entry (a write when it appears, one when it goes, two when it moves).

The latency model (``latency``) records each scenario's answers from moto once, then replays the
scenario with no moto at all: every call sleeps ``delay`` (the modelled server + network time) and
gets its recorded answer. What is left is the client's own CPU and the injected time, with the
functions' real thread pools. Lambda gives a function CPU in proportion to its memory (1,769 MB =
one vCPU): ``on_lambda`` stretches the measured CPU by that share (this machine's core counted as one
vCPU) to model the deployed function.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import boto3

from redflag.adapters import aws
from redflag.edge.settings import AlertSettings, IngestSettings, SweepSettings
from redflag_local.bench import sweep as bench_sweep
from redflag_local.bench.goals import DELAY, FULL_VCPU_MB
from redflag_local.bench.lateness import QUIET, SHIPPED_POLL, quiet
from redflag_local.bench.wire import Wire, wire
from redflag_local.standin.stack import LocalStack

TASK = "bench_task"
RULE = {
    "label": "a bench task",
    "threshold_seconds": 600,
    "track": {"started": "Bench Task Started", "completed": "Bench Task Completed"},  # the tracking API's calls
}


def shipped_pools() -> dict[str, str]:
    """The functions' pool widths as shipped (the settings' defaults): the stand-in's LOCAL_ENV runs
    them one worker wide for moto; counting and recording serialize moto calls instead."""
    return {
        "INGEST_CONCURRENCY": str(IngestSettings.model_fields["ingest_concurrency"].default),
        "SWEEP_WORKERS": str(SweepSettings.model_fields["sweep_workers"].default),
        "ALERT_CHANNEL_CONCURRENCY": str(AlertSettings.model_fields["alert_channel_concurrency"].default),
    }


# --- DynamoDB item sizes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)


def _value_size(av: dict[str, Any]) -> int:
    ((kind, value),) = av.items()
    if kind == "S":
        return len(value.encode())
    if kind == "N":
        digits = value.lstrip("-").replace(".", "").lstrip("0").rstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(value) if isinstance(value, bytes | bytearray) else len(value) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in value.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in value)
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: v}) for v in value)
    raise ValueError(kind)


def item_size(item: dict[str, Any] | None) -> int:
    """Bytes DynamoDB counts for an item in wire form: attribute names plus values."""
    return sum(len(name.encode()) + _value_size(v) for name, v in (item or {}).items())


def write_units(before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
    """A PutItem/UpdateItem/DeleteItem is billed on the larger of the item before and after, 1 KB a unit."""
    return max(1, math.ceil(max(item_size(before), item_size(after)) / 1024))


def index_writes(before: dict[str, Any] | None, after: dict[str, Any] | None, keys=("due_shard", "due_at")) -> int:
    """Writes to a KEYS_ONLY sparse index: an entry appears (1), goes (1), moves (2) or stays (0)."""

    def entry(item: dict[str, Any] | None) -> tuple | None:
        if not item or any(k not in item for k in keys):
            return None
        return tuple(json.dumps(item[k], sort_keys=True) for k in keys)

    old, new = entry(before), entry(after)
    if old == new:
        return 0
    return 2 if old and new else 1


# --- steps --------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    units: int  # events (or timers, or alerts) the step handled
    calls: Counter = field(default_factory=Counter)  # (service, operation, table) -> calls

    def per_unit(self) -> dict[str, float]:
        return {f"{t + ' ' if t else ''}{op}": n / self.units for (_, op, t), n in sorted(self.calls.items())}


class Bench:
    """One stack for counting and recording; replays reuse its handlers with moto left out."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.tables = {
            stack.physical[name]: name
            for name, res in stack.template.sam["Resources"].items()
            if res["Type"] == "AWS::DynamoDB::Table"
        }
        self.events_fn = stack.template.function_for("events_to_timers")
        self.sweep_fn = stack.template.function_for("sweep_due_timers")
        self.drain_fn = stack.template.function_for("sweep_drain")
        self.alerts_fn = stack.template.function_for("timers_to_alerts")
        self.steps: list[Step] = []

    def memory(self, function: str) -> int:
        sam = self.stack.template.sam
        value = sam["Resources"][function]["Properties"].get("MemorySize") or sam["Globals"]["Function"].get(
            "MemorySize", 128
        )
        if isinstance(value, dict) and "Ref" in value:  # a parameter: the deployed value, else its default
            value = self.stack.parameters.get(value["Ref"], sam["Parameters"][value["Ref"]]["Default"])
        return int(value)

    def counted(self, w: Wire, name: str, units: int, action: Callable[[], Any]) -> Any:
        w.reset()
        w.keep_bodies = True
        out = action()
        step = Step(name, units)
        for service, operation, body in w.bodies:
            table = ""
            if service == "dynamodb":
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    payload = {}
                names = (
                    [payload.get("TableName")] if payload.get("TableName") else list(payload.get("RequestItems", {}))
                )
                names += [next(iter(op.values())).get("TableName", "") for op in payload.get("TransactItems", [])]
                table = "+".join(sorted({self.tables.get(n, n) for n in names if n}))
            step.calls[(service, operation, table)] += 1
        self.steps.append(step)
        return out

    def post(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        status, body = self.stack.post_events({"events": events})
        if status != 202:
            raise RuntimeError(f"POST /v1/events answered {status}: {body}")
        return body

    def track(self, calls: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /v1/batch to the tracking API (Basic auth with the stack's write key)."""
        import base64

        from redflag_local.standin.stack import sample_event

        function = self.stack.template.function_for("tracking_api")
        if not hasattr(self, "_write_key"):
            arn = self.stack.function_env[function]["WRITE_KEYS_SECRET_ARN"]
            self._write_key = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        event = sample_event("tracking_api/post_batch.json")
        event["body"] = json.dumps({"batch": calls})
        event["headers"]["Authorization"] = "Basic " + base64.b64encode(f"{self._write_key}:".encode()).decode()
        event["multiValueHeaders"].pop("Authorization", None)
        out = self.stack.invoke(function, event)
        if out["statusCode"] != 200:
            raise RuntimeError(f"POST /v1/batch answered {out['statusCode']}: {out.get('body')}")
        return json.loads(out["body"])

    def typed(self, keys: list[dict[str, str]], table: str = "TimersTable") -> dict[tuple[str, str], dict[str, Any]]:
        """Items in wire form (for their sizes), read without counting."""
        out = {}
        name = self.stack.physical[table]
        for i in range(0, len(keys), 100):
            request = {name: {"Keys": [{k: {"S": v} for k, v in key.items()} for key in keys[i : i + 100]]}}
            for raw in self.stack.ddb.batch_get_item(RequestItems=request)["Responses"][name]:
                out[(raw["pk"]["S"], raw.get("sk", {}).get("S", ""))] = raw
        return out


def events(kind: str, n: int, prefix: str, t: float, extra: Callable[[int], dict] | None = None) -> list[dict]:
    at = datetime.fromtimestamp(t, UTC).isoformat()
    out = []
    for i in range(n):
        e = {
            "type": kind,
            "task": TASK,
            "user_id": f"{prefix}-{i:05d}",
            "event_id": f"{prefix}-{i:05d}-{kind}",
            "occurred_at": at,
            "user": {"email": f"{prefix}-{i:05d}@example.com", "name": "Ada Lovelace", "segment": "pro"},
        }
        out.append(e | (extra(i) if extra else {}))
    return out


def calls(kind: str, n: int, prefix: str, t: float, event: str = "") -> list[dict]:
    """The tracking API's calls as an SDK sends them: one user each (their records: the worst case)."""
    at = datetime.fromtimestamp(t, UTC).isoformat()
    out = []
    for i in range(n):
        c: dict[str, Any] = {
            "type": kind,
            "userId": f"{prefix}-{i:05d}",
            "messageId": f"{prefix}-{i:05d}-{kind}{event}",
        }
        c |= {"timestamp": at, "context": {"library": {"name": "analytics-python", "version": "2.4.0"}}}
        if kind == "track":
            c |= {"event": event, "properties": {"plan": "pro"}}
        if kind == "identify":
            c["traits"] = {"email": f"{prefix}-{i:05d}@example.com", "name": "Ada Lovelace", "segment": "pro"}
        out.append(c)
    return out


def timer_keys(prefix: str, n: int) -> list[dict[str, str]]:
    return [{"pk": f"{prefix}-{i:05d}", "sk": f"task#{TASK}#default"} for i in range(n)]


# --- 2. calls and write units -------------------------------------------------------------------


@dataclass
class Calls:
    steps: list[Step]
    sizes: dict[str, float]  # item sizes, bytes (mean over the step's items)
    wru: dict[str, float]  # write units, per task / per flag / per channel
    rru: dict[str, float]


def count(b: Bench, n: int = 100) -> Calls:
    stack, w = b.stack, Wire()
    sizes: dict[str, float] = {}
    wru: dict[str, float] = {}
    with wire(w):
        now = stack.clock()
        # a container's first request also reads the rules (then cached RULES_CACHE_SECONDS): kept apart
        b.counted(w, "rules", 1, lambda: b.post(events("task_started", n, "w", now)))
        first = b.steps.pop()
        rules_step = Step("rules (per container, per RulesCacheSeconds)", 1)
        rules_step.calls = Counter({k: v for k, v in first.calls.items() if k[0] == "ssm"})
        keys = timer_keys("t", n)
        b.counted(w, "task_started (new timer)", n, lambda: b.post(events("task_started", n, "t", now)))
        armed = b.typed(keys)
        b.counted(w, "same events again (duplicate event_id)", n, lambda: b.post(events("task_started", n, "t", now)))
        stack.clock.advance(60)
        b.counted(w, "task_completed", n, lambda: b.post(events("task_completed", n, "t", stack.clock())))
        done = b.typed(keys)
        pairs = events("task_started", n // 2, "p", stack.clock())
        pairs = [
            e
            for pair in zip(pairs, events("task_completed", n // 2, "p", stack.clock() + 1), strict=True)
            for e in pair
        ]
        b.counted(w, "start + completion of one timer, one request", n, lambda: b.post(pairs))
        b.counted(w, "task_failed", n, lambda: b.post(events("task_failed", n, "f", stack.clock())))
        b.counted(w, "user_active", n, lambda: b.post(events("user_active", n, "a", stack.clock())))
        # the tracking API (/v1/batch, Segment-style calls), a user per call: each call also writes its user's
        # record (activity, profile), read in the same BatchGetItem; an SDK batching one user's calls shares it
        at = stack.clock()
        b.counted(w, "tracking: identify (profile)", n, lambda: b.track(calls("identify", n, "k", at)))
        b.counted(w, "tracking: track started (timer + user record)", n,
                  lambda: b.track(calls("track", n, "k", at, "Bench Task Started")))  # fmt: skip
        stack.clock.advance(60)
        b.counted(w, "tracking: track completed", n,
                  lambda: b.track(calls("track", n, "k", stack.clock(), "Bench Task Completed")))  # fmt: skip
        users = b.typed([{"pk": f"k-{i:05d}", "sk": "user"} for i in range(n)])
        sizes["user record (profile + activity)"] = statistics.fmean([item_size(v) for v in users.values()])
        wru["tracking API: user record, per call"] = statistics.fmean([write_units(None, v) for v in users.values()])

        # the sweeper: timers due now, one scheduled run (look-ahead: reads every 5 s for 65 s)
        flag_keys = timer_keys("s", n)
        b.post(events("task_started", n, "s", stack.clock() - RULE["threshold_seconds"] + 1))
        before_flag = b.typed(flag_keys)
        stack.clock.advance(2)
        stack.read_stream()  # the stream so far: only the flags' records from here on
        run = b.counted(w, "sweeper: one scheduled run", n, stack.sweep)
        flagged = b.typed(flag_keys)
        records = stack.filter_stream(stack.read_stream())
        size = int(b.stack.template.function_event(b.alerts_fn, "DynamoDB").get("BatchSize", 100))

        def deliver() -> None:
            for i in range(0, len(records), size):
                stack.invoke(b.alerts_fn, {"Records": records[i : i + size]})

        b.counted(w, "alerts: email + CS per red flag", len(records), deliver)
        idem = _scan(stack, "IdempotencyTable")

    def mean(values: list[float]) -> float:
        return statistics.fmean(values) if values else math.nan

    k_armed = list(armed)
    sizes["timer armed (event_id on)"] = mean([item_size(armed[k]) for k in k_armed])
    sizes["timer completed"] = mean([item_size(done[k]) for k in k_armed if k in done])
    sizes["timer flagged"] = mean([item_size(v) for v in flagged.values()])
    sizes["idempotency record"] = mean([item_size(v) for v in idem])
    wru["task: start"] = mean([write_units(None, armed[k]) for k in k_armed])
    wru["task: start, index entry"] = mean([index_writes(None, armed[k]) for k in k_armed])
    wru["task: completion"] = mean([write_units(armed[k], done.get(k)) for k in k_armed])
    wru["task: completion, index entry"] = mean([index_writes(armed[k], done.get(k)) for k in k_armed])
    wru["flag (sweeper)"] = mean([write_units(before_flag[k], flagged.get(k)) for k in before_flag])
    wru["flag, index entry"] = mean([index_writes(before_flag[k], flagged.get(k)) for k in before_flag])
    # an alert channel: its claim in a transaction (2 WRU a KB), then its result in a batched write (1 a KB)
    wru["alert channel (idempotency claim + result)"] = mean([3 * write_units(None, v) for v in idem])
    rru = {"task: start (consistent batch read, <= 4 KB)": 1.0, "task: completion": 1.0}
    steps = [rules_step, *b.steps]
    b.steps = []
    result = Calls(steps, sizes, wru, rru)
    result.sweep_report = run  # type: ignore[attr-defined]
    return result


def _scan(stack: LocalStack, table: str) -> list[dict[str, Any]]:
    name = stack.physical[table]
    pages = stack.ddb.get_paginator("scan").paginate(TableName=name)
    return [raw for page in pages for raw in page["Items"]]


# --- 3. the latency model ------------------------------------------------------------------------


@dataclass
class Timing:
    wall: float  # seconds
    cpu: float  # process CPU seconds (every thread)

    def on_lambda(self, memory_mb: int, concurrent: bool = False) -> float:
        """Modelled duration on a function with ``memory_mb``: its CPU share is memory / 1,769 MB.
        Sequential work: the CPU stretches and the waits stay (wall + cpu (1/share - 1)); concurrent
        work whose waits overlap the CPU: the larger of the stretched CPU and the wall."""
        share = min(1.0, memory_mb / FULL_VCPU_MB)
        if concurrent:
            return max(self.cpu / share, self.wall)
        return self.wall + self.cpu * (1 / share - 1)


def timed(action: Callable[[], Any]) -> Timing:
    c, t = time.process_time(), time.perf_counter()
    action()
    return Timing(time.perf_counter() - t, time.process_time() - c)


def median_timing(samples: list[Timing]) -> Timing:
    return Timing(statistics.median(s.wall for s in samples), statistics.median(s.cpu for s in samples))


def alternate(runs: dict[str, Callable[[], Any]], repeat: int, before: Callable[[], None] | None = None):
    """Each run ``repeat`` times, interleaved (a, b, a, b, ...) so load on the machine hits all alike."""
    samples: dict[str, list[Timing]] = {k: [] for k in runs}
    for _ in range(repeat):
        for name, action in runs.items():
            if before:
                before()
            samples[name].append(timed(action))
    return {k: median_timing(v) for k, v in samples.items()}, samples


@dataclass
class Latency:
    request: dict[str, Timing]  # a 100-event request (starts, completions) and a 1-event one, at 0 and 5 ms
    request_calls: dict[str, int]
    ingest: dict[str, Timing]  # 1,000 events through the handler vs a bare put_item loop, no server time
    ingest_samples: dict[str, list[Timing]]
    ingest_events: int
    ingest_puts: int
    sweeper: dict[str, Any]
    alerts: dict[str, Any]
    memory: dict[str, int]
    repeat: int


def latency(b: Bench, repeat: int = 5, request_events: int = 100, ingest_events: int = 1000,
            due: int = 100_000, alert_batches: int = 3, cold: dict[str, float] | None = None,
            progress: Callable[[str], None] | None = None) -> Latency:  # fmt: skip
    stack, w = b.stack, Wire(mode="record")
    with wire(w):
        # -- record. A 100-event request of starts (new timers); one of completions, of timers armed
        # by two other requests (so its batched read is its own, answered with the 100 open timers);
        # a 1-event request
        now = stack.clock()
        starts = events("task_started", request_events, "L", now)
        armed = events("task_started", request_events, "M", now)
        completions = events("task_completed", request_events, "M", now + 30)
        single = events("task_started", 1, "S", now)
        for request in (starts, armed[: request_events // 2], armed[request_events // 2 :], completions, single):
            b.post(request)
        # the ingest run: 1,000 events = 500 tasks started, then completed, 100 a request
        half = ingest_events // 2
        batches = [events("task_started", half, "I", now)[i : i + 100] for i in range(0, half, 100)]
        batches += [events("task_completed", half, "I", now + 30)[i : i + 100] for i in range(0, half, 100)]
        for batch in batches:
            b.post(batch)
        puts = [
            json.loads(body)["Item"]
            for (service, op, body) in w.recorded
            if service == "dynamodb" and op == "PutItem" and b'"I-' in body
        ]
        # one red flag through the alerts function, for the answers' shapes
        b.post(events("task_started", 1, "R", stack.clock() - RULE["threshold_seconds"] + 1))
        stack.clock.advance(2)
        stack.read_stream()
        stack.sweep()
        records = stack.filter_stream(stack.read_stream())
        stack.invoke(b.alerts_fn, {"Records": records[:1]})

        # -- replay: no moto from here on
        w.mode = "replay"
        w.keep_bodies = False

        def at(delay: float, action: Callable[[], Any]) -> Callable[[], Any]:
            def run() -> Any:
                w.delay = delay
                return action()

            return run

        runs = {}
        for name, request in (("starts", starts), ("completions", completions), ("single", single)):
            runs[f"{name}, 0 ms"] = at(0, lambda r=request: b.post(r))
            runs[f"{name}, 5 ms"] = at(DELAY, lambda r=request: b.post(r))
        req, _ = alternate(runs, repeat, before=w.reset)
        w.reset()
        b.post(starts)
        request_calls = {op: n for (_, op), n in w.calls.items()}

        # -- 1,000 events through the handler vs a bare put_item loop: no server time, client CPU only
        client = boto3.client("dynamodb", config=aws.CONFIG)
        table = stack.table_name
        service = stack.handlers[b.events_fn].service
        shipped = service._limits

        def handler(width: int | None = None) -> Callable[[], None]:
            def run() -> None:
                service._limits = replace(shipped, workers=width) if width else shipped
                try:
                    for batch in batches:
                        b.post(batch)
                finally:
                    service._limits = shipped

            return run

        def bare() -> None:
            for item in puts:
                client.put_item(TableName=table, Item=item)

        w.delay = 0
        ingest, ingest_samples = alternate(
            {"handler": handler(), "handler, 1 wide": handler(1), "bare put_item loop": bare}, repeat, before=w.reset
        )

        # -- the sweeper: ``due`` timers falling due within a minute, and already due (bench/sweep.py)
        sweeper = bench_sweep.run(b, w, due=due, repeat=2 if repeat > 2 else 1, cold=cold, progress=progress)

        # -- the alerts function: batches of the template's BatchSize, every record a red flag (2 channels)
        alerts = _alerts(b, w, records[0], alert_batches, repeat)

    memory = {
        "events": b.memory(b.events_fn),
        "sweeper": b.memory(b.sweep_fn),
        "drain": b.memory(b.drain_fn),
        "alerts": b.memory(b.alerts_fn),
    }
    return Latency(
        req, request_calls, ingest, ingest_samples, len(batches) * 100 if batches else 0, len(puts),
        sweeper, alerts, memory, repeat,
    )  # fmt: skip


def _alerts(b: Bench, w: Wire, record: dict[str, Any], batches: int, repeat: int) -> dict[str, Any]:
    """Batches of the mapping's BatchSize, each record a copy of a real MODIFY open -> flagged record
    under its own user id (so every alert is new to the idempotency table)."""
    stack = b.stack
    size = int(stack.template.function_event(b.alerts_fn, "DynamoDB").get("BatchSize", 100))
    text = json.dumps(record)
    user = record["dynamodb"]["Keys"]["pk"]["S"]
    serial = iter(range(10**9))

    def batch() -> list[dict[str, Any]]:
        out = []
        for _ in range(size):
            n = next(serial)
            copy = json.loads(text.replace(user, f"{user}-{n:07d}"))
            copy["dynamodb"]["SequenceNumber"] = f"{10**20 + n}"
            out.append(copy)
        return out

    samples: dict[str, list[Timing]] = {"5 ms": [], "0 ms": []}
    for _ in range(max(batches, repeat // 2)):
        for label, delay in (("5 ms", DELAY), ("0 ms", 0.0)):
            records = batch()
            w.delay = delay
            w.reset()
            samples[label].append(timed(lambda r=records: stack.invoke(b.alerts_fn, {"Records": r})))
    calls = dict(Counter(op for (_, op), n in w.calls.items() for _ in range(n)))
    return {
        "batch_size": size,
        "calls_per_batch": calls,
        "timing": {k: median_timing(v) for k, v in samples.items()},
        "samples": samples,
    }


def make_bench(**overrides: str) -> LocalStack:
    return LocalStack(env_overrides=QUIET | SHIPPED_POLL | shipped_pools() | overrides)


def run(quick: bool = False, progress: Callable[[str], None] | None = None, cold: dict[str, float] | None = None):
    """(calls, latency, each function's environment) on one fresh stack. ``cold``: each handler's
    measured import seconds by folder (the cold section), for the sweeper's drain workers."""
    from redflag_local.bench.cold import function_envs

    with quiet(), make_bench() as stack:
        envs = function_envs(stack)
        stack.put_rules({TASK: RULE})
        b = Bench(stack)
        if progress:
            progress("calls and write units ...")
        calls = count(b, n=20 if quick else 100)
        if progress:
            progress("latency model ...")
        lat = (
            latency(b, repeat=2, request_events=100, ingest_events=200, due=8000, alert_batches=1, cold=cold,
                    progress=progress)
            if quick
            else latency(b, cold=cold, progress=progress)
        )  # fmt: skip
    return calls, lat, envs
