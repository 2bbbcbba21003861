"""`redflag report`: where users struggle, from what the stats function learned (StatsTable).

Per task and segment: runs started and completed, the completion rate, the usual durations (p50, p90),
the threshold in force now (fixed, learned or its fallback) and one to consider (2 x the median, once
there are 20 completions), red flags by reason and the flag rate, and how many flagged runs were
completed afterwards: for the users emailed, and for those the rule's holdout kept from the email
(did the email help?). Per account: daily and weekly active users, stickiness (the mean daily actives
of the week over its weekly actives), last week's change, first-week participation (of the users new
last week, the share active on a second day within their first seven) and red flags. Then the
product's: funnels step by step, rates with their windows and history, accounts by health with their
scores over the weeks (``redflag_local.ops.product``); and what came of the emails, per rule and arm,
and did it help, with its uncertainty (``redflag_local.ops.outreach``).

The table format is readable in an 80-column terminal: tasks and accounts one block each, their
figures wrapped between fields (a name is folded, never cut); ``--format md|json`` keep their shape.

Sources: the local stack in-process (``redflag demo``), a running ``redflag serve`` (its
``/local/report`` route), or a deployed stack (``--profile/--region``: the StatsTable and the rules
path come from the stack's outputs). ``--plot FILE.png`` draws each task's duration histogram with the
threshold, p50 and p90 marked, each funnel's steps, each account's health score over the weeks, and the
did-it-help comparisons with their intervals (matplotlib: ``pip install -e '.[plot]'``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from redflag import kinds
from redflag.core.baselines import ALL, bucket_bounds, suggest, threshold_for
from redflag.core.text import humanize
from redflag.core.weeks import day_of, week_of, week_start, weeks_before
from redflag.kinds import Rule
from redflag.services.learning import TaskStats
from redflag_local.ops import outreach, product
from redflag_local.ops.outreach import RuleOutcome
from redflag_local.ops.product import FlagLog, FunnelSection, HealthRow, RateSection


class StatsSource(Protocol):
    def task_segments(self, task: str) -> dict[str, TaskStats]: ...

    def week_table(self, week: str) -> dict[str, dict[str, int]]: ...

    def account_days(self, account: str, days: list[str]) -> dict[str, int]: ...

    def account_flags(self, accounts: list[str]) -> dict[str, int]: ...

    def email_counts(self, tasks: list[str]) -> dict[tuple[str, str], dict[str, int]]: ...

    def retention(self, task: str) -> dict[tuple[str, str], dict[str, int]]: ...

    def rate_window(self, name: str, first: int, end: int) -> dict[str, int]: ...


class TaskRow(BaseModel):
    task: str
    label: str
    segment: str  # "all": across segments
    started: int
    completed: int
    completion_rate: float | None
    p50: float | None
    p90: float | None
    threshold: int | None
    basis: str  # fixed, learned, fallback
    suggested: int | None
    flags_time: int
    flags_failures: int
    flags_inactivity: int
    flag_rate: float | None
    done_after_flag: int
    flagged_emailed: int
    done_after_flag_emailed: int
    flagged_holdout: int
    done_after_flag_holdout: int
    buckets: dict[int, int]  # for the plot

    @property
    def rate_emailed(self) -> float | None:
        return _rate(self.done_after_flag_emailed, self.flagged_emailed)

    @property
    def rate_holdout(self) -> float | None:
        return _rate(self.done_after_flag_holdout, self.flagged_holdout)


class AccountRow(BaseModel):
    account_id: str
    dau: int  # today (UTC)
    wau: int  # this ISO week so far
    stickiness: float | None
    wau_last_week: int
    change: float | None  # this week against last, percent
    new_last_week: int
    first_week_participation: float | None
    flags: int


class Report(BaseModel):
    generated_at: str
    week: str
    tasks: list[TaskRow]
    accounts: list[AccountRow]
    outreach: list[RuleOutcome] = []  # what came of the emails, and did it help (ops/outreach.py)
    funnels: list[FunnelSection] = []  # step by step (ops/product.py)
    rates: list[RateSection] = []  # with their windows and history
    health: list[HealthRow] = []  # accounts by health, per health rule
    health_bands: dict[str, dict[str, float]] = {}  # health rule -> its bands (green, yellow)


def _rate(a: int, b: int) -> float | None:
    return None if b == 0 else round(a / b, 3)


def build(source: StatsSource, rules: dict[str, Rule], now: float, log: FlagLog | None = None) -> Report:
    """The report at ``now``; ``log``: the timers table's red flag items (a rate rule's history)."""
    rows = []
    for task, rule in sorted(rules.items()):
        kind = kinds.get(rule.kind)
        if not (kind.counts_runs or kind.counts_activity):  # no runs (usage_drop), or a section of its own (funnel)
            continue
        segments = source.task_segments(task)
        hists = {seg: s.histogram for seg, s in segments.items()}
        for seg in sorted(segments, key=lambda s: (s != ALL, s)):
            s = segments[seg]
            c = s.counts
            flags = c.get("flag_time", 0) + c.get("flag_failures", 0) + c.get("flag_inactivity", 0)
            effective = rule.for_segment(None if seg == ALL else seg)
            threshold = threshold_for(effective, None if seg == ALL else seg, hists) if kind.counts_runs else None
            started = c.get("started", 0)
            rows.append(
                TaskRow(
                    task=task,
                    label=rule.label,
                    segment="all" if seg == ALL else seg,
                    started=started,
                    completed=c.get("completed", 0),
                    completion_rate=_rate(c.get("completed", 0), started),
                    p50=s.histogram.quantile(0.5),
                    p90=s.histogram.quantile(0.9),
                    threshold=threshold.seconds if threshold else effective.threshold_seconds,
                    basis=threshold.basis if threshold else "fixed",
                    suggested=suggest(s.histogram) if kind.counts_runs else None,
                    flags_time=c.get("flag_time", 0),
                    flags_failures=c.get("flag_failures", 0),
                    flags_inactivity=c.get("flag_inactivity", 0),
                    flag_rate=_rate(flags, started) if kind.counts_runs else None,
                    done_after_flag=c.get("done_after_flag", 0),
                    flagged_emailed=c.get("flagged_emailed", 0),
                    done_after_flag_emailed=c.get("done_after_flag_emailed", 0),
                    flagged_holdout=c.get("flagged_holdout", 0),
                    done_after_flag_holdout=c.get("done_after_flag_holdout", 0),
                    buckets=dict(s.histogram.counts),
                )
            )
    this_week, last_week = week_of(now), weeks_before(now, 1)
    current, previous = source.week_table(this_week), source.week_table(last_week)
    accounts = sorted(set(current) | set(previous))
    flags = source.account_flags(accounts) if accounts else {}
    monday = week_start(now)
    days_so_far = [day_of(monday + i * 86400) for i in range(int((now - monday) // 86400) + 1)]
    account_rows = []
    for account in accounts:
        daily = source.account_days(account, days_so_far)
        wau = current.get(account, {}).get("actives", 0)
        last = previous.get(account, {}).get("actives", 0)
        mean_dau = sum(daily.values()) / len(days_so_far)
        new_last = previous.get(account, {}).get("new_users", 0)
        account_rows.append(
            AccountRow(
                account_id=account,
                dau=daily.get(day_of(now), 0),
                wau=wau,
                stickiness=round(mean_dau / wau, 3) if wau else None,
                wau_last_week=last,
                change=round(100 * (wau - last) / last, 1) if last else None,
                new_last_week=new_last,
                first_week_participation=_rate(previous.get(account, {}).get("returned", 0), new_last),
                flags=flags.get(account, 0),
            )
        )
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    arms = {r.task: (r.flagged_emailed, r.done_after_flag_emailed, r.flagged_holdout, r.done_after_flag_holdout)
            for r in rows if r.segment == "all"}  # fmt: skip
    helped = outreach.build(source, rules, now, arms)
    scored = product.accounts_by_health(source, rules, now)
    bands = {t: product.bands_of(rules, t).model_dump() for t in dict.fromkeys(h.task for h in scored)}
    return Report(generated_at=stamp, week=this_week, tasks=rows, accounts=account_rows, outreach=helped,
                  funnels=product.funnels(source, rules), rates=product.rates(source, rules, now, log),
                  health=scored, health_bands=bands)  # fmt: skip


# --- rendering ------------------------------------------------------------------------------------


def _t(seconds: float | None) -> str:
    return "" if seconds is None else humanize(seconds)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.0f}%"


TASK_COLUMNS = (
    "task", "segment", "started", "completed", "rate", "p50", "p90", "threshold", "suggested",
    "flags time/fail/idle", "flag rate", "done after flag: emailed", "held out",
)  # fmt: skip
ACCOUNT_COLUMNS = ("account", "DAU", "WAU", "stickiness", "WAU last week", "change", "new last week",
                   "1st-week return", "flags")  # fmt: skip


def task_cells(r: TaskRow) -> list[str]:
    threshold = "" if r.threshold is None else f"{_t(r.threshold)} ({r.basis})"
    return [
        r.task, r.segment, str(r.started), str(r.completed), _pct(r.completion_rate), _t(r.p50), _t(r.p90),
        threshold, _t(r.suggested), f"{r.flags_time}/{r.flags_failures}/{r.flags_inactivity}",
        _pct(r.flag_rate), _arm_cell(r.done_after_flag_emailed, r.flagged_emailed),
        _arm_cell(r.done_after_flag_holdout, r.flagged_holdout),
    ]  # fmt: skip


def _arm_cell(done: int, flagged: int) -> str:
    """``3/10 (30%)``: flagged runs of that arm completed afterwards."""
    return "" if flagged == 0 else f"{done}/{flagged} ({100 * done / flagged:.0f}%)"


def account_cells(a: AccountRow) -> list[str]:
    change = "" if a.change is None else f"{a.change:+.0f}%"
    return [
        a.account_id, str(a.dau), str(a.wau), _pct(a.stickiness), str(a.wau_last_week), change,
        str(a.new_last_week), _pct(a.first_week_participation), str(a.flags),
    ]  # fmt: skip


def _bands(report: Report) -> Any:
    from redflag.core.rules import HealthBands

    return lambda task: HealthBands.model_validate(report.health_bands.get(task, {}))


def render(report: Report, fmt: str, console: Any) -> None:
    if fmt == "json":
        console.print_json(report.model_dump_json())
        return
    found = (report.funnels, report.rates, report.health)
    if fmt == "md":
        lines = [f"## Tasks (as of {report.generated_at})", ""]
        lines += ["| " + " | ".join(TASK_COLUMNS) + " |", "|" + "---|" * len(TASK_COLUMNS)]
        lines += ["| " + " | ".join(_md(c) for c in task_cells(r)) + " |" for r in report.tasks]
        lines += ["", f"## Accounts (week {report.week})", ""]
        lines += ["| " + " | ".join(ACCOUNT_COLUMNS) + " |", "|" + "---|" * len(ACCOUNT_COLUMNS)]
        lines += ["| " + " | ".join(_md(c) for c in account_cells(a)) + " |" for a in report.accounts]
        console.print("\n".join(lines), markup=False, highlight=False)
        product.render(found, _bands(report), fmt, console)
        outreach.render(report.outreach, fmt, console)
        return
    from rich.text import Text

    console.print(Text(f"Where users struggle (as of {report.generated_at})", style="bold"), highlight=False)
    for r in report.tasks:
        cells = dict(zip(TASK_COLUMNS, task_cells(r), strict=True))
        head = f"{r.task} ({r.label})" if r.label != r.task else r.task
        _block(console, f"{head}, {'all segments' if r.segment == 'all' else 'segment ' + r.segment}", cells, 2)
    console.print(Text(f"\nAccounts (week {report.week})", style="bold"), highlight=False)
    for a in report.accounts:
        _block(console, a.account_id, dict(zip(ACCOUNT_COLUMNS, account_cells(a), strict=True)), 1)
    product.render(found, _bands(report), fmt, console)
    console.print()
    outreach.render(report.outreach, fmt, console)


def _block(console: Any, head: str, cells: dict[str, str], skip: int) -> None:
    """One row as a block: its head, then ``label value`` fields packed into lines of the console's
    width (a field never split; one longer than a line is folded by the console, never cut)."""
    from rich.text import Text

    console.print(Text(head, style="bold"), highlight=False)
    fields = [f"{k} {v}" for k, v in list(cells.items())[skip:] if v]
    width = max(20, console.width - 2)
    lines: list[str] = []
    for field in fields:
        if lines and len(lines[-1]) + 3 + len(field) <= width:
            lines[-1] += " \u00b7 " + field
        else:
            lines.append(field)
    for line in lines:
        product.indented(console, line)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def plot(report: Report, path: Path) -> Path:
    """One histogram per task (across segments), with the threshold, p50 and p90 marked; each funnel's
    steps; each health rule's accounts over the weeks; the did-it-help comparisons."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError as exc:  # an optional extra
        raise RuntimeError("--plot needs matplotlib: pip install -e '.[plot]'") from exc
    rows = [r for r in report.tasks if r.segment == "all" and r.buckets]
    compared = sum(1 for o in report.outreach for c in o.comparisons if c.get("ci95") is not None)
    drawn = product.sections(report.funnels, report.health)
    if not rows and not compared and not drawn:
        raise RuntimeError("nothing to plot yet: no completions learned")
    extra = max(2.8, 0.45 * compared + 1.5) if compared else 0.0
    sized = [max(2.4, 0.5 * len(f.steps) + 1.2) if name.startswith("funnel:") else 3.2 for name, f in drawn]
    heights = [2.8] * len(rows) + sized + ([extra] if compared else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(9, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})  # fmt: skip
    if compared:
        outreach.plot_axes(axes[-1, 0], report.outreach)
    bands = _bands(report)
    for ax, (name, drawn_on) in zip(axes[len(rows) : len(rows) + len(drawn), 0], drawn, strict=True):
        if name.startswith("funnel:"):
            product.plot_funnel(ax, drawn_on)
        else:
            product.plot_health(ax, drawn_on, bands(drawn_on[0].task))
    for ax, r in zip(axes[: len(rows), 0], rows, strict=True):
        bounds = [bucket_bounds(b) for b in sorted(r.buckets)]
        ax.bar(
            [max(low, 0.5) / 60 for low, _ in bounds],
            [r.buckets[b] for b in sorted(r.buckets)],
            width=[(high - max(low, 0.5)) / 60 for low, high in bounds],
            align="edge",
            color="#8fb3d9",
            edgecolor="#3b6ea5",
            label="completions",
        )
        ax.set_xscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        right = max([high / 60 for _, high in bounds] + [(r.threshold or 0) / 60 * 1.15])
        ax.set_xlim(left=max(bounds[0][0], 0.5) / 60 / 1.15, right=right)
        marks = [(r.p50, "p50", "#2e7d32", "--"), (r.p90, "p90", "#f9a825", "--")]
        marks.append((r.threshold, f"threshold ({r.basis})", "#c62828", "-"))
        for value, name, color, style in marks:
            if value:
                ax.axvline(value / 60, color=color, linestyle=style, linewidth=2, label=f"{name}: {_t(value)}")
        ax.set_title(f"{r.label} ({r.task}): {r.completed} completions, {r.flags_time + r.flags_failures} flags")
        ax.set_xlabel("duration (minutes, log scale)")
        ax.set_ylabel("completions")
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def from_json(text: str) -> Report:
    return Report.model_validate(json.loads(text))


