"""Did it help? Emailed vs held-out users after a red flag, with the uncertainty. Pure: counts in,
numbers and plain lines out; the report wires the data (``redflag report``).

Per rule, the rule's holdout (``holdout_percent``) keeps a random, stable share of flagged users from
the email. Comparing the two arms says what the email did, not just what happened after it:

- **completion after the flag**: the share of flagged users who completed the task afterwards;
- **retention**: the share still active 7 and 28 days after the flag: active on a day of the week
  that starts N days after the flag day (days N to N + 6), among the flagged users whose week is over
  (flagged at least N + 7 days ago). Counted by the stats function for flagged users of an account
  (``redflag.adapters.stats_table``, "Retention"), once per user and rule in 35 days.

Each comparison gives the difference, emailed minus held out, in percentage points, with:

- a **95 % interval** on the difference: Newcomb's hybrid score interval (Newcomb 1998, "method
  10"; statsmodels ``confint_proportions_2indep(..., method="newcomb", compare="diff")``), built on
  Wilson score intervals, so it stays inside [-100, +100] points and behaves with few users or none
  completing, where the textbook Wald interval (difference ± 1.96 standard errors) does not;
- a **p-value**: the two-sided two-proportion z test with the pooled proportion (statsmodels
  ``proportions_ztest``), the textbook test of "no difference". It is undefined when every user in
  both arms had the same outcome (all or none completed): shown as such, not as 1 or 0.

The two are separate well-known methods and, right at the edge (p close to 0.05), can disagree on
whether the interval holds 0: read that as borderline either way.

**Small** (and then the line "not enough data yet — about N more flagged users per arm are needed to
see a difference of X points"): an arm has fewer flagged users than a study of two equal arms needs to
detect a difference of ``detect_points`` (default 10) points with 80 % power at the 5 % level
(two-sided), from the rate seen so far in both arms together. Seen in few users, a rate is not much
to go on (0 of 7 says little), so the rate used is the one in that rate's 95 % Wilson interval
closest to 50 %, the most demanding the data still allows (50 % with no data); it converges to the
rate seen as users come in. That is statsmodels ``NormalIndPower().solve_power`` on Cohen's h
(``proportion_effectsize``) between that rate and the rate ``detect_points`` higher (lower, when
higher would pass 100 %), rounded up. N is what the smaller arm lacks; the holdout arm fills at the
holdout's share of flags (a 20 % holdout: about 5 flags for each held-out user). For 10 points:

    rate used   users needed per arm
       50 %       388
       30 %       356
       10 %       195
        5 %       133

Below that, the interval is still shown but is too wide to rule out a difference of that size.

statsmodels is the CLI's optional extra: ``pip install -e '.[stats]'``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05  # 95 % intervals, two-sided tests
POWER = 0.80
DETECT_POINTS = 10.0  # the difference worth seeing, in percentage points
NO_DATA_RATE = 0.5  # the rate assumed before there is any: the one that needs the most users
RETENTION_DAYS = (7, 28)
CI_METHOD = "Newcomb hybrid score interval (statsmodels confint_proportions_2indep, method='newcomb')"
TEST_METHOD = "two-proportion z test, pooled, two-sided (statsmodels proportions_ztest)"
POWER_METHOD = (
    "two equal arms, 80% power, 5% two-sided, Cohen's h (statsmodels NormalIndPower), from the rate in the "
    "pooled rate's 95% Wilson interval closest to 50%"
)


def _statsmodels() -> Any:
    try:
        from statsmodels.stats import power, proportion
    except ImportError as exc:  # the optional extra
        raise RuntimeError("the did-it-help statistics need statsmodels: pip install -e '.[stats]'") from exc
    return proportion, power


@dataclass(frozen=True)
class Arm:
    """One arm's counts: ``users`` flagged (the denominator), ``hits`` of them who completed (or were
    still active)."""

    users: int
    hits: int

    def __post_init__(self) -> None:
        if not 0 <= self.hits <= self.users:
            raise ValueError(f"an arm needs 0 <= hits <= users, not {self.hits}/{self.users}")

    @property
    def rate(self) -> float | None:
        return self.hits / self.users if self.users else None

    def cell(self) -> str:
        """``42/120 (35.0%)``."""
        return f"{self.hits}/{self.users} ({100 * self.rate:.1f}%)" if self.rate is not None else "0/0"


def users_needed(rate: float, detect_points: float = DETECT_POINTS) -> int:
    """Flagged users each of two equal arms needs to see a difference of ``detect_points`` from
    ``rate`` (80 % power, 5 % two-sided): NormalIndPower on Cohen's h, rounded up."""
    proportion, power = _statsmodels()
    step = detect_points / 100
    other = rate + step if rate + step <= 1 else rate - step
    h = abs(float(proportion.proportion_effectsize(other, rate)))
    n = power.NormalIndPower().solve_power(effect_size=h, alpha=ALPHA, power=POWER, ratio=1.0)
    return math.ceil(float(n))


