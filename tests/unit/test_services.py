"""Ingest, sweep and alerting services on in-memory fakes: the behaviour, without AWS."""

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from redflag.core.activity import ActivityKey
from redflag.core.events import Outcome
from redflag.core.timers import TimerKey, TimerState
from redflag.services.alerting import AlertingService
from redflag.services.changes import TimerChanged
from redflag.services.ingest import IngestService
from redflag.services.sending import Sender
from redflag.services.sweeping import SweepPlan, SweepService
from tests.fakes import MemorySendOnce, MemoryTimerStore, NoParking, RecordingSender, StaticRules

T0 = 1_800_000_000.0
RULES = {"create_landing_page": json.dumps({"label": "creating a landing page", "threshold_seconds": 900})}


class Clock:
    def __init__(self):
        self.t = T0
        self.slept = []

    def __call__(self):
        return self.t

    def now(self):
        return self.t

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.t += max(0, seconds)


def sweeper(store, clock, **plan):
    return SweepService(store, SweepPlan(shards=store.shards, **plan), clock)


def make():
    store, clock = MemoryTimerStore(), Clock()
    return IngestService(store, StaticRules(RULES), clock), store, clock


def ev(kind, user_id="u1", **extra):
    return {"type": kind, "task": "create_landing_page", "user_id": user_id} | extra


def statuses(response):
    return [r.status for r in response.results]


def test_one_bad_event_never_drops_its_good_neighbours():
    service, store, _ = make()
    out = service.ingest([ev("task_started", "a"), {"type": "nope"}, "not an object", ev("task_started", "b")])
    assert statuses(out) == [Outcome.ARMED, Outcome.REJECTED, Outcome.REJECTED, Outcome.ARMED]
    assert out.accepted == 2 and out.rejected == 2
    assert {k.user_id for k in store.timers} == {"a", "b"}


def test_future_timestamps_are_rejected_beyond_five_minutes():
    service, _, _ = make()
    soon = datetime.fromtimestamp(T0 + 299, UTC).isoformat()
    late = datetime.fromtimestamp(T0 + 301, UTC).isoformat()
    out = service.ingest([ev("task_started", "a", occurred_at=soon), ev("task_started", "b", occurred_at=late)])
    assert statuses(out) == [Outcome.ARMED, Outcome.REJECTED]
    assert "occurred_at" in out.results[1].reason


def test_repeated_event_id_is_applied_once():
    service, store, _ = make()
    first = service.ingest([ev("task_started", event_id="e1")])
    again = service.ingest([ev("task_started", event_id="e1"), ev("task_completed", event_id="e1")])
    assert statuses(first) == [Outcome.ARMED]
    assert statuses(again) == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert store.get(TimerKey(user_id="u1", task="create_landing_page")).state is TimerState.OPEN


def test_unknown_task_is_ignored_and_user_active_is_recorded():
    service, store, _ = make()
    out = service.ingest([ev("task_started") | {"task": "unknown"}, ev("user_active")])
    assert statuses(out) == [Outcome.IGNORED, Outcome.RECORDED]
    assert store.get(ActivityKey(user_id="u1")).active_events == 1


def test_rules_are_read_once_per_request_not_per_event():
    store, clock = MemoryTimerStore(), Clock()
    rules = StaticRules(RULES)
    IngestService(store, rules, clock).ingest([ev("task_started", f"u{i}") for i in range(50)])
    assert rules.reads == 1


def test_sweep_then_alert_exactly_once_even_if_the_change_is_delivered_twice():
    service, store, clock = make()
    service.ingest([ev("task_started", "a", user={"email": "a@x.co"}), ev("task_started", "b")])
    service.ingest([ev("task_completed", "b")])
    clock.t += 900
    report = sweeper(store, clock, lookahead=False, passes=1).run(lambda: 60)
    assert report.flagged == 1
    sender = RecordingSender()
    alerting = AlertingService(Sender(sender.senders(), MemorySendOnce(), NoParking()))
    timer = store.get(TimerKey(user_id="a", task="create_landing_page"))
    old = timer.model_copy(update={"state": TimerState.OPEN})
    for _ in range(2):  # a retried batch
        alerting.handle([("1", TimerChanged("MODIFY", False, old, timer))], clock(), clock() + 30)
    assert sorted(a.channel for a in sender.sent) == ["cs", "user"]
    clock.t += 60
    assert sweeper(store, clock, lookahead=False, passes=1).run(lambda: 60).flagged == 0


PURE = ("core", "kinds", "channels", "services")  # the domain and what orchestrates it; adapters/ and edge/ are not


