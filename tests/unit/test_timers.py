"""The timer state machine, transition by transition (pure: no AWS)."""

import pytest

from redflag import kinds
from redflag.core import timers
from redflag.core.events import EventType, Outcome, UserInfo
from redflag.core.timers import TimerKey, TimerState
from redflag.kinds import Rule

RULE = Rule(label="creating a landing page", threshold_seconds=900, expected_seconds=600)
KEY = TimerKey(user_id="u1", task="create_landing_page")
T0 = 1_800_000_000.0
STARTED, COMPLETED, FAILED = EventType.TASK_STARTED, EventType.TASK_COMPLETED, EventType.TASK_FAILED


def step(current, kind, at, now=None):
    decision = kinds.apply_event(current, KEY, kind, at, RULE, now if now is not None else at)
    stored = (
        decision.timer.model_copy(update={"version": (current.version if current else 0) + 1})
        if decision.timer
        else current
    )
    return decision, stored


def test_start_arms_a_timer_due_at_the_threshold():
    d, t = step(None, STARTED, T0)
    assert d.outcome is Outcome.ARMED
    assert t.state is TimerState.OPEN
    assert t.due_at == T0 + 900 and t.expires_at == T0 + 900


def test_completion_cancels_and_keeps_the_duration():
    _, t = step(None, STARTED, T0)
    d, t = step(t, COMPLETED, T0 + 480)
    assert d.outcome is Outcome.COMPLETED
    assert t.state is TimerState.COMPLETED
    assert t.duration_seconds == 480
    assert t.expires_at > T0 + 86400  # kept for statistics, out of TTL's way


def test_completion_before_start_leaves_no_timer_armed_by_the_late_start():
    d, t = step(None, COMPLETED, T0 + 300)
    assert d.outcome is Outcome.COMPLETED
    d, t2 = step(t, STARTED, T0, now=T0 + 301)
    assert d.outcome is Outcome.RECORDED and d.timer is None
    assert t2.state is TimerState.COMPLETED


def test_late_start_of_an_old_run_never_rearms_after_a_newer_run_opened():
    _, t = step(None, STARTED, T0 + 1000)  # run 2 starts
    d, t = step(t, COMPLETED, T0 + 300)  # run 1's completion, late
    assert d.outcome is Outcome.RECORDED and t.state is TimerState.OPEN
    d, t = step(t, STARTED, T0)  # run 1's start, later still
    assert d.outcome is Outcome.RECORDED
    assert t.started_at == T0 + 1000


def test_earlier_start_moves_the_timer_earlier():
    _, t = step(None, STARTED, T0 + 60)
    d, t = step(t, STARTED, T0)
    assert d.outcome is Outcome.ARMED and t.due_at == T0 + 900


def test_second_start_of_an_open_timer_does_not_reset_it():
    _, t = step(None, STARTED, T0)
    d, t2 = step(t, STARTED, T0 + 600)
    assert d.outcome is Outcome.RECORDED and d.timer is None
    assert t2.due_at == T0 + 900


def test_restart_after_completion_arms_a_new_run_with_a_new_run_id():
    _, t = step(None, STARTED, T0)
    _, t = step(t, COMPLETED, T0 + 100)
    d, t2 = step(t, STARTED, T0 + 200)
    assert d.outcome is Outcome.ARMED and t2.state is TimerState.OPEN
    assert t2.run_id != t.run_id


def test_sweep_flags_only_open_timers_past_due():
    _, t = step(None, STARTED, T0)
    assert timers.expire(t, T0 + 899) is None
    flagged = timers.expire(t, T0 + 900)
    assert flagged.state is TimerState.FLAGGED
    assert timers.expire(flagged, T0 + 2000) is None
    _, done = step(t, COMPLETED, T0 + 10)
    assert timers.expire(done, T0 + 2000) is None


def test_completion_after_flag_records_duration_and_new_start_before_due_is_not_rearmed():
    _, t = step(None, STARTED, T0)
    flagged = timers.expire(t, T0 + 950).model_copy(update={"version": 2})
    d, _ = step(flagged, STARTED, T0 + 800)
    assert d.outcome is Outcome.RECORDED
    d, done = step(flagged, COMPLETED, T0 + 1200)
    assert d.outcome is Outcome.COMPLETED and done.duration_seconds == 1200


def test_failures_are_counted_without_arming():
    d, t = step(None, FAILED, T0)
    assert d.outcome is Outcome.RECORDED and t.state is TimerState.IDLE and t.failures == 1
    d, t = step(t, STARTED, T0 + 1)
    assert t.state is TimerState.OPEN and t.failures == 1


def test_item_codec_round_trips_and_only_open_timers_carry_the_due_index():
    from redflag.adapters import codec as items

    timer = timers.Timer(
        key=TimerKey(user_id="u#1", task="t", instance_id="a#b"),
        state=TimerState.OPEN,
        version=3,
        started_at=T0 + 0.25,
        due_at=int(T0 + 901),
        expires_at=int(T0 + 901),
        rule=RULE,
        user=UserInfo(email="a@b.co", name="Ada"),
        properties={"n": 1.5, "nested": {"x": [1, "y"]}},
    )
    item = items.to_item(timer, shards=8)
    assert 0 <= item["due_shard"] < 8
    assert items.timer_of(item) == timer
    done = timer.model_copy(update={"state": TimerState.COMPLETED})
    assert "due_shard" not in items.to_item(done, shards=8)


@pytest.mark.parametrize(
    ("event_name", "by_ttl", "old_state", "new_state", "alerts"),
    [
        ("REMOVE", True, "open", None, True),
        ("REMOVE", False, "open", None, False),  # a person deleted it
        ("REMOVE", True, "flagged", None, False),  # the sweeper already flagged it
        ("REMOVE", True, "completed", None, False),
        ("MODIFY", False, "open", "flagged", True),
        ("MODIFY", False, "open", "completed", False),
        ("MODIFY", False, "flagged", "completed", False),
        ("INSERT", False, None, "open", False),
    ],
)
def test_which_stream_changes_are_red_flags(event_name, by_ttl, old_state, new_state, alerts):
    _, t = step(None, STARTED, T0)
    image = lambda state: t.model_copy(update={"state": TimerState(state)}) if state else None  # noqa: E731
    assert (timers.red_flag(event_name, by_ttl, image(old_state), image(new_state)) is not None) is alerts


def test_non_task_items_are_never_red_flags():
    from redflag.adapters import codec as items

    user_item = {"pk": "u1", "sk": "user", "kind": "user", "version": 1}
    assert items.timer_of(user_item) is None
    assert timers.red_flag("REMOVE", True, items.timer_of(user_item), None) is None