# --- where the numbers come from --------------------------------------------------------------------


def from_stack(stack: Any, now: float | None = None) -> Report:
    """The report of a local stack (the demo's, or ``redflag serve``'s), its open window closed first."""
    import boto3

    from redflag.adapters.dynamodb import DynamoTimerStore
    from redflag.adapters.stats_table import DynamoStats
    from redflag.kinds import parse_rules
    from redflag_local.ops.rules_sync import SsmRuleStore

    stack.flush_windows()
    path = stack.parameters.get("RulesPath", "/redflag/rules")
    rules = parse_rules(SsmRuleStore(boto3.client("ssm"), path).read()).rules
    flags = DynamoTimerStore(stack.table_name, shards=1)  # the rate rules' changes: plain items, no due index
    return build(DynamoStats(stack.physical["StatsTable"]), rules, stack.clock() if now is None else now, flags)


def from_aws(profile: str | None, region: str | None, stack_name: str, now: float) -> Report:
    """The report of a deployed stack: its StatsTable and RulesPath outputs, read with your credentials."""
    import boto3

    from redflag.adapters.stats_table import DynamoStats
    from redflag.kinds import parse_rules
    from redflag_local.ops.rules_sync import SsmRuleStore

    session = boto3.Session(profile_name=profile, region_name=region)
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0].get("Outputs", [])
    }
    from redflag.adapters.dynamodb import DynamoTimerStore

    rules = parse_rules(SsmRuleStore(session.client("ssm"), outputs["RulesPath"]).read()).rules
    flags = DynamoTimerStore(outputs["TimersTableName"], shards=1, client=session.client("dynamodb"))
    return build(DynamoStats(outputs["StatsTableName"], client=session.client("dynamodb")), rules, now, flags)


def from_server(endpoint: str, timeout: float = 10, api_key: str | None = None) -> Report:
    """The report of a running `redflag serve` (its ``/local/report``); ``api_key`` (default
    ``REDFLAG_API_KEY``) is sent as x-api-key, which a serve started with ``--api-key`` requires."""
    import os
    import urllib.request

    key = api_key if api_key is not None else os.environ.get("REDFLAG_API_KEY")
    request = urllib.request.Request(f"{endpoint.rstrip('/')}/local/report", headers={"x-api-key": key} if key else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return from_json(response.read().decode())
