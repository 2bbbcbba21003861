"""docs/benchmarks.md, written by ``make bench`` from one run's figures. The method behind each
figure is in docs/bench.md; this file only says what was measured, where, and what came out."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from redflag_local.bench import lateness as bench_lateness
from redflag_local.bench.goals import BURST, DELAY, FULL_VCPU_MB, WITHIN, goal_table


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _usd(x: float) -> str:
    return f"${x:.2f}" if x >= 0.1 else f"${x:.3f}" if x >= 0.001 else f"${x:.6f}"


def markdown(r: Any, machine: dict[str, str], argv: list[str]) -> str:

    d = r.derived
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m redflag_local.bench"
        + (" " + " ".join(argv) if argv else "")
        + "`); do not edit by hand. How each figure is modelled: [bench.md](bench.md). What the figures mean "
        "for sizing a deployment: [scaling.md](scaling.md). Prices: [prices.json](prices.json).",
        "",
        f"- date: {datetime.fromtimestamp(r.started, UTC):%Y-%m-%d %H:%M} UTC; wall time {r.wall:.0f} s"
        + (" (quick: small sizes)" if r.quick else ""),
        f"- machine: {machine['cpu']}, shared with other work (medians of alternated runs)",
        f"- Python {machine['python']}, moto {machine['moto']}, botocore {machine['botocore']}",
        f"- commit: {machine['commit']}",
        "",
        "## Goals (issue 17, and issue 8's kept)",
        "",
        goal_table(r.goals, markdown=True),
        "",
    ]
    if r.latency is not None:
        lat = r.latency
        ing = lat.ingest
        out += [
            "## 1. Ingest CPU: 1,000 events through the handler vs a bare put_item loop",
            "",
            f"500 tasks started then completed, 100 events a request, each with an `event_id`, through the "
            f"API handler; against {lat.ingest_puts} `put_item` calls of the same items on a plain client. No "
            f"server time (replayed answers, 0 ms): CPU of this process, all threads; median of {lat.repeat} "
            "alternated runs.",
            "",
            "| run | CPU | wall | CPU per event |",
            "|---|---|---|---|",
        ]
        for name, t in ing.items():
            n = lat.ingest_puts if name.startswith("bare") else lat.ingest_events
            out.append(f"| {name} | {t.cpu:.2f} s | {t.wall:.2f} s | {t.cpu / n * 1000:.2f} ms |")
        out += [
            "",
            f"Ratio {d['ingest_ratio']:.2f}x with the shipped pool ({d['ingest_width']} threads), "
            f"{d['ingest_ratio_1']:.2f}x one wide, {d['ingest_ratio_16']:.2f}x 16 wide; at 5 ms a call (the pool's "
            f"threads waiting on the server, as on Lambda) {d['ingest_ratio_5ms']:.2f}x. One AWS call costs the "
            f"client {d['call_cpu'] * 1000:.2f} ms of CPU here (botocore: serialization, signing, parsing); the "
            f"handler's own work adds {d['event_cpu'] * 1000:.2f} ms an event (pydantic validation of the event "
            "and its address, the state machine, the item codec, the one BatchGetItem a request); with several "
            "threads all runnable at once (no server time to wait on) the interpreter lock's hand-offs add the "
            "rest. The pool width is the narrowest that keeps a 100-event request within 0.1 s of its calls "
            "at 5 ms each (section 3): wider costs the same CPU and buys no time. Attribute values are written "
            "and read by the codec directly and the items of a read taken from the answer as sent (both held "
            "to boto3's and botocore's own results in tests/unit/test_wire_format.py); the rest is botocore "
            "building, signing and sending each call.",
            "",
        ]
    if r.calls is not None:
        out += [
            "## 2. AWS calls per event type and per alert channel; write units",
            "",
            "Counted at the wire (every HTTP attempt, as AWS bills it) on the deployed template, pools at "
            "their shipped widths; per event (or per timer, per red flag).",
            "",
            "| step | events | calls per event |",
            "|---|---|---|",
        ]
        for s in r.calls.steps:
            per = ", ".join(f"{v:g} {k}" for k, v in s.per_unit().items()) or "none"
            out.append(f"| {s.name} | {s.units} | {per} |")
        sizes = "Item sizes (DynamoDB's rules: attribute names + values), from the items moto holds:"
        out += _table(sizes, ("item", "bytes"), [(k, f"{v:.0f}") for k, v in r.calls.sizes.items()])
        units = (
            "Write units (1 per KB of the larger of the item before and after; the `KEYS_ONLY` due index: "
            "1 when an entry appears, 1 when it goes):"
        )
        out += _table(units, ("write", "WRU"), [(k, f"{v:g}") for k, v in r.calls.wru.items()])
        out += [
            "",
            f"**{d['wru_task']:g} WRU per tracked task** (start + completion, index entry twice) and "
            f"{sum(v for k, v in r.calls.rru.items() if k.startswith('task:')):g} RRU (each record read once, "
            "eventually consistent, in its request's BatchGetItem: half a unit per item up to 4 KB; every write "
            "it leads to is conditional on the version read, an answer that writes nothing is read again "
            "consistently). "
            f"A red flag adds the sweeper's UpdateItem and the index entry going ({d['flag_wru']:g} WRU, the "
            "later completion then costs 1 WRU and no index write) and 2 WRU per alert channel.",
            "",
        ]
    if r.latency is not None:
        lat = r.latency
        mem = lat.memory
        al = lat.alerts
        out += [
            f"## 3. Latency model: {DELAY * 1000:.0f} ms per AWS call",
            "",
            "Every call answered without moto after a fixed sleep; the CPU is ours and botocore's. 'modelled "
            f"at N MB': CPU stretched by Lambda's share at that memory (N / {FULL_VCPU_MB} of a vCPU; this "
            "machine's core counted as one vCPU).",
            "",
            f"| request | wall, 0 ms a call | wall, 5 ms a call | added | CPU | modelled at {mem['events']} MB |",
            "|---|---|---|---|---|---|",
        ]
        for name in ("starts", "completions", "single"):
            a, b5 = lat.request[f"{name}, 0 ms"], lat.request[f"{name}, 5 ms"]
            label = {"starts": "100 task_started (new timers)", "completions": "100 task_completed",
                     "single": "1 task_started"}[name]  # fmt: skip
            out.append(
                f"| {label} | {_ms(a.wall)} | {_ms(b5.wall)} | {_ms(b5.wall - a.wall)} | {_ms(b5.cpu)} | "
                f"{b5.on_lambda(mem['events']):.2f} s |"
            )
        calls = ", ".join(f"{n} {op}" for op, n in sorted(lat.request_calls.items()))
        out += [
            "",
            f"Calls of the 100-start request: {calls}. Serially that would be {sum(lat.request_calls.values())} x "
            f"{DELAY * 1000:.0f} ms = {sum(lat.request_calls.values()) * DELAY:.2f} s; the batched read and the "
            f"{d['ingest_width']} concurrent writes (one record's events stay in order) make it the 'added' column.",
            "",
            *_sweeper(r, d, mem),
            "",
            f"**Alerts.** A batch of {al['batch_size']} red flags (email + CS each: "
            + ", ".join(f"{n} {op}" for op, n in sorted(al["calls_per_batch"].items()))
            + f") takes {al['timing']['5 ms'].wall:.2f} s wall and {al['timing']['5 ms'].cpu:.2f} s CPU at 5 ms a "
            f"call: {d['alert_batch_lambda']:.1f} s modelled at {mem['alerts']} MB. A batch is handled as a batch: "
            "its users' state read at once and written once per user, its alerts claimed in one transaction, "
            "sent concurrently, their results kept in batched writes. "
            f"{BURST:,} flags = "
            f"{d['alert_batches']} batches: **{d['alert_drain_lambda']:.0f} s** on one stream shard at the "
            f"template's ParallelizationFactor of {d['alert_parallelization']} ({d['alert_drain_full']:.0f} s at a "
            "full vCPU)"
            + (
                "."
                if d["alert_drain_lambda"] <= WITHIN
                else f"; within {WITHIN:.0f} s needs {d['alert_parallel_needed']} batches at once (shards x "
                "ParallelizationFactor, see scaling.md). SES's sending rate is the next limit (14 emails/s by "
                f"default: {BURST:,} emails take {BURST / 14:.0f} s)."
            ),
            "",
            f"**End to end: {d['sweep_due']:,} due in one minute.** Falling due evenly over the minute, each "
            f"flagged {d['sweep_p50']:.2f} s after (the sweeper's median above), its record on the table's "
            f"stream, cut into batches of {al['batch_size']} as they arrive, {d['alert_parallelization']} batches "
            f"of a shard at once (the template's ParallelizationFactor), each {d['alert_batch_lambda']:.1f} s "
            f"(above), on {d['e2e_shards']} stream shard: alert lateness (falling due to its batch done) p50 "
            f"**{d['e2e_p50']:.0f} s**, p99 **{d['e2e_p99']:.0f} s**, max **{d['e2e_max']:.0f} s**. Every alert "
            f"within {WITHIN:.0f} s needs {d['e2e_parallel_needed']} batches at once (stream shards x "
            "ParallelizationFactor, at most 10 a shard; see scaling.md). A queue computed from the measured "
            "figures (`run.end_to_end`), not a run on moto. Peak memory traced (tracemalloc, above what the "
            f"process holds after import, {d['sweep_rss_mib']:.0f} MiB): events {d['events_peak_mib']:.1f} MiB for "
            f"a 100-event request ({mem['events']} MB), sweeper {d['sweep_peak_mib']:.1f} MiB "
            f"({mem['sweeper']} MB), alerts {d['alert_peak_mib']:.1f} MiB for a batch ({mem['alerts']} MB).",
            "",
        ]
    if r.lateness:
        out += [
            "## 4. Alert lateness",
            "",
            f"{r.lateness[0].timers:,} timers through the real handlers on a simulated clock (model: "
            "[bench.md](bench.md#4-alert-lateness)); lateness = CS alert sent - due time, delivery "
            f"{bench_lateness.DELIVERY_DELAY[0]:g}-{bench_lateness.DELIVERY_DELAY[1]:g} s included.",
            "",
            "| configuration | timers | alerts (expected) | duplicates | p50 | p99 | max | wall |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for x in r.lateness:
            lat_s = [x.pct(0.5), x.pct(0.99), max(x.lateness, default=math.nan)]
            shown = [f"{v / 60:.1f} min" if v >= 120 else f"{v:.1f} s" for v in lat_s]
            out.append(
                f"| {x.config} | {x.timers} | {x.alerts} ({x.expected}) | {x.duplicates} | "
                + " | ".join(shown)
                + f" | {x.wall_seconds:.0f} s |"
            )
        out.append("")
        for x in r.lateness:
            out.append(
                f"- count check, {x.config}: {'OK' if x.ok else 'FAILED'} ({x.alerts} CS alerts, {x.emails} emails, "
                f"{x.missing} missing, {x.unexpected} unexpected)"
            )
        out.append("")
    if r.cold is not None:
        c = r.cold
        out += [
            "## 5. Cold start",
            "",
            f"Importing `functions/<name>/app.py` (the handler builds its service and clients) in a fresh "
            f"interpreter with a Lambda-like path, vs `import boto3; boto3.client('dynamodb')` "
            f"({_ms(c.baseline)}); medians of {c.repeat['after']} alternated runs ({c.repeat['before']} for the "
            "old layer). Layers as on disk: the old one "
            f"{c.layer_bytes['before'] / 1e6:.0f} MB (every dependency, botocore included, no bytecode), the new "
            f"{c.layer_bytes['after'] / 1e6:.0f} MB (no runtime-provided packages, bytecode included). "
            "Without SnapStart: SnapStart is not built into the template yet, and a restore could only be "
            "modelled here (no Lambda), so no figure with it is given.",
            "",
            "| handler | old layer | new layer | ratio (new) |",
            "|---|---|---|---|",
        ]
        for f, t in c.handlers.items():
            out.append(
                f"| {f} | {_ms(t['before'])} ({t['before'] / c.baseline:.2f}x) | {_ms(t['after'])} | "
                f"**{c.ratio(f):.2f}x** |"
            )
        out += ["", "Import profile with the new layer (self time by top-level package, `-X importtime`, one run):", ""]
        for f, prof in c.profile.items():
            out.append(f"- {f}: " + ", ".join(f"{p} {ms:.0f} ms" for p, ms in prof[:8]))
        out.append("")
    if r.cost:
        out += [
            "## 6. Cost per million tracked tasks",
            "",
            "A tracked task = `task_started` + `task_completed`, each with an `event_id`; us-east-1 list prices "
            "from [prices.json](prices.json); Lambda duration from the latency model at the function's memory."
            + ("" if r.inputs else " (Model section not run: default inputs.)"),
            "",
        ]
        keys = list(dict.fromkeys(k for line in r.cost for k in line.items))
        out += ["| design | " + " | ".join(keys) + " | total |", "|---" * (len(keys) + 2) + "|"]
        for line in r.cost:
            out.append(
                f"| {line.design} | "
                + " | ".join(_usd(line.items[k]) if k in line.items else "-" for k in keys)
                + f" | **{_usd(line.total)}** |"
            )
        flag_total = sum(r.red_flag.values())
        out += [
            "",
            "A red flag adds: "
            + ", ".join(f"{k} {_usd(v * 1e6)}" for k, v in r.red_flag.items())
            + f" per million flags (**{_usd(flag_total * 1e6)} per million**, SES being most of it).",
            "",
            "Fixed, whatever the traffic (a month, default 8 shards; the index queries include the count of each "
            "shard's first page that decides the fan-out):",
            "",
            "| sweeper | duration | invocations | index queries | total |",
            "|---|---|---|---|---|",
        ]
        for name, f in r.fixed.items():
            v = list(f.values())
            out.append(f"| {name} | {_usd(v[0])} | {_usd(v[1])} | {_usd(v[2])} | {_usd(sum(v))} |")
        if r.heavy_minute:
            mem = r.inputs.drain_memory_mb if r.inputs else 512
            out += [
                "",
                f"A minute handed to drain workers (7 workers at {mem} MB, each sweeping a 65 s window): "
                f"**{_usd(sum(r.heavy_minute.values()))}** "
                f"({', '.join(f'{k} {_usd(v)}' for k, v in r.heavy_minute.items())}); nothing when no minute is.",
            ]
        out += [
            "",
            "Lowering the 1-request-per-event figure (most of it is the front door): see "
            "[scaling.md](scaling.md#the-front-door-cost).",
            "",
        ]
    return "\n".join(out)


def _sweeper(r: Any, d: dict[str, Any], mem: dict[str, int]) -> list[str]:
    """The sweeper at 100,000 due (bench/sweep.py): lateness, drain time, memory."""

    sw = r.latency.sweeper
    minute, backlog = sw["minute"], sw["backlog"]
    cold, imports = sw["cold_start"], sw["import_drain"]
    cpu = backlog["cpu_per_flag"]
    peaks = ", ".join(
        f"{m['due']:,} due: {m['peak_mib']:.1f} MiB (at most {m['held']:,} keys held)" for m in sw["memory"]
    )
    source = "the cold section's median" if imports.get("source") else "timed here, CPU"
    verdict = "within" if d["sweep_drain_seconds"] <= WITHIN and d["sweep_max"] <= WITHIN else "NOT within"
    return [
        f"**Sweeper** (`bench/sweep.py`, model in [bench.md](bench.md#3-the-latency-model)). {sw['due']:,} timers "
        f"over {sw['shards']} shards, through the two functions' own services: the scheduled run "
        f"(`SweepDueTimersFunction`, {mem['sweeper']} MB) counts the first page of each shard, starts "
        f"{backlog['workers']} drain workers (`SweepDrainFunction`, {mem['drain']} MB) and sweeps the shard it kept; "
        f"a worker starts {minute['worker_start']:.1f} s after the run (the invoke, then a cold start of "
        f"{cold['drain']:.1f} s: the handler's import, {imports['seconds']:.2f} s at a full vCPU ({source}), "
        f"stretched to the worker's share). Flags are PartiQL `UPDATE`s, 25 to a `BatchExecuteStatement`.",
        "",
        "| case | functions | flagged | late p50 | late p99 | late max | last flag after the run began |",
        "|---|---|---|---|---|---|---|",
        f"| {sw['due']:,} falling due evenly over one minute | {1 + minute['workers']} | {minute['flagged']:,} | "
        f"{minute['p50']:.2f} s | {minute['p99']:.2f} s | {minute['max']:.2f} s | {minute['drain_seconds']:.0f} s |",
        f"| the same, the drain workers warm (a heavy minute after another) | {1 + minute['workers']} | "
        f"{minute['flagged']:,} | {minute['warm']['p50']:.2f} s | {minute['warm']['p99']:.2f} s | "
        f"{minute['warm']['max']:.2f} s | - |",
        f"| {sw['due']:,} already due (an outage) | {1 + backlog['workers']} | {backlog['flagged']:,} | - | - | - | "
        f"**{backlog['drain_seconds']:.0f} s** |",
        "",
        f"Flags per second while there is a backlog: **{d['sweep_rate_scheduled']:.0f} at {mem['sweeper']} MB** "
        f"(the run's own shard; {cpu.get('SweepDueTimersFunction', math.nan) * 1000:.2f} ms CPU a flag at a full "
        f"vCPU, the count, the reads and the writes included) and **{d['sweep_rate_drain']:.0f} at {mem['drain']} "
        f"MB** (a drain worker; {cpu.get('SweepDrainFunction', math.nan) * 1000:.2f} ms a flag). {sw['due']:,} due "
        f"is {verdict} {WITHIN:.0f} s at the defaults; the run's own shard at {mem['sweeper']} MB is the last to "
        "finish a backlog.",
        "",
        f"Memory: a run holds at most a page of keys per shard. tracemalloc's peak over a scheduled run of a "
        f"backlog (the count, the fan-out, its shard drained; replayed answers, no latency): {peaks}; the process "
        f"after importing the handler (peak RSS of a fresh interpreter) {d['sweep_rss_mib']:.0f} MiB, so "
        f"{d['sweep_rss_mib'] + d['sweep_peak_mib']:.0f} MiB of the {mem['sweeper']} MB function.",
    ]


def _table(intro: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A paragraph, then a markdown table of ``rows``."""
    out = ["", intro, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(row) + " |" for row in rows]
