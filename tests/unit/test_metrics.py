"""Red-flag metrics (issue 9), pure: segments, learned baselines, failure and inactivity flags, usage drops."""

import json
import math
import random

import pytest
from pydantic import ValidationError

from redflag import kinds
from redflag.core import baselines, timers, weeks
from redflag.core.activity import Activity, ActivityKey
from redflag.core.baselines import ALL, BASE, Histogram, threshold_for
from redflag.core.events import EventType, Outcome, UserInfo, describe_errors
from redflag.core.timers import FlagReason, TimerKey, TimerState
from redflag.kinds import Rule, usage_drop
from redflag.services.ingest import IngestService
from redflag.services.learning import Fold
from tests.fakes import MemoryTimerStore, StaticRules

T0 = 1_800_000_000.0
DAY = 86400


class Clock:
    def __init__(self):
        self.t = T0

    def __call__(self):
        return self.t


class FakeBaselines:
    def __init__(self, hists):
        self.hists = hists
        self.reads = 0

    def histograms(self, keys):
        self.reads += 1
        return {k: self.hists[k] for k in keys if k in self.hists}


# --- segments -------------------------------------------------------------------------------------

SEGMENTED = Rule.model_validate(
    {
        "label": "creating a landing page",
        "threshold_seconds": 900,
        "notify": ["user", "cs"],
        "segments": {"power_user": {"threshold_seconds": 1800, "notify": ["cs"]}, "new": {"threshold_seconds": 600}},
    }
)


def test_a_segment_override_picks_its_threshold_and_notify_list_and_others_get_the_default():
    assert (SEGMENTED.for_segment("power_user").threshold_seconds, SEGMENTED.for_segment("power_user").notify) == (
        1800,
        ["cs"],
    )
    assert (SEGMENTED.for_segment("new").threshold_seconds, SEGMENTED.for_segment("new").notify) == (
        600,
        ["user", "cs"],
    )
    for other in ("unknown", None):
        assert (SEGMENTED.for_segment(other).threshold_seconds, SEGMENTED.for_segment(other).notify) == (
            900,
            ["user", "cs"],
        )
        assert SEGMENTED.applies_to(other)


def test_the_list_form_still_means_only_these_segments():
    rule = Rule(label="x", threshold_seconds=60, segments=["trial"])
    assert rule.applies_to("trial") and not rule.applies_to("pro") and not rule.applies_to(None)


def test_ingest_arms_each_segment_with_its_own_threshold():
    store, clock = MemoryTimerStore(), Clock()
    service = IngestService(store, StaticRules({"page": SEGMENTED.model_dump_json()}), clock)
    events = [
        {"type": "task_started", "task": "page", "user_id": u, "user": {"segment": seg}}
        for u, seg in (("p", "power_user"), ("n", "new"), ("o", "other"))
    ]
    service.ingest(events)
    due = {k.user_id: t.due_at - T0 for k, t in store.timers.items()}
    assert due == {"p": 1800, "n": 600, "o": 900}
    assert store.timers[TimerKey(user_id="p", task="page")].rule.notify == ["cs"]


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"label": "x"}, "threshold_seconds"),
        ({"label": "x", "threshold_seconds": 60, "threshold": {"factor": 2, "fallback_seconds": 60}}, "not both"),
        ({"label": "x", "kind": "usage_drop"}, "drop_percent"),
        ({"label": "x", "kind": "usage_drop", "drop_percent": 50, "notify": ["user"]}, "never 'user'"),
        ({"label": "x", "kind": "inactivity", "threshold": {"factor": 2, "fallback_seconds": 9}}, "threshold_seconds"),
        ({"label": "x", "threshold_seconds": 60, "segments": {"a": {"threshold_seconds": 0}}}, "segments.a"),
        ({"label": "x", "threshold": {"factor": 1, "fallback_seconds": 60}}, "factor"),
        ({"label": "x", "threshold_seconds": 60, "max_failures": 0}, "max_failures"),
    ],
)
def test_every_new_rule_field_is_validated_with_its_name(rule, field):
    with pytest.raises(ValidationError) as exc:
        Rule.model_validate(rule)
    assert field in describe_errors(exc.value.errors())


def test_a_usage_drop_rule_tells_customer_success_unless_it_says_otherwise():
    assert Rule(label="weekly", kind="usage_drop", drop_percent=50).notify == ["cs"]
    assert Rule(label="weekly", kind="usage_drop", drop_percent=50, notify=["webhook"]).notify == ["webhook"]
    assert Rule(label="page", threshold_seconds=60).notify == ["user", "cs"]


# --- baselines ------------------------------------------------------------------------------------


