"""The tracking API through `redflag serve`'s HTTP front (the template's routes, the deployed handlers on
moto), with the real Segment and RudderStack SDKs as clients: unmodified, only host and write key set.

The clock is moved by hand (the server's own tick is idle): a call posted now, then the rule's
threshold passed and one tick of the pipeline (sweeper, TTL, stream, alerts).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest
import rudderstack.analytics
import segment.analytics
from hypothesis import strategies as st
from rich.console import Console

from redflag.core import tracking
from redflag_local.standin.serve import LocalServer, _Server
from redflag_local.standin.stack import Fault

pytestmark = pytest.mark.integration

NEW_KEY, OLD_KEY = "wk-new-0123456789", "wk-old-9876543210"  # both held while the old one is rotated out
LANDING = {
    "label": "building a landing page",
    "threshold_seconds": 60,
    "notify": ["user", "cs"],
    "track": {
        "started": "Landing Page Started",
        "completed": "Landing Page Published",
        "failed": "Landing Page Publish Failed",
        "instance_property": "page_id",
    },
}


class Tracked:
    def __init__(self, server: LocalServer, url: str) -> None:
        self.server = server
        self.url = url
        self.stack = server.stack

    def post(self, path: str, body: bytes | str | dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST")
        for name, value in ({"Content-Type": "application/json"} | (headers or {})).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def request(self, method: str, path: str) -> int:
        request = urllib.request.Request(self.url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def later(self, seconds: float) -> None:
        """``seconds`` pass (past the threshold), then one tick: the sweeper, TTL, the stream, alerts."""
        with self.server.lock:
            self.stack.clock.advance(seconds)
        self.server.tick()

    def now(self) -> float:
        return self.stack.clock()

    def user_record(self, user_id: str) -> dict | None:
        with self.server.lock:
            return self.stack.get_item(user_id, "user")

    def timers_of(self, user_id: str) -> list[dict]:
        with self.server.lock:
            return [i for i in self.stack.items() if i["pk"] == user_id and str(i["sk"]).startswith("task#")]


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """`redflag serve`'s server (in this process, so faults and the clock can be set) on a free port."""
    console = Console(file=open(tmp_path_factory.mktemp("serve") / "console.log", "w"))  # noqa: SIM115
    server = LocalServer(
        {"build_landing_page": _rule()},
        tmp_path_factory.mktemp("outbox"),
        write_keys=[NEW_KEY, OLD_KEY],
        tick_seconds=3600,  # idle: the tests tick
        console=console,
        parameters={"QuietHours": "off"},
    )
    httpd = _Server(("127.0.0.1", 0), server)
    server.start()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Tracked(server, f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        server.stop()


def _rule():
    from redflag.kinds import Rule

    return Rule.model_validate(LANDING)


def sdk_errors() -> list[tuple[Exception, list]]:
    return []


def test_the_segment_and_rudderstack_sdks_end_in_one_personal_email_and_one_cs_alert(tracked):
    errors = sdk_errors()
    # Segment's SDK: only host and write key (the new key); RudderStack's: host and the old key (rotation overlap),
    # its default gzip body
    seg = segment.analytics.Client(NEW_KEY, host=tracked.url, on_error=lambda e, batch: errors.append((e, batch)))
    rud = rudderstack.analytics.Client(OLD_KEY, host=tracked.url, on_error=lambda e, batch: errors.append((e, batch)))
    emails, alerts = len(tracked.stack.emails()), len(tracked.stack.cs_alerts())

    seg.identify("u-seg-1", {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"})
    seg.group("u-seg-1", "acc-initech", {"name": "Initech"})
    seg.track("u-seg-1", "Landing Page Started", {"page_id": "p-1"})  # never finished
    seg.identify("u-seg-2", {"email": "grace@example.com", "name": "Grace Hopper"})
    seg.track("u-seg-2", "Landing Page Started", {"page_id": "p-2"})
    seg.track("u-seg-2", "Landing Page Published", {"page_id": "p-2"})  # finished
    seg.flush()
    rud.identify("u-rud-1", {"email": "katherine@example.com", "name": "Katherine Johnson"})  # context.traits
    rud.page("u-rud-1", name="Editor")
    rud.track("u-rud-1", "Landing Page Started", {"page_id": "p-3"})
    rud.track("u-rud-2", "Landing Page Started", {"page_id": "p-4"})
    rud.track("u-rud-2", "Landing Page Published", {"page_id": "p-4"})
    rud.flush()
    assert errors == []
    profile = tracked.user_record("u-seg-1")
    assert profile["profile"] | {"identified_at": 0} == {
        "email": "ada@example.com", "name": "Ada Lovelace", "account_name": "Initech", "identified_at": 0
    }  # fmt: skip
    assert profile["account_id"] == "acc-initech"

    tracked.later(LANDING["threshold_seconds"] + 5)
    sent = tracked.stack.emails(emails)
    assert sorted((e["to"], e["text"].splitlines()[0]) for e in sent) == [
        ("Ada Lovelace <ada@example.com>", "Hi Ada,"),
        ("Katherine Johnson <katherine@example.com>", "Hi Katherine,"),
    ]
    cs = {a["message"]["user_id"]: a["message"] for a in tracked.stack.cs_alerts(alerts)}
    assert set(cs) == {"u-seg-1", "u-rud-1"}
    assert cs["u-seg-1"]["user"]["account_id"] == "acc-initech" and cs["u-seg-1"]["instance_id"] == "p-1"
    seg.shutdown()
    rud.shutdown()


def test_a_passing_store_fault_is_answered_503_and_both_sdks_send_again(tracked):
    errors = sdk_errors()
    seg = segment.analytics.Client(NEW_KEY, host=tracked.url, gzip=True, on_error=lambda e, b: errors.append((e, b)))
    rud = rudderstack.analytics.Client(NEW_KEY, host=tracked.url, on_error=lambda e, b: errors.append((e, b)))
    table = tracked.stack.table_name
    # every PutItem of these users fails for a while (past botocore's own retries): the service answers retry
    for client, user in ((seg, "u-retry-seg"), (rud, "u-retry-rud")):
        fault = Fault("dynamodb", "PutItem", "ProvisionedThroughputExceededException", table=table,
                      body_contains=user, nth=list(range(1, 7)))  # fmt: skip
        with tracked.stack.faults(fault):
            client.track(user, "Landing Page Started", {"page_id": "p-r"})
            client.flush()
        assert fault.injected >= 1 and errors == []
        (timer,) = tracked.timers_of(user)  # applied on the SDK's resend, once
        assert timer["state"] == "open"
    seg.shutdown()
    rud.shutdown()


def test_a_wrong_or_missing_write_key_is_401_and_nothing_is_stored(tracked):
    batch = {"batch": [{"type": "track", "userId": "u-nokey", "event": "Landing Page Started",
                        "properties": {"page_id": "p"}, "messageId": "m-nokey"}]}  # fmt: skip
    for headers, body in (({}, batch), (basic("wk-guess"), batch), ({}, batch | {"writeKey": "wk-guess"})):
        status, answer = tracked.post("/v1/batch", body, headers)
        assert status == 401 and answer["code"] == "unauthorized", answer
        assert NEW_KEY not in json.dumps(answer) and "wk-guess" not in json.dumps(answer)
    status, _ = tracked.post("/v1/track", batch["batch"][0], {"Authorization": "Basic !!not base64"})
    assert status == 401
    errors = sdk_errors()
    seg = segment.analytics.Client("wk-guess", host=tracked.url, on_error=lambda e, b: errors.append((e, b)))
    seg.track("u-nokey", "Landing Page Started", {"page_id": "p"})
    seg.flush()
    assert [e.status for e, _ in errors] == [401]  # not retried: a 4xx other than 429
    assert tracked.user_record("u-nokey") is None and tracked.timers_of("u-nokey") == []
    # the body's writeKey (Segment's older SDKs) is a key too
    status, answer = tracked.post("/v1/batch", batch | {"writeKey": OLD_KEY})
    assert status == 200 and answer["results"][0]["status"] == "armed"
    seg.shutdown()


def test_after_the_rotation_only_the_new_key_works(tracked):
    import boto3
    from aws_lambda_powertools.utilities import parameters

    arn = tracked.stack.function_env[tracked.server.tracking]["WRITE_KEYS_SECRET_ARN"]
    call = {"type": "identify", "userId": "u-rotate", "traits": {"name": "Rot"}}
    with tracked.server.lock:
        boto3.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=json.dumps([NEW_KEY]))
        parameters.clear_caches()  # on AWS: within SECRETS_CACHE_SECONDS
    try:
        assert tracked.post("/v1/identify", call, basic(OLD_KEY))[0] == 401
        assert tracked.post("/v1/identify", call, basic(NEW_KEY))[0] == 200
    finally:
        with tracked.server.lock:
            boto3.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=json.dumps([NEW_KEY, OLD_KEY]))
            parameters.clear_caches()


def test_a_replayed_batch_arms_nothing_twice_and_the_clock_skew_is_corrected(tracked):
    emails = len(tracked.stack.emails())
    device = tracked.now() + 3600  # the device's clock is an hour fast
    batch = {
        "batch": [
            {"type": "identify", "userId": "u-replay", "messageId": "m-r1", "timestamp": iso(device - 20),
             "traits": {"email": "replay@example.com", "name": "Re Play"}},
            {"type": "track", "userId": "u-replay", "messageId": "m-r2", "timestamp": iso(device - 10),
             "event": "Landing Page Started", "properties": {"page_id": "p-r"}},
        ],
        "sentAt": iso(device),
    }  # fmt: skip
    received = tracked.now()
    status, first = tracked.post("/v1/batch", batch, basic(NEW_KEY))
    assert status == 200 and [r["status"] for r in first["results"]] == ["recorded", "armed"]
    (timer,) = tracked.timers_of("u-replay")
    assert abs(float(timer["started_at"]) - (received - 10)) < 2  # receivedAt - (sentAt - timestamp)
    status, again = tracked.post("/v1/batch", gzip.compress(json.dumps(batch).encode()), basic(NEW_KEY))
    assert status == 200 and [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    tracked.later(LANDING["threshold_seconds"] + 5)
    assert [e["to"] for e in tracked.stack.emails(emails)] == ["Re Play <replay@example.com>"]


def test_a_message_over_32_kb_is_refused_while_the_rest_of_the_batch_is_applied(tracked):
    big = {"type": "track", "userId": "u-big", "event": "Landing Page Started", "messageId": "m-big",
           "properties": {"page_id": "p-big", "html": "x" * 40_000}}  # fmt: skip
    fine = {"type": "track", "userId": "u-big", "event": "Landing Page Started", "messageId": "m-fine",
            "properties": {"page_id": "p-fine", "html": "x" * 1000}}  # fmt: skip
    status, answer = tracked.post("/v1/batch", {"batch": [big, fine]}, basic(NEW_KEY))
    assert status == 200
    assert [r["status"] for r in answer["results"]] == ["rejected", "armed"]
    assert "the limit is 32768 (32 KB)" in answer["results"][0]["reason"]
    assert [t["instance_id"] for t in tracked.timers_of("u-big")] == ["p-fine"]
    status, answer = tracked.post("/v1/track", big, basic(NEW_KEY))  # one call's route: 32 KB a body
    assert status == 400 and "32 KB" in answer["message"]
    huge = {"batch": [fine | {"messageId": f"m-{i}"} for i in range(500)]}
    status, answer = tracked.post("/v1/batch", huge, basic(NEW_KEY))
    assert status == 400 and "500 KB" in answer["message"]


def test_a_signed_webhook_destination_post_is_applied_and_an_altered_one_refused(tracked):
    secret = tracked.server.tracking_secret.encode()
    message = {"version": 1, "type": "track", "userId": "u-hook", "event": "Landing Page Started",
               "messageId": "m-hook", "properties": {"page_id": "p-h"}, "timestamp": iso(tracked.now() - 30),
               "receivedAt": iso(tracked.now() - 29)}  # fmt: skip
    body = json.dumps(message).encode()
    signed = {"X-Signature": tracking.signature(secret, body), "User-Agent": "Segment.io/1.0"}
    status, answer = tracked.post("/v1/webhook", body, signed)
    assert status == 200 and answer["results"][0]["status"] == "armed"
    (timer,) = tracked.timers_of("u-hook")
    assert abs(float(timer["started_at"]) - (tracked.now() - 30)) < 2  # Segment's timestamp, as corrected there
    altered = body.replace(b"u-hook", b"u-hoax")
    assert tracked.post("/v1/webhook", altered, signed)[0] == 401
    assert tracked.post("/v1/webhook", altered)[0] == 401  # unsigned, no write key
    assert tracked.timers_of("u-hoax") == []
    # RudderStack's webhook destination cannot sign: its custom header carries the write key
    status, answer = tracked.post("/v1/webhook", [message | {"userId": "u-rudder-hook"}], basic(NEW_KEY))
    assert status == 200 and answer["results"][0]["status"] == "armed"


def test_erasure_removes_the_profile_and_a_later_track_still_reaches_cs(tracked):
    emails, alerts = len(tracked.stack.emails()), len(tracked.stack.cs_alerts())
    call = {"type": "identify", "userId": "u-erase", "traits": {"email": "erase@example.com", "name": "Er Ase"}}
    assert tracked.post("/v1/identify", call, basic(NEW_KEY))[0] == 200
    assert tracked.user_record("u-erase")["profile"]["email"] == "erase@example.com"
    assert tracked.request("DELETE", "/v1/users/u-erase") == 200  # the users API, through the same server
    assert tracked.user_record("u-erase") is None
    track = {"type": "track", "userId": "u-erase", "event": "Landing Page Started", "properties": {"page_id": "p"}}
    status, answer = tracked.post("/v1/track", track, basic(NEW_KEY))
    assert status == 200 and answer["results"][0]["status"] == "armed"
    tracked.later(LANDING["threshold_seconds"] + 5)
    assert [e for e in tracked.stack.emails(emails) if "erase" in e["to"]] == []  # no address is known any more
    (alert,) = [a["message"] for a in tracked.stack.cs_alerts(alerts) if a["message"]["user_id"] == "u-erase"]
    assert alert["user_id"] == "u-erase" and alert["email_known"] is False
    assert "No email address is known for this user" in alert["summary"]


# --- schemathesis over the tracking routes, through the deployed handler (docs/openapi.json) -----------------

FUZZ_REQUESTS = int(os.environ.get("REDFLAG_TRACKING_FUZZ_EXAMPLES", "100"))  # schemathesis: ~60 ms a case
ROUTES = ("/v1/batch", "/v1/track", "/v1/identify", "/v1/group", "/v1/page", "/v1/screen", "/v1/alias", "/v1/webhook")


@st.composite
def steered(draw: st.DrawFn, value: Any) -> Any:
    """Some generated calls moved to where they reach the store: a user, the rule's events, a page id."""
    if isinstance(value, dict) and isinstance(value.get("batch"), list):
        return value | {"batch": [draw(steered(c)) for c in value["batch"]]}
    if isinstance(value, dict) and draw(st.booleans()):
        event = draw(st.sampled_from(["Landing Page Started", "Landing Page Published", "Other"]))
        properties = value.get("properties") if isinstance(value.get("properties"), dict) else {}
        value = value | {"userId": f"u-fuzz-{draw(st.integers(0, 9))}", "event": event}
        value["properties"] = properties | {"page_id": draw(st.sampled_from(["p-1", "p-2"]))}
        value.pop("timestamp", None)
        value.pop("sentAt", None)
    return value


def test_schemathesis_over_the_tracking_routes_answers_no_5xx_and_only_what_is_documented(tracked):
    import requests
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.core import NOT_SET

    from redflag_local.standin.stack import ROOT, sample_event

    schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")
    operations = {route: schema[route]["POST"] for route in ROUTES}
    function = tracked.server.tracking
    statuses: dict[int, int] = {}

    def send(route: str, body: bytes | None) -> dict:
        event = sample_event("tracking_api/post_batch.json")
        event |= {"path": route, "resource": route, "body": body.decode("utf-8", "replace") if body else None}
        for table in (event["headers"], event["multiValueHeaders"]):
            table.pop("Authorization", None)
        event["headers"]["Authorization"] = basic(NEW_KEY)["Authorization"]
        with tracked.server.lock:
            return tracked.stack.invoke(function, event)

    @settings(max_examples=FUZZ_REQUESTS, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        route = data.draw(st.sampled_from(ROUTES))
        mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
        value = data.draw(operations[route].as_strategy(generation_mode=mode)).body
        if mode is GenerationMode.POSITIVE:
            value = data.draw(steered(value))
        body = None if value is NOT_SET else value if isinstance(value, bytes) else json.dumps(value).encode()
        out = send(route, body)
        status = int(out["statusCode"])
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (route, status, out.get("body"), (body or b"")[:300])
        headers = {k: [str(v)] for k, v in (out.get("headers") or {}).items()}
        headers |= {k: [str(v) for v in vs] for k, vs in (out.get("multiValueHeaders") or {}).items()}
        response = schemathesis.Response(
            status_code=status,
            headers=headers,
            content=(out.get("body") or "").encode(),
            request=requests.Request("POST", f"https://api.example{route}").prepare(),
            elapsed=0.0,
            verify=True,
        )
        operations[route].validate_response(response)

    fuzz()
    print(f"\ntracking fuzz: statuses {dict(sorted(statuses.items()))}")
    assert statuses.get(200, 0) > FUZZ_REQUESTS // 4  # most requests were applied, not refused whole


def test_a_body_that_is_not_the_routes_shape_is_a_400_not_a_500(tracked):
    for path, body in (("/v1/track", "[1, 2]"), ("/v1/identify", '"x"'), ("/v1/webhook", "[]"), ("/v1/batch", "{}")):
        status, answer = tracked.post(path, body, basic(NEW_KEY))
        assert status == 400 and answer["code"] == "invalid_request", (path, answer)
