"""`redflag report`'s product sections: funnels step by step, rates with their windows and history, and
accounts by health, each from what the stream and the scheduled functions already keep (no scans).

- **Funnels**: per funnel rule and step, from the step's stats row (``{funnel}/{step}``): users who
  reached the step (``entered``), who went on to a later one (``went on``), the median and p90 of the
  time from reaching it to reaching a later one, the waits that ran out (``flagged``) and required
  steps skipped. The end has no wait: its ``entered`` is the funnel's completions.
- **Rates**: per rate rule, the window the rate check reads now (``redflag.kinds.rate.window_of``: the
  rule's ``window_minutes``, ending when its runs have all settled), the share in it, the levels, and
  the rule's history of crossings and recoveries (its change items, one query of the timers table).
- **Health**: per health rule, each account's score for the week that ended and the weeks before (the
  weekly run's own computation, ``redflag.services.weekly.healths``, on the stats table's week rows),
  its band, the signals that cost it most, and its scores over the weeks (``HEALTH_WEEKS``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel

from redflag.core.baselines import ALL
from redflag.core.rules import HealthBands
from redflag.core.text import humanize
from redflag.core.weeks import weeks_before
from redflag.kinds import Rule, RuleBook, funnel, health, rate
from redflag.kinds.rate import RateChange
from redflag.services.learning import TaskStats
from redflag.services.rates import settle_of
from redflag.services.weekly import healths

HEALTH_WEEKS = 8  # the weeks of scores the report shows and plots
RATE_HISTORY = 10  # the latest changes of a rate rule shown


class ProductStats(Protocol):
    def task_segments(self, task: str) -> dict[str, TaskStats]: ...

    def week_table(self, week: str) -> dict[str, dict[str, int]]: ...

    def rate_window(self, name: str, first: int, end: int) -> dict[str, int]: ...


class FlagLog(Protocol):
    def flags(self, group: str, latest: int | None = None) -> list[tuple[str, BaseModel]]: ...


class StepRow(BaseModel):
    name: str
    label: str
    entered: int
    went_on: int | None  # None: the end
    median: float | None
    p90: float | None
    flagged: int
    skipped: int
    optional: bool = False


class FunnelSection(BaseModel):
    task: str
    label: str
    entered: int  # passes begun
    completed: int  # reached the end
    steps: list[StepRow]


class RateChangeRow(BaseModel):
    n: int
    status: str  # crossed, recovered
    rate: float
    count: int
    started: int
    at: str


class RateSection(BaseModel):
    task: str
    label: str
    watch: str
    watched: str | None  # the stats name read (a task, a funnel, "funnel/step")
    measure: str
    window_minutes: int
    window_start: str | None
    window_end: str | None
    alert_percent: float
    recover_percent: float
    rate: float | None  # percent, None when nothing started in the window
    count: int
    started: int
    min_started: int
    alerting: bool
    history: list[RateChangeRow]
    unwatchable: str | None = None


class HealthRow(BaseModel):
    task: str
    account_id: str
    week: str
    score: float
    band: str
    previous_score: float | None
    previous_band: str | None
    top: list[str]  # the signals that cost most, with the points each cost
    signals: list[dict[str, Any]]
    history: dict[str, float]  # week -> score, oldest first


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def funnels(source: ProductStats, rules: dict[str, Rule]) -> list[FunnelSection]:
    out = []
    for task, rule in sorted(rules.items()):
        if rule.kind != funnel.KIND.name or not rule.steps:
            continue
        steps = []
        last = len(rule.steps) - 1
        for i, step in enumerate(rule.steps):
            s = source.task_segments(funnel.step_name(task, step.name)).get(ALL, TaskStats())
            c = s.counts
            steps.append(
                StepRow(
                    name=step.name,
                    label=step.title,
                    entered=c.get("started", 0),
                    went_on=None if i == last else c.get("completed", 0),
                    median=None if i == last else s.histogram.quantile(0.5),
                    p90=None if i == last else s.histogram.quantile(0.9),
                    flagged=c.get("flag_stuck", 0),
                    skipped=c.get("skipped", 0),
                    optional=step.optional,
                )
            )
        whole = source.task_segments(task).get(ALL, TaskStats())
        out.append(FunnelSection(task=task, label=rule.label, entered=whole.counts.get("started", 0),
                                 completed=steps[-1].entered, steps=steps))  # fmt: skip
    return out


def rates(source: ProductStats, rules: dict[str, Rule], now: float, log: FlagLog | None) -> list[RateSection]:
    book = RuleBook(rules=rules)
    out = []
    for task, rule in sorted(book.of_kind(rate.KIND.name).items()):
        assert rule.watch is not None and rule.measure is not None and rule.alert_percent is not None
        changes = [s for _, s in (log.flags(rate.group_of(task)) if log else []) if isinstance(s, RateChange)]
        history = [RateChangeRow(n=c.n, status=c.status, rate=c.rate, count=c.count, started=c.started,
                                 at=_iso(c.at) or "") for c in changes[-RATE_HISTORY:]]  # fmt: skip
        common: dict[str, Any] = {
            "task": task, "label": rule.label, "watch": rule.watch, "measure": rule.measure,
            "window_minutes": rule.window_minutes, "alert_percent": rule.alert_percent,
            "recover_percent": rate.recover_level(rule), "min_started": rule.min_started,
            "alerting": bool(changes and changes[-1].crossed), "history": history,
        }  # fmt: skip
        found = settle_of(book, rule)
        if isinstance(found, str):
            out.append(RateSection(**common, watched=None, window_start=None, window_end=None, rate=None, count=0,
                                   started=0, unwatchable=found))  # fmt: skip
            continue
        name, settle = found
        first, end = rate.window_of(rule, settle, now)
        share, count, started = rate.measured(rule, source.rate_window(name, first, end))
        out.append(RateSection(**common, watched=name, window_start=_iso(first * 60.0), window_end=_iso(end * 60.0),
                               rate=share, count=count, started=started))  # fmt: skip
    return out


def accounts_by_health(source: ProductStats, rules: dict[str, Rule], now: float) -> list[HealthRow]:
    scoring = {t: r for t, r in sorted(rules.items()) if r.kind == health.KIND.name}
    if not scoring:
        return []
    weeks = [weeks_before(now, n) for n in range(1, HEALTH_WEEKS + 2)]  # newest first, and one before
    tables = {w: source.week_table(w) for w in weeks}
    out = []
    for task, rule in scoring.items():
        by_week = {w: healths(task, rule, w, tables[w], tables[b]) for w, b in itertools.pairwise(weeks)}
        latest, before = by_week[weeks[0]], by_week[weeks[1]]
        for account, h in latest.items():
            prior = before.get(account)
            history = {w: by_week[w][account].score for w in reversed(weeks[:-1]) if account in by_week[w]}
            out.append(
                HealthRow(
                    task=task,
                    account_id=account,
                    week=h.week,
                    score=h.score,
                    band=h.band,
                    previous_score=prior.score if prior else None,
                    previous_band=prior.band if prior else None,
                    top=[f"{s.text} (-{s.lost:g})" for s in h.top()],
                    signals=[s.model_dump() | {"text": s.text} for s in h.signals],
                    history=history,
                )
            )
    return sorted(out, key=lambda r: (r.task, r.score, r.account_id))


def bands_of(rules: dict[str, Rule], task: str) -> HealthBands:
    rule = rules.get(task)
    return (rule.bands if rule is not None and rule.bands else None) or HealthBands()


# --- rendering: readable at 80 columns, folding, never cutting -----------------------------------------


def _t(seconds: float | None) -> str:
    return "" if seconds is None else humanize(seconds)


def _hm(iso: str | None) -> str:
    return "" if not iso else iso[:16].replace("T", " ")


def step_title(s: StepRow) -> str:
    name = s.label if s.label == s.name else f"{s.label} ({s.name})"
    return name + (", optional" if s.optional else "")


STEP_COLUMNS = ("step", "entered", "went on", "median", "p90", "flagged", "skipped")


def step_cells(s: StepRow) -> list[str]:
    on = "" if s.went_on is None else f"{s.went_on}"
    if s.went_on is not None and s.entered:
        on += f" ({100 * s.went_on / s.entered:.0f}%)"
    return [step_title(s), str(s.entered), on or "(end)", _t(s.median), _t(s.p90), str(s.flagged), str(s.skipped)]


def funnel_title(f: FunnelSection) -> str:
    done = f" ({100 * f.completed / f.entered:.0f}%)" if f.entered else ""
    return f"Funnel: {f.label} ({f.task}): {f.entered} entered, {f.completed} reached the end{done}"


def rate_lines(r: RateSection) -> list[str]:
    head = f"{r.label} ({r.task}): {r.measure} of {r.watched or r.watch}"
    if r.unwatchable:
        return [head, f"watches nothing: {r.unwatchable}"]
    side = "below" if r.measure == "conversion" else "above"
    back = "over" if r.measure == "conversion" else "under"
    if r.rate is None or r.started < r.min_started:
        now = f"{r.started} started (judged from {r.min_started})"
    else:
        now = f"{r.rate:g}% ({r.count} of {r.started})"
    window = f"in the {humanize(r.window_minutes * 60)} to {_hm(r.window_end)} UTC"
    state = "ALERTING" if r.alerting else "ok"
    lines = [head, f"now {now} {window}; alert {side} {r.alert_percent:g}%, recovered {back} "
                   f"{r.recover_percent:g}%: {state}"]  # fmt: skip
    if r.history:
        changes = "; ".join(f"{_hm(c.at)} {c.status} at {c.rate:g}% ({c.count} of {c.started})" for c in r.history)
        lines.append(f"history: {changes}")
    else:
        lines.append("history: no crossing yet")
    return lines


def health_lines(h: HealthRow) -> list[str]:
    was = f" (was {h.previous_band} {h.previous_score:g})" if h.previous_band is not None else ""
    lines = [f"{h.account_id}: {h.score:g} {h.band}{was}"]
    if h.top:
        lines.append("most of it: " + "; ".join(h.top))
    if len(h.history) > 1:
        lines.append("weeks: " + ", ".join(f"{w[-3:]} {s:g}" for w, s in h.history.items()))
    return lines


def health_title(task: str, week: str, bands: HealthBands) -> str:
    return f"Accounts by health ({task}, week {week}; green from {bands.green:g}, yellow from {bands.yellow:g})"


def render(
    found: tuple[Sequence[FunnelSection], Sequence[RateSection], Sequence[HealthRow]],
    bands: Callable[[str], HealthBands],
    fmt: str,
    console: Any,
) -> None:
    """The three sections in ``table`` or ``md`` (``json`` is the report's own dump)."""
    fs, rs, hs = found
    if fmt == "md":
        lines: list[str] = []
        for f in fs:
            lines += ["", f"## {_md(funnel_title(f))}", ""]
            lines += ["| " + " | ".join(STEP_COLUMNS) + " |", "|" + "---|" * len(STEP_COLUMNS)]
            lines += ["| " + " | ".join(_md(c) for c in step_cells(s)) + " |" for s in f.steps]
        if rs:
            lines += ["", "## Rates", ""]
            for r in rs:
                head, *rest = rate_lines(r)
                lines += [f"- **{_md(head)}**"] + [f"  - {_md(line)}" for line in rest]
        for task in dict.fromkeys(h.task for h in hs):
            rows = [h for h in hs if h.task == task]
            lines += ["", f"## {_md(health_title(task, rows[0].week, bands(task)))}", ""]
            lines += ["| account | score | band | was | most of it | weeks |", "|---|---|---|---|---|---|"]
            for h in rows:
                was = "" if h.previous_band is None else f"{h.previous_band} {h.previous_score:g}"
                weeks = ", ".join(f"{w[-3:]} {s:g}" for w, s in h.history.items())
                cells = [h.account_id, f"{h.score:g}", h.band, was, "; ".join(h.top), weeks]
                lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
        if lines:
            console.print("\n".join(lines), markup=False, highlight=False)
        return
    from rich import box
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    for f in fs:
        console.print(Text("\n" + funnel_title(f), style="bold"), highlight=False)
        table = Table(*STEP_COLUMNS, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
        table.columns[0].overflow = "fold"
        table.columns[0].ratio = 1
        for column in table.columns[1:]:
            column.justify, column.no_wrap = "right", True
        for s in f.steps:
            table.add_row(*(escape(c) for c in step_cells(s)))
        console.print(table)
    if rs:
        console.print(Text("\nRates (the product's, over rolling windows)", style="bold"), highlight=False)
        for r in rs:
            head, *rest = rate_lines(r)
            console.print(Text(head, style="bold"), highlight=False)
            for line in rest:
                indented(console, line)
    for task in dict.fromkeys(h.task for h in hs):
        rows = [h for h in hs if h.task == task]
        console.print(Text("\n" + health_title(task, rows[0].week, bands(task)), style="bold"), highlight=False)
        colour = {"green": "green", "yellow": "yellow", "red": "bold red"}
        for h in rows:
            head, *rest = health_lines(h)
            console.print(Text(head, style=colour.get(h.band, "")), highlight=False)
            for line in rest:
                indented(console, line)


def indented(console: Any, line: str, indent: int = 2) -> None:
    """A line wrapped at the console's width under an indent (words kept whole; a word longer than a
    line is folded, never cut), printed without trailing padding."""
    import textwrap

    from rich.text import Text

    width = max(20, console.width - indent)
    for piece in textwrap.wrap(line, width, break_long_words=True, break_on_hyphens=False) or [""]:
        console.print(Text(" " * indent + piece), highlight=False, soft_wrap=True)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


# --- the plot ---------------------------------------------------------------------------------------------


def plot_funnel(ax: Any, f: FunnelSection) -> None:
    """Users who reached each step (bars), the share who went on, and the waits flagged."""
    ys = list(range(len(f.steps)))[::-1]
    ax.barh(ys, [s.entered for s in f.steps], color="#8fb3d9", edgecolor="#3b6ea5", label="reached the step")
    ax.barh(ys, [s.flagged for s in f.steps], color="#c62828", alpha=0.7, label="stuck there (flagged)")
    top = max([s.entered for s in f.steps] + [1])
    for y, s in zip(ys, f.steps, strict=True):
        note = f"{s.entered}" + (
            "" if s.went_on is None or not s.entered else f", {100 * s.went_on / s.entered:.0f}% on"
        )
        if s.median is not None:
            note += f", median {_t(s.median)}"
        ax.annotate(note, (s.entered, y), xytext=(4, -3), textcoords="offset points", fontsize=7)
    ax.set_yticks(ys)
    ax.set_yticklabels([s.label for s in f.steps], fontsize=8)
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("users")
    ax.set_title(f"Funnel: {f.label} ({f.task})")
    ax.legend(loc="lower right", fontsize=7)


def plot_health(ax: Any, hs: Sequence[HealthRow], bands: HealthBands) -> None:
    """Each account's score over the weeks, on the bands."""
    weeks = sorted({w for h in hs for w in h.history})
    ax.axhspan(0, bands.yellow, color="#c62828", alpha=0.08)
    ax.axhspan(bands.yellow, bands.green, color="#f9a825", alpha=0.10)
    ax.axhspan(bands.green, 100, color="#2e7d32", alpha=0.08)
    for h in hs:
        xs = [weeks.index(w) for w in h.history]
        ax.plot(xs, list(h.history.values()), marker="o", linewidth=1.5, label=h.account_id)
    ax.set_xticks(range(len(weeks)))
    ax.set_xticklabels([w[-3:] for w in weeks], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("health score")
    ax.set_title(f"Account health over the weeks ({hs[0].task})")
    ax.legend(loc="lower left", fontsize=7, ncol=min(4, len(hs)))


def sections(report_funnels: Sequence[FunnelSection], hs: Sequence[HealthRow]) -> list[tuple[str, Any]]:
    """What the plot draws of this module: one axis per funnel with entries, one per health rule."""
    out: list[tuple[str, Any]] = [(f"funnel:{f.task}", f) for f in report_funnels if any(s.entered for s in f.steps)]
    out += [(f"health:{t}", [h for h in hs if h.task == t]) for t in dict.fromkeys(h.task for h in hs)]
    return out
