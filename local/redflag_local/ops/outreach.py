"""`redflag report`'s "What came of the emails" section: per rule and arm, the response rate, and did it
help, with its uncertainty (``redflag_local.ops.uplift``). Built from the stats table; ``report.py``
adds it to its report (``Report.outreach``) and renders it after its own tables.

Where each figure comes from (docs/operations.md, "Response rate"):

- **flagged**, **completed after the flag**, per arm: the stats fold's flagged runs and the flagged
  runs completed afterwards, split by the rule's holdout (``flagged_emailed``/``_holdout``,
  ``done_after_flag_emailed``/``_holdout`` of the task's ``all`` row);
- **sent**, **delivered**, **bounced**, **complained**, **clicked** (the emailed arm; a held-out user
  is sent nothing): SES's own events about each email, counted per rule by the feedback function once
  per email and measure (``email#{task}``); clicked is the help link followed, the one link SES tracks;
- **active 7 / 28 days after the flag**, per arm: the flagged users of an account whose activity (as
  the account counters count it) fell on a day in the week from day 7 (28) after the flag, among
  those whose week is over (``retention#{task}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel

from redflag import kinds
from redflag.adapters.stats_table import EMAIL_MEASURES, RETENTION_DAYS, RETENTION_WEEK
from redflag.core.weeks import day_of
from redflag.kinds import Rule
from redflag_local.ops import uplift

ARMS = ("emailed", "holdout")
ARM_NAMES = {"emailed": "emailed", "holdout": "held out"}


class OutreachSource(Protocol):
    def email_counts(self, tasks: Sequence[str]) -> dict[tuple[str, str], dict[str, int]]: ...

    def retention(self, task: str) -> dict[tuple[str, str], dict[str, int]]: ...


class ArmRow(BaseModel):
    arm: str  # emailed, holdout
    flagged: int  # flagged runs of users on this side of the holdout
    sent: int
    delivered: int
    bounced: int
    complained: int
    clicked: int  # emails whose help link was followed (a response)
    completed_after_flag: int


class RuleOutcome(BaseModel):
    task: str
    label: str
    arms: list[ArmRow]
    response_rate: float | None  # clicked / delivered (emailed arm); None: none delivered, or no help link
    comparisons: list[dict[str, Any]]  # uplift.Comparison.as_dict(): completion, then retention at 7 and 28 days
    lines: list[str]  # what the report prints under the table for this rule


def build(
    source: OutreachSource, rules: Mapping[str, Rule], now: float, flags: Mapping[str, tuple[int, int, int, int]]
) -> list[RuleOutcome]:
    """Each rule that emails users: ``flags`` is the stats fold's (flagged, completed after) per arm,
    ``(flagged_emailed, done_emailed, flagged_holdout, done_holdout)`` by task."""
    tasks = [t for t in sorted(flags) if t in rules and "user" in rules[t].notify]
    counts = source.email_counts(tasks) if tasks else {}
    today = day_of(now)
    out = []
    for task in tasks:
        flagged_e, done_e, flagged_h, done_h = flags[task]
        emailed = counts.get((task, "emailed"), {})
        arms = [
            ArmRow(arm="emailed", flagged=flagged_e, completed_after_flag=done_e,
                   **{m: emailed.get(m, 0) for m in EMAIL_MEASURES}),
            ArmRow(arm="holdout", flagged=flagged_h, completed_after_flag=done_h,
                   **dict.fromkeys(EMAIL_MEASURES, 0)),
        ]  # fmt: skip
        delivered, clicked = emailed.get("delivered", 0), emailed.get("clicked", 0)
        rate = round(clicked / delivered, 3) if delivered and rules[task].help_url else None
        runs = kinds.get(rules[task].kind).counts_runs  # an inactivity rule has no run to complete
        comparisons, lines = _helped(task, source, today, arms, runs)
        if rules[task].help_url is None:
            lines.insert(0, "response: not measured (the rule has no help_url: the help link is the one tracked)")
        elif delivered:
            lines.insert(0, f"response: {clicked} of {delivered} delivered emails had their help link followed "
                            f"({100 * clicked / delivered:.0f}%)")  # fmt: skip
        out.append(RuleOutcome(task=task, label=rules[task].label, arms=arms, response_rate=rate,
                               comparisons=comparisons, lines=lines))  # fmt: skip
    return out


def _helped(
    task: str, source: OutreachSource, today: str, arms: list[ArmRow], runs: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Completion after the flag (for a kind whose runs complete), then retention at 7 and 28 days."""
    emailed, held = arms
    comparisons: list[dict[str, Any]] = []
    lines: list[str] = []
    try:
        if runs:
            done = uplift.completion_after_flag(
                uplift.Arm(emailed.flagged, emailed.completed_after_flag),
                uplift.Arm(held.flagged, held.completed_after_flag),
            )
            comparisons, lines = [done.as_dict()], done.lines()
        kept = uplift.retention(*retention_arms(source.retention(task), today))
    except RuntimeError as exc:  # statsmodels, the optional extra, is missing
        return [], [str(exc)]
    waiting = []
    for days in RETENTION_DAYS:
        c = kept[days]
        comparisons.append(c.as_dict())
        if c.emailed.users + c.held_out.users == 0:
            waiting.append(days)
        else:
            lines += c.lines()
    if waiting:  # one line for the horizons no flagged user has reached yet
        horizons = " and ".join(map(str, waiting))
        lines.append(
            f"active {horizons} days after the flag: no flagged user is {min(waiting) + RETENTION_WEEK} days "
            "past the flag yet"
        )
    return comparisons, lines


