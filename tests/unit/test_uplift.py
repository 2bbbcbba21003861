"""Did it help, with uncertainty (issue 15): the interval and p-value are statsmodels', computed the
same way here; two textbook examples pinned by value; the "not enough data" line appears below the
documented sample size and not at or above it."""

import math
import re

import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_effectsize, proportions_ztest

from redflag_local.ops import uplift
from redflag_local.ops.uplift import Arm, completion_after_flag, planning_rate, retention, users_needed


def test_a_fixed_example_is_the_librarys_interval_and_p_value():
    got = completion_after_flag(Arm(users=120, hits=42), Arm(users=30, hits=6))
    low, high = confint_proportions_2indep(42, 120, 6, 30, method="newcomb", compare="diff")
    _, p = proportions_ztest([42, 6], [120, 30])
    assert got.difference == pytest.approx(0.15)
    assert (got.ci_low, got.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert got.p_value == pytest.approx(p, abs=1e-12)
    (line, small) = got.lines()
    assert line == (
        "completed after the flag: emailed 42/120 (35.0%) vs held out 6/30 (20.0%): +15.0 points, "
        "95% CI -4.0 to +28.7 (Newcomb), p = 0.115 (two-proportion z test)"
    )
    assert small.startswith("not enough data yet — about ")
    assert "newcomb" in got.as_dict()["methods"]["ci"] and "proportions_ztest" in got.as_dict()["methods"]["test"]


def test_newcombs_own_example():
    """Newcomb (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80, method 10:
    0.0524 to 0.3339."""
    got = completion_after_flag(Arm(70, 56), Arm(80, 48))
    assert (round(got.ci_low, 4), round(got.ci_high, 4)) == (0.0524, 0.3339)


def test_the_z_test_example_in_statsmodels_documentation():
    """proportions_ztest's documented example: 5 of 83 vs 12 of 99, p = 0.159 (z = -1.408)."""
    got = completion_after_flag(Arm(83, 5), Arm(99, 12))
    assert round(got.p_value, 3) == 0.159


def test_the_documented_sample_size_is_the_power_calculation():
    h = proportion_effectsize(0.6, 0.5)
    assert users_needed(0.5) == math.ceil(NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8)) == 388
    table = re.findall(r"^\s+(\d+) %\s+(\d+)$", uplift.__doc__, re.M)
    assert len(table) == 4 and all(users_needed(int(rate) / 100) == int(n) for rate, n in table)


@pytest.mark.parametrize(("per_arm", "more"), [(2, 386), (194, 194), (386, 2)])
def test_the_not_enough_data_line_below_the_documented_size(per_arm, more):
    half = per_arm // 2  # both arms at 50 %: the documented 388 per arm
    got = completion_after_flag(Arm(per_arm, half), Arm(per_arm, half))
    assert got.needed_per_arm == 388 and got.small
    assert got.lines()[-1] == (
        f"not enough data yet — about {more} more flagged users per arm are needed to see a difference of 10 points"
    )


@pytest.mark.parametrize("per_arm", [388, 400, 1000])
def test_no_such_line_at_or_above_it(per_arm):
    half = per_arm // 2
    got = completion_after_flag(Arm(per_arm, half), Arm(per_arm, half))
    assert not got.small and len(got.lines()) == 1 and "not enough data" not in got.lines()[0]


def test_the_smaller_arm_decides():
    got = completion_after_flag(Arm(1000, 500), Arm(100, 50))  # a 10 % holdout
    assert got.small and got.more_per_arm == got.needed_per_arm - 100


def test_few_users_plan_on_the_most_demanding_rate_the_data_allows():
    assert planning_rate(0, 0) == 0.5 and planning_rate(3, 7) == 0.5  # 50 % inside the interval
    assert 0.3 < planning_rate(0, 7) < 0.5  # 0 of 7: its Wilson upper bound, not 0 %
    assert planning_rate(50, 1000) == pytest.approx(0.0652, abs=1e-3)  # close to the 5 % seen
    assert users_needed(planning_rate(0, 7)) > 300  # not the 36 a 0 % rate would claim


def test_edges_say_what_they_are():
    none_done = completion_after_flag(Arm(5, 0), Arm(2, 0))
    assert (
        none_done.p_value is None
        and "no p-value (every user in both arms had the same outcome)" in none_done.lines()[0]
    )
    empty = completion_after_flag(Arm(5, 1), Arm(0, 0))
    assert empty.difference is None and "nothing to compare yet" in empty.lines()[0] and empty.small
    with pytest.raises(ValueError):
        Arm(3, 4)


def test_retention_at_7_and_28_days():
    got = retention({7: Arm(100, 70), 28: Arm(80, 40)}, {7: Arm(25, 15), 28: Arm(20, 8)})
    assert sorted(got) == [7, 28]
    assert got[7].measure == "active 7 days after the flag" and got[7].difference == pytest.approx(0.10)
    low, high = confint_proportions_2indep(40, 80, 8, 20, method="newcomb", compare="diff")
    assert (got[28].ci_low, got[28].ci_high) == (pytest.approx(low), pytest.approx(high))
    assert (
        got[28].lines()[0].startswith("active 28 days after the flag: emailed 40/80 (50.0%) vs held out 8/20 (40.0%)")
    )
