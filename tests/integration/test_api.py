"""POST /v1/events through the real handler: clear 4xx for a broken envelope, per-event results
otherwise, and good events are stored whatever their neighbours look like."""

import json
from datetime import UTC, datetime

import pytest

from redflag_local.standin.stack import ROOT
from tests.integration.conftest import started


def timers_of(stack):
    return {i["user_id"]: i for i in stack.items() if i.get("kind") == "task"}


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ('{"events": [', 400, "JSON"),
        ("", 422, "body"),
        ("[]", 422, "body"),
        ('{"events": []}', 422, "events"),
        ('{"evnts": [{"type": "task_started"}]}', 422, "events"),
        ('{"events": "nope"}', 422, "events"),
    ],
)
def test_a_broken_envelope_is_a_4xx_naming_the_field(stack, body, status, names):
    code, out = stack.post_events(body, raw=True)
    assert code == status
    assert names in out["message"]
    assert timers_of(stack) == {}


def test_101_events_are_refused_whole(stack):
    code, out = stack.post_events({"events": [started(f"u{i}") for i in range(101)]})
    assert code == 422 and out["message"].startswith("events:")
    assert "100" in out["message"]


def test_a_bare_json_array_is_refused_whole_never_cut_to_its_first_event(stack):
    """Issue 14, defect 1: ``[evA, evB]`` was answered 202 with one result (Powertools' body normalisation
    took ``value[0]``): every event after the first dropped, and 150 never met the 100-event limit."""
    for body in ([started("u-a"), started("u-b")], [started(f"u-many-{i}") for i in range(150)]):
        code, out = stack.post_events(body)
        assert code == 422, out
        assert out["message"] == 'body: a JSON array; send {"events": [...]} (1-100 events) or one event object'
        assert out["errors"] == [{"field": "body", "message": out["message"].removeprefix("body: ")}]
    assert timers_of(stack) == {}


def test_error_bodies_are_bounded_however_large_the_request(stack):
    """Issue 14, defect 2: every unknown key was listed twice, so a 1.8 MB request got a 6 MB 422 (past
    Lambda's 6 MB response limit on AWS: a 502, and the 5xx alarm). The first 10 problems and a count."""
    unknown = {f"k{i:06d}": 0 for i in range(130_000)}
    body = json.dumps({"events": [started("u-big")]} | unknown)
    assert len(body) > 1_800_000
    code, out = stack.post_events(body, raw=True)
    assert code == 422
    assert len(json.dumps(out)) < 4_000
    assert [e["field"] for e in out["errors"]] == [f"k{i:06d}" for i in range(10)]
    assert out["error_count"] == 130_000
    assert out["message"].startswith("k000000: Extra inputs are not permitted; k000001:")
    assert out["message"].endswith("; and 129990 more")

    # the same inside each event: one rejected result per event, each reason bounded (202, not 6 MB)
    many = {f"k{i:05d}": 0 for i in range(1_300)}
    code, out = stack.post_events({"events": [started(f"u{i}") | many for i in range(100)]})
    assert code == 202 and out["rejected"] == 100
    assert len(json.dumps(out)) < 100 * 700
    assert out["results"][0]["reason"].endswith("; and 1290 more")
    assert timers_of(stack) == {}


def test_a_body_that_was_not_utf8_is_a_400_not_silently_changed(stack):
    """Issue 14, defect 5: bytes that are not UTF-8 reach the function as U+FFFD (API Gateway replaces
    them, as `redflag serve` does) and were stored as such. Written escaped, U+FFFD is a value like any."""
    replaced = '{"type": "task_started", "task": "create_landing_page", "user_id": "u-\ufffd"}'
    code, out = stack.post_events(replaced, raw=True)
    assert (code, out["message"]) == (400, "body: not valid UTF-8 (bytes that are not UTF-8 arrive as U+FFFD)")
    assert timers_of(stack) == {}
    code, out = stack.post_events(replaced.replace("\ufffd", "\\ufffd"), raw=True)
    assert code == 202 and out["results"][0]["status"] == "armed"