def retention_arms(
    rows: Mapping[tuple[str, str], Mapping[str, int]], today: str
) -> tuple[dict[int, uplift.Arm], dict[int, uplift.Arm]]:
    """(emailed, held out): for each horizon, the users flagged on a day whose week from day N is over
    by ``today``, and how many of them were active in it."""
    out: dict[str, dict[int, uplift.Arm]] = {arm: {} for arm in ARMS}
    for days in RETENTION_DAYS:
        for arm in ARMS:
            users = hits = 0
            for (row_arm, day), c in rows.items():
                if row_arm == arm and _days_between(day, today) >= days + RETENTION_WEEK:
                    users += c.get("flagged", 0)
                    hits += c.get(f"active{days}", 0)
            out[arm][days] = uplift.Arm(users, min(hits, users))
    return out["emailed"], out["holdout"]


def _days_between(first: str, later: str) -> int:
    a = datetime.strptime(first, "%Y-%m-%d").replace(tzinfo=UTC)
    b = datetime.strptime(later, "%Y-%m-%d").replace(tzinfo=UTC)
    return (b - a).days


# --- rendering: one table, then the lines of each rule; readable at 80 columns ---------------------------

COLUMNS = ("arm", "flagged", "sent", "delivered", "bounced", "complained", "clicked", "done after")


def rows(outcome: RuleOutcome) -> list[list[str]]:
    """One rule's table: a row per arm (a held-out user is sent nothing: no email columns)."""
    out = []
    for a in outcome.arms:
        email = [str(getattr(a, m)) for m in EMAIL_MEASURES] if a.arm == "emailed" else ["-"] * len(EMAIL_MEASURES)
        out.append([ARM_NAMES[a.arm], str(a.flagged), *email, str(a.completed_after_flag)])
    return out


TITLE = "What came of the emails: response, and did it help (emailed vs held out)"
NOTE = (
    "flagged and done after: flagged runs, and those completed after the flag; sent to clicked: what SES "
    "reported of each email (clicked: its help link followed). 95% CI: the range of differences the data "
    "is consistent with; p: how often a difference this large would show if the email changed nothing."
)


def render(outcomes: Sequence[RuleOutcome], fmt: str, console: Any) -> None:
    """The section, in ``table`` or ``md`` (``json`` is the report's own dump)."""
    if not outcomes:
        return
    if fmt == "md":
        lines = ["", f"## {TITLE}"]
        for o in outcomes:
            lines += ["", f"**{_md(o.label)}** (`{o.task}`)", ""]
            lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
            lines += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows(o)]
            lines += [""] + [f"- {_md(line)}" for line in o.lines]
        lines += ["", NOTE]
        console.print("\n".join(lines), markup=False, highlight=False)
        return
    from rich import box
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    console.print(f"[bold]{escape(TITLE)}[/]", highlight=False)
    for o in outcomes:
        console.print(f"\n[bold]{escape(o.label)}[/] ({escape(o.task)})", highlight=False)
        table = Table(*COLUMNS, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
        for column in table.columns[1:]:
            column.justify = "right"
        for r in rows(o):
            table.add_row(*(escape(c) for c in r))
        console.print(table)
        for line in o.lines:  # wrapped lines keep the indent
            console.print(Padding(Text(line), (0, 0, 0, 2)), highlight=False)
    console.print(Text("\n" + NOTE, style="dim"), highlight=False)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


# --- the plot: each comparison with its interval -------------------------------------------------------


def plot_axes(ax: Any, outcomes: Sequence[RuleOutcome]) -> bool:
    """Emailed minus held out, in points, with its 95% interval, for each rule and measure that has
    both arms; False when there is nothing to draw."""
    shown = [(o, c) for o in outcomes for c in o.comparisons if c.get("ci95") is not None]
    if not shown:
        return False
    labels = [f"{o.task}: {c['measure']}" for o, c in shown]
    diffs = [100 * c["difference"] for _, c in shown]
    low = [100 * (c["difference"] - c["ci95"][0]) for _, c in shown]
    high = [100 * (c["ci95"][1] - c["difference"]) for _, c in shown]
    ys = list(range(len(shown)))[::-1]
    ax.errorbar(diffs, ys, xerr=[low, high], fmt="o", color="#3b6ea5", ecolor="#8fb3d9", capsize=4)
    ax.axvline(0, color="#666", linewidth=1)
    for y, (_, c) in zip(ys, shown, strict=True):
        p = c.get("p_value")
        note = "p n/a" if p is None else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")
        if c.get("small"):
            note += ", not enough data yet"
        ax.annotate(note, (100 * c["ci95"][1], y), xytext=(6, -3), textcoords="offset points", fontsize=7)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlim(-100, 100)
    ax.set_ylim(-0.6, len(shown) - 0.4)
    ax.set_xlabel("emailed minus held out (percentage points): the difference and its 95% CI (Newcomb)")
    ax.set_title("Did it help? Emailed vs held out, with 95% intervals")
    return True
