"""`make bench` at a small size: the real handlers on moto, every clock configuration, one main() run
on a short-horizon plan (a few simulated minutes), and the bench's own arithmetic."""

import json

import pytest

from redflag_local.bench import lateness as bench_lateness
from redflag_local.bench import run as bench
from redflag_local.bench.model import index_writes, item_size, write_units

DELIVERY = bench_lateness.DELIVERY_DELAY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One quick bench: lateness (look-ahead, passes, TTL only) and the cost table."""
    out = tmp_path_factory.mktemp("bench")
    argv = ["--quick", "--sections", "lateness,cost", "--json", str(out / "b.json"), "--output", str(out / "b.md")]
    capture = pytest.MonkeyPatch()
    lines = []
    capture.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(str(x) for x in a)) if not k else None)
    try:
        code = bench.main(argv)
    finally:
        capture.undo()
    data = json.loads((out / "b.json").read_text())
    return code, "\n".join(lines), data, (out / "b.md").read_text()


def by_config(data, prefix):
    return next(r for r in data["lateness"] if r["config"].startswith(prefix))


def test_every_never_completed_timer_alerts_exactly_once(run):
    _, _, data, _ = run
    assert len(data["lateness"]) == 3
    for r in data["lateness"]:
        assert r["expected"] > 0
        assert r["alerts"] == r["emails"] == r["expected"] == len(r["lateness"])
        assert (r["duplicates"], r["missing"], r["unexpected"]) == (0, 0, 0)
        assert r["index_checked"] and r["ok"]


def test_look_ahead_flags_at_the_due_time(run):
    r = by_config(run[2], "look-ahead")
    assert min(r["lateness"]) >= DELIVERY[0]  # never before the timer is due
    assert max(r["lateness"]) <= 2.0 + DELIVERY[1]


def test_passes_are_at_most_one_pass_late(run):
    r = by_config(run[2], "passes")
    assert min(r["lateness"]) >= DELIVERY[0]
    assert max(r["lateness"]) <= 60 / 3 + DELIVERY[1]  # 3 passes a run: one every 20 s


def test_ttl_alone_is_at_least_eight_minutes_late(run):
    r = by_config(run[2], "TTL only")
    assert min(r["lateness"]) >= bench_lateness.TTL_LATENESS[0]
    assert max(r["lateness"]) <= bench_lateness.TTL_LATENESS[1] + DELIVERY[1]


def test_the_table_the_report_and_exit_code(run):
    code, out, data, md = run
    assert code == 0
    assert "alert lateness p99 (bench model, look-ahead)" in out and "look-ahead (default)" in out
    assert out.count(": OK") == 3
    goal = next(g for g in data["goals"] if g["measure"].startswith("alert lateness"))
    assert goal["verdict"] == "met"
    assert "## 4. Alert lateness" in md and "## 6. Cost per million tracked tasks" in md
    assert [c["design"] for c in data["cost"]][:2] == [
        "this design, 100 events a request",
        "this design, 1 event a request",
    ]


def test_dynamodb_item_sizes_and_write_units():
    item = {
        "pk": {"S": "u-1"},  # 2 + 3
        "n": {"N": "1800000000.5"},  # 1 + (11 significant digits -> 6) + 1
        "m": {"M": {"a": {"S": "xy"}, "b": {"BOOL": True}}},  # 1 + 3 + (1 + 2 + 1) + (1 + 1 + 1) = 11
        "l": {"L": [{"N": "7"}]},  # 1 + 3 + (2 + 1)
    }
    assert item_size(item) == 5 + 8 + 11 + 7
    big = {"pk": {"S": "x" * 1100}}
    assert write_units(None, item) == 1 and write_units(big, item) == 2
    armed = {"due_shard": {"N": "3"}, "due_at": {"N": "100"}}
    assert index_writes(None, armed) == 1  # the entry appears
    assert index_writes(armed, {}) == 1  # and goes
    assert index_writes(armed, {**armed, "due_at": {"N": "90"}}) == 2  # it moves
    assert index_writes(armed, dict(armed)) == 0