def test_quantiles_of_500_completions_are_within_one_bucket_of_the_truth():
    rng = random.Random(9)
    durations = [rng.lognormvariate(math.log(360), 0.5) for _ in range(500)]
    hist = Histogram()
    for d in durations:
        hist.add(d)
    ordered = sorted(durations)
    for q in (0.5, 0.9):
        true = ordered[math.ceil(q * len(ordered)) - 1]
        estimate = hist.quantile(q)
        width = BASE ** (baselines.bucket_of(true) + 1) - BASE ** baselines.bucket_of(true)
        assert abs(estimate - true) <= width, (q, estimate, true, width)


LEARNING = Rule.model_validate(
    {"label": "t", "threshold": {"relative_to": "p50", "factor": 2, "min_samples": 50, "fallback_seconds": 900}}
)


def test_the_learned_threshold_takes_over_exactly_at_min_samples():
    hist = Histogram()
    for _ in range(49):
        hist.add(300)
    t = threshold_for(LEARNING, None, {ALL: hist})
    assert (t.seconds, t.basis) == (900, "fallback")
    hist.add(300)
    t = threshold_for(LEARNING, None, {ALL: hist})
    assert t.basis == "learned" and t.samples == 50
    assert t.seconds == round(2 * hist.quantile(0.5)) and abs(t.usual_seconds - 300) < 0.2 * 300


def test_a_segment_with_enough_samples_learns_from_its_own_durations():
    fast, everyone = Histogram(), Histogram()
    for _ in range(60):
        fast.add(100)
        everyone.add(100)
        everyone.add(1000)
    everyone.add(1000)
    assert threshold_for(LEARNING, "pro", {"pro": fast, ALL: everyone}).usual_seconds < 120
    assert threshold_for(LEARNING, "trial", {"pro": fast, ALL: everyone}).usual_seconds > 120  # falls back to ALL


def test_ingest_reads_baselines_once_per_request_and_arms_with_the_learned_threshold():
    store, clock = MemoryTimerStore(), Clock()
    hist = Histogram()
    for _ in range(50):
        hist.add(300)
    source = FakeBaselines({("t", ALL): hist})
    service = IngestService(store, StaticRules({"t": LEARNING.model_dump_json()}), clock, baselines=source)
    service.ingest([{"type": "task_started", "task": "t", "user_id": f"u{i}"} for i in range(10)])
    assert source.reads == 1
    timer = store.timers[TimerKey(user_id="u0", task="t")]
    assert timer.threshold_basis == "learned" and timer.due_at - T0 == timer.threshold_seconds
    assert timer.usual_seconds == pytest.approx(hist.quantile(0.5))


# --- failure flags --------------------------------------------------------------------------------

FAILING = Rule(label="importing contacts", threshold_seconds=3600, max_failures=3)
KEY = TimerKey(user_id="u1", task="import")


def apply(timer, kind, at, rule=FAILING):
    d = kinds.apply_event(timer, KEY, kind, at, rule, at)
    return d, (d.timer.model_copy(update={"version": (timer.version if timer else 0) + 1}) if d.timer else timer)


def test_the_third_failure_flags_once_at_once_a_fourth_does_nothing_more_and_a_completion_is_recorded():
    _, t = apply(None, EventType.TASK_STARTED, T0)
    for i in (1, 2):
        d, t = apply(t, EventType.TASK_FAILED, T0 + i)
        assert d.outcome is Outcome.RECORDED and t.state is TimerState.OPEN
    d, t = apply(t, EventType.TASK_FAILED, T0 + 3)
    assert d.outcome is Outcome.FLAGGED and t.state is TimerState.FLAGGED and t.flag_reason is FlagReason.FAILURES
    assert t.flagged_at == T0 + 3
    d, t4 = apply(t, EventType.TASK_FAILED, T0 + 4)
    assert d.outcome is Outcome.RECORDED and t4.state is TimerState.FLAGGED and t4.flagged_at == T0 + 3
    assert timers.expire(t4, T0 + 7200) is None  # the sweeper never flags this run a second time
    d, done = apply(t4, EventType.TASK_COMPLETED, T0 + 60)
    assert d.outcome is Outcome.COMPLETED and done.completed_after_flag_seconds == 57


def test_failures_of_an_earlier_run_do_not_count_toward_the_next():
    _, t = apply(None, EventType.TASK_STARTED, T0)
    for i in (1, 2):
        _, t = apply(t, EventType.TASK_FAILED, T0 + i)
    _, t = apply(t, EventType.TASK_COMPLETED, T0 + 10)
    _, t = apply(t, EventType.TASK_STARTED, T0 + 20)
    d, t = apply(t, EventType.TASK_FAILED, T0 + 21)
    assert d.outcome is Outcome.RECORDED and t.run_failures == 1 and t.failures == 3


# --- inactivity -----------------------------------------------------------------------------------

PRACTICE = Rule(kind="inactivity", label="daily practice", threshold_seconds=3 * DAY, notify=["user", "cs"])


