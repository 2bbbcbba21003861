"""The sweeper at scale, on fakes: memory bounded by a page (never by the backlog), fan-out decided
from the first page of each shard, and each item of a batched flag write with its own outcome."""

import json

from redflag.core.timers import TimerKey, TimerState
from redflag.services.ingest import IngestService
from redflag.services.ports import FlagResult
from redflag.services.sweeping import SweepPlan, SweepService
from tests.fakes import MemoryTimerStore, StaticRules, ref_of, shard_of
from tests.unit.test_services import RULES, T0, Clock, RecordingDispatcher, ev


def armed(n, store=None, clock=None, threshold=None):
    """``n`` timers started at T0 (due at T0 + 900, or spread with ``threshold``: one rule per second)."""
    store, clock = store or MemoryTimerStore(), clock or Clock()
    if threshold is None:
        IngestService(store, StaticRules(RULES), clock).ingest([ev("task_started", f"u{i}") for i in range(n)])
        return store, clock
    rules = {f"t{s}": json.dumps({"label": "t", "threshold_seconds": threshold + s}) for s in range(60)}
    ingest = IngestService(store, StaticRules(rules), clock)
    for i in range(0, n, 100):
        ingest.ingest([{"type": "task_started", "task": f"t{j % 60}", "user_id": f"u{j}"} for j in range(i, i + 100)])
    return store, clock


def flagged_once(store):
    """Every timer flagged, each by exactly one write (the version counts writes: armed 1, flagged 2)."""
    return {(t.state, t.version) for t in store.timers.values()} == {(TimerState.FLAGGED, 2)}


def test_a_backlog_many_pages_deep_is_worked_through_holding_one_page_per_shard():
    store, clock = armed(600)
    clock.t = T0 + 3600  # an outage: everything overdue
    plan = SweepPlan(shards=store.shards, page_size=20)
    report = SweepService(store, plan, clock).run(lambda: 75)
    assert report.flagged == 600 and flagged_once(store)
    assert report.held <= plan.page_size * store.shards  # never the backlog: at most a page per shard
    assert report.pages >= 600 / plan.page_size  # page after page


def test_what_a_run_holds_does_not_grow_with_the_backlog():
    held = {}
    for n in (400, 1200):
        store, clock = armed(n)
        clock.t = T0 + 3600
        report = SweepService(store, SweepPlan(shards=store.shards, page_size=25), clock).run(lambda: 75)
        assert report.flagged == n
        held[n] = report.held
    assert held[1200] == held[400] == 25 * 4  # a full page per shard, whatever the backlog


def test_a_heavy_minute_is_flagged_page_by_page_each_timer_at_its_due_time():
    store, clock = armed(1200, threshold=900)  # 20 timers due every second from T0 + 900 to T0 + 959
    clock.t = T0 + 895
    flagged_at = {}
    original = store.flag_due

    def flag(key, now, expires_at):
        done = original(key, now, expires_at)
        if done:
            flagged_at[key] = now
        return done

    store.flag_due = flag
    report = SweepService(store, SweepPlan(shards=store.shards, page_size=30), clock).run(lambda: 75)
    assert report.flagged == 1200 and flagged_once(store)
    assert all(flagged_at[k] == t.due_at for k, t in store.timers.items())  # none late, none early
    assert report.held <= 30 * store.shards


def test_fan_out_is_decided_from_a_count_of_the_first_page_of_each_shard():
    store, clock = armed(800)
    clock.t = T0 + 3600
    seen_when_dispatched = []

    class Dispatcher(RecordingDispatcher):
        def dispatch(self, shards):
            seen_when_dispatched.append((store.counts, store.pages))
            super().dispatch(shards)

    dispatcher = Dispatcher()
    plan = SweepPlan(shards=store.shards, page_size=20, fanout_at=40)
    report = SweepService(store, plan, clock, dispatcher=dispatcher).run(lambda: 75)
    assert report.dispatched == store.shards - 1
    assert set(seen_when_dispatched) == {(store.shards, 0)}  # one count per shard, no page read yet
    handed = {s for group in dispatcher.groups for s in group}
    assert report.flagged == sum(1 for k in store.timers if shard_of(k, store.shards) not in handed)


def test_a_light_minute_starts_no_worker():
    store, clock = armed(30)
    clock.t = T0 + 3600
    dispatcher = RecordingDispatcher()
    plan = SweepPlan(shards=store.shards, page_size=20, fanout_at=124)  # 31 in one shard would start workers
    report = SweepService(store, plan, clock, dispatcher=dispatcher).run(lambda: 75)
    assert report.dispatched == 0 and report.flagged == 30 and store.counts == store.shards


def test_a_minute_due_ahead_fans_out_too_not_only_a_backlog():
    store, clock = armed(600, threshold=900)  # 10 a second over the coming minute, none due yet
    clock.t = T0 + 890
    dispatcher = RecordingDispatcher()
    plan = SweepPlan(shards=store.shards, page_size=40, fanout_at=100)
    report = SweepService(store, plan, clock, dispatcher=dispatcher).run(lambda: 75)
    assert report.dispatched == store.shards - 1


def test_each_item_of_a_batched_write_has_its_own_outcome():
    store, clock = armed(60)
    done = TimerKey(user_id="u7", task="create_landing_page")
    IngestService(store, StaticRules(RULES), clock).ingest([ev("task_completed", "u7")])  # finished: never flagged
    throttled = {ref_of(TimerKey(user_id=f"u{i}", task="create_landing_page")) for i in (3, 30, 31)}
    faults = []

    def fault(ref):
        if ref in throttled and ref not in faults:  # throttled once, then written
            faults.append(ref)
            return FlagResult.RETRY
        return None

    store.flag_faults = fault
    clock.t = T0 + 1000
    report = SweepService(store, SweepPlan(shards=store.shards, lookahead=False, passes=3), clock).run(lambda: 75)
    assert store.get(done).state is TimerState.COMPLETED  # the completed one was never even tried
    assert (report.flagged, report.failed, report.lost_races) == (59, 3, 0)
    assert len(faults) == 3 and {(t.state, t.version) for k, t in store.timers.items() if k != done} == {
        (TimerState.FLAGGED, 2)
    }
    assert max(store.flag_calls) <= 25 and len(store.flag_calls) < 59 / 5  # batched: far fewer calls than flags


def test_a_lost_race_is_counted_and_never_written_again():
    store, clock = armed(30)
    clock.t = T0 + 1000
    won_by_someone_else = {ref_of(TimerKey(user_id=f"u{i}", task="create_landing_page")) for i in range(5)}
    seen = []

    def race(ref):
        if ref in won_by_someone_else:
            seen.append(ref)
            return FlagResult.LOST
        return None

    store.flag_faults = race
    report = SweepService(store, SweepPlan(shards=store.shards), clock).run(lambda: 75)
    assert (report.flagged, report.lost_races) == (25, 5)
    assert sorted(seen) == sorted(won_by_someone_else)  # each tried once: a lost race is not retried


def test_a_permanent_error_is_counted_as_rejected():
    store, clock = armed(10)
    clock.t = T0 + 1000
    store.flag_faults = lambda ref: FlagResult.REJECTED if ref[0] == "u4" else None
    report = SweepService(store, SweepPlan(shards=store.shards, lookahead=False, passes=1), clock).run(lambda: 75)
    assert (report.flagged, report.rejected) == (9, 1)
