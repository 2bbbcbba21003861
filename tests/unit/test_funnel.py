"""The funnel kind on its own: steps reached, waits flagged at their step's threshold, late, duplicate
and out-of-order step events, optional steps, and what the stats fold counts per step."""

import pytest

from redflag import channels, kinds
from redflag.channels.base import Context, RedFlag
from redflag.core.events import EventType, Outcome, TaskEvent, UserInfo
from redflag.core.timers import FlagReason, TimerKey, TimerState, expire
from redflag.kinds import Rule
from redflag.services.learning import Fold

T0 = 1_800_000_000.0
CHECKOUT = Rule(
    kind="funnel",
    label="checking out",
    steps=[
        {"name": "cart", "threshold_seconds": 600, "expected_seconds": 180},
        {"name": "shipping", "label": "shipping details", "threshold_seconds": 300, "expected_seconds": 120},
        {"name": "gift_note", "optional": True, "threshold_seconds": 300},
        {"name": "payment", "threshold_seconds": 900},
        {"name": "confirmed"},
    ],
)
KEY = TimerKey(user_id="u1", task="checkout", instance_id="o1")
USER = UserInfo(email="ada@example.com", name="Ada Lovelace", account_id="acme")


def step(current, name, at, rule=CHECKOUT, event_type=EventType.TASK_COMPLETED):
    props = {} if name is None else {"step": name}
    return kinds.apply_event(current, KEY, event_type, at, rule, at, USER, props)


def walk(*steps):
    """(timer, decisions) after each (step, seconds after T0)."""
    timer, decisions = None, []
    for name, offset in steps:
        d = step(timer, name, T0 + offset)
        decisions.append(d)
        timer = d.timer or timer
    return timer, decisions


def test_a_user_who_stops_at_shipping_is_flagged_once_naming_shipping_at_its_threshold():
    timer, _ = walk(("cart", 0), ("shipping", 120))
    assert (timer.state, timer.step, timer.due_at) == (TimerState.OPEN, "shipping", T0 + 120 + 300)
    assert expire(timer, T0 + 120 + 299) is None  # not before the step's own threshold
    flagged = expire(timer, T0 + 420)
    assert flagged.state is TimerState.FLAGGED and flagged.flag_reason is FlagReason.STUCK
    assert expire(flagged, T0 + 9999) is None  # once
    alerts = {a.channel: a for a in channels.plan(RedFlag(kinds.get("funnel"), flagged), Context(T0 + 421))}
    cs = alerts["cs"].message
    assert cs["step"] == "shipping" and cs["reason"] == "stuck"
    assert "Ada Lovelace has been at shipping details of checking out for 5 minutes" in cs["summary"]
    assert "usually about 2 minutes at this step" in cs["summary"]
    assert "shipping details" in alerts["user"].text
    assert alerts["cs"].subject.startswith("Stuck at shipping details")


def test_a_user_who_goes_on_is_not_flagged_and_the_end_completes():
    timer, decisions = walk(("cart", 0), ("shipping", 120), ("payment", 300), (None, 400))
    assert [d.outcome for d in decisions] == [Outcome.ARMED, Outcome.ARMED, Outcome.ARMED, Outcome.COMPLETED]
    assert timer.state is TimerState.COMPLETED and timer.step == "confirmed"
    assert timer.duration_seconds == 400
    assert expire(timer, T0 + 10_000) is None
    assert decisions[2].reason is None  # the optional gift note skipped: the ordinary path


def test_each_wait_is_its_own_run_so_a_second_stuck_step_flags_again():
    timer, _ = walk(("cart", 0))
    flagged = expire(timer, T0 + 600)
    moved = step(flagged, "shipping", T0 + 700)
    assert moved.outcome is Outcome.ARMED and moved.timer.run_id != flagged.run_id
    assert moved.timer.entry_flags == 1 and moved.timer.entered_at == T0
    assert expire(moved.timer, T0 + 1000).flag_reason is FlagReason.STUCK


def test_duplicate_and_earlier_step_events_change_nothing():
    timer, _ = walk(("cart", 0), ("payment", 60))
    again = step(timer, "payment", T0 + 90)
    earlier = step(timer, "shipping", T0 + 100)  # late delivery of a step already passed
    assert (again.outcome, again.timer, again.reason) == (Outcome.RECORDED, None, "already at this step")
    assert earlier.outcome is Outcome.RECORDED and earlier.timer is None and "never moves back" in earlier.reason


