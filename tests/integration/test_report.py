"""`redflag report` on a stack that learned something: tasks by segment, accounts, and the plot."""

import json
from datetime import UTC, datetime

import pytest

from redflag_local.ops import report
from redflag_local.standin.stack import LocalStack

LEARNED = {
    "label": "writing a report",
    "threshold": {"relative_to": "p50", "factor": 2, "min_samples": 5, "fallback_seconds": 3600},
    "segments": {"pro": {"threshold_seconds": 1200}},
    "max_failures": 3,
}


@pytest.fixture(scope="module")
def learned():
    monday = 1_800_835_200.0  # 2027-01-25 00:00 UTC, a Monday
    with LocalStack(clock_start=monday + 8 * 3600) as stack:
        stack.put_rules({"report": LEARNED, "app": {"label": "using the app", "threshold_seconds": 60}})

        def at(offset):
            return datetime.fromtimestamp(stack.clock() + offset, UTC).isoformat()

        events = []
        for i in range(8):
            user = {"segment": "pro" if i % 2 else "trial", "account_id": "acme" if i < 6 else "globex"}
            events += [
                {"type": "task_started", "task": "report", "user_id": f"u{i}", "occurred_at": at(-60 * (3 + i)),
                 "user": user},
                {"type": "task_completed", "task": "report", "user_id": f"u{i}", "user": user},
                {"type": "user_active", "task": "app", "user_id": f"u{i}", "user": user},
            ]  # fmt: skip
        events.append({"type": "task_started", "task": "report", "user_id": "stuck", "user": {"account_id": "acme"}})
        stack.post_events({"events": events})
        stack.tick(7200)  # "stuck" is flagged by the fallback threshold (an hour)
        yield stack, report.from_stack(stack)


def test_tasks_by_segment_with_rates_quantiles_thresholds_and_flags(learned):
    _, r = learned
    rows = {(t.task, t.segment): t for t in r.tasks}
    everyone = rows[("report", "all")]
    assert (everyone.started, everyone.completed, everyone.flags_time) == (9, 8, 1)
    assert everyone.completion_rate == pytest.approx(8 / 9, abs=0.001)
    assert 180 <= everyone.p50 <= 420 and everyone.p50 <= everyone.p90
    assert everyone.basis == "learned" and everyone.threshold == pytest.approx(2 * everyone.p50, rel=0.01)
    assert rows[("report", "pro")].threshold == 1200 and rows[("report", "pro")].basis == "fixed"
    assert rows[("report", "trial")].completed == 4
    assert everyone.flag_rate == pytest.approx(1 / 9, abs=0.001)


def test_accounts_with_actives_stickiness_and_flags(learned):
    _, r = learned
    accounts = {a.account_id: a for a in r.accounts}
    assert set(accounts) == {"acme", "globex"}
    assert (accounts["acme"].dau, accounts["acme"].wau, accounts["acme"].flags) == (6, 6, 1)
    assert accounts["globex"].wau == 2 and accounts["globex"].stickiness == 1.0


def test_formats_render_and_json_round_trips(learned, capsys):
    from rich.console import Console

    _, r = learned
    for fmt in ("table", "md", "json"):
        report.render(r, fmt, Console(width=200, force_terminal=False))
    out = capsys.readouterr().out
    assert "| report | all | 9 | 8 |" in out
    assert report.from_json(r.model_dump_json()) == r
    assert json.loads(r.model_dump_json())["accounts"]


def test_the_plot_is_a_png_with_every_task(learned, tmp_path):
    _, r = learned
    path = report.plot(r, tmp_path / "report.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_at_80_columns_every_line_fits_and_task_names_are_whole(learned):
    """The table format folds instead of cutting: it once truncated every column to `cr…` at 80."""
    import io

    from rich.console import Console

    _, r = learned
    long = "create_email_template_from_a_saved_design_for_the_spring_campaign"  # 65 characters
    tasks = [t.model_copy(update={"task": long if t.task == "report" else t.task}) for t in r.tasks]
    out = io.StringIO()
    report.render(r.model_copy(update={"tasks": tasks}), "table", Console(file=out, width=80, force_terminal=False))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    assert any(line.startswith(f"{long} (writing") for line in text.splitlines())  # the head wraps between words
    assert f"{long} (writing a report), segment trial" in " ".join(text.split())
    assert "started 9 · completed 8 · rate 89%" in text  # each figure with its name, never split
    assert "acme" in text and "WAU 6" in text