def test_domain_imports_without_boto3_or_powertools():
    """Every module of the pure packages loads with the SDK and Powertools unimportable: AWS and the
    Lambda edge live only in ``redflag.adapters`` and ``redflag.edge``."""
    package = Path(__file__).parents[2] / "layers" / "redflag" / "redflag"
    modules = sorted(
        ".".join(p.relative_to(package).with_suffix("").parts)
        for folder in PURE
        for p in (package / folder).glob("*.py")
    )
    assert {"core.timers", "core.rules", "services.alerting", "channels.slack", "core.interventions"} <= set(modules)
    blocked = ("boto3", "botocore", "aws_lambda_powertools")
    code = "import sys\n" + "".join(f"sys.modules[{b!r}] = None\n" for b in blocked)
    code += "".join(f"import redflag.{m}\n" for m in modules)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_sweeper_run_makes_evenly_spaced_passes_and_flags_within_one_spacing():
    service, store, clock = make()
    service.ingest([ev("task_started", "a")])  # due at T0 + 900
    clock.t = T0 + 890

    report = sweeper(store, clock, lookahead=False, passes=3).run(lambda: 60)
    assert report.passes == 3 and report.flagged == 1
    assert clock.slept == [20, 20]
    flagged = store.get(TimerKey(user_id="a", task="create_landing_page"))
    assert flagged.state is TimerState.FLAGGED and flagged.flagged_at == T0 + 910


def test_look_ahead_flags_each_timer_at_its_due_time_and_catches_short_ones_armed_mid_run():
    service, store, clock = make()
    service.ingest([ev("task_started", "a")])  # due at T0 + 900
    clock.t = T0 + 880
    flagged_at = {}
    sweep = sweeper(store, clock)  # look-ahead, a read every 5 s (the defaults)

    def sleep(seconds):
        clock.t += max(0, seconds)
        for key, timer in store.timers.items():
            if timer.state is TimerState.FLAGGED:
                flagged_at.setdefault(key.user_id, timer.flagged_at)
        if clock.t >= T0 + 890 and "b" not in {k.user_id for k in store.timers}:
            # armed mid-run with a 20 s threshold (a rule of its own): due at T0 + 910
            short = IngestService(
                store, StaticRules({"quick": json.dumps({"label": "q", "threshold_seconds": 20})}), clock
            )
            short.ingest([{"type": "task_started", "task": "quick", "user_id": "b"}])

    clock.sleep = sleep
    report = sweep.run(lambda: 75)
    assert report.flagged == 2 and report.passes == 13
    assert flagged_at["a"] == T0 + 900  # at its due time, not at the next read
    assert T0 + 910 <= flagged_at["b"] <= T0 + 915  # within one read interval


class RecordingDispatcher:
    def __init__(self):
        self.groups = []

    def dispatch(self, shards):
        self.groups.append(shards)


def test_a_backlog_is_handed_to_workers_one_per_other_shard_and_each_worker_drains_its_own():
    service, store, clock = make()
    service.ingest([ev("task_started", f"u{i}") for i in range(40)])  # all due at T0 + 900
    clock.t = T0 + 3600  # an outage: everything long overdue
    dispatcher = RecordingDispatcher()
    coordinator = SweepService(store, SweepPlan(shards=store.shards, fanout_at=10), clock, dispatcher=dispatcher)
    report = coordinator.run(lambda: 75)
    assert report.dispatched == len(dispatcher.groups) == store.shards - 1
    kept = set(range(store.shards)) - {s for group in dispatcher.groups for s in group}
    assert len(kept) == 1
    assert report.flagged < 40  # the rest belongs to the workers
    for group in dispatcher.groups:
        SweepService(store, SweepPlan(shards=store.shards), clock).run(lambda: 75, shards=group)
    assert {t.state for t in store.timers.values()} == {TimerState.FLAGGED}


def test_a_run_stops_before_its_deadline_and_leaves_the_rest_to_the_next():
    service, store, clock = make()
    service.ingest([ev("task_started", f"u{i}") for i in range(300)])
    clock.t = T0 + 1000
    plan = SweepPlan(shards=store.shards, workers=1)  # 4 flags between looks at the clock
    original = store.flag_due

    def slow_flag(key, now, expires_at):  # each write takes a second
        clock.t += 1
        return original(key, now, expires_at)

    store.flag_due = slow_flag
    report = SweepService(store, plan, clock).run(lambda: 30)
    assert report.flagged < 300 and clock.t <= T0 + 1000 + 30 + 4  # the margin, and one chunk at most
