"""Funnels, rates and the health score on the deployed template: a user stuck at a step is flagged once
naming it (CS and email) and one who goes on is not, out-of-order and duplicate step events change
nothing; checkouts folded by the stats function into per-minute buckets cross the abandonment rate once
and recover once, and a replayed stats window or alerts batch changes nothing; accounts scored by the
weekly run from their week rows, one CS alert for the one that moved into red."""

import json
from datetime import UTC, datetime

import pytest

from redflag.adapters import aws
from redflag.adapters.stats_table import DynamoStats, week_key
from redflag.core import weeks

CHECKOUT = {
    "kind": "funnel",
    "label": "checking out",
    "steps": [
        {"name": "cart", "threshold_seconds": 600},
        {"name": "shipping", "label": "shipping details", "threshold_seconds": 300, "expected_seconds": 120},
        {"name": "payment", "threshold_seconds": 600},
        {"name": "confirmed"},
    ],
}
ABANDONMENT = {"kind": "rate", "label": "checkout abandonment", "watch": "checkout", "measure": "abandonment",
               "window_minutes": 60, "alert_percent": 15, "recover_percent": 10, "min_started": 40}  # fmt: skip
HEALTH = {"kind": "health", "label": "account health", "bands": {"green": 70, "yellow": 45}}
SETTLE = 600 + 300 + 600 + 120  # the funnel's thresholds added up, and two minutes for the stats windows


@pytest.fixture(scope="module")
def shop():
    from redflag_local.standin.stack import LocalStack

    with LocalStack(clock_start=1_800_000_000.0, parameters={"QuietHours": "off"}) as stack:
        stack.put_rules({"checkout": CHECKOUT, "checkout_abandonment": ABANDONMENT, "account_health": HEALTH})
        yield stack


def step(stack, user, name, seconds_ago=0.0, **extra):
    at = datetime.fromtimestamp(stack.clock() - seconds_ago, UTC).isoformat()
    user_info = {"email": f"{user}@example.com", "name": user.title()}
    return {"type": "task_completed", "task": "checkout", "user_id": user, "occurred_at": at,
            "properties": {"step": name}, "user": user_info} | extra  # fmt: skip


def statuses(stack, events):
    status, body = stack.post_events({"events": events})
    assert status == 202
    return [r["status"] for r in body["results"]]


def of(stack, user, since=0):
    return [a["message"] for a in stack.cs_alerts(since) if a["message"].get("user_id") == user]


def test_a_user_who_stops_at_shipping_is_flagged_once_naming_it_one_who_goes_on_is_not(shop):
    stack = shop
    assert statuses(stack, [step(stack, "ada", "cart"), step(stack, "alan", "cart"), step(stack, "grace", "cart")]) == [
        "armed", "armed", "armed"
    ]  # fmt: skip
    stack.tick(60)
    assert statuses(stack, [step(stack, u, "shipping") for u in ("ada", "alan", "grace")]) == ["armed"] * 3
    # grace: the same step again (a duplicate), the cart late (out of order), the same event replayed
    late = step(stack, "grace", "cart", 50, event_id="grace-cart-late")
    assert statuses(stack, [step(stack, "grace", "shipping"), late]) == ["recorded", "recorded"]
    assert statuses(stack, [late]) == ["duplicate"]
    stack.tick(120)  # 120 s at shipping (the sweeper looks a minute ahead): not yet
    assert statuses(stack, [step(stack, "alan", "payment"), step(stack, "grace", "confirmed")]) == [
        "armed", "completed"
    ]  # fmt: skip
    assert of(stack, "ada") == []
    stack.tick(300)  # past shipping's 300 s (counted from when ada reached it, not from the duplicate)
    stack.tick(3600)  # and long after: still once
    ada = of(stack, "ada")
    assert len(ada) == 1 and ada[0]["step"] == "shipping" and ada[0]["reason"] == "stuck"
    assert ada[0]["threshold_seconds"] == 300 and ada[0]["usual_seconds"] == 120
    started, due = (datetime.fromisoformat(ada[0][k]).timestamp() for k in ("started_at", "due_at"))
    assert due - started == 300  # at shipping's own threshold (cart's is 600)
    to_ada = [e for e in stack.emails() if "ada@example.com" in e["to"]]
    assert len(to_ada) == 1 and "shipping details" in to_ada[0]["text"]
    alan = of(stack, "alan")
    assert len(alan) == 1 and alan[0]["step"] == "payment"  # alan went on, and stopped at payment
    assert of(stack, "grace") == []  # grace went on to the end: never flagged


