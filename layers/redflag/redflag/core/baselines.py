"""What "usual" is: duration distributions learned from completions, and the threshold a rule derives
from them. Pure Python.

A distribution is a histogram over log-spaced buckets: bucket ``i`` holds durations in
``[BASE**i, BASE**(i+1))`` seconds, ``BASE = 2**(1/4)`` (each bucket ~19 % wide), so 87 buckets cover
one second to thirty days. Histograms add up (a stream batch folds into one update per bucket
touched) and answer any quantile within one bucket's width: the estimate is the geometric middle of
the bucket the quantile falls in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from redflag.core.rules import RuleFields

BASE = 2 ** (1 / 4)
BUCKETS = 88  # BASE**88 s > 30 days
ALL = "*"  # the segment key of the distribution across every segment


def bucket_of(seconds: float) -> int:
    if seconds < 1:
        return 0
    return min(BUCKETS - 1, math.floor(math.log(seconds, BASE) + 1e-9))


def bucket_bounds(i: int) -> tuple[float, float]:
    return (0.0 if i == 0 else BASE**i, BASE ** (i + 1))


@dataclass
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)  # bucket -> completions
    total_seconds: float = 0.0

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def add(self, seconds: float, count: int = 1) -> None:
        b = bucket_of(seconds)
        self.counts[b] = self.counts.get(b, 0) + count
        self.total_seconds += seconds * count

    def merge(self, other: Histogram) -> None:
        for b, c in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + c
        self.total_seconds += other.total_seconds

    def quantile(self, q: float) -> float | None:
        """The q-quantile, within one bucket's width; None when empty."""
        n = self.n
        if n == 0:
            return None
        rank = max(1, math.ceil(q * n))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                low, high = bucket_bounds(b)
                return math.sqrt(max(low, 0.5) * high)
        raise AssertionError("unreachable: counts add up to n")

    def summary(self) -> dict[str, float | int | None]:
        return {"n": self.n, "p50": self.quantile(0.5), "p90": self.quantile(0.9), "p99": self.quantile(0.99)}


@dataclass(frozen=True)
class Threshold:
    """The threshold a timer is armed with, and what it rests on (kept on the timer)."""

    seconds: int
    basis: str  # "fixed", "learned" or "fallback"
    usual_seconds: float | None = None  # the usual duration the alert can quote ("about 6 minutes")
    samples: int = 0


def threshold_for(rule: RuleFields, segment: str | None, baselines: Mapping[str, Histogram]) -> Threshold:
    """The threshold of a (segment-merged) rule for one user: fixed, or learned from the segment's
    distribution when it has ``min_samples`` completions, else the task's across segments, else the
    fallback. ``baselines``: segment (or ALL) -> histogram for this task."""
    if rule.threshold is None:
        assert rule.threshold_seconds is not None
        return Threshold(rule.threshold_seconds, "fixed", rule.expected_seconds)
    learned = rule.threshold
    q = 0.5 if learned.relative_to == "p50" else 0.9
    for key in ([segment] if segment else []) + [ALL]:
        hist = baselines.get(key)
        if hist is not None and hist.n >= learned.min_samples:
            usual = hist.quantile(q)
            assert usual is not None
            seconds = round(min(learned.max_seconds, max(learned.min_seconds, learned.factor * usual)))
            median = hist.quantile(0.5)
            return Threshold(seconds, "learned", median, hist.n)
    return Threshold(learned.fallback_seconds, "fallback", rule.expected_seconds)


def suggest(hist: Histogram, factor: float = 2.0) -> int | None:
    """A threshold to consider: ``factor`` x the median, once there are enough completions to say."""
    median = hist.quantile(0.5)
    return None if median is None or hist.n < 20 else round(factor * median)
