"""The sparse, sharded due index on the deployed table: the sweeper's query finds a due timer in
every shard, and never an item that is not open (or not yet due)."""

import itertools

import boto3

from redflag import kinds
from redflag.adapters.codec import shard_of
from redflag.adapters.dynamodb import DynamoTimerStore
from redflag.core import timers
from redflag.core.events import EventType
from redflag.core.timers import TimerKey, TimerState
from redflag.kinds import Rule

RULE = Rule(label="creating a landing page", threshold_seconds=600)


def key_in_shard(shard: int, shards: int, taken: set) -> TimerKey:
    for n in itertools.count():
        key = TimerKey(user_id=f"user-{shard}-{n}", task="create_landing_page")
        if shard_of(key, shards) == shard and key not in taken:
            taken.add(key)
            return key
    raise AssertionError


def test_due_query_finds_a_due_timer_in_every_shard_and_never_a_closed_one(stack):
    shards = int(stack.function_env["SweepDueTimersFunction"]["DUE_SHARDS"])
    assert shards == int(stack.template.sam["Parameters"]["DueShards"]["Default"])
    store = DynamoTimerStore(stack.table_name, shards, client=boto3.client("dynamodb"))
    now = stack.clock()
    taken: set = set()
    due, not_yet, closed = {}, set(), set()
    for shard in range(shards):
        for kind in ("due", "not_yet", "completed", "flagged", "idle"):
            key = key_in_shard(shard, shards, taken)
            started = now - 700 if kind != "not_yet" else now - 100
            armed = kinds.apply_event(None, key, EventType.TASK_STARTED, started, RULE, now).timer
            if kind == "completed":
                armed = armed.model_copy(update={"state": TimerState.COMPLETED, "completed_at": now - 10})
            elif kind == "flagged":
                armed = timers.expire(armed, now - 50)
            elif kind == "idle":
                armed = armed.model_copy(update={"state": TimerState.IDLE})
            store.save(armed, 0)
            if kind == "due":
                due[shard] = key
            elif kind == "not_yet":
                not_yet.add(key)
            else:
                closed.add(key)

    found = {shard: {k for k, _ in store.due(shard, now, limit=2)} for shard in range(shards)}  # limit 2: paging
    for shard in range(shards):
        assert found[shard] == {due[shard]}, f"shard {shard}"
    everything = set().union(*found.values())
    assert not everything & (not_yet | closed)

    # closed items carry no index attribute at all: the index is sparse
    items = {(i["pk"], i["sk"]): i for i in stack.items() if i.get("kind") == "task"}
    for key in closed:
        assert "due_shard" not in items[(key.user_id, f"task#{key.task}#{key.instance_id}")]
