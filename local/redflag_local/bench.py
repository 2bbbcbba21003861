"""`python -m redflag_local.bench`: how late is a red flag? Sweeper + TTL backstop vs TTL only.

Both runs deploy template.yaml into moto (``LocalStack``) and drive the real handlers on a
simulated clock: product events go through the API handler in batches of up to 100, the sweeper
handler runs every simulated minute, DynamoDB TTL deletes each expired item on its own lateness,
and stream records reach the alerts handler after a modelled delivery delay. Lateness is the
simulated time the alerts handler sent a CS alert minus the timer's due time (the ``due_at`` in
the alert). The clock jumps straight from one thing that happens to the next. See docs/bench.md.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import logging
import math
import os
import random
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redflag.adapters import items
from redflag.timers import TimerKey
from redflag_local.stack import LocalStack

SWEEP_EVERY = 60  # the template's default SweepSchedule: rate(1 minute); each run makes
# SweepsPerMinute passes (default 3, every 20 s), waiting in between as the deployed function does
THRESHOLDS = (2 * 60, 40 * 60)  # each bench rule's threshold_seconds: uniform, whole seconds
RULES = 40  # tasks (one SSM rule each); every timer picks one at random
START_WINDOW = 30 * 60  # starts are uniform over this window
STRUGGLE = 0.5  # share of timers never completed; the others complete at 10-90% of the threshold
TTL_LATENESS = (8 * 60, 30 * 60)  # TTL deletes an item uniformly 8-30 min after it expires
# Stream write -> alerts handler running: the record reaching the stream and the event source
# mapping's poll (4 polls/s per shard) ~0-1 s, plus MaximumBatchingWindowInSeconds = 1 (template).
DELIVERY_DELAY = (1.0, 2.0)  # uniform, seconds, drawn per write (a sweep, or one TTL delete)
PASS_EVERY = SWEEP_EVERY // 3  # SweepsPerMinute = 3 (the template's default)
BATCH = 100  # events per POST /v1/events (the API maximum)
GET_RECORDS_MAX = 1000  # records per DynamoDB Streams GetRecords call (moto's default too)
QUIET = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}

POST, SWEEP, TTL, DELIVER = range(4)  # what happens first when several fall on the same instant


@dataclass(frozen=True)
class PlannedTimer:
    user_id: str
    task: str
    start: int  # seconds after the run begins
    threshold: int
    finish: int | None  # None: never completed, so it must alert exactly once
    ttl_lateness: float  # when TTL gets to this item, after it expires

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

    @property
    def ok(self) -> bool:
        return self.alerts == self.emails == self.expected and not (self.duplicates or self.missing or self.unexpected)

    def pct(self, q: float) -> float:
        """Nearest-rank percentile (q in 0..1)."""
        ordered = sorted(self.lateness)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def plan(timers: int, seed: int) -> tuple[dict[str, dict[str, Any]], list[PlannedTimer]]:
    rng = random.Random(seed)
    rules = {
        f"bench_{i:02d}": {"label": f"bench task {i}", "threshold_seconds": rng.randint(*THRESHOLDS)}
        for i in range(RULES)
    }
    planned = []
    for i in range(timers):
        task = rng.choice(sorted(rules))
        threshold = rules[task]["threshold_seconds"]
        start = rng.randrange(START_WINDOW)
        finish = None if rng.random() < STRUGGLE else start + rng.randint(threshold // 10, threshold * 9 // 10)
        planned.append(PlannedTimer(f"bench-{i:05d}", task, start, threshold, finish, rng.uniform(*TTL_LATENESS)))
    return rules, planned


def _events(timer: PlannedTimer, t0: float) -> list[tuple[int, dict[str, Any]]]:
    base = {"task": timer.task, "user_id": timer.user_id, "user": {"email": f"{timer.user_id}@example.com"}}
    out = [(timer.start, base | {"type": "task_started"})]
    if timer.finish is not None:
        out.append((timer.finish, base | {"type": "task_completed"}))
    return [(at, e | {"occurred_at": datetime.fromtimestamp(t0 + at, UTC).isoformat()}) for at, e in out]


@contextmanager
def _quiet() -> Iterator[None]:
    """Keep the handlers' output off the table: with metrics disabled, Powertools still prints an
    EMF blob every 100 values of a metric, and warns when a handler recorded none."""
    with open(os.devnull, "w") as devnull, redirect_stdout(devnull), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def simulate(
    config: str, rules: dict[str, dict[str, Any]], planned: list[PlannedTimer], sweeper: bool, seed: int
) -> Result:
    """One configuration, end to end on a fresh stack. Returns lateness and the count check."""
    began = time.perf_counter()
    rng = random.Random(seed)
    parameters = {} if sweeper else {"SweepSchedule": "off"}
    with _quiet(), LocalStack(parameters=parameters, env_overrides=QUIET) as stack:
        stack.put_rules(rules)
        t0 = stack.clock()
        agenda: list[tuple[float, int, int, Any]] = []  # (at, kind, tie-break, payload): a heap
        seq = itertools.count()

        def at(when: float, kind: int, payload: Any = None) -> None:
            heapq.heappush(agenda, (when, kind, next(seq), payload))

        # events are posted at the end of the 20 s slot they happen in (the sweeper's pass times),
        # with their occurred_at, so a completion always reaches the table before the next pass
        posts: dict[int, list[dict[str, Any]]] = {}
        for timer in planned:
            for when, event in _events(timer, t0):
                posts.setdefault(math.ceil(when / PASS_EVERY) * PASS_EVERY, []).append(event)
        for when, events in posts.items():
            for i in range(0, len(events), BATCH):
                at(when, POST, events[i : i + BATCH])
        last_due = max(t.due for t in planned)
        if sweeper:
            for when in range(SWEEP_EVERY, last_due + 2 * SWEEP_EVERY, SWEEP_EVERY):
                at(when, SWEEP)
        for timer in planned:  # TTL reaches every timer, completed or not; it deletes only expired ones
            at(timer.due + timer.ttl_lateness, TTL, timer.key)

        delivered: list[float] = []  # simulated send time of each CS alert, in order
        pending: list[tuple[float, int, dict[str, Any]]] = []  # stream records not yet delivered: a heap

        def collect() -> None:
            """What was just written reaches the stream now; each record reaches the alerts handler
            after its own modelled delay."""
            while True:  # one GetRecords returns at most 1,000 records: drain the backlog
                records = stack.read_stream()
                for record in stack.filter_stream(records):
                    ready = stack.clock() - t0 + rng.uniform(*DELIVERY_DELAY)
                    heapq.heappush(pending, (ready, next(seq), record))
                    at(ready, DELIVER)
                if len(records) < GET_RECORDS_MAX:
                    break

        def run_until(limit: float) -> None:
            """Everything on the agenda up to ``limit`` (seconds after t0), in time order."""
            while agenda and agenda[0][0] <= limit:
                when, kind, _, payload = heapq.heappop(agenda)
                stack.clock.advance(t0 + when - stack.clock())
                if kind == POST:
                    status, body = stack.post_events({"events": payload})
                    outcomes = {r["status"] for r in body.get("results", [])}
                    if status != 202 or not outcomes <= {"armed", "completed"}:
                        raise RuntimeError(f"POST /v1/events answered {status}: {sorted(outcomes)}")
                elif kind == SWEEP:
                    stack.sweep()  # one scheduled run; while it waits, the world goes on
                elif kind == TTL:
                    stack.ttl_delete(**items.key_of(payload), only_if_expired=True)
                else:
                    ready = []
                    while pending and pending[0][0] <= when:
                        ready.append(heapq.heappop(pending)[2])
                    if ready:
                        stack.deliver_stream(ready)
                    delivered.extend([stack.clock()] * (len(stack.cs_alerts()) - len(delivered)))
                collect()

        def between_passes(wake: float) -> None:
            """The sweeper waits (for its next pass, or the next due time): what it flagged reaches
            the stream now, and the world runs up to its wake-up time."""
            collect()
            run_until(wake - t0)

        stack.clock.on_sleep.append(between_passes)
        run_until(math.inf)
        return _check(config, planned, stack, delivered, time.perf_counter() - began)


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


def run(timers: int = 1000, seed: int = 1, progress: Callable[[str], None] | None = None) -> list[Result]:
    """Both configurations on the same planned timers: sweeper + TTL backstop, then TTL only."""
    rules, planned = plan(timers, seed)
    results = []
    for config, sweeper in (("sweeper 3/min + TTL backstop", True), ("TTL only (8-30 min late)", False)):
        if progress:
            progress(f"running {config} ...")
        results.append(simulate(config, rules, planned, sweeper, seed))
    return results


def table(results: list[Result]) -> str:
    head = f"{'configuration':<28} {'timers':>6} {'expect':>6} {'alerts':>6} {'emails':>6} {'dups':>4}"
    head += f" {'min s':>7} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'wall s':>6}"
    lines = [head, "-" * len(head)]
    for r in results:
        lateness = (min(r.lateness, default=math.nan), r.pct(0.5), r.pct(0.99), max(r.lateness, default=math.nan))
        lines.append(
            f"{r.config:<28} {r.timers:>6} {r.expected:>6} {r.alerts:>6} {r.emails:>6} {r.duplicates:>4} "
            + " ".join(f"{x:>7.1f}" for x in lateness)
            + f" {r.wall_seconds:>6.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m redflag_local.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=1000, help="timers to simulate (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    if args.timers < 1:
        parser.error("--timers must be at least 1")
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # its metrics nag on each deploy
    began = time.perf_counter()
    print(
        f"Red Flag alert lateness on moto: {args.timers} timers, seed {args.seed}; thresholds "
        f"{THRESHOLDS[0] // 60}-{THRESHOLDS[1] // 60} min over {RULES} rules, starts over "
        f"{START_WINDOW // 60} min, {STRUGGLE:.0%} never completed"
    )
    print(
        f"modelled: a sweeper run every {SWEEP_EVERY} s, 3 passes 20 s apart; "
        f"TTL delete {TTL_LATENESS[0] // 60}-{TTL_LATENESS[1] // 60} min "
        f"after expiry; stream -> alerts handler {DELIVERY_DELAY[0]:g}-{DELIVERY_DELAY[1]:g} s (uniform)",
        flush=True,
    )
    results = run(args.timers, args.seed, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print()
    print(table(results))
    print()
    for r in results:
        verdict = "OK" if r.ok else "FAILED"
        print(
            f"count check, {r.config}: {verdict} - {r.alerts} CS alerts and {r.emails} emails for {r.expected} "
            f"never-completed timers; {r.duplicates} duplicates, {r.missing} missing, {r.unexpected} unexpected"
        )
    print(f"\nwall time {time.perf_counter() - began:.1f} s")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
