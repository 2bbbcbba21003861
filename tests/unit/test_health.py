"""The health score: accounts built green, yellow and red from known signals get the documented scores
and bands; the weekly run flags each move into red once."""

import json

import pytest

from redflag import channels, kinds
from redflag.channels.base import Context, RedFlag
from redflag.core import weeks
from redflag.kinds import Rule
from redflag.kinds.health import score
from redflag.services.weekly import UsageDropService
from tests.fakes import MemoryFlags, StaticRules

RULE = Rule(kind="health", label="account health", bands={"green": 70, "yellow": 45})
MONDAY = 1_800_835_200.0 + 15 * 60  # 2027-01-25 00:15 UTC, the weekly run
# (this week's row, the week before's): actives, user-days, flags, runs started and failed; the week
# before's new users and how many came back in their first week
GREEN = ({"actives": 20, "active_days": 70, "flags": 0, "started": 40, "failed": 2},
         {"actives": 20, "new_users": 10, "returned": 8})  # fmt: skip
YELLOW = ({"actives": 16, "active_days": 28, "flags": 4, "started": 40, "failed": 8},
          {"actives": 20, "new_users": 10, "returned": 5})  # fmt: skip
RED = ({"actives": 5, "active_days": 5, "flags": 5, "started": 10, "failed": 5},
       {"actives": 20, "new_users": 4, "returned": 0})  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "expected", "band"),
    [
        # 30 x 100 (steady) + 20 x 100 (DAU/WAU 0.5) + 20 x 100 (no flags) + 15 x 90 (5 % failed) + 15 x 80
        (GREEN, 95.5, "green"),
        # 30 x 60 (-20 %) + 20 x 50 (0.25) + 20 x 75 (0.25 flags a user) + 15 x 60 (20 %) + 15 x 50
        (YELLOW, 59.5, "yellow"),
        # 30 x 0 (-75 %) + 20 x 28.6 (1/7) + 20 x 0 (a flag a user) + 15 x 0 (half failed) + 15 x 0
        (RED, 5.7, "red"),
    ],
)
def test_accounts_built_green_yellow_and_red_get_the_documented_scores_and_bands(rows, expected, band):
    health = score(RULE, "acme", "2027-W03", *rows)
    assert (health.score, health.band) == (expected, band)


def test_the_top_signals_are_those_that_cost_most_and_a_missing_one_is_left_out():
    red = score(RULE, "acme", "2027-W03", *RED)
    assert [s.name for s in red.top()] == ["trend", "flags", "failures"]
    assert red.top()[0].text == "weekly actives -75%" and red.top()[0].lost == 30
    no_runs = score(RULE, "acme", "2027-W03", GREEN[0] | {"started": 0, "failed": 0}, GREEN[1])
    assert "failures" not in {s.name for s in no_runs.signals}
    assert no_runs.score == round((3000 + 2000 + 2000 + 1200) / 85, 1)


def test_a_small_account_is_not_scored():
    assert score(RULE, "tiny", "2027-W03", {"actives": 3}, {"actives": 4}) is None


def run(tables):
    """The weekly run on these week tables (weeks before MONDAY: 1, 2, 3)."""

    class Weeks:
        def week_table(self, week):
            return tables.get(week, {})

        def weekly_actives(self, week):
            return {a: r.get("actives", 0) for a, r in self.week_table(week).items()}

    flags = MemoryFlags()
    rules = StaticRules({"account_health": json.dumps(RULE.model_dump(exclude_none=True))})
    service = UsageDropService(rules, Weeks(), flags, lambda: MONDAY, 86400)
    return service, flags


def test_one_red_alert_per_move_into_red():
    w1, w2, w3 = (weeks.weeks_before(MONDAY, n) for n in (1, 2, 3))
    tables = {
        w1: {"acme": RED[0], "globex": GREEN[0], "initech": RED[0]},  # acme turns red; initech stays red
        w2: {"acme": GREEN[0] | RED[1], "globex": GREEN[1], "initech": RED[0] | {"actives": 20}},
        w3: {"acme": GREEN[1], "globex": GREEN[1], "initech": RED[0] | {"actives": 40}},
    }
    service, flags = run(tables)
    report = service.run()
    assert (report.scored, report.turned_red) == (3, 1)
    ((kind, flag),) = flags.items.values()
    assert (kind, flag.account_id, flag.health.band, flag.previous.band) == ("health", "acme", "red", "green")
    assert service.run().turned_red == 0 and service.run().already == 1  # run again: written once
    (cs,) = channels.plan(RedFlag(kinds.get("health"), flag), Context(MONDAY))
    assert "Account acme is red: health 5.7" in cs.message["summary"]
    assert "weekly actives -75% (-30)" in cs.message["summary"]


def test_a_health_rule_is_checked():
    with pytest.raises(ValueError, match="yellow must be below green"):
        Rule(kind="health", label="x", bands={"green": 40, "yellow": 60})
    with pytest.raises(ValueError, match="notify"):
        Rule(kind="health", label="x", notify=["user"])
