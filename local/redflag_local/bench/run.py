"""`python -m redflag_local.bench.run` (`make bench`): what Red Flag costs and how fast it is, measured on
the real handlers deployed into moto, offline. Prints a table of the issue's goals and writes
docs/benchmarks.md (machine, date, commit).

Sections (``--sections``, all by default):

- ``lateness``: alert lateness, look-ahead sweeper vs passes vs TTL only (``bench_lateness``);
- ``model``: AWS calls per event type and per alert channel, write units from real item sizes, and
  the latency model at 5 ms per call: a 100-event request, the ingest CPU against a bare put_item
  loop, the sweeper at 100,000 due (``bench_sweep``: lateness, drain time, memory), an alert burst
  (``bench_model``);
- ``cold``: cold start of each handler against ``import boto3`` + one client (``bench_cold``);
- ``cost``: cost per million tracked tasks from the above and docs/prices.json (``bench_cost``).

How each is modelled: docs/benchmarks.md (written by this command) and docs/bench.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redflag_local.bench import cost as bench_cost
from redflag_local.bench import lateness as bench_lateness
from redflag_local.bench.goals import BURST, WITHIN, Goal, goal_table
from redflag_local.standin.template import ROOT

SECTIONS = ("lateness", "model", "cold", "cost")
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass
class Report:
    started: float
    quick: bool
    lateness: list[bench_lateness.Result] = field(default_factory=list)
    calls: Any = None
    latency: Any = None
    cold: Any = None
    cost: list[bench_cost.Line] = field(default_factory=list)
    red_flag: dict[str, float] = field(default_factory=dict)
    fixed: dict[str, dict[str, float]] = field(default_factory=dict)
    heavy_minute: dict[str, float] = field(default_factory=dict)  # what a minute handed to drain workers costs
    inputs: bench_cost.Inputs | None = None
    derived: dict[str, Any] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)
    wall: float = 0.0


# --- running ------------------------------------------------------------------------------------


def run(sections: tuple[str, ...], quick: bool, timers: int, seed: int, progress) -> Report:
    report = Report(time.time(), quick)
    plan = bench_lateness.Plan(timers=timers, seed=seed)
    if "lateness" in sections:
        report.lateness = bench_lateness.run(plan.short() if quick else plan, progress)
    if "model" in sections or "cold" in sections:
        from redflag_local.bench import cold as bench_cold
        from redflag_local.bench import model as bench_model

        if "cold" in sections:  # first: the sweeper model starts its drain workers with these imports
            with bench_lateness.quiet(), bench_model.make_bench() as stack:
                envs = bench_cold.function_envs(stack)
            report.cold = bench_cold.run(envs, repeat=2 if quick else 10, before_repeat=1 if quick else 3,
                                         progress=progress)  # fmt: skip
        if "model" in sections:
            imports = {f: t["after"] for f, t in report.cold.handlers.items()} if report.cold else None
            report.calls, report.latency, _ = bench_model.run(quick=quick, progress=progress, cold=imports)
    derive(report)
    if "cost" in sections:
        inputs = report.inputs or bench_cost.Inputs()
        report.cost = bench_cost.per_million(inputs)
        report.red_flag = bench_cost.per_red_flag(inputs)
        sweeper_mb = inputs.sweeper_memory_mb
        # a run's reads of every shard, and the count of each shard's first page that decides fan-out
        report.fixed = {
            "look-ahead (default): 65 s a run, 8 shards read every 5 s": bench_cost.fixed_monthly(
                8, 13 + 1, 65, sweeper_mb
            ),
            "passes: 3 reads a run, 40 s a run": bench_cost.fixed_monthly(8, 3 + 1, 40, sweeper_mb),
            "passes, SweepsPerMinute = 1: one read, ~1 s a run": bench_cost.fixed_monthly(8, 1 + 1, 1, sweeper_mb),
        }
        report.heavy_minute = bench_cost.heavy_minute(8 - 1, 65, inputs.drain_memory_mb)
    report.goals = goals(report)
    report.wall = time.time() - report.started
    return report


def derive(r: Report) -> None:
    """The figures the goals and the cost are read from."""
    from redflag_local.bench.goals import DELAY

    d = r.derived
    if r.latency is not None:
        lat = r.latency
        mem = lat.memory
        d["added_starts"] = lat.request["starts, 5 ms"].wall - lat.request["starts, 0 ms"].wall
        d["added_completions"] = lat.request["completions, 5 ms"].wall - lat.request["completions, 0 ms"].wall
        d["request_lambda"] = max(
            lat.request["starts, 5 ms"].on_lambda(mem["events"]),
            lat.request["completions, 5 ms"].on_lambda(mem["events"]),
        )
        d["single_lambda"] = lat.request["single, 5 ms"].on_lambda(mem["events"])
        h, bare = lat.ingest["handler"], lat.ingest["bare put_item loop"]
        d["ingest_ratio"] = h.cpu / bare.cpu
        d["ingest_ratio_1"] = lat.ingest["handler, 1 wide"].cpu / bare.cpu
        d["ingest_ratio_16"] = lat.ingest["handler, 16 wide"].cpu / bare.cpu
        d["ingest_ratio_5ms"] = (
            lat.ingest["handler, 5 ms a call"].cpu / lat.ingest["bare put_item loop, 5 ms a call"].cpu
        )
        d["ingest_width"] = ingest_width()
        d["call_cpu"] = bare.cpu / lat.ingest_puts
        d["event_cpu"] = max(0.0, (lat.ingest["handler, 1 wide"].cpu - bare.cpu) / lat.ingest_events)
        sw = lat.sweeper
        minute, backlog = sw["minute"], sw["backlog"]
        d["sweep_due"] = sw["due"]
        d["sweep_shards"] = sw["shards"]
        d["sweep_workers"] = 1 + backlog["workers"]
        d["sweep_drain_seconds"] = backlog["drain_seconds"]
        d["sweep_left"] = minute["left"] + backlog["left"]
        d["sweep_p50"], d["sweep_p99"], d["sweep_max"] = minute["p50"], minute["p99"], minute["max"]
        d["sweep_rate_scheduled"] = backlog["rates"].get("SweepDueTimersFunction", math.nan)
        d["sweep_rate_drain"] = backlog["rates"].get("SweepDrainFunction", math.nan)
        d["sweep_peak_mib"] = max(m["peak_mib"] for m in sw["memory"])
        d["sweep_rss_mib"] = max(sw["import_scheduled"]["rss_mib"], sw["import_drain"]["rss_mib"])
        d["sweep_held"] = max(m["held"] for m in sw["memory"])
        al = lat.alerts
        batch = al["timing"]["5 ms"]
        d["alert_batch_full"] = batch.wall
        d["alert_batch_lambda"] = batch.on_lambda(mem["alerts"])
        d["alert_batches"] = math.ceil(BURST / al["batch_size"])
        pf = d["alert_parallelization"] = alert_parallelization()
        # one stream shard (a table this size has one); the template's ParallelizationFactor batches at once
        d["alert_drain_lambda"] = math.ceil(d["alert_batches"] / pf) * d["alert_batch_lambda"]
        d["alert_drain_full"] = math.ceil(d["alert_batches"] / pf) * batch.wall
        d["alert_parallel_needed"] = math.ceil(d["alert_batches"] * d["alert_batch_lambda"] / WITHIN)
        d["alert_seconds_per_flag"] = d["alert_batch_lambda"] / al["batch_size"]
        d["alert_peak_mib"] = al["peak_mib"]
        d["events_peak_mib"] = lat.events_peak_mib
        d |= end_to_end(d["sweep_due"], d["sweep_p50"], al["batch_size"], d["alert_batch_lambda"], pf)
    if r.calls is not None:
        wru = r.calls.wru
        d["wru_task"] = sum(v for k, v in wru.items() if k.startswith("task:"))
        d["wru_index"] = sum(v for k, v in wru.items() if k.startswith("task:") and k.endswith("index entry"))
        d["flag_wru"] = wru["flag (sweeper)"] + wru["flag, index entry"]
    if r.calls is not None and r.latency is not None:
        r.inputs = bench_cost.Inputs(
            wru_per_task=d["wru_task"],
            rru_per_task=sum(v for k, v in r.calls.rru.items() if k.startswith("task:")),
            request_seconds=d["request_lambda"],
            single_seconds=d["single_lambda"],
            call_cpu_seconds=d["call_cpu"],
            event_cpu_seconds=d["event_cpu"],
            events_memory_mb=r.latency.memory["events"],
            flag_wru=d["flag_wru"],
            channel_wru=r.calls.wru["alert channel (idempotency claim + result)"],
            alert_seconds_per_flag=d["alert_seconds_per_flag"],
            alerts_memory_mb=r.latency.memory["alerts"],
            sweep_seconds_per_flag=1 / d["sweep_rate_scheduled"],
            sweeper_memory_mb=r.latency.memory["sweeper"],
            drain_memory_mb=r.latency.memory["drain"],
            delay=DELAY,
            measured=["all"],
        )


def end_to_end(due: int, sweep_late: float, batch_size: int, batch_seconds: float, parallel: int,
               shards: int = 1) -> dict[str, float]:  # fmt: skip
    """``due`` timers falling due evenly over a minute, through the sweeper (each flagged ``sweep_late``
    after it falls due: the sweeper model's median), the table's stream (``shards`` shards, the records
    spread evenly; a batch of ``batch_size`` records is cut as they arrive) and the alerts function
    (``parallel`` batches of a shard at once, each ``batch_seconds``): every flag's alert lateness, the
    time from falling due to its batch done. A queue, computed, not simulated on moto."""
    per_shard = math.ceil(due / shards)
    gap = WITHIN / per_shard  # seconds between a shard's flags
    free = [0.0] * parallel  # when each of the shard's concurrent batches is next free
    late: list[float] = []
    for first in range(0, per_shard, batch_size):
        n = min(batch_size, per_shard - first)
        ready = (first + n - 1) * gap + sweep_late  # the batch's last record written
        slot = min(range(parallel), key=free.__getitem__)
        done = max(ready, free[slot]) + batch_seconds
        free[slot] = done
        late += [done - (first + i) * gap for i in range(n)]
    late.sort()

    def pct(q: float) -> float:
        return late[min(len(late) - 1, int(q * len(late)))]

    return {"e2e_p50": pct(0.5), "e2e_p99": pct(0.99), "e2e_max": late[-1], "e2e_shards": shards,
            "e2e_parallel_needed": math.ceil(due / batch_size * batch_seconds / WITHIN)}  # fmt: skip


def ingest_width() -> int:
    from redflag.edge.settings import IngestSettings

    return int(IngestSettings.model_fields["ingest_concurrency"].default)


def alert_parallelization() -> int:
    """The alerts stream mapping's ParallelizationFactor with the template's defaults."""
    from redflag_local.standin.template import Template

    t = Template()
    value = t.function_event("TimersToAlertsFunction", "DynamoDB").get("ParallelizationFactor", 1)
    if isinstance(value, dict) and "Ref" in value:
        value = t.sam["Parameters"][value["Ref"]]["Default"]
    return int(value)


def _step(r: Report, name: str):
    return next((s for s in r.calls.steps if s.name.startswith(name)), None)


Figure = tuple[str, bool | None] | None  # what was measured and whether it meets the goal; None: not measured


def _calls_per_event(r: Report, d: dict[str, Any]) -> Figure:
    if r.calls is None:
        return None
    rows = [s for s in r.calls.steps if s.name in ("task_started (new timer)", "task_completed")]
    reads = max(s.calls[k] for s in rows for k in s.calls if k[1] == "BatchGetItem")
    writes = max(s.calls[k] / s.units for s in rows for k in s.calls if k[1] == "PutItem")
    other = sorted({k[1] for s in rows for k in s.calls} - {"BatchGetItem", "PutItem"})
    figure = f"{reads} BatchGetItem per {rows[0].units}-event request + {writes:g} PutItem per event"
    return figure + (f"; also {', '.join(other)}" if other else ""), reads <= 1 and writes <= 1 and not other


def _write_units(r: Report, d: dict[str, Any]) -> Figure:
    if r.calls is None:
        return None
    sizes = r.calls.sizes
    return (
        f"{d['wru_task']:g} WRU (items {sizes['timer armed (event_id on)']:.0f} B armed, "
        f"{sizes['timer completed']:.0f} B completed; 2 of them the due index)",
        d["wru_task"] <= 4,
    )


def _request_latency(r: Report, d: dict[str, Any]) -> Figure:
    if r.latency is None:
        return None
    added = max(d["added_starts"], d["added_completions"])
    return (
        f"+{added * 1000:.0f} ms (starts +{d['added_starts'] * 1000:.0f}, completions "
        f"+{d['added_completions'] * 1000:.0f}); whole request {d['request_lambda']:.2f} s modelled at "
        f"{r.latency.memory['events']} MB",
        added <= 0.1,
    )


def _ingest_cpu(r: Report, d: dict[str, Any]) -> Figure:
    if r.latency is None:
        return None
    figure = (
        f"{d['ingest_ratio']:.2f}x at the shipped {d['ingest_width']}-wide pool, 0 ms a call "
        f"({d['ingest_ratio_1']:.2f}x one wide, {d['ingest_ratio_16']:.2f}x 16 wide); "
        f"{d['ingest_ratio_5ms']:.2f}x at 5 ms a call (shipped pool)"
    )
    return figure, d["ingest_ratio"] <= 1.3


def _sweeper(r: Report, d: dict[str, Any]) -> Figure:
    if r.calls is None or r.latency is None:
        return None
    sweep = _step(r, "sweeper")
    writes = sum(n for k, n in sweep.calls.items() if k[1] in ("BatchExecuteStatement", "UpdateItem")) / sweep.units
    mem = r.latency.memory
    return (
        f"{writes:.2g} write calls per timer (25 a BatchExecuteStatement); {d['sweep_due']:,} already due: "
        f"{d['sweep_drain_seconds']:.0f} s with {d['sweep_workers']} functions (the run's own shard at "
        f"{mem['sweeper']} MB {d['sweep_rate_scheduled']:.0f} flags/s, drain workers at {mem['drain']} MB "
        f"{d['sweep_rate_drain']:.0f}/s); falling due in a minute: late p50 {d['sweep_p50']:.2f} s, p99 "
        f"{d['sweep_p99']:.1f} s, max {d['sweep_max']:.1f} s; peak {d['sweep_peak_mib']:.1f} MiB traced over "
        f"{d['sweep_rss_mib']:.0f} MiB after import (limit {mem['sweeper']} MB)",
        writes <= 0.1
        and d["sweep_drain_seconds"] <= WITHIN
        and d["sweep_max"] <= WITHIN
        and d["sweep_left"] == 0
        and d["sweep_peak_mib"] + d["sweep_rss_mib"] < mem["sweeper"] * 1e6 / 2**20,
    )


def _end_to_end(r: Report, d: dict[str, Any]) -> Figure:
    if r.latency is None:
        return None
    mem = r.latency.memory
    return (
        f"alert lateness p50 {d['e2e_p50']:.0f} s, p99 {d['e2e_p99']:.0f} s, max {d['e2e_max']:.0f} s "
        f"({d['sweep_due']:,} flags, {r.latency.alerts['batch_size']} a batch at {d['alert_batch_lambda']:.1f} s, "
        f"{d['e2e_shards']} stream shard x ParallelizationFactor {d['alert_parallelization']}; within 60 s needs "
        f"{d['e2e_parallel_needed']} batches at once); peak traced memory: events {d['events_peak_mib']:.1f} MiB "
        f"(a 100-event request, {mem['events']} MB), sweeper {d['sweep_peak_mib']:.1f} MiB ({mem['sweeper']} MB), "
        f"alerts {d['alert_peak_mib']:.1f} MiB (a batch, {mem['alerts']} MB), over {d['sweep_rss_mib']:.0f} MiB "
        "after import",
        d["e2e_max"] <= WITHIN,
    )


def _lateness(r: Report, d: dict[str, Any]) -> Figure:
    look = next((x for x in r.lateness if x.config.startswith("look-ahead")), None)
    if look is None or not look.lateness:
        return None
    figure = f"p99 {look.pct(0.99):.1f} s, max {max(look.lateness):.1f} s ({look.timers} timers, delivery 1-2 s)"
    return figure, look.pct(0.99) <= 2.0 and look.ok


def _alert_calls(r: Report, d: dict[str, Any]) -> Figure:
    if r.calls is None or r.latency is None:
        return None
    alerts = _step(r, "alerts")
    per_flag = sum(alerts.calls.values()) / max(1, alerts.units)
    each = ", ".join(
        f"{n / alerts.units:.2f} {(k[2] + ' ') if k[2] else ''}{k[1]}" for k, n in sorted(alerts.calls.items())
    )
    return (
        f"{per_flag:.2f} calls per red flag ({each}; {alerts.units} flags, {r.latency.alerts['batch_size']} a "
        f"batch); {d['alert_batches']} batches x {d['alert_batch_lambda']:.2f} s at {r.latency.memory['alerts']} MB "
        f"= {d['alert_drain_lambda']:.0f} s on one shard at ParallelizationFactor {d['alert_parallelization']} "
        f"({d['alert_drain_full']:.0f} s at a full vCPU)",
        per_flag <= 6 and d["alert_drain_lambda"] <= WITHIN,
    )


def _cold_start(r: Report, d: dict[str, Any]) -> Figure:
    if r.cold is None:
        return None
    cold = r.cold
    worst = max(cold.handlers, key=cold.ratio)
    each = ", ".join(f"{f.split('_')[0]} {cold.ratio(f):.2f}x" for f in cold.handlers)
    before = max(cold.handlers[f]["before"] / cold.baseline for f in cold.handlers)
    figure = f"without SnapStart: worst {worst} {cold.ratio(worst):.2f}x ({each}); was {before:.2f}x"
    return figure + "; with SnapStart: not built (it could only be modelled here)", cold.ratio(worst) <= 1.5


def _cost(r: Report, d: dict[str, Any]) -> Figure:
    if not r.cost:
        return None
    c = r.cost
    writes = c[0].items.get("DynamoDB writes", math.nan)
    index = d.get("wru_index", math.nan)
    figure = f"${c[0].total:.2f} batched (DynamoDB writes ${writes:.2f}, {index:g} of the "
    figure += f"{d.get('wru_task', math.nan):g} WRU the due index); ${c[1].total:.2f} one request per event; naive "
    figure += f"${c[2].total:.2f} / ${c[3].total:.2f}" + ("" if r.inputs else " (defaults: model section not run)")
    return figure, c[0].total <= 2.0 if r.inputs else None


GOALS = [  # issue 17's table (and issue 8's, kept): measure, goal, how this run measured it
    (
        "sweeper: 100,000 due flagged at the defaults; memory",
        "<= 60 s (latency model), 1 conditional write per timer, batched; peak under the function's memory",
        _sweeper,
    ),
    (
        "100,000 due in one minute, end to end (sweeper, stream, alerts at the default ParallelizationFactor)",
        "every alert within 60 s of falling due; lateness p50/p99/max and peak memory per function reported",
        _end_to_end,
    ),
    ("ingest CPU, 1,000 events vs a bare put_item loop", "<= 1.3x (pool width by measurement)", _ingest_cpu),
    ("cold start: handler import vs import boto3 + one client", "<= 1.5x (SnapStart noted apart)", _cold_start),
    ("cost per million tracked tasks (API + Lambda + DynamoDB)", "<= $2.00 batched with event_id", _cost),
    ("DynamoDB calls per event", "<= 1 read per request (batched) + 1 conditional write per event", _calls_per_event),
    ("write units per tracked task (start + finish)", "<= 4 with event_id dedupe on", _write_units),
    ("a 100-event request, time added at 5 ms a call", "<= 0.1 s", _request_latency),
    ("alert lateness p99 (bench model, look-ahead)", "<= 2 s", _lateness),
    (
        "AWS calls per red flag (email + CS, sends included); a 5,000-flag burst drained",
        "<= 6, 50 flags a batch; within 60 s (latency model)",
        _alert_calls,
    ),
]


def goals(r: Report) -> list[Goal]:
    out = []
    for measure, goal, measured in GOALS:
        figure = measured(r, r.derived)
        out.append(Goal(measure, goal, *(figure or ("-", None))))
    return out


# --- output -------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    from importlib.metadata import version

    from redflag_local.bench.host import commit, cpu_model

    return {
        "cpu": f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()}",
        "python": platform.python_version(),
        "moto": version("moto"),
        "botocore": version("botocore"),
        "commit": commit(" + uncommitted changes"),
    }


def to_json(r: Report) -> dict[str, Any]:
    out: dict[str, Any] = {
        "goals": [g.__dict__ | {"verdict": g.verdict} for g in r.goals],
        "lateness": [
            {k: v for k, v in x.__dict__.items() if k != "lateness"}
            | {"ok": x.ok, "lateness": x.lateness, "p50": x.pct(0.5), "p99": x.pct(0.99)}
            for x in r.lateness
        ],
        "derived": r.derived,
        "cost": [{"design": c.design, "total": c.total, "items": c.items} for c in r.cost],
        "wall": r.wall,
    }
    if r.calls is not None:
        out["calls"] = {s.name: {"units": s.units, "per_unit": s.per_unit()} for s in r.calls.steps}
        out["sizes"], out["wru"] = r.calls.sizes, r.calls.wru
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m redflag_local.bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--timers", type=int, help="lateness: timers to simulate (default 1000; --quick: 40)")
    parser.add_argument("--seed", type=int, default=1, help="lateness: random seed (default 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few simulated minutes, few repeats)")
    parser.add_argument("--output", default=str(DOC), help="markdown report (default docs/benchmarks.md); '-' = none")
    parser.add_argument("--json", dest="json_path", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    timers = args.timers if args.timers is not None else (40 if args.quick else 1000)
    if timers < 1:
        parser.error("--timers must be at least 1")
    os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # its metrics nag on each deploy

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    report = run(sections, args.quick, timers, args.seed, progress)
    print(text(report))
    if args.output != "-":
        from redflag_local.bench.doc import markdown

        Path(args.output).write_text(markdown(report, machine(), argv or sys.argv[1:]))
        print(f"\nwrote {args.output}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(to_json(report), indent=1, default=str))
    ok = all(x.ok for x in report.lateness)
    return 0 if ok else 1


def text(r: Report) -> str:
    parts = [f"Red Flag bench ({'quick' if r.quick else 'full'}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", ""]
    parts += [goal_table(r.goals), ""]
    if r.lateness:
        parts += ["alert lateness (seconds after due):", bench_lateness.table(r.lateness), ""]
        for x in r.lateness:
            verdict = "OK" if x.ok else "FAILED"
            parts.append(
                f"count check, {x.config}: {verdict} - {x.alerts} CS alerts and {x.emails} emails for {x.expected} "
                f"never-completed timers; {x.duplicates} duplicates, {x.missing} missing, {x.unexpected} unexpected"
            )
        parts.append("")
    if r.cost:
        parts.append("cost per million tracked tasks (USD):")
        for line in r.cost:
            items = ", ".join(f"{k} {v:.3f}" for k, v in line.items.items())
            parts.append(f"  {line.design:<36} {line.total:7.2f}   ({items})")
        parts.append("")
    parts.append(f"wall time {r.wall:.1f} s")
    return "\n".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
