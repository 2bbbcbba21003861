"""The rate kind and the rate check on fakes: checkouts folded into per-minute buckets, the window read
once it has settled, one alert when the share crosses, none below, one recovery past the recovery level."""

import json

import pytest

from redflag import channels, kinds
from redflag.channels.base import Context, RedFlag
from redflag.core.events import EventType
from redflag.core.timers import TimerKey, expire
from redflag.kinds import Rule
from redflag.kinds.rate import RateChange, recover_level, severity
from redflag.services.learning import Fold
from redflag.services.rates import RateService
from tests.fakes import FoldBuckets, MemoryFlags, StaticRules

T0 = 1_800_000_000.0  # a whole minute
CHECKOUT = {"kind": "funnel", "label": "checking out",
            "steps": [{"name": "cart", "threshold_seconds": 600}, {"name": "payment", "threshold_seconds": 600},
                      {"name": "confirmed"}]}  # fmt: skip
ABANDONMENT = {"kind": "rate", "label": "checkout abandonment", "watch": "checkout", "measure": "abandonment",
               "window_minutes": 60, "alert_percent": 15, "recover_percent": 10, "min_started": 40}  # fmt: skip
SETTLE = 600 + 600 + 120  # the funnel's step thresholds, and two minutes


class Shop:
    """Checkouts through the funnel's state machine, each stored change folded as the stats function does."""

    def __init__(self) -> None:
        self.rule = Rule.model_validate(CHECKOUT)
        self.fold = Fold()
        self.n = 0

    def checkouts(self, count: int, abandoned: int, start: float) -> None:
        """``count`` checkouts started over the hour from ``start``; ``abandoned`` of them stop at payment."""
        for i in range(count):
            self.n += 1
            key = TimerKey(user_id=f"u{self.n}", task="checkout")
            at = start + i * 3600 / count
            timer = self._apply(None, key, at, "cart")
            timer = self._apply(timer, key, at + 60, "payment")
            if i < abandoned:
                flagged = expire(timer, at + 60 + 600)
                self.fold.add("MODIFY", False, timer, flagged)
            else:
                self._apply(timer, key, at + 120, "confirmed")

    def _apply(self, current, key, at, step):
        new = kinds.apply_event(current, key, EventType.TASK_COMPLETED, at, self.rule, at, None, {"step": step}).timer
        self.fold.add("MODIFY" if current else "INSERT", False, current, new)
        return new


def check(shop: Shop, flags: MemoryFlags, now: float, rules=None):
    raw = {"checkout": json.dumps(CHECKOUT), "checkout_abandonment": json.dumps(ABANDONMENT | (rules or {}))}
    return RateService(StaticRules(raw), FoldBuckets(shop.fold), flags, lambda: now, 86400).run()


def changes(flags: MemoryFlags) -> list[RateChange]:
    return [subject for _kind, subject in flags.items.values()]


def test_100_checkouts_with_20_percent_abandoned_make_one_alert():
    shop, flags = Shop(), MemoryFlags()
    shop.checkouts(100, 20, T0)
    settled = T0 + 3600 + SETTLE
    report = check(shop, flags, settled)
    assert (report.crossed, report.recovered) == (1, 0)
    (change,) = changes(flags)
    assert (change.rate, change.count, change.started, change.n) == (20.0, 20, 100, 1)
    assert severity(change) == "warning"  # 20 % is less than half again over 15 %
    for later in (settled, settled + 60, settled + 120):  # checked again, every minute: still one alert
        assert check(shop, flags, later).crossed == 0
    assert len(changes(flags)) == 1


def test_10_percent_abandoned_makes_none():
    shop, flags = Shop(), MemoryFlags()
    shop.checkouts(100, 10, T0)
    assert check(shop, flags, T0 + 3600 + SETTLE).crossed == 0 and flags.items == {}


def test_too_few_started_are_not_judged():
    shop, flags = Shop(), MemoryFlags()
    shop.checkouts(30, 15, T0)  # half abandoned, but only 30 of the 40 needed
    assert check(shop, flags, T0 + 3600 + SETTLE).crossed == 0


def test_back_under_the_recovery_level_makes_one_recovered_between_the_levels_nothing():
    shop, flags = Shop(), MemoryFlags()
    shop.checkouts(100, 20, T0)
    assert check(shop, flags, T0 + 3600 + SETTLE).crossed == 1
    shop.checkouts(100, 12, T0 + 3600)  # 12 %: under the alert level, above the recovery level
    assert check(shop, flags, T0 + 2 * 3600 + SETTLE).recovered == 0
    shop.checkouts(100, 5, T0 + 2 * 3600)
    report = check(shop, flags, T0 + 3 * 3600 + SETTLE)
    assert (report.crossed, report.recovered) == (0, 1)
    assert check(shop, flags, T0 + 3 * 3600 + SETTLE + 60).recovered == 0
    crossed, recovered = changes(flags)
    assert crossed.status == "crossed"
    assert (recovered.n, recovered.rate, recovered.status, severity(recovered)) == (2, 5.0, "recovered", "info")


def test_the_alert_goes_to_cs_with_its_numbers_and_a_critical_one_far_over():
    shop, flags = Shop(), MemoryFlags()
    shop.checkouts(50, 20, T0)  # 40 %: more than half again over 15 %
    check(shop, flags, T0 + 3600 + SETTLE)
    (change,) = changes(flags)
    (cs,) = channels.plan(RedFlag(kinds.get("rate"), change), Context(T0))
    assert cs.channel == "cs" and cs.attributes["severity"] == "critical"
    assert cs.message["rate_percent"] == 40.0 and cs.message["watched"] == "checkout"
    assert "40% of the runs of checkout started in the 1 hour" in cs.message["summary"]


def test_a_step_rate_reads_the_steps_buckets():
    shop, flags = Shop(), MemoryFlags()
    shop.checkouts(50, 20, T0)
    conversion = {"step": "payment", "measure": "conversion", "alert_percent": 70, "recover_percent": 80}
    report = check(shop, flags, T0 + 3600 + 600 + 120, conversion)
    (change,) = changes(flags)
    assert report.crossed == 1 and change.watched == "checkout/payment" and change.rate == 60.0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"recover_percent": 20}, "recover_percent"),
        ({"measure": "conversion", "recover_percent": 10}, "recover_percent"),
        ({"measure": None}, "measure"),
        ({"threshold_seconds": 60}, "threshold_seconds"),
        ({"notify": ["user"]}, "notify"),
    ],
)
def test_a_rate_rule_is_checked_naming_the_field(fields, field):
    with pytest.raises(ValueError, match=field):
        Rule.model_validate({k: v for k, v in (ABANDONMENT | fields).items() if v is not None})


def test_the_default_recovery_level_is_on_the_good_side():
    assert recover_level(Rule.model_validate(ABANDONMENT | {"recover_percent": None})) == 12
    conversion = ABANDONMENT | {"measure": "conversion", "alert_percent": 50, "recover_percent": None}
    assert recover_level(Rule.model_validate(conversion)) == 60


def test_a_rate_on_a_missing_or_unwatchable_rule_is_reported_not_checked():
    shop, flags = Shop(), MemoryFlags()
    report = check(shop, flags, T0, {"watch": "nothing"})
    assert report.unwatchable == {"checkout_abandonment": "no valid rule 'nothing' to watch"}
    report = check(shop, flags, T0, {"step": "confirmed"})
    assert "is the end" in report.unwatchable["checkout_abandonment"]
