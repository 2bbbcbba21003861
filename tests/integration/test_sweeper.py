"""The sweeper on the deployed template: look-ahead flags at the due time, and a backlog is handed
to workers (asynchronous invokes of the drain function, run by the stand-in as Lambda would); the
batched flag write (PartiQL, as the stand-in runs it on moto) answers per item."""

from collections import Counter

import boto3

from redflag.adapters.dynamodb import DynamoTimerStore
from redflag.services.ports import FlagResult
from redflag_local.standin.stack import ASYNC_INVOKES, Fault, LocalStack
from tests.integration.conftest import LANDING, completed, started

SK = "task#create_landing_page#default"


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


def test_a_backlog_pages_deep_is_drained_by_the_drain_function_each_timer_flagged_once():
    with LocalStack(env_overrides={"SWEEP_FANOUT_AT": "50", "SWEEP_PAGE_SIZE": "5"}) as stack:
        stack.put_rules({"create_landing_page": LANDING})
        for i in range(0, 120, 60):
            stack.post_events({"events": [started(f"d-{j}") for j in range(i, i + 60)]})
        stack.clock.advance(3600)  # an outage: 120 timers long overdue, ~15 a shard: three pages each
        stack.read_stream()
        invoked = []
        original = stack.run_async_invokes

        def run_workers():
            invoked.extend(name for name, _ in ASYNC_INVOKES)
            return original()

        stack.run_async_invokes = run_workers
        report = stack.sweep()
        assert set(invoked) == {stack.physical["SweepDrainFunction"]}  # workers are the drain function
        assert 0 < report["flagged"] < 120  # the run kept one shard
        flags = [r for r in stack.read_stream() if r["eventName"] == "MODIFY"]
        flagged = Counter(r["dynamodb"]["Keys"]["pk"]["S"] for r in flags)
        assert set(flagged) == {f"d-{j}" for j in range(120)} and set(flagged.values()) == {1}  # once each
        assert {(i["state"], i["version"]) for i in stack.items() if i.get("kind") == "task"} == {("flagged", 2)}


def test_the_batched_flag_write_answers_per_item_as_the_state_machine_would():
    """One BatchExecuteStatement on the deployed table: each statement flags an open due timer, or loses
    to whatever made it not open or not due (the answer ``timers.expire`` gives), or is throttled alone."""
    with LocalStack() as stack:
        stack.put_rules({"create_landing_page": LANDING})
        stack.post_events({"events": [started(f"p-{j}") for j in range(6)]})
        stack.post_events({"events": [completed("p-1")]})
        stack.clock.advance(600)
        stack.post_events({"events": [started("p-late")]})  # due 600 s after the others: not yet
        stack.clock.advance(301)
        store = DynamoTimerStore(stack.table_name, 8, client=boto3.client("dynamodb"))
        refs = [(f"p-{j}", SK) for j in range(6)] + [("p-late", SK), ("nobody", SK)]
        store.flag_due_many(refs[2:3], stack.clock() - 1, 1)  # p-2: someone flagged it first
        stack.delete_item("p-3", SK)  # p-3: deleted
        throttle = Fault("dynamodb", "UpdateItem", "ProvisionedThroughputExceededException", nth=[5])
        with stack.faults(throttle):  # the 5th statement of the batch (p-4) alone is throttled
            results = store.flag_due_many(refs, stack.clock(), 2_000_000_000)
        assert results == [
            FlagResult.FLAGGED,  # p-0: open and due
            FlagResult.LOST,  # p-1: completed
            FlagResult.LOST,  # p-2: flagged already
            FlagResult.LOST,  # p-3: gone
            FlagResult.RETRY,  # p-4: throttled, nothing written
            FlagResult.FLAGGED,  # p-5
            FlagResult.LOST,  # p-late: not due yet
            FlagResult.LOST,  # never existed: an UPDATE creates nothing
        ]
        items = {i["pk"]: i for i in stack.items() if i.get("kind") == "task"}
        assert items["p-0"]["state"] == "flagged" and items["p-0"]["flagged_at"] == stack.clock()
        assert "due_shard" not in items["p-0"] and items["p-0"]["expires_at"] == 2_000_000_000
        assert (items["p-4"]["state"], items["p-late"]["state"], items["p-1"]["state"]) == ("open", "open", "completed")
        assert "nobody" not in items
        assert store.flag_due_many([("p-4", SK)], stack.clock(), 2_000_000_000) == [FlagResult.FLAGGED]  # retried


def test_the_sweeper_reads_plain_keys_a_page_at_a_time(stack):
    stack.post_events({"events": [started(f"k-{j}") for j in range(40)]})
    stack.clock.advance(901)
    store = DynamoTimerStore(stack.table_name, 8, client=boto3.client("dynamodb"))
    shard = max(range(8), key=lambda s: len(list(store.due(s, stack.clock(), 100))))
    first = store.due_page(shard, stack.clock(), 2)
    assert len(first.entries) == 2 and first.cursor is not None
    assert all(type(ref) is tuple and all(type(part) is str for part in ref) for ref, _ in first.entries)
    rest = store.due_page(shard, stack.clock(), 100, first.cursor)
    everything = [ref for ref, _ in store.due_page(shard, stack.clock(), 100).entries]
    assert [ref for ref, _ in first.entries + rest.entries] == everything and rest.cursor is None
