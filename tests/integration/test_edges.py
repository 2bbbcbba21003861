"""Trust at the edges (issue 7): each hostile input or fault found by the outside review, as data,
through the real handlers on the template deployed into moto."""

import json
from email import message_from_bytes, policy

import pytest

from redflag_local.standin.stack import Fault, LocalStack, sample_event
from tests.integration.conftest import LANDING, started

ODD_ADDRESSES = [
    "a,b@example.com",
    "a;b@example.com",
    "a:b@example.com",
    "a[b]@example.com",
    "ü@exämple.com",
    "a\x00b@example.com",
    '"quoted"@example.com',
    "a@b",
    "<a@example.com>",
]


def timers_of(stack):
    return {i["user_id"]: i for i in stack.items() if i.get("kind") == "task"}


# --- 1. an address the sender cannot write is refused at the door, naming the field ------------------


def test_odd_addresses_are_rejected_at_the_door_and_their_neighbours_armed(stack):
    events = [started(f"odd-{i}", email) for i, email in enumerate(ODD_ADDRESSES)] + [started("ok", "ok@example.com")]
    status, out = stack.post_events({"events": events})
    assert status == 202
    results = out["results"]
    assert [r["status"] for r in results] == ["rejected"] * len(ODD_ADDRESSES) + ["armed"]
    assert all(r["reason"].startswith("user.email:") for r in results[:-1]), results
    assert set(timers_of(stack)) == {"ok"}


def test_an_unwritable_address_already_stored_never_silences_the_cs_alert(stack):
    """A timer stored before the door was this strict: the email is parked, CS still hears."""
    stack.post_events(started("u-old", "old@example.com"))
    item = stack.get_item("u-old", "task#create_landing_page#default")
    stack.ddb.update_item(
        TableName=stack.table_name,
        Key={"pk": {"S": "u-old"}, "sk": {"S": item["sk"]}},
        UpdateExpression="SET #u.email = :e",
        ExpressionAttributeNames={"#u": "user"},
        ExpressionAttributeValues={":e": {"S": "a,b@example.com"}},
    )
    stack.tick(901)
    assert [a["message"]["user_id"] for a in stack.cs_alerts()] == ["u-old"]
    assert stack.emails() == []
    parked = stack.parked()
    assert [(p["kind"], p["channel"], p["error"]) for p in parked] == [("alert_rejected", "user", "Unwritable")]


# --- 2. deep properties --------------------------------------------------------------------------


def test_deep_or_wide_properties_are_rejected_and_the_allowed_depth_alerts(stack):
    deep = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    wide = {f"k{i}": i for i in range(65)}
    ok = {"a": {"b": {"c": {"d": 1}}}}
    _, out = stack.post_events(
        {"events": [started("deep", properties=deep), started("wide", properties=wide), started("ok", properties=ok)]}
    )
    assert [r["status"] for r in out["results"]] == ["rejected", "rejected", "armed"]
    assert "levels deep" in out["results"][0]["reason"] and "keys" in out["results"][1]["reason"]
    stack.tick(901)
    assert [a["message"]["properties"] for a in stack.cs_alerts()] == [ok]