def planning_rate(hits: int, users: int) -> float:
    """The rate the sample size is planned on: within the 95 % Wilson interval of ``hits/users``,
    the point closest to 50 % (50 % itself when the interval holds it, or with no users)."""
    if not users:
        return NO_DATA_RATE
    proportion, _ = _statsmodels()
    low, high = proportion.proportion_confint(hits, users, alpha=ALPHA, method="wilson")
    return min(max(NO_DATA_RATE, float(low)), float(high))


@dataclass(frozen=True)
class Comparison:
    """Emailed vs held out on one measure. Differences and bounds are proportions (0.15 = 15 points);
    None where there is nothing to compute."""

    measure: str
    emailed: Arm
    held_out: Arm
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    needed_per_arm: int  # the "small" line's N: users each arm needs (POWER_METHOD)
    detect_points: float
    ci_method: str = CI_METHOD
    test_method: str = TEST_METHOD

    @property
    def small(self) -> bool:
        return min(self.emailed.users, self.held_out.users) < self.needed_per_arm

    @property
    def more_per_arm(self) -> int:
        return max(0, self.needed_per_arm - min(self.emailed.users, self.held_out.users))

    def lines(self) -> list[str]:
        """What the report prints: the comparison, then the "not enough data" line when small."""
        head = f"{self.measure}: emailed {self.emailed.cell()} vs held out {self.held_out.cell()}"
        if self.difference is None:
            out = [f"{head}: nothing to compare yet (an arm has no flagged users)"]
        else:
            assert self.ci_low is not None and self.ci_high is not None
            if self.p_value is None:
                p = "no p-value (every user in both arms had the same outcome)"
            else:
                p = f"p {_p(self.p_value)} (two-proportion z test)"
            out = [
                f"{head}: {_points(self.difference)} points, 95% CI {_points(self.ci_low)} to "
                f"{_points(self.ci_high)} (Newcomb), {p}"
            ]
        if self.small:
            out.append(
                f"not enough data yet — about {self.more_per_arm} more flagged users per arm are needed to see "
                f"a difference of {self.detect_points:g} points"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "emailed": {"users": self.emailed.users, "hits": self.emailed.hits},
            "held_out": {"users": self.held_out.users, "hits": self.held_out.hits},
            "difference": self.difference,
            "ci95": [self.ci_low, self.ci_high] if self.ci_low is not None else None,
            "p_value": self.p_value,
            "small": self.small,
            "needed_per_arm": self.needed_per_arm,
            "more_per_arm": self.more_per_arm,
            "detect_points": self.detect_points,
            "methods": {"ci": self.ci_method, "test": self.test_method, "sample size": POWER_METHOD},
        }


def compare(measure: str, emailed: Arm, held_out: Arm, detect_points: float = DETECT_POINTS) -> Comparison:
    """Emailed minus held out on one measure, with its 95 % interval, p-value and the sample it needs."""
    proportion, _ = _statsmodels()
    users = emailed.users + held_out.users
    needed = users_needed(planning_rate(emailed.hits + held_out.hits, users), detect_points)
    if not emailed.users or not held_out.users:
        return Comparison(measure, emailed, held_out, None, None, None, None, needed, detect_points)
    low, high = proportion.confint_proportions_2indep(
        emailed.hits, emailed.users, held_out.hits, held_out.users, method="newcomb", compare="diff", alpha=ALPHA
    )
    p_value = None
    if 0 < emailed.hits + held_out.hits < users:  # else the pooled z statistic is 0/0
        _, p = proportion.proportions_ztest(
            [emailed.hits, held_out.hits], [emailed.users, held_out.users], alternative="two-sided"
        )
        p_value = float(p)
    difference = emailed.hits / emailed.users - held_out.hits / held_out.users
    return Comparison(measure, emailed, held_out, difference, float(low), float(high), p_value, needed, detect_points)


def completion_after_flag(emailed: Arm, held_out: Arm, detect_points: float = DETECT_POINTS) -> Comparison:
    """One rule: flagged users who completed the task after the flag, emailed vs held out."""
    return compare("completed after the flag", emailed, held_out, detect_points)


def retention(
    emailed: Mapping[int, Arm], held_out: Mapping[int, Arm], detect_points: float = DETECT_POINTS
) -> dict[int, Comparison]:
    """Still active ``days`` after the flag (7 and 28), emailed vs held out: for each horizon, the
    flagged users whose week from that day is over, and how many of them were active in it
    (``redflag_local.ops.outreach.retention_arms``)."""
    return {
        days: compare(f"active {days} days after the flag", emailed[days], held_out[days], detect_points)
        for days in RETENTION_DAYS
        if days in emailed and days in held_out
    }


def _points(share: float) -> str:
    """``+15.0`` / ``-2.6`` / ``0.0``: a proportion as signed percentage points."""
    value = round(100 * share, 1)
    return f"{value:+.1f}" if value else "0.0"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"
