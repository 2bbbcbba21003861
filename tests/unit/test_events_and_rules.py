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
