"""`make soak`: the slow suites at their full sizes, one after the other, and their figures in docs/soak.md.

- the fault run at 10,000 tasks (``REDFLAG_FAULT_TASKS``; ``make test`` runs 1,000);
- the API fuzz at 10,000 generated requests (``REDFLAG_FUZZ_EXAMPLES``; ``make test`` runs 600);
- the exactly-once state machine at 1,000 examples (``REDFLAG_PROPERTY_EXAMPLES``; ``make test`` runs 60).

Each suite runs as its own ``pytest -s`` (its output goes to the console as it comes); what is written:
date, commit, machine, and per suite the command, wall time, pass/fail, the figures the suite prints
(``fuzz:`` lines, the slowest phases) and what this module prints as a pytest plugin
(``-p redflag_local.bench.soak``): the fault run's tasks, alerts, parked messages and faults injected, and the
state machine's examples and alerts. A failing suite's report (the falsifying example included) goes
into the file as well.

    python -m redflag_local.bench.soak [--fault-tasks N] [--fuzz-requests N] [--property-examples N]
                                 [--only fault|fuzz|property ...] [--out docs/soak.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from redflag_local.bench.host import commit, cpu_model

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "docs" / "soak.md"
FIGURE_PREFIXES = ("fuzz:", "soak:")
QUIET = ('{"level"', '{"_aws"', '.{"level"', '.{"_aws"')
MAX_FAILURE_LINES = 200


@dataclass
class Suite:
    key: str
    title: str
    path: str
    variable: str
    size: int
    unit: str
    # filled in by the run
    command: str = ""
    seconds: float = 0.0
    returncode: int | None = None
    summary: str = ""
    figures: list[str] = field(default_factory=list)
    durations: list[str] = field(default_factory=list)
    failure: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.returncode == 0


def suites(fault_tasks: int, fuzz_requests: int, property_examples: int) -> list[Suite]:
    return [
        Suite("fault", "Fault run", "tests/integration/test_fault_run.py", "REDFLAG_FAULT_TASKS", fault_tasks, "tasks"),
        Suite(
            "fuzz",
            "API fuzz",
            "tests/integration/test_fuzz_api.py",
            "REDFLAG_FUZZ_EXAMPLES",
            fuzz_requests,
            "generated requests",
        ),
        Suite(
            "property",
            "Exactly-once state machine",
            "tests/integration/test_exactly_once_property.py",
            "REDFLAG_PROPERTY_EXAMPLES",
            property_examples,
            "examples",
        ),
    ]


# --- the pytest plugin (-p redflag_local.bench.soak): figures the suites keep to themselves ---------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: Any) -> Any:
    """The fault run's totals from its module fixture; the state machine's examples and alerts."""
    machine = getattr(getattr(item, "module", None), "ExactlyOnce", None)
    examples = [0]
    if machine is not None and "examples" not in _printed:
        teardown = machine.teardown

        def counted(self: Any) -> None:
            examples[0] += 1
            teardown(self)

        machine.teardown = counted
    try:
        return (yield)
    finally:
        funcargs = getattr(item, "funcargs", {})
        if isinstance(funcargs.get("fault_run"), dict) and "fault_run" not in _printed:
            _printed.add("fault_run")
            _print_fault_run(funcargs["fault_run"])
        if machine is not None and "examples" not in _printed:
            _printed.add("examples")
            machine.teardown = teardown
            stack = funcargs.get("shared_stack")
            sent = f"; {len(stack.emails())} emails and {len(stack.cs_alerts())} CS alerts sent" if stack else ""
            asked = os.environ.get("REDFLAG_PROPERTY_EXAMPLES", "60")
            print(f"\nsoak: {examples[0]} state machines run to teardown ({asked} examples asked){sent}")


_printed: set[str] = set()


def _print_fault_run(run: dict[str, Any]) -> None:
    tasks = run["tasks"]
    overdue = [t for t in tasks if t[2] is None]
    kinds = Counter(str(p.get("kind", "stream_batch" if "DDBStreamBatchInfo" in p else "?")) for p in run["parked"])
    done = len(tasks) - len(overdue)
    print(f"\nsoak: {len(tasks)} tasks, {len(overdue)} overdue (never completed), {done} completed")
    print(f"soak: {len(run['emails'])} emails sent, {len(run['cs'])} CS alerts sent")
    print(f"soak: parked {dict(sorted(kinds.items()))}")
    for name, count in sorted(run["injected"].items()):
        # a crash (Fault(crash=True)) keeps Fault's default code in its name
        crash = " (the crash mid-batch)" if name == "dynamodb.PutItem.ThrottlingException" else ""
        print(f"soak: injected {name}: {count}{crash}")


# --- running ------------------------------------------------------------------------------------


def machine() -> str:
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f", {kb / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    load = ", load average at start {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return (
        f"{platform.system()} {platform.release()} ({platform.machine()}), {os.cpu_count()} CPUs ({cpu_model()})"
        f"{memory}, Python {platform.python_version()}{load}"
    )


def minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def run_suite(suite: Suite, log: Any) -> None:
    args = [sys.executable, "-m", "pytest", suite.path, "-s", "-q", "-p", "no:cacheprovider"]
    args += ["-p", "redflag_local.bench.soak"]
    args += ["--durations=8", "--durations-min=1.0"]
    env = os.environ | {suite.variable: str(suite.size), "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled", "COLUMNS": "160"}
    suite.command = f"{suite.variable}={suite.size} pytest {suite.path} -s"
    banner = f"=== soak: {suite.title}: {suite.size:,} {suite.unit} ({suite.command})"
    print(banner, flush=True)
    log.write(banner + "\n")
    lines: list[str] = []
    started = time.monotonic()
    with subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith(QUIET):  # the functions' own JSON logs and metrics: only to --log
                sys.stdout.write(line)
                sys.stdout.flush()
            log.write(line)
            log.flush()
            lines.append(line.rstrip("\n"))
        suite.returncode = proc.wait()
    suite.seconds = time.monotonic() - started
    parse(suite, lines)


_LOG_LINE = re.compile(r"^(\.?\{\"(level|_aws)\"|(DEBUG|INFO|WARNING) +\S+:\S+:\d+ )")  # the functions' logs
_SUMMARY = re.compile(r"^=*\s*(?:\d+ (?:passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)[, ]*)+")


def parse(suite: Suite, lines: list[str]) -> None:
    """Pick the figures out of pytest's output: our prefixed lines, the slowest phases, the summary
    line and, on failure, the failure report."""
    section = ""
    example: list[str] = []  # hypothesis' "Falsifying example" / "Steps leading up to this error"
    in_example = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(("Falsifying example", "Steps leading up to this error")):
            in_example = True
            example.append(stripped)
            continue
        if in_example and line.startswith((" ", "\t")) and stripped:
            example.append(line.rstrip())
            continue
        in_example = False
        if stripped.startswith("=") and stripped.endswith("="):
            title = stripped.strip("= ").lower()
            section = (
                "durations"
                if "slowest" in title
                else "failures"
                if title in ("failures", "errors")
                else "summary"
                if "short test summary" in title
                else ""
            )
            if _SUMMARY.match(stripped):
                suite.summary = stripped.strip("= ")
            continue
        if _SUMMARY.match(stripped) and (" in " in stripped):
            suite.summary = stripped.strip("= ")
            continue
        for prefix in FIGURE_PREFIXES:
            if prefix in line and stripped.startswith(prefix):
                suite.figures.append(stripped)
        if section == "durations" and stripped and not stripped.startswith("("):
            suite.durations.append(stripped)
        elif section in ("failures", "summary") and (suite.returncode or 0) != 0 and not _LOG_LINE.match(line):
            suite.failure.append(line.rstrip())
    if example and (suite.returncode or 0) != 0:
        suite.failure = [*example, "", *suite.failure]
    suite.failure = suite.failure[:MAX_FAILURE_LINES]


def render(all_suites: list[Suite], started: datetime, total: float, done: bool, revision: str = "") -> str:
    ran = [s for s in all_suites if s.returncode is not None]
    verdict = (
        "all passed"
        if ran and all(s.passed for s in ran)
        else "FAILED: " + ", ".join(s.title for s in ran if not s.passed)
    )
    out = [
        "# Soak run",
        "",
        "`make soak` runs the slow suites at their full sizes, one after the other, and writes this file",
        "(`local/redflag_local/bench/soak.py`; `make test` runs the same suites smaller, at each file's defaults).",
        "Figures are from the last run; they depend on the machine and on what else ran on it (the load",
        "average below).",
        "",
        "| | |",
        "|---|---|",
        f"| date | {started:%Y-%m-%d %H:%M} UTC |",
        f"| commit | {revision or commit()} |",
        f"| machine | {machine()} |",
        f"| total wall time | {minutes(total)}{'' if done else ' (still running)'} |",
        f"| result | {verdict if ran else 'nothing ran yet'} |",
        "",
        "| suite | size | wall time | result |",
        "|---|---|---|---|",
    ]
    for s in all_suites:
        if s.returncode is None:
            out.append(f"| {s.title} | {s.size:,} {s.unit} | | not run |")
        else:
            result = ("passed" if s.passed else "**FAILED**") + (f" ({s.summary})" if s.summary else "")
            out.append(f"| {s.title} | {s.size:,} {s.unit} | {minutes(s.seconds)} | {result} |")
    for s in ran:
        out += ["", f"## {s.title}: {s.size:,} {s.unit}", "", f"`{s.command}`: {minutes(s.seconds)}", ""]
        blocks = [("Figures", s.figures), ("Slowest phases (pytest --durations)", s.durations)]
        if not s.passed:
            blocks.append(("Failure (pytest's report, cut)", s.failure))
        for title, lines in blocks:
            if lines:
                out += [f"{title}:", "", "```", *lines, "```", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fault-tasks", type=int, default=10_000)
    parser.add_argument("--fuzz-requests", type=int, default=10_000)
    parser.add_argument("--property-examples", type=int, default=1_000)
    parser.add_argument("--only", action="append", choices=["fault", "fuzz", "property"])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--log", type=Path, default=None, help="also write pytest's full output here")
    parser.add_argument("--commit", default="", help="what to record as the commit (default: git's HEAD here)")
    args = parser.parse_args(argv)
    chosen = suites(args.fault_tasks, args.fuzz_requests, args.property_examples)
    chosen = [s for s in chosen if not args.only or s.key in args.only]
    started, clock = datetime.now(UTC), time.monotonic()
    with args.log.open("w") if args.log else open(os.devnull, "w") as log:
        for suite in chosen:
            run_suite(suite, log)
            args.out.write_text(render(chosen, started, time.monotonic() - clock, False, args.commit))
    args.out.write_text(render(chosen, started, time.monotonic() - clock, True, args.commit))
    print(f"=== soak: {'all passed' if all(s.passed for s in chosen) else 'FAILED'}; figures in {args.out}")
    for s in chosen:
        print(f"    {s.title}: {'passed' if s.passed else 'FAILED'} in {minutes(s.seconds)} ({s.summary})")
    return 0 if all(s.passed for s in chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