# --- 3. a name never becomes header syntax ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("=?utf-8?q?Bcc=3A_evil=40x=2Ecom?=", "=?utf-8?q?Bcc=3A_evil=40x=2Ecom?="),
        ("=?utf-8?q?x=0D=0ABcc=3A_evil=40x=2Ecom?=", "=?utf-8?q?x=0D=0ABcc=3A_evil=40x=2Ecom?="),
        # an address in a name is no name (issue 15, defect 5): the To line carries no display name
        ("Eve <eve@evil.example>, all@corp.example", ""),
        ('Ada "Countess" Lovelace; Bcc: x@y.z', ""),
    ],
)
def test_a_display_name_is_text_not_header_syntax(stack, name, shown):
    stack.post_events(started("victim", "victim@example.com", name))
    stack.tick(901)
    (sent,) = stack.emails()
    raw = sent["message"].as_bytes()
    msg = message_from_bytes(raw, policy=policy.default)
    addresses = msg["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in addresses] == [(shown, "victim@example.com")]
    assert msg["Bcc"] is None and msg["Cc"] is None
    headers = raw.split(b"\n\n")[0].splitlines()
    assert not [h for h in headers if h.lower().startswith((b"bcc", b"cc:"))]


NAMES = [  # (as typed, as kept)
    ("Ada\r\n", "Ada"),  # what a web form may leave at the end
    ("A\u200bda", "Ada"),  # a zero-width space
    ("Ada\u202e Lovelace\x00", "Ada Lovelace"),  # a bidi override, a NUL
    ("\u200b\r\n", None),  # nothing left: the neutral greeting
    ("Ada " + "x" * 300, "Ada " + "x" * 252),  # too long: clipped to 256, not refused
]


def test_a_display_name_with_control_characters_never_costs_the_red_flag(stack):
    """Issue 14, defect 3: such a name rejected the whole event, so the user was never flagged. The event
    is kept and the name made inert (control and format characters removed, clipped)."""
    events = [started(f"u-named-{i}", f"named-{i}@example.com", name) for i, (name, _) in enumerate(NAMES)]
    code, out = stack.post_events({"events": events})
    assert code == 202 and [r["status"] for r in out["results"]] == ["armed"] * len(NAMES), out
    kept = {user: timer["user"].get("name") for user, timer in timers_of(stack).items()}
    assert kept == {f"u-named-{i}": shown for i, (_, shown) in enumerate(NAMES)}
    stack.tick(901)
    emails = {str(e["message"]["To"].addresses[0].addr_spec): e for e in stack.emails()}
    assert len(emails) == len(NAMES) and len(stack.cs_alerts()) == len(NAMES)
    for i, (_, shown) in enumerate(NAMES):
        sent = emails[f"named-{i}@example.com"]
        (to,) = sent["message"]["To"].addresses
        # kept whole, but a 256-character "name" is no name to greet (issue 15, defect 5): neutral
        greeted = shown if shown is not None and len(shown) <= 100 else None
        assert to.display_name == (greeted or "")
        assert (f"Hi {greeted.split()[0]}," if greeted else "Hi there,") in sent["text"]


# --- 4. chat mentions are escaped in every CS field ---------------------------------------------------


def test_mentions_and_markup_reach_cs_escaped(stack):
    stack.put_rules({"create_landing_page": LANDING | {"label": "pages & <b>forms</b>"}})
    stack.post_events(
        started("u-<@U123>", "a@example.com", "<!channel> <!here> <@U123>", properties={"<!everyone>": "<x>&"})
    )
    stack.tick(901)
    (alert,) = stack.cs_alerts()
    text = json.dumps(alert["message"])
    for raw in ("<!channel>", "<!here>", "<@U123>", "<!everyone>", "<b>", "<x>"):
        assert raw not in text
    # a "name" of mentions is no name (issue 15, defect 5): CS is shown the user id, escaped
    assert alert["message"]["summary"].startswith("u-&lt;@U123&gt; has been on pages &amp; &lt;b&gt;")
    assert alert["message"]["properties"] == {"&lt;!everyone&gt;": "&lt;x&gt;&amp;"}


# --- 5. content types and bodies that used to answer 500 -------------------------------------------


def _post(stack, body, content_type):
    event = sample_event("events_to_timers/post_events.json")
    event["headers"] = {"Content-Type": content_type} if content_type else {}
    event["multiValueHeaders"] = {"Content-Type": [content_type]} if content_type else {}
    event["body"] = body
    out = stack.invoke("EventsToTimersFunction", event)
    return out["statusCode"], json.loads(out["body"])


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("text/json", 415),
        ("application/xml", 415),
        ("multipart/form-data", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/jsonx", 415),
        ("Application/JSON", 202),
        ("application/json; charset=UTF-8", 202),
        ("application/vnd.api+json", 202),
        (None, 202),
    ],
)
def test_content_types(stack, content_type, status):
    code, out = _post(stack, json.dumps(started("u-ct", "ct@example.com")), content_type)
    assert code == status, out
    if status == 415:
        assert out == {"message": "content-type: send application/json"}
        assert timers_of(stack) == {}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("[" * 10_000 + "]" * 10_000, "nested"),
        ('{"events": ' + "[" * 40 + "]" * 40 + "}", "nested"),
        ('{"type": "task_started", "task": "t", "user_id": "u", "properties": {"n": ' + "9" * 5000 + "}}", "number"),
        ('{"type": "task_started", "task": "t", "user_id": "u", "properties": {"n": NaN}}', "NaN"),
    ],
)
def test_bodies_that_would_crash_the_parser_are_400(stack, body, why):
    code, out = _post(stack, body, "application/json")
    assert code == 400 and why in out["message"], out