def checkouts(stack, prefix, n, abandoned):
    """``n`` checkouts started over the hour that ended SETTLE ago; the first ``abandoned`` stay in the
    cart (their wait ran out long ago: the next sweep flags them), the rest are confirmed a minute on."""
    events = []
    for i in range(n):
        ago = SETTLE + 3540 - i * (3420 // n)
        events.append(step(stack, f"{prefix}{i}", "cart", ago))
        if i >= abandoned:
            events.append(step(stack, f"{prefix}{i}", "confirmed", ago - 60))
    for k in range(0, len(events), 100):
        assert stack.post_events({"events": events[k : k + 100]})[0] == 202
    records = stack.read_stream()
    stack.deliver_stream(records)
    stack.tick(1)  # the sweeper flags the abandoned
    stack.flush_windows()
    return records


def rate_alerts(stack, since):
    return [a for a in stack.cs_alerts(since) if a["message"].get("reason") == "rate"]


def test_20_percent_abandoned_crosses_once_10_percent_does_not_5_percent_recovers(shop):
    """Between the levels (12 %) nothing changes: tests/unit/test_rate.py (the hysteresis on its own)."""
    stack = shop
    stats = DynamoStats(stack.physical["StatsTable"])
    stack.tick(4 * 3600)  # a clean hour for the window
    before = len(stack.cs_alerts())

    checkouts(stack, "a", 100, 10)  # 10 %: under the 15 % level
    first, end = (int((stack.clock() - SETTLE) // 60) - 60, int((stack.clock() - SETTLE) // 60))
    assert stats.rate_window("checkout", first, end) == {"started": 100, "abandoned": 10, "converted": 90}
    assert stack.check_rates()["crossed"] == 0
    stack.tick(3600)

    window_start = int(stack.clock() // 60 * 60)
    records = checkouts(stack, "b", 100, 20)  # 20 %: over it
    first, end = (int((stack.clock() - SETTLE) // 60) - 60, int((stack.clock() - SETTLE) // 60))
    counted = stats.rate_window("checkout", first, end)
    assert counted == {"started": 100, "abandoned": 20, "converted": 80}

    # the stats window retried from the start (the same shard and window, its records folded again),
    # then its final invocation twice: its marker is written already, nothing is counted twice
    function = stack.template.function_for("timers_to_stats")
    window = {"start": datetime.fromtimestamp(window_start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "end": datetime.fromtimestamp(window_start + 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
    again = {"Records": stack.filter_stream(records, "timers_to_stats"), "window": window, "state": {},
             "shardId": stack.STATS_SHARD, "isFinalInvokeForWindow": False}  # fmt: skip
    state = stack.invoke(function, again)["state"]
    final = again | {"Records": [], "state": state, "isFinalInvokeForWindow": True}
    stack.invoke(function, final)
    stack.invoke(function, final)
    assert stats.rate_window("checkout", first, end) == counted

    report = stack.check_rates()
    assert (report["crossed"], report["recovered"]) == (1, 0)
    alerts = stack.read_stream()
    stack.deliver_stream(alerts)
    stack.deliver_stream(alerts)  # the alerts batch replayed: still one alert
    assert stack.check_rates()["crossed"] == 0  # checked again: the rate is still over, still one
    stack.deliver_stream()
    (crossed,) = rate_alerts(stack, before)
    assert crossed["message"]["status"] == "crossed" and crossed["message"]["watched"] == "checkout"
    assert (crossed["message"]["rate_percent"], crossed["attributes"]["severity"]["Value"]) == (20.0, "warning")
    stack.tick(3600)

    checkouts(stack, "d", 100, 5)  # 5 %: under the recovery level (10 %): recovered, once
    assert stack.check_rates()["recovered"] == 1
    assert stack.check_rates()["recovered"] == 0
    stack.deliver_stream()
    assert [a["message"]["status"] for a in rate_alerts(stack, before)] == ["crossed", "recovered"]
    assert rate_alerts(stack, before)[1]["attributes"]["severity"]["Value"] == "info"


# this week's row, the week before's, the one before that (actives, user-days, red flags, runs started
# and failed; new users and how many came back in their first week): the unit test's green, yellow, red
GREEN = {"actives": 20, "active_days": 70, "flags": 0, "started": 40, "failed": 2}
GREEN_BEFORE = {"actives": 20, "new_users": 10, "returned": 8, "active_days": 70, "started": 40, "failed": 2}
YELLOW = {"actives": 16, "active_days": 28, "flags": 4, "started": 40, "failed": 8}
YELLOW_BEFORE = {"actives": 20, "new_users": 10, "returned": 5, "active_days": 70}
RED = {"actives": 5, "active_days": 5, "flags": 5, "started": 10, "failed": 5}
RED_BEFORE = {"actives": 20, "new_users": 4, "returned": 0}


def put_week(stack, week, account, row):
    item = week_key(week, account) | row
    aws.client("dynamodb").put_item(TableName=stack.physical["StatsTable"], Item=aws.to_attributes(item))


def test_accounts_are_scored_by_the_weekly_run_and_one_that_moves_into_red_is_told_once(shop):
    stack = shop
    monday = (int(stack.clock()) // (7 * 86400) + 1) * 7 * 86400 + 4 * 86400 + 900  # epoch day 4 was a Monday
    stack.clock.advance(monday - stack.clock())
    w1, w2, w3 = (weeks.weeks_before(stack.clock(), n) for n in (1, 2, 3))
    rows = {w1: {"globex": GREEN, "initech": YELLOW, "acme": RED},
            w2: {"globex": GREEN_BEFORE, "initech": YELLOW_BEFORE, "acme": RED_BEFORE | GREEN},
            w3: {"globex": GREEN_BEFORE, "initech": YELLOW_BEFORE, "acme": GREEN_BEFORE}}  # fmt: skip
    for week, accounts in rows.items():
        for account, row in accounts.items():
            put_week(stack, week, account, row)
    before = len(stack.cs_alerts())
    weekly = stack.template.function_for("weekly_usage_to_flags")
    report = stack.invoke(weekly, {})
    assert (report["scored"], report["turned_red"]) == (3, 1)
    assert stack.invoke(weekly, {})["turned_red"] == 0  # run again (a retried schedule): written once
    alerts = stack.read_stream()
    stack.deliver_stream(alerts)
    stack.deliver_stream(alerts)  # and the batch replayed
    (red,) = [a["message"] for a in stack.cs_alerts(before) if a["message"].get("reason") == "health"]
    assert red["account_id"] == "acme" and "Account acme is red: health 5.7" in red["summary"]
    assert "weekly actives -75% (-30)" in red["summary"]
    assert (red["score"], red["band"], red["previous_band"]) == (5.7, "red", "green")


def test_the_report_shows_the_funnel_the_rates_and_health_at_80_columns(shop, tmp_path):
    import io

    from rich.console import Console

    from redflag_local.ops import report

    r = report.from_stack(shop)
    (f,) = r.funnels
    steps = {s.name: s for s in f.steps}
    assert (steps["cart"].entered, steps["cart"].flagged) == (303, 35)  # ada, alan, grace and 300 checkouts
    assert steps["cart"].went_on == 268 and steps["confirmed"].entered == 266
    assert steps["shipping"].median == steps["shipping"].p90 and 120 <= steps["shipping"].median <= 300
    assert (steps["shipping"].flagged, steps["payment"].flagged) == (1, 1)  # ada, alan
    (rate,) = r.rates
    assert [(c.status, c.rate) for c in rate.history] == [("crossed", 20.0), ("recovered", 5.0)]
    assert not rate.alerting and rate.window_minutes == 60
    health = {h.account_id: (h.score, h.band) for h in r.health}
    assert health == {"acme": (5.7, "red"), "initech": (59.5, "yellow"), "globex": (95.5, "green")}
    assert [h.account_id for h in r.health] == ["acme", "initech", "globex"]  # the worst first
    acme = r.health[0]
    assert acme.top[0] == "weekly actives -75% (-30)" and list(acme.history.values())[-2:] == [95.5, 5.7]

    out = io.StringIO()
    report.render(r, "table", Console(file=out, width=80, force_terminal=False))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Funnel: checking out (checkout): 303 entered, 266 reached the end (88%)" in text
    assert "crossed at 20% (20 of 100)" in text and "recovered at 5% (5 of 100)" in text
    assert "acme: 5.7 red (was green 95.5)" in text and "most of it: weekly actives -75% (-30)" in text
    assert "…" not in text
    md = io.StringIO()
    report.render(r, "md", Console(file=md, width=80, force_terminal=False))
    assert "| cart | 303 | 268 (88%) |" in md.getvalue() and "| acme | 5.7 | red | green 95.5 |" in md.getvalue()
    dumped = json.loads(r.model_dump_json())
    assert {"tasks", "accounts", "outreach", "funnels", "rates", "health"} <= set(dumped)
    assert report.from_json(r.model_dump_json()) == r

    path = report.plot(r, tmp_path / "report.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [name for name, _ in report.product.sections(r.funnels, r.health)] == [
        "funnel:checkout", "health:account_health"
    ]  # fmt: skip
