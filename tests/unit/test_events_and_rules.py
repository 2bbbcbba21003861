"""The public event contract and the rule model (pure pydantic)."""

import pytest
from pydantic import ValidationError

from redflag.core.events import EventBatch, TaskEvent, describe_errors
from redflag.kinds import Rule, parse_rules


def test_a_bare_event_is_accepted_as_a_batch_of_one():
    batch = EventBatch.model_validate({"type": "task_started", "task": "t", "user_id": "u"})
    assert len(batch.events) == 1


@pytest.mark.parametrize("count", [0, 101])
def test_batches_hold_1_to_100_events(count):
    with pytest.raises(ValidationError) as exc:
        EventBatch.model_validate({"events": [{}] * count})
    assert describe_errors(exc.value.errors()).startswith("events:")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"task": "Bad Task"}, "task"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "x" * 129}, "user_id"),
        ({"type": "task_paused"}, "type"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": "2026-11-23T10:00:00"}, "occurred_at"),  # RFC 3339 needs an offset
        ({"properties": {"blob": "x" * 2100}}, "properties"),
        ({"user": {"email": "not-an-address"}}, "user.email"),
        ({"user": {"email": "a@b.co\r\nBcc: x@y.z"}}, "user.email"),
        ({"occured_at": "2026-11-23T10:00:00Z"}, "occured_at"),  # a typo is an error, not silence
    ],
)
def test_each_bad_field_is_named(patch, field):
    raw = {"type": "task_started", "task": "t", "user_id": "u"} | patch
    with pytest.raises(ValidationError) as exc:
        TaskEvent.model_validate(raw)
    assert describe_errors(exc.value.errors()).startswith(f"{field}:")


@pytest.mark.parametrize(
    "value",
    [
        1800000000000,  # an epoch number (pydantic read it as milliseconds)
        1800000000,
        "1800000000",
        "2027-01-15T08:00:00+0530",  # an offset without its colon
        "2027-01-15 08:00:00+00:00",  # a space for the T
        "2027-01-15T08:00Z",  # no seconds
        "2027-01-15",
        "2027-1-15T08:00:00Z",
        "2027-01-15T08:00:00.Z",
        "2027-01-15T08:00:00.1234567890Z",  # more than nanoseconds
        "\uff12\uff10\uff12\uff17-01-15T08:00:00Z",  # full-width digits
        "2027-02-30T08:00:00Z",  # no such day
        "2027-01-15T24:00:00Z",
        "2027-01-15T08:00:00+24:00",
        "2027-01-15T08:00:00Z ",
    ],
)
def test_occurred_at_is_rfc_3339_and_nothing_else(value):
    """Issue 14, defect 5: occurred_at took epoch numbers, ``+0530`` and a space separator."""
    with pytest.raises(ValidationError) as exc:
        TaskEvent.model_validate({"type": "task_started", "task": "t", "user_id": "u", "occurred_at": value})
    assert describe_errors(exc.value.errors()).startswith("occurred_at:")


@pytest.mark.parametrize(
    ("value", "epoch"),
    [
        ("2027-01-15T08:00:00Z", 1800000000),
        ("2027-01-15T13:30:00+05:30", 1800000000),
        ("2027-01-15T08:00:00.25-00:00", 1800000000.25),  # -00:00: UTC, its local offset unknown
        ("2027-01-15t08:00:00.123456789z", 1800000000.123456),  # RFC 3339 5.6: T and Z in either case
    ],
)
def test_an_rfc_3339_occurred_at_is_read_exactly(value, epoch):
    event = TaskEvent.model_validate({"type": "task_started", "task": "t", "user_id": "u", "occurred_at": value})
    assert event.occurred_at is not None and event.occurred_at.timestamp() == pytest.approx(epoch, abs=1e-6)


def test_rule_defaults_and_limits():
    rule = Rule.model_validate_json('{"label": "creating a landing page", "threshold_seconds": 900}')
    assert rule.notify == ["user", "cs"]
    with pytest.raises(ValidationError):
        Rule.model_validate({"label": "x", "threshold_seconds": 60, "expected_seconds": 120})
    with pytest.raises(ValidationError):
        Rule.model_validate({"label": "x", "threshold_seconds": 60, "notify": ["sms"]})


def test_an_invalid_rule_only_affects_its_own_task():
    book = parse_rules({"good": '{"label": "g", "threshold_seconds": 60}', "bad": '{"label": "b"}'})
    assert isinstance(book.lookup("good"), Rule)
    assert "threshold_seconds" in book.lookup("bad").reason
    assert book.lookup("missing") is None