# --- 6. a passing store fault is `retry`, never `rejected`, never a 500 after a commit ---------------


def test_a_store_fault_mid_request_answers_retry_for_exactly_what_was_not_applied(stack, json_logs):
    table = stack.physical["TimersTable"]
    events = [
        started("r-1", event_id="e-1"),
        started("r-2", event_id="e-2"),
        {"type": "task_failed", "task": "create_landing_page", "user_id": "r-2", "event_id": "e-3"},
        started("r-3", event_id="e-4"),
    ]
    fault = Fault("dynamodb", "PutItem", "TransactionConflictException", 400, nth=[2], table=table)
    with stack.faults(fault):
        status, out = stack.post_events({"events": events})
    assert status == 202
    assert [r["status"] for r in out["results"]] == ["armed", "retry", "retry", "armed"]
    assert (out["accepted"], out["rejected"], out["retry"]) == (2, 0, 2)
    assert "TransactionConflictException" in out["results"][1]["reason"]
    warnings = [entry for entry in json_logs() if entry["level"] == "WARNING" and "retry" in entry["message"]]
    assert [(w["index"], w["event_id"]) for w in warnings] == [(1, "e-2"), (2, "e-3")]

    status, out = stack.post_events({"events": events})  # the client sends the batch again
    assert [r["status"] for r in out["results"]] == ["duplicate", "armed", "recorded", "duplicate"]
    status, out = stack.post_events({"events": events})
    assert {r["status"] for r in out["results"]} == {"duplicate"}
    assert timers_of(stack)["r-2"]["failures"] == 1  # applied once, however often it was sent


def test_when_nothing_can_be_applied_the_answer_is_503_and_says_retry(stack):
    fault = Fault("dynamodb", "BatchGetItem", "ProvisionedThroughputExceededException", 400, rate=1.0)
    with stack.faults(fault):
        status, out = stack.post_events({"events": [started("s-1"), started("s-2")]})
    assert status == 503 and [r["status"] for r in out["results"]] == ["retry", "retry"]
    assert timers_of(stack) == {}


# --- 7. a send whose bookkeeping failed is never sent again ------------------------------------------


def test_a_failed_success_record_never_sends_the_email_twice(stack):
    stack.post_events(started("u-book", "book@example.com"))
    stack.clock.advance(901)
    idempotency = stack.physical["IdempotencyTable"]
    faults = [
        # every attempt to record the email's success fails (the SDK's 3 tries, our 4 rounds)
        Fault(
            "dynamodb",
            "BatchWriteItem",
            "ProvisionedThroughputExceededException",
            400,
            rate=1.0,
            body_contains=idempotency,
        ),
        # and the CS alert fails, so the stream record is retried
        Fault("sns", "Publish", "InternalError", 500, rate=1.0),
    ]
    with stack.faults(*faults):
        stack.sweep()
        responses = stack.deliver_stream()
    assert len(stack.emails()) == 1 and stack.cs_alerts() == []
    assert any(r.get("batchItemFailures") for r in responses)
    stack.tick(60)  # the retries that ran out were parked; the operator replays them
    assert len(stack.emails()) == 1