def test_a_later_step_stamped_before_the_current_one_moves_on_from_the_current_time():
    timer, _ = walk(("cart", 100))
    moved = step(timer, "shipping", T0 + 50)  # out of order in time, later in the funnel
    assert moved.timer.step == "shipping" and moved.timer.started_at == T0 + 100


def test_skipping_a_required_step_moves_on_and_says_so_an_optional_one_is_ordinary():
    _, decisions = walk(("cart", 0), ("payment", 60))
    assert decisions[1].outcome is Outcome.ARMED and decisions[1].reason == "skipped required step shipping"
    _, decisions = walk(("cart", 0), ("shipping", 30), ("payment", 60))
    assert decisions[2].reason is None


def test_after_the_end_a_later_step_event_begins_a_new_pass_an_older_one_does_not():
    done, _ = walk(("cart", 0), (None, 100))
    assert step(done, "cart", T0 + 50).outcome is Outcome.RECORDED
    again = step(done, "cart", T0 + 200)
    assert again.outcome is Outcome.ARMED and again.timer.entered_at == T0 + 200 and again.timer.entry_flags == 0


def test_an_unknown_step_is_ignored_naming_the_steps_and_a_failure_only_counts():
    timer, _ = walk(("cart", 0))
    unknown = step(timer, "gift_wrap", T0 + 10)
    assert unknown.outcome is Outcome.IGNORED and "cart, shipping, gift_note, payment, confirmed" in unknown.reason
    failed = step(timer, None, T0 + 20, event_type=EventType.TASK_FAILED)
    assert failed.timer.failures == 1 and failed.timer.state is TimerState.OPEN and failed.timer.due_at == timer.due_at


def test_task_started_without_a_step_reaches_the_first():
    d = step(None, None, T0, event_type=EventType.TASK_STARTED)
    assert d.timer.step == "cart" and d.timer.threshold_seconds == 600


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([{"name": "a", "threshold_seconds": 60}, {"name": "a"}], "steps.1.name"),
        ([{"name": "a"}, {"name": "b"}], "steps.0.threshold_seconds"),
        ([{"name": "a", "threshold_seconds": 60}, {"name": "b", "threshold_seconds": 60}], "steps.1"),
        ([{"name": "a", "threshold_seconds": 60, "expected_seconds": 60}, {"name": "b"}], "steps.0.expected_seconds"),
        ([{"name": "a", "threshold_seconds": 60}, {"name": "b", "optional": True}], "steps.1.optional"),
    ],
)
def test_a_funnel_rule_is_checked_naming_the_step_field(steps, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        Rule(kind="funnel", label="x", steps=steps)


def test_a_funnel_takes_no_task_threshold():
    with pytest.raises(ValueError, match="threshold_seconds"):
        Rule(
            kind="funnel", label="x", threshold_seconds=60, steps=[{"name": "a", "threshold_seconds": 1}, {"name": "b"}]
        )


def test_a_learned_step_threshold_reads_its_steps_row():
    steps = [{"name": "cart", "threshold": {"factor": 2, "fallback_seconds": 600}}, {"name": "done"}]
    rule = Rule(kind="funnel", label="checking out", steps=steps)
    event = TaskEvent(type="task_started", task="checkout", user_id="u1")
    name, fields = kinds.get("funnel").learning(rule, event)
    assert name == "checkout/cart" and fields.threshold.factor == 2


def test_the_fold_counts_each_step_entered_reached_flagged_and_skipped():
    fold = Fold()
    cur = None
    for name, offset in (("cart", 0), ("payment", 120)):  # shipping (required) skipped
        new = step(cur, name, T0 + offset).timer
        fold.add("MODIFY" if cur else "INSERT", False, cur, new.model_copy(update={"version": 1}))
        cur = new
    flagged = expire(cur, T0 + 120 + 900)
    fold.add("MODIFY", False, cur, flagged)
    rows = {k: s.counts for k, s in fold.tasks.items() if k[1] == "*"}
    assert rows[("checkout/cart", "*")] == {"started": 1, "completed": 1}
    assert fold.tasks[("checkout/cart", "*")].histogram.n == 1
    assert rows[("checkout/shipping", "*")] == {"skipped": 1}
    assert rows[("checkout/payment", "*")] == {"started": 1, "flag_stuck": 1}
    assert rows[("checkout", "*")] == {"started": 1, "flag_stuck": 1, "flagged_emailed": 1}
    minute = int(T0 // 60)
    assert fold.buckets[("checkout", minute)] == {"started": 1, "abandoned": 1}
    assert fold.buckets[("checkout/cart", minute)] == {"started": 1, "converted": 1}
    assert fold.weeks[next(iter(fold.weeks))] == {"started": 1, "flags": 1}