def test_an_occurred_at_that_is_not_rfc_3339_rejects_its_event_not_the_request(stack):
    """Issue 14, defect 5: epoch numbers (read as milliseconds), ``+0530`` and a space separator were
    accepted; now each is its event's ``rejected``, next to an armed neighbour (a 202, not a 4xx)."""
    odd = [1800000000000, "2027-01-15T08:00:00+0530", "2027-01-15 08:00:00+00:00"]
    events = [started(f"u-at-{i}", occurred_at=at) for i, at in enumerate(odd)] + [started("u-at-ok")]
    code, out = stack.post_events({"events": events})
    assert code == 202
    assert [r["status"] for r in out["results"]] == ["rejected"] * 3 + ["armed"]
    assert all(r["reason"].startswith("occurred_at: Value error, must be an RFC 3339") for r in out["results"][:3])
    assert set(timers_of(stack)) == {"u-at-ok"}


def test_bad_events_are_rejected_one_by_one_and_good_ones_stored(stack):
    now = stack.clock()
    future = datetime.fromtimestamp(now + 3600, UTC).isoformat()
    code, out = stack.post_events(
        {
            "events": [
                started("u-good-1"),
                {"type": "task_started", "task": "create_landing_page"},  # no user_id
                started("u-future", occurred_at=future),
                started("u-big", properties={"blob": "x" * 3000}),
                started("u-good-2", instance_id="page-7", event_id="e-7"),
            ]
        }
    )
    assert code == 202
    results = out["results"]
    assert [r["status"] for r in results] == ["armed", "rejected", "rejected", "rejected", "armed"]
    assert results[1]["reason"].startswith("user_id:")
    assert results[2]["reason"].startswith("occurred_at:")
    assert results[3]["reason"].startswith("properties:")
    assert results[4]["event_id"] == "e-7"
    assert (out["accepted"], out["rejected"]) == (2, 3)
    assert set(timers_of(stack)) == {"u-good-1", "u-good-2"}


def test_a_single_bare_event_is_accepted(stack):
    code, out = stack.post_events(started("u1"))
    assert code == 202 and out["results"][0]["status"] == "armed"


def test_duplicate_event_id_reported_and_applied_once(stack):
    code, out = stack.post_events({"events": [started("u1", event_id="e1"), started("u1", event_id="e1")]})
    assert code == 202 and [r["status"] for r in out["results"]] == ["armed", "duplicate"]
    assert timers_of(stack)["u1"]["version"] == 1


def test_unknown_task_ignored_failed_and_active_recorded(stack):
    code, out = stack.post_events(
        {
            "events": [
                {"type": "task_started", "task": "no_such_rule", "user_id": "u1"},
                {"type": "task_failed", "task": "create_landing_page", "user_id": "u1"},
                {"type": "user_active", "task": "create_landing_page", "user_id": "u1"},
            ]
        }
    )
    assert code == 202 and [r["status"] for r in out["results"]] == ["ignored", "recorded", "recorded"]
    items = {i["sk"]: i for i in stack.items() if i["pk"] == "u1"}
    assert items["task#create_landing_page#default"]["failures"] == 1
    assert items["user"]["active_events"] == 1


def test_an_invalid_rule_only_affects_its_own_task(stack):
    stack.put_rules({"broken": '{"label": "no threshold"}'})
    code, out = stack.post_events(
        {"events": [{"type": "task_started", "task": "broken", "user_id": "u1"}, started("u2")]}
    )
    assert code == 202 and [r["status"] for r in out["results"]] == ["ignored", "armed"]
    assert "invalid" in out["results"][0]["reason"] and "threshold_seconds" in out["results"][0]["reason"]


def test_rules_are_cached_on_a_warm_lambda(stack):
    provider = stack.handlers["EventsToTimersFunction"].service._rules._provider
    calls = []
    provider.client.meta.events.register("before-call.ssm.GetParametersByPath", lambda **kw: calls.append(1))
    for i in range(5):
        stack.post_events({"events": [started(f"u{i}-{j}") for j in range(10)]})
    assert len(calls) <= 1  # 50 events, at most one SSM read (the first may already be cached)


def test_a_form_body_is_a_415_that_echoes_nothing(stack):
    event = json.loads((ROOT / "events" / "events_to_timers" / "post_events.json").read_text())
    event["headers"]["Content-Type"] = event["multiValueHeaders"]["Content-Type"][0] = (
        "application/x-www-form-urlencoded"
    )
    event["body"] = '{"type":"task_started","task":"t","user_id":"u","user":{"email":"ada@example.com"}}'
    out = stack.invoke("EventsToTimersFunction", event)
    assert out["statusCode"] == 415
    assert "ada@example.com" not in out["body"]
    assert timers_of(stack) == {}