# --- 8. every failed record is logged once, with ids, never an address --------------------------------


def test_failed_records_are_logged_once_each_with_ids_and_no_address(stack, json_logs):
    users = [f"log-{i}" for i in range(14)]
    stack.post_events({"events": [started(u, f"{u}@private.example", f"Name {u}") for u in users]})
    stack.clock.advance(901)
    stack.sweep()
    records = stack.filter_stream(stack.read_stream())
    json_logs.clear()
    with stack.faults(Fault("sesv2", "SendEmail", "TooManyRequestsException", 429, rate=1.0)):
        out = stack.invoke("TimersToAlertsFunction", {"Records": records})
    assert len(out["batchItemFailures"]) == 14
    logged = json_logs()
    text = "\n".join(json.dumps(e) for e in logged)
    assert "@private.example" not in text and "Name log-" not in text
    failed = [e for e in logged if e["level"] in ("WARNING", "ERROR")]
    assert sorted(e["keys"]["pk"] for e in failed) == sorted(users)
    assert {json.dumps(e["errors"]) for e in failed} == {'{"user": "TooManyRequestsException"}'}


# --- 11. event ids are per user ---------------------------------------------------------------------


def test_the_same_event_id_from_two_users_is_two_events(stack):
    _, out = stack.post_events({"events": [started("a", event_id="e-1"), started("b", event_id="e-1")]})
    assert [r["status"] for r in out["results"]] == ["armed", "armed"]


# --- 12 and 13: cold start, the sweeper's event ---------------------------------------------------------


@pytest.mark.parametrize("missing", ["SENDER_EMAIL", "ALERT_TOPIC_ARN", "IDEMPOTENCY_TABLE_NAME", "PARKED_QUEUE_URL"])
def test_a_missing_setting_fails_at_cold_start_naming_it(stack, missing):
    from pydantic import ValidationError

    function = "TimersToAlertsFunction"
    env = stack.function_env[function]
    stack.function_env[function] = {k: v for k, v in env.items() if k != missing}
    saved = dict(__import__("os").environ)
    __import__("os").environ.pop(missing, None)
    try:
        with pytest.raises(ValidationError) as exc:
            stack._import(function, stack.template.functions[function] / "app.py")
        assert missing.lower() in str(exc.value)
    finally:
        stack.function_env[function] = env
        __import__("os").environ.update(saved)


@pytest.mark.parametrize(
    "event", [{}, {k: v for k, v in sample_event("sweep_due_timers/scheduled.json").items() if k != "version"}]
)
def test_the_sweeper_runs_on_any_scheduled_event(stack, event):
    stack.post_events(started("u-sweep"))
    stack.clock.advance(901)
    out = stack.invoke("SweepDueTimersFunction", event)
    assert out["flagged"] == 1


def test_a_small_stack_runs_its_pools_at_full_width():
    """moto takes one call at a time, so the stand-in runs the functions' pools one worker wide; here
    they run as configured on AWS (16 ingest writers, 32 sweep writers, channels in parallel)."""
    wide = {"INGEST_CONCURRENCY": "16", "SWEEP_WORKERS": "32", "ALERT_CHANNEL_CONCURRENCY": "4"}
    with LocalStack(env_overrides=wide) as s:
        s.put_rules({"create_landing_page": LANDING})
        events = [started(f"w-{i}", f"w{i}@example.com", event_id=f"e{i}") for i in range(60)]
        events += [{"type": "task_completed", "task": "create_landing_page", "user_id": f"w-{i}"} for i in range(30)]
        status, out = s.post_events({"events": events})
        assert status == 202 and out["accepted"] == 90
        s.tick(901)
        assert sorted(a["message"]["user_id"] for a in s.cs_alerts()) == sorted(f"w-{i}" for i in range(30, 60))
        assert len(s.emails()) == 30
