"""The sweeper on the deployed template: look-ahead flags at the due time, and a backlog is handed
to workers (asynchronous invokes of the same function, run by the stand-in as Lambda would)."""

from redflag_local.standin.stack import LocalStack
from tests.integration.conftest import LANDING, started


def test_look_ahead_flags_at_the_due_time():
    with LocalStack() as stack:
        stack.put_rules({"create_landing_page": LANDING})
        stack.post_events(started("u-1"))
        due = stack.clock() + 900
        stack.clock.advance(870)
        stack.sweep()  # a run from due - 30 s: it waits for the due time and flags then
        item = stack.get_item("u-1", "task#create_landing_page#default")
        assert item["state"] == "flagged" and item["flagged_at"] == due


def test_a_backlog_is_drained_by_workers_the_run_starts():
    with LocalStack(env_overrides={"SWEEP_FANOUT_AT": "50"}) as stack:
        stack.put_rules({"create_landing_page": LANDING})
        for i in range(0, 120, 60):
            stack.post_events({"events": [started(f"b-{j}") for j in range(i, i + 60)]})
        stack.clock.advance(3600)  # an outage: 120 timers long overdue
        runs = []
        original = stack.run_async_invokes
        stack.run_async_invokes = lambda: runs.extend(original()) or []
        stack.sweep()
        shards = int(stack.function_env["SweepDueTimersFunction"]["DUE_SHARDS"])
        assert len(runs) == shards - 1  # one worker per other shard with a backlog
        assert {i["state"] for i in stack.items() if i.get("kind") == "task"} == {"flagged"}
        stack.deliver_stream()
        assert len(stack.cs_alerts()) == 120
