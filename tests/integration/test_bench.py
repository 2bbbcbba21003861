"""The lateness bench at a small size: the real handlers on moto, both clock configurations."""

import pytest

from redflag_local import bench


@pytest.fixture(scope="module")
def results():
    sweeper, ttl_only = bench.run(timers=60, seed=11)
    return sweeper, ttl_only


def test_every_never_completed_timer_alerts_exactly_once(results):
    for r in results:
        assert r.expected > 0
        assert r.alerts == r.emails == r.expected == len(r.lateness)
        assert (r.duplicates, r.missing, r.unexpected) == (0, 0, 0)
        assert r.ok


def test_the_sweeper_alerts_within_a_minute_plus_delivery(results):
    sweeper, _ = results
    bound = bench.SWEEP_EVERY / 3 + bench.DELIVERY_DELAY[1]  # 3 passes a run: one every 20 s
    assert sweeper.pct(0.99) <= bound
    assert max(sweeper.lateness) <= bound
    assert min(sweeper.lateness) >= bench.DELIVERY_DELAY[0]  # never before the timer is due


def test_ttl_alone_is_at_least_eight_minutes_late(results):
    _, ttl_only = results
    assert min(ttl_only.lateness) >= bench.TTL_LATENESS[0]
    assert max(ttl_only.lateness) <= bench.TTL_LATENESS[1] + bench.DELIVERY_DELAY[1]
    assert ttl_only.pct(0.5) > 10 * (bench.SWEEP_EVERY + bench.DELIVERY_DELAY[1])


def test_the_table_and_exit_code(capsys):
    assert bench.main(["--timers", "5", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "sweeper 3/min + TTL backstop" in out and "TTL only" in out
    assert out.count(": OK") == 2
