"""Red-flag metrics on the deployed template (issue 9): baselines learned from the stream, a learned
threshold taking over, failure and inactivity flags, the weekly usage-drop check."""

from datetime import UTC, datetime

from redflag.adapters.stats_table import DynamoStats
from redflag_local.standin.stack import LocalStack, sample_event

DAY = 86400
LEARNED = {
    "label": "writing a report",
    "threshold": {"relative_to": "p50", "factor": 2, "min_samples": 5, "fallback_seconds": 3600},
}
FAILING = {"label": "importing contacts", "threshold_seconds": 3600, "max_failures": 3}
PRACTICE = {"kind": "inactivity", "label": "daily practice", "threshold_seconds": 3 * DAY}
DROP = {"kind": "usage_drop", "label": "weekly usage", "drop_percent": 50, "notify": ["cs"], "min_weekly_actives": 5}


def at(stack, offset=0):
    return datetime.fromtimestamp(stack.clock() + offset, UTC).isoformat()


def event(kind, task, user, **extra):
    return {"type": kind, "task": task, "user_id": user, "user": {"email": f"{user}@example.com"}} | extra


def learned(stack, task, seg="*"):
    return DynamoStats(stack.physical["StatsTable"]).task_stats([(task, seg)]).get((task, seg))


def test_the_learned_threshold_takes_over_after_min_samples_completions():
    with LocalStack() as stack:
        stack.put_rules({"report": LEARNED})
        for i in range(5):
            stack.post_events(event("task_started", "report", f"u{i}", occurred_at=at(stack, -300)))
            stack.post_events(event("task_completed", "report", f"u{i}"))
        stack.post_events(event("task_started", "report", "early"))  # before anything was learned
        stack.deliver_stream()
        stack.flush_windows()
        stats = learned(stack, "report")
        assert stats.counts["completed"] == 5 and stats.histogram.n == 5
        stack.clock.advance(61)  # the ingest function's baseline cache (RULES_CACHE_SECONDS) expires
        stack.post_events(event("task_started", "report", "late"))
        early = stack.get_item("early", "task#report#default")
        late = stack.get_item("late", "task#report#default")
        assert (early["threshold_basis"], early["threshold_seconds"]) == ("fallback", 3600)
        assert late["threshold_basis"] == "learned" and 500 <= late["threshold_seconds"] <= 720
        stack.tick(int(late["threshold_seconds"]) + 5)
        (cs,) = [a["message"] for a in stack.cs_alerts() if a["message"]["user_id"] == "late"]
        assert cs["threshold_basis"] == "learned" and "usually about 5 minutes" in cs["summary"]
        (email,) = [e for e in stack.emails() if "late@" in e["to"]]
        assert "Most people finish in about 5 minutes" in email["text"]


def test_a_replayed_stats_window_does_not_count_twice():
    with LocalStack() as stack:
        out = stack.invoke("TimersToStatsFunction", sample_event("timers_to_stats/window_final_completion.json"))
        again = stack.invoke("TimersToStatsFunction", sample_event("timers_to_stats/window_final_completion.json"))
        assert out == again == {}
        stats = learned(stack, "create_landing_page")
        assert stats.counts["completed"] == 1 and stats.histogram.n == 1


def test_the_third_failure_alerts_at_once_and_the_run_never_alerts_again():
    with LocalStack() as stack:
        stack.put_rules({"import": FAILING})
        stack.post_events(event("task_started", "import", "u1"))
        for _ in range(2):
            stack.post_events(event("task_failed", "import", "u1"))
        stack.deliver_stream()
        assert stack.cs_alerts() == []
        _, out = stack.post_events(event("task_failed", "import", "u1"))
        assert out["results"][0]["status"] == "flagged"
        stack.deliver_stream()
        (cs,) = stack.cs_alerts()
        assert cs["message"]["reason"] == "failures" and "failed importing contacts 3 times" in cs["message"]["summary"]
        (email,) = stack.emails()
        assert email["subject"] == "Trouble with importing contacts?" and "3 times" in email["text"]
        stack.post_events(event("task_failed", "import", "u1"))  # a fourth: nothing more
        stack.tick(3700)  # past the time threshold: the sweeper has nothing to flag
        stack.post_events(event("task_completed", "import", "u1"))
        stack.deliver_stream()
        assert len(stack.cs_alerts()) == 1 and len(stack.emails()) == 1
        assert stack.get_item("u1", "task#import#default")["state"] == "completed"


def test_inactivity_daily_activity_no_flag_three_silent_days_one_flag_activity_rearms():
    with LocalStack() as stack:
        stack.put_rules({"practice": PRACTICE})
        for _ in range(4):
            stack.post_events(event("user_active", "practice", "u1"))
            stack.tick(DAY)
        assert stack.cs_alerts() == []
        stack.tick(2 * DAY + 1)  # three days since the last activity
        (cs,) = stack.cs_alerts()
        assert cs["message"]["reason"] == "inactivity"
        (email,) = stack.emails()
        assert email["subject"] == "We miss you at daily practice"
        stack.tick(DAY)
        assert len(stack.cs_alerts()) == 1
        stack.post_events(event("user_active", "practice", "u1"))
        item = stack.get_item("u1", "task#practice#default")
        assert item["state"] == "open" and float(item["due_at"]) >= stack.clock() + 3 * DAY - 1


def test_an_account_whose_weekly_actives_fall_60_percent_is_flagged_once_and_a_steady_one_is_not():
    monday = 1_800_835_200.0  # 2027-01-25 00:00 UTC, a Monday
    with LocalStack(clock_start=monday + 3600) as stack:
        stack.put_rules({"weekly_usage": DROP})

        def active(account, users):
            events = [
                {"type": "user_active", "task": "app", "user_id": f"{account}-{u}", "user": {"account_id": account}}
                for u in range(users)
            ]
            stack.post_events({"events": events})

        active("falling", 10)
        active("steady", 8)
        stack.tick(7 * DAY)  # the next week
        active("falling", 4)
        active("steady", 8)
        stack.deliver_stream()
        stack.flush_windows()
        stack.clock.advance(monday + 14 * DAY + 900 - stack.clock())  # Monday 00:15 after that week
        weekly = stack.template.function_for("weekly_usage_to_flags")
        report = stack.invoke(weekly, sample_event("weekly_usage_to_flags/scheduled.json"))
        assert (report["accounts"], report["flagged"]) == (2, 1)
        assert stack.invoke(weekly, {})["already"] == 1  # run again: written once
        stack.deliver_stream()
        (cs,) = stack.cs_alerts()
        assert cs["message"]["account_id"] == "falling" and cs["message"]["drop_percent"] == 60.0
        assert cs["attributes"]["account_id"]["Value"] == "falling"
        assert stack.emails() == []
