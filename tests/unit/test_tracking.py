"""The tracking API's domain on its own: the Segment Spec's fields, a rule's track mapping through the kinds
registry, and what a request of calls does (on the in-memory store: one batched read, a write per change)."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from redflag import kinds
from redflag.core import tracking
from redflag.core.activity import ActivityKey
from redflag.core.timers import TimerKey
from redflag.core.tracking import Interaction
from redflag.edge import tracking as edge
from redflag.kinds import Rule, RuleBook
from redflag.services.ingest import IngestService
from redflag.services.tracking import TrackingService
from tests.fakes import MemoryTimerStore, StaticRules

NOW = 1_800_000_000.0
LANDING = {
    "label": "building a landing page",
    "threshold_seconds": 600,
    "track": {"started": "Page Started", "completed": ["Page Published"], "instance_property": "page_id"},
}
QUIET = {"kind": "inactivity", "label": "using the editor", "threshold_seconds": 86400}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def service(rules: dict | None = None) -> tuple[TrackingService, MemoryTimerStore]:
    store = MemoryTimerStore()
    raw = {k: json.dumps(v) for k, v in (rules or {"landing": LANDING, "editor": QUIET}).items()}
    ingest = IngestService(store, StaticRules(raw), lambda: NOW)
    return TrackingService(ingest, lambda: NOW), store


# --- the Spec ----------------------------------------------------------------------------------------


def test_the_timestamp_is_corrected_for_the_devices_clock_skew():
    # the device is an hour fast: it stamped the call 10 s before it sent it, by its own clock
    assert tracking.corrected_time(NOW + 3590, NOW + 3600, NOW) == NOW - 10
    assert tracking.corrected_time(NOW - 5, None, NOW) == NOW - 5  # no sentAt: as given
    assert tracking.corrected_time(None, NOW + 3600, NOW) == NOW  # no timestamp: when received


def test_traits_keep_what_an_email_needs_each_inert_and_checked():
    traits = {"first_name": "Ada\r\n", "last_name": "Love\u200blace", "email": " ada@example.com ", "plan": "pro"}
    assert tracking.profile_traits(traits, {"timezone": "Europe/Paris"}) == {
        "email": "ada@example.com", "name": "Ada Lovelace", "timezone": "Europe/Paris"
    }  # fmt: skip
    bad = {"email": "not an address", "name": "\x00", "timezone": "Mars/Olympus", "segment": "trial"}
    assert tracking.profile_traits(bad) == {"segment": "trial"}
    assert tracking.account_traits(42, {"name": "Initech"}) == {"account_id": "42", "account_name": "Initech"}


def test_write_keys_are_one_key_or_a_json_list_and_compared_whole():
    assert tracking.write_keys(" k1 ") == ("k1",)
    assert tracking.write_keys('["new", "old"]') == ("new", "old")
    keys = tracking.write_keys('["new", "old"]')
    assert tracking.key_matches("old", keys) and not tracking.key_matches("ol", keys)
    assert not tracking.key_matches("", keys) and not tracking.key_matches("x", ())


def test_the_webhook_signature_is_the_hex_hmac_sha1_of_the_body():
    import hashlib
    import hmac

    body = b'{"type":"track"}'
    assert tracking.signature(b"s3cret", body) == hmac.new(b"s3cret", body, hashlib.sha1).hexdigest()
    assert tracking.signature_matches(b"s3cret", body, tracking.signature(b"s3cret", body).upper())
    assert not tracking.signature_matches(b"s3cret", body + b" ", tracking.signature(b"s3cret", body))


def test_a_gzip_body_is_decompressed_never_past_the_routes_limit():
    text = json.dumps({"batch": [{"type": "page", "userId": "u"}]})
    event = {
        "path": "/v1/batch",
        "body": base64.b64encode(gzip.compress(text.encode())).decode(),
        "isBase64Encoded": True,
    }
    edge.prepare(event)
    assert (event["body"], event["isBase64Encoded"]) == (text, False)
    bomb = {
        "path": "/v1/track",
        "body": base64.b64encode(gzip.compress(b" " * 10_000_000)).decode(),
        "isBase64Encoded": True,
    }
    with pytest.raises(edge.BodyProblem, match="32 KB"):
        edge.prepare(bomb)  # refused after 32 KB of it, not inflated whole


# --- the rule's track mapping, through the registry -------------------------------------------------------


def test_a_rules_track_mapping_is_validated_by_its_kind():
    Rule.model_validate(LANDING)
    cases = [
        (LANDING | {"track": {"completed": "X"}}, "track.started"),  # a task is started by something
        (LANDING | {"track": {"started": "X", "active": "Y"}}, "track.active"),  # not a task's key
        (LANDING | {"track": {"started": "X", "failed": "X"}}, "track.failed"),  # one name, one meaning
        (QUIET | {"track": {"active": "X", "instance_property": "p"}}, "track.instance_property"),
        ({"kind": "usage_drop", "label": "x", "drop_percent": 50, "track": {"started": "X"}}, "track"),
        (LANDING | {"track": {"started": "X", "where": {"bad key!": 1}}}, "track.where"),
    ]
    for rule, field in cases:
        with pytest.raises(ValidationError) as raised:
            Rule.model_validate(rule)
        assert any(".".join(map(str, e["loc"])).startswith(field) for e in raised.value.errors()), raised.value


def test_each_kind_says_which_calls_are_its_events():
    where = LANDING | {"track": LANDING["track"] | {"where": {"editor": ["v2", "v3"], "beta": True}}}
    book = RuleBook(rules={"landing": Rule.model_validate(where), "editor": Rule.model_validate(QUIET)})
    started = Interaction(type="track", name="Page Started", properties={"editor": "v2", "beta": True})
    assert [(t, e.value) for t, _, e in kinds.tracked(book, started)] == [
        ("editor", "user_active"), ("landing", "task_started")
    ]  # fmt: skip
    other_editor = started.model_copy(update={"properties": {"editor": "v1", "beta": True}})
    assert [t for t, _, _ in kinds.tracked(book, other_editor)] == ["editor"]  # activity, whatever the event
    not_beta = started.model_copy(update={"properties": {"editor": "v2", "beta": 1}})  # 1 is not true
    assert [t for t, _, _ in kinds.tracked(book, not_beta)] == ["editor"]
    page = Interaction(type="page", name="Started", properties={})
    assert [t for t, _, _ in kinds.tracked(book, page)] == ["editor"]


# --- a request of calls -----------------------------------------------------------------------------------


def test_identify_then_track_arms_a_personal_timer_in_one_read_and_one_write_per_record():
    svc, store = service()
    calls = [
        {"type": "identify", "userId": "u1", "messageId": "m1", "traits": {"email": "ada@example.com", "name": "Ada"}},
        {"type": "group", "userId": "u1", "messageId": "m2", "groupId": "acc-1", "traits": {"name": "Initech"}},
        {"type": "track", "userId": "u1", "messageId": "m3", "event": "Page Started", "properties": {"page_id": "p1"}},
        {"type": "page", "userId": "u1", "messageId": "m4", "name": "Editor"},
    ]
    out = svc.receive(calls)
    assert [r.status.value for r in out.results] == ["recorded", "recorded", "armed", "armed"]  # the page: inactivity
    assert out.results[2].tasks == {"editor": "armed", "landing": "armed"}
    assert store.calls == ["load", "save", "save", "save"]  # timers + profile read at once; timer, inactivity, user
    timer = store.records[TimerKey(user_id="u1", task="landing", instance_id="p1")]
    assert (timer.user.email, timer.user.name, timer.user.account_id) == ("ada@example.com", "Ada", "acc-1")
    user = store.records[ActivityKey(user_id="u1")]
    assert (user.active_events, user.account_id, user.profile.account_name) == (2, "acc-1", "Initech")
    assert store.records[TimerKey(user_id="u1", task="editor")].started_at == NOW  # the latest activity re-armed it


def test_a_track_without_traits_is_personalised_from_the_stored_profile():
    svc, store = service()
    svc.receive([{"type": "identify", "userId": "u2", "traits": {"email": "grace@example.com", "name": "Grace"}}])
    svc.receive([{"type": "track", "userId": "u2", "event": "Page Started", "properties": {"page_id": "p"},
                  "context": {"traits": {"name": "G. Hopper"}}}])  # fmt: skip
    timer = store.records[TimerKey(user_id="u2", task="landing", instance_id="p")]
    assert (timer.user.email, timer.user.name) == ("grace@example.com", "G. Hopper")  # its own traits win


def test_calls_that_cannot_be_events_are_answered_one_by_one():
    svc, _ = service()
    out = svc.receive(
        [
            {"type": "track", "anonymousId": "anon-1", "event": "Page Started"},
            {"type": "alias", "userId": "u3", "previousId": "anon-1"},
            {"type": "track", "userId": "u3", "event": "Page Started"},  # no page_id: the rule keys instances by it
            {
                "type": "track",
                "userId": "u3",
                "event": "Page Started",
                "properties": {"page_id": "p", "x": "y" * 40_000},
            },
            {"type": "track", "userId": "u3"},
            {"type": "screen", "userId": "u3", "timestamp": iso(NOW + 3600)},
            "not an object",
        ]
    )
    statuses = [(r.status.value, (r.reason or "")[:40]) for r in out.results]
    assert statuses == [
        ("ignored", "no userId: Red Flag watches identified u"),
        ("ignored", "alias is not supported: Red Flag keys a "),
        ("rejected", "properties.page_id: missing; the rule fo"),
        ("rejected", "message: 40089 bytes as JSON; the limit "),
        ("rejected", "event: Field required"),
        ("rejected", "timestamp: more than 300 seconds in the "),
        ("rejected", "message: must be a JSON object"),
    ]
    assert (out.rejected, out.accepted, out.success) == (5, 2, True)


def test_a_replayed_request_is_a_duplicate_and_a_store_fault_a_retry():
    svc, store = service({"landing": LANDING})
    calls = [
        {"type": "track", "userId": "u4", "messageId": "m-1", "event": "Page Started", "properties": {"page_id": "p"}}
    ]
    assert svc.receive(calls).results[0].status.value == "armed"
    again = svc.receive(calls)
    assert [r.status.value for r in again.results] == ["duplicate"]
    store.fail_saves = set(range(1, 100))
    fresh = [c | {"messageId": "m-2", "userId": "u5"} for c in calls]
    failed = svc.receive(fresh)
    assert (failed.success, failed.retry, failed.results[0].status.value) == (False, 1, "retry")


CHECKOUT = {
    "kind": "funnel",
    "label": "checking out",
    "steps": [
        {"name": "cart", "threshold_seconds": 600},
        {"name": "shipping", "threshold_seconds": 600},
        {"name": "confirmed"},
    ],
    "track": {
        "steps": {"cart": "Product Added", "shipping": ["Checkout Started"], "confirmed": "Order Completed"},
        "failed": "Payment Failed",
        "instance_property": "cart_id",
    },
}


def test_a_funnels_steps_are_mapped_track_events():
    bad = [
        (CHECKOUT | {"track": {"failed": "X"}}, "track.steps"),  # a funnel mapping names its steps
        (CHECKOUT | {"track": {"steps": {"nope": "X"}}}, "track.steps.nope"),
        (CHECKOUT | {"track": {"steps": {"cart": "X", "shipping": "X"}}}, "track.steps.shipping"),
        (CHECKOUT | {"track": {"steps": {"cart": "X"}, "started": "Y"}}, "track.started"),
    ]
    for rule, field in bad:
        with pytest.raises(ValidationError) as raised:
            Rule.model_validate(rule)
        assert any(".".join(map(str, e["loc"])).startswith(field) for e in raised.value.errors()), raised.value
    svc, store = service({"checkout": CHECKOUT})
    key = TimerKey(user_id="u5", task="checkout", instance_id="c1")

    def track(event: str, message: str, at: float) -> str:
        call = {"type": "track", "userId": "u5", "messageId": message, "event": event,
                "properties": {"cart_id": "c1", "step": "confirmed"}, "timestamp": iso(at)}  # fmt: skip
        return svc.receive([call]).results[0].status.value

    assert track("Product Added", "m1", NOW - 60) == "armed"
    assert (store.records[key].step, store.records[key].properties["step"]) == ("cart", "cart")  # the mapping's step
    assert track("Checkout Started", "m2", NOW - 30) == "armed"
    assert store.records[key].step == "shipping"
    assert track("Product Added", "m3", NOW - 20) == "recorded"  # an earlier step: a funnel never moves back
    assert track("Payment Failed", "m4", NOW - 10) == "recorded"
    assert store.records[key].failures == 1
    assert track("Order Completed", "m5", NOW) == "completed"
