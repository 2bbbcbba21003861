"""Funnels and rates on the deployed template: a user stuck at a step is flagged once naming it (CS and
email) and one who goes on is not; checkouts folded by the stats function into per-minute buckets cross
the abandonment rate once, and a replayed stats window or alerts batch changes nothing."""

from datetime import UTC, datetime

import pytest

from redflag.adapters.stats_table import DynamoStats

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
SETTLE = 600 + 300 + 600 + 120


@pytest.fixture(scope="module")
def shop():
    from redflag_local.standin.stack import LocalStack

    with LocalStack(clock_start=1_800_000_000.0, parameters={"QuietHours": "off"}) as stack:
        stack.put_rules({"checkout": CHECKOUT, "checkout_abandonment": ABANDONMENT})
        yield stack


def step(stack, user, name, seconds_ago=0.0, **extra):
    at = datetime.fromtimestamp(stack.clock() - seconds_ago, UTC).isoformat()
    user_info = {"email": f"{user}@example.com", "name": user.title()}
    return {"type": "task_completed", "task": "checkout", "user_id": user, "occurred_at": at,
            "properties": {"step": name}, "user": user_info} | extra  # fmt: skip


def test_a_user_who_stops_at_shipping_is_flagged_once_naming_it_one_who_goes_on_is_not(shop):
    stack = shop
    status, body = stack.post_events({"events": [step(stack, "ada", "cart"), step(stack, "alan", "cart")]})
    assert status == 202 and [r["status"] for r in body["results"]] == ["armed", "armed"]
    stack.tick(60)
    stack.post_events({"events": [step(stack, "ada", "shipping"), step(stack, "alan", "shipping")]})
    stack.tick(120)  # 120 s at shipping (the sweeper looks a minute ahead): not yet
    stack.post_events({"events": [step(stack, "alan", "payment")]})
    assert [a for a in stack.cs_alerts() if a["message"].get("user_id") == "ada"] == []
    stack.tick(300)  # past shipping's 300 s
    stack.tick(3600)  # and long after: still once
    ada = [a["message"] for a in stack.cs_alerts() if a["message"].get("user_id") == "ada"]
    assert len(ada) == 1 and ada[0]["step"] == "shipping" and ada[0]["reason"] == "stuck"
    assert ada[0]["threshold_seconds"] == 300 and ada[0]["usual_seconds"] == 120
    started, due = (datetime.fromisoformat(ada[0][k]).timestamp() for k in ("started_at", "due_at"))
    assert due - started == 300  # at shipping's own threshold (cart's is 600)
    to_ada = [e for e in stack.emails() if "ada@example.com" in e["to"]]
    assert len(to_ada) == 1 and "shipping details" in to_ada[0]["text"]
    alan = [a for a in stack.cs_alerts() if a["message"].get("user_id") == "alan"]
    assert len(alan) == 1 and alan[0]["message"]["step"] == "payment"  # alan went on, and stopped at payment


def test_20_percent_of_checkouts_abandoned_crosses_once_and_replays_change_nothing(shop):
    stack = shop
    before = len(stack.cs_alerts())
    stack.tick(4 * 3600)  # a clean hour for the window
    first = int((stack.clock() - SETTLE - 3600) // 60)
    events = []
    for i in range(50):  # over the hour that ended SETTLE ago: 10 stop at payment
        ago = SETTLE + 3600 - i * 70
        user = f"c{i}"
        events += [step(stack, user, "cart", ago), step(stack, user, "payment", ago - 30)]
        if i >= 10:
            events.append(step(stack, user, "confirmed", ago - 60))
    for k in range(0, len(events), 100):
        assert stack.post_events({"events": events[k : k + 100]})[0] == 202
    records = stack.read_stream()
    stack.deliver_stream(records)
    stack.tick(1)  # the sweeper flags the 10 (their payment wait ran out long ago)
    stack.flush_windows()
    stats = DynamoStats(stack.physical["StatsTable"])
    minute = int(stack.clock() // 60)
    counted = stats.rate_window("checkout", first, minute + 1)
    assert counted == {"started": 50, "abandoned": 10, "converted": 40}

    # a stats window retried (the same window, the same records) writes nothing twice
    window = {"start": "2027-01-15T00:00:00Z", "end": "2027-01-15T00:01:00Z"}
    replay = {"Records": stack.filter_stream(records, "timers_to_stats"), "window": window, "state": {},
              "shardId": "shard-replayed", "isFinalInvokeForWindow": False}  # fmt: skip
    function = stack.template.function_for("timers_to_stats")
    state = stack.invoke(function, replay)["state"]
    final = replay | {"Records": [], "state": state, "isFinalInvokeForWindow": True}
    stack.invoke(function, final)
    once = stats.rate_window("checkout", first, minute + 1)
    stack.invoke(function, final)  # the final invocation again
    assert stats.rate_window("checkout", first, minute + 1) == once

    report = stack.check_rates()
    assert (report["crossed"], report["recovered"]) == (1, 0), (report["unwatchable"], stack.clock(), first)
    alerts = stack.read_stream()
    stack.deliver_stream(alerts)
    stack.deliver_stream(alerts)  # the alerts batch replayed: still one alert
    assert stack.check_rates()["crossed"] == 0  # checked again a minute later: still one
    stack.deliver_stream()
    rates = [a for a in stack.cs_alerts()[before:] if a["message"].get("reason") == "rate"]
    assert len(rates) == 1
    assert rates[0]["message"]["status"] == "crossed" and rates[0]["message"]["watched"] == "checkout"
    assert rates[0]["attributes"]["severity"]["Value"] == "warning"