def test_inactivity_daily_activity_never_flags_three_silent_days_flag_once_activity_rearms():
    t = None
    key = TimerKey(user_id="u1", task="practice")
    for day in range(5):  # active every day
        d = kinds.apply_event(t, key, EventType.USER_ACTIVE, T0 + day * DAY, PRACTICE, T0 + day * DAY)
        t = d.timer.model_copy(update={"version": (t.version if t else 0) + 1})
        assert timers.expire(t, T0 + day * DAY + DAY) is None
    last = T0 + 4 * DAY
    assert timers.expire(t, last + 3 * DAY - 1) is None
    flagged = timers.expire(t, last + 3 * DAY)
    assert flagged.state is TimerState.FLAGGED and flagged.flag_reason is FlagReason.INACTIVITY
    assert timers.expire(flagged, last + 9 * DAY) is None  # once
    d = kinds.apply_event(flagged, key, EventType.USER_ACTIVE, last + 4 * DAY, PRACTICE, last + 4 * DAY)
    assert d.outcome is Outcome.ARMED and d.timer.state is TimerState.OPEN
    assert d.timer.due_at == math.ceil(last + 7 * DAY) and d.timer.run_id != flagged.run_id


def test_ingest_routes_user_active_to_the_inactivity_timer_of_its_rule_and_other_activity_to_the_user():
    store, clock = MemoryTimerStore(), Clock()
    rules = StaticRules({"practice": PRACTICE.model_dump_json(), "page": SEGMENTED.model_dump_json()})
    service = IngestService(store, rules, clock)
    out = service.ingest(
        [
            {"type": "user_active", "task": "practice", "user_id": "u1", "instance_id": "ignored"},
            {"type": "user_active", "task": "page", "user_id": "u1"},
            {"type": "task_started", "task": "practice", "user_id": "u1"},
        ]
    )
    assert [r.status for r in out.results] == [Outcome.ARMED, Outcome.RECORDED, Outcome.IGNORED]
    timer = store.timers[TimerKey(user_id="u1", task="practice")]
    assert timer.kind == "inactivity" and timer.due_at == T0 + 3 * DAY
    assert store.get(ActivityKey(user_id="u1")).active_events == 1


# --- usage drops -----------------------------------------------------------------------------------

DROP = Rule(kind="usage_drop", label="weekly usage", drop_percent=50, notify=["cs"])


def test_an_account_losing_60_percent_of_weekly_actives_is_flagged_a_steady_one_is_not():
    before = {"falling": 10, "steady": 10, "tiny": 2, "gone": 8}
    after = {"falling": 4, "steady": 9, "tiny": 0}
    flags = usage_drop.usage_drops("weekly", DROP, "2026-W47", before, after, T0)
    assert [(f.account_id, f.drop_percent) for f in flags] == [("falling", 60.0), ("gone", 100.0)]
    ids = {f.alert_id("cs") for f in flags}
    assert len(ids) == 2 and all("2026-W47" in i for i in ids)


def test_weeks_are_iso_weeks_in_utc():
    monday = 1_795_996_800.0  # 2026-11-30 00:00 UTC, a Monday
    assert weeks.week_of(monday) == "2026-W49" and weeks.week_of(monday - 1) == "2026-W48"
    assert weeks.weeks_before(monday + 900, 1) == "2026-W48"


# --- the fold ---------------------------------------------------------------------------------------


def test_a_fold_counts_starts_completions_flags_and_activity_and_survives_its_window_state():
    rule = Rule(label="t", threshold_seconds=600)
    user = UserInfo(segment="pro", account_id="acme")
    key = TimerKey(user_id="u1", task="t")
    opened = kinds.apply_event(None, key, EventType.TASK_STARTED, T0, rule, T0, user).timer
    done = kinds.apply_event(opened, key, EventType.TASK_COMPLETED, T0 + 300, rule, T0 + 300).timer
    flagged = timers.expire(opened, T0 + 600)
    fold = Fold()
    fold.add("INSERT", False, None, opened)
    fold.add("MODIFY", False, opened, done)
    fold.add("MODIFY", False, opened, flagged)
    fold.add("INSERT", False, None, Activity(key=ActivityKey(user_id="u2"), last_active_at=T0, active_events=1,
                                             account_id="acme"))  # fmt: skip
    fold = Fold.from_state(json.loads(json.dumps(fold.to_state())))
    for seg in ("pro", ALL):
        stats = fold.tasks[("t", seg)]
        assert stats.counts == {"started": 1, "completed": 1, "flag_time": 1, "flagged_emailed": 1}
        assert stats.histogram.n == 1
    assert {(a.account_id, a.user_id) for a in fold.active.values()} == {("acme", "u2")}
    assert fold.account_flags == {"acme": 1}
