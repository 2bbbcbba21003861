"""Fuzz POST /v1/events against its own OpenAPI document, through the real handler.

Bodies come from schemathesis (``docs/openapi.json``: positive cases, valid by the schema and then
steered so that some reach the store, and negative ones), and from hand-made hostile strategies
(not JSON, 10,000-level nesting, 5,000-digit numbers, NaN/Infinity, huge strings, deep
``properties``, wrong types). Each body is sent three times, as API Gateway hands it to the function
(the proxy event of ``events/events_to_timers/post_events.json``, both header maps set): twice with a
JSON content type (any case, ``application/*+json``, or none), and once with one that is not JSON.

What must hold for every request:

- nothing is answered 5xx;
- every 4xx is JSON with a non-empty ``message``;
- a JSON content type is never a 415: the status is what the body calls for (400 not JSON, 422 a
  broken envelope, 202 otherwise), whichever JSON type it is, and a 202 has one result per event;
- a content type that is not JSON is always a 415 whose body says only that (nothing echoed);
- every answer is one the OpenAPI document documents: its status, JSON, its schema.

Derandomized (fixed seed), so CI sees the same requests every run. ``REDFLAG_FUZZ_EXAMPLES`` sets
how many generated requests (default 1,000: about 15 s on a 2-core machine, 25 s for the module
with its deploy; ``make soak`` can ask for more: 6,000 take about 2 minutes).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET

from redflag.core.events import MAX_EVENTS, Outcome
from redflag.edge.api import MAX_JSON_DEPTH, MAX_NUMBER_DIGITS, UNSUPPORTED
from redflag_local.standin.stack import ROOT, LocalStack, sample_event

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Received multipart/form-data without base64:UserWarning"),
    pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning"),
]

REQUESTS = int(os.environ.get("REDFLAG_FUZZ_EXAMPLES", "600"))
RULE_TASK = "0"  # the task name schemathesis generates most often: generated events meet a rule
RULE = {"label": "a fuzzed task", "threshold_seconds": 600, "expected_seconds": 300}
SEED_EVENT = {"type": "task_started", "task": RULE_TASK, "user_id": "u-fuzz"}

OPENAPI = ROOT / "docs" / "openapi.json"
OPERATION = schemathesis.openapi.from_path(OPENAPI)["/v1/events"]["POST"]
DOCUMENTED = {int(code) for code in json.loads(OPENAPI.read_text())["paths"]["/v1/events"]["post"]["responses"]}
BASE_EVENT = sample_event("events_to_timers/post_events.json")

JSON_TYPES = [
    None,  # no content type: read as JSON
    "",
    "application/json",
    "Application/JSON",
    "APPLICATION/JSON; charset=UTF-8",
    "application/json; charset=utf-8",
    "application/vnd.api+json",
    "application/problem+json; charset=utf-8",
]
OTHER_TYPES = [
    "text/plain",
    "text/plain; charset=utf-8",
    "text/json",
    "text/html",
    "application/xml",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "Application/X-WWW-Form-Urlencoded; charset=utf-8",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
]
HEADER_NAMES = ["Content-Type", "content-type", "CONTENT-TYPE"]


# --- the API Gateway side ----------------------------------------------------------------------


class Api:
    """The deployed handler, called as API Gateway (REST, proxy integration) calls it."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.function = stack.template.function_for("events_to_timers")
        self.calls = 0
        self.statuses: Counter[int] = Counter()
        self.outcomes: Counter[str] = Counter()

    def post(self, body: str | None, content_type: str | None, header: str = "Content-Type") -> tuple[int, Any, str]:
        """(status, parsed JSON body or None, raw body)."""
        event = copy.deepcopy(BASE_EVENT)
        for table in (event["headers"], event["multiValueHeaders"]):
            for name in [k for k in table if k.lower() == "content-type"]:
                del table[name]
        if content_type is not None:
            event["headers"][header] = content_type
            event["multiValueHeaders"][header] = [content_type]
        event["body"] = body
        self.calls += 1
        event["requestContext"]["requestId"] = f"fuzz-{self.calls}"
        out = self.stack.invoke(self.function, event)
        raw = out.get("body") or ""
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        self.check_documented(out, raw)
        self.statuses[int(out["statusCode"])] += 1
        if isinstance(parsed, dict) and isinstance(parsed.get("results"), list):
            self.outcomes.update(str(r.get("status")) for r in parsed["results"])
        return int(out["statusCode"]), parsed, raw

    @staticmethod
    def check_documented(out: dict[str, Any], raw: str) -> None:
        """The answer is one the OpenAPI document describes (status, content type, schema)."""
        headers = {k: [str(v)] for k, v in (out.get("headers") or {}).items()}
        for name, values in (out.get("multiValueHeaders") or {}).items():
            headers[name] = [str(v) for v in values]
        assert int(out["statusCode"]) in DOCUMENTED, out
        content_types = [v for k, vs in headers.items() if k.lower() == "content-type" for v in vs]
        assert content_types and all(v == "application/json" for v in content_types), out
        response = schemathesis.Response(
            status_code=int(out["statusCode"]),
            headers=headers,
            content=raw.encode(),
            request=requests.Request("POST", "https://api.example/v1/events").prepare(),
            elapsed=0.0,
            verify=True,
        )
        OPERATION.validate_response(response)


@pytest.fixture(scope="module")
def api():
    with LocalStack(env_overrides={"POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true"}) as s:
        s.put_rules({RULE_TASK: RULE})
        yield Api(s)


# --- what the answer must be -------------------------------------------------------------------


def strict_json(text: str | None) -> tuple[bool, Any]:
    """(is it JSON the API reads, the value): RFC 8259 JSON within the API's documented limits."""
    if not text:
        return True, None
    if "\ufffd" in text:  # what API Gateway puts for bytes that are not UTF-8: a 400 (docs/api.md)
        return False, None

    def too_long(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
            raise ValueError(digits[:10])
        return int(digits)

    def finite(digits: str) -> float:
        if math.isinf(value := float(digits)):
            raise ValueError(digits[:10])
        return value

    def constant(name: str) -> None:
        raise ValueError(name)

    try:
        value = json.loads(text, parse_int=too_long, parse_float=finite, parse_constant=constant)
    except (ValueError, RecursionError):
        return False, None
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest <= MAX_JSON_DEPTH, value


def envelope_size(value: Any) -> int | None:
    """Events in a valid envelope (``{"events": [1-100]}`` or one bare event), else None."""
    if not isinstance(value, dict):
        return None
    if "events" not in value:
        return 1 if "type" in value else None
    events = value["events"]
    if set(value) != {"events"} or not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        return None
    return len(events)


def check_json_answer(api: Api, body: str | None, content_type: str | None, header: str) -> tuple[int, Any]:
    status, out, raw = api.post(body, content_type, header)
    where = f"content-type {content_type!r}, body {(body or '')[:300]!r}"
    assert status < 500, f"{status} {raw[:300]} for {where}"
    assert status != 415, f"a JSON content type answered 415: {where}"
    if status >= 400:
        assert isinstance(out, dict) and isinstance(out.get("message"), str) and out["message"], (status, raw[:300])
    readable, value = strict_json(body)
    expected_events = envelope_size(value) if readable else None
    expected = 400 if not readable else 422 if expected_events is None else 202
    assert status == expected, f"{status} (expected {expected}) {raw[:300]} for {where}"
    if status == 202:
        results = out["results"]
        assert [r["index"] for r in results] == list(range(expected_events)), where
        assert {r["status"] for r in results} <= {o.value for o in Outcome}
        assert out["accepted"] + out["rejected"] + out["retry"] == len(results)
        return status, len(results)
    return status, out["message"]


def check_other_answer(api: Api, body: str | None, content_type: str, header: str) -> None:
    status, out, raw = api.post(body, content_type, header)
    where = f"content-type {content_type!r}, body {(body or '')[:300]!r}"
    assert status < 500, f"{status} {raw[:300]} for {where}"
    assert (status, out) == (415, {"message": UNSUPPORTED}), f"{status} {raw[:300]} for {where}"


# --- bodies ------------------------------------------------------------------------------------

NOW = 1_800_000_000.0  # LocalStack's clock; it does not move here


def iso(offset_seconds: float) -> str:
    return datetime.fromtimestamp(NOW + offset_seconds, UTC).isoformat()


@st.composite
def steered(draw: st.DrawFn, value: Any) -> Any:
    """A schema-valid body with most events moved to where they reach the store: the rule's task, one of
    a few users and instances, a recent occurred_at, an event_id that may have been seen (-> duplicate).
    The others stay as generated (control characters, far-off dates, unknown tasks: rejected, ignored)."""
    if not isinstance(value, dict) or not isinstance(value.get("events"), list):
        return value
    events = []
    for event in value["events"]:
        if isinstance(event, dict) and draw(st.integers(0, 3)):
            event = dict(event) | {
                "task": RULE_TASK,
                "type": draw(st.sampled_from(["task_started", "task_started", "task_completed", "task_failed"])),
                "user_id": f"u-{draw(st.integers(0, 40))}",
                "instance_id": draw(st.sampled_from(["default", "i-1", "i-2"])),
                "occurred_at": draw(st.sampled_from([None, iso(-5), iso(-3600), iso(-86400), iso(60)])),
                "event_id": draw(st.one_of(st.none(), st.sampled_from(["e-1", "e-2", "e-3"]), st.uuids().map(str))),
            }
            if draw(st.booleans()):
                event.pop("user", None)
        events.append(event)
    return {"events": events} if draw(st.integers(0, 5)) or len(events) != 1 else events[0]


def serialize(draw: st.DrawFn, value: Any) -> str | None:
    if value is NOT_SET:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")  # API Gateway hands the function text
    style = draw(st.sampled_from(["compact", "spaced", "ascii", "indent"]))
    if style == "compact":
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(value, ensure_ascii=style == "ascii", indent=2 if style == "indent" else None)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only its escaped form is text API Gateway can carry
        text = json.dumps(value)
    return text


def nested(depth: int, inner: str, kind: str) -> str:
    return ('{"a":' * depth + inner + "}" * depth) if kind == "object" else ("[" * depth + inner + "]" * depth)


def event_text(**fields: str) -> str:
    """A valid event as JSON text, with some fields replaced by raw JSON text."""
    base = {k: json.dumps(v) for k, v in SEED_EVENT.items()} | fields
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in base.items()) + "}"


FIXED_HOSTILE = [
    None,
    "",
    "   ",
    "null",
    "true",
    "0",
    '"events"',
    "[]",
    "{}",
    "{",
    '{"events": [',
    "not json at all",
    "<events><event/></events>",
    "\ufeff" + json.dumps(SEED_EVENT),  # a byte order mark
    json.dumps(SEED_EVENT)[:-1],
    "[" * 10_000 + "]" * 10_000,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
    "[" * 10_000,  # deep and unfinished
    nested(MAX_JSON_DEPTH, "1", "array"),
    nested(MAX_JSON_DEPTH + 1, "1", "array"),
    '{"events":[' + event_text(properties=nested(10_000, "1", "object")) + "]}",
    '{"events":[' + event_text(properties=nested(10_000, "[]", "array")) + "]}",
    event_text(properties=nested(5, "1", "object")),  # one level deeper than allowed
    "9" * 5_000,
    "-" + "9" * 5_000,
    event_text(properties='{"n":' + "9" * 5_000 + "}"),
    event_text(properties='{"n":0.' + "1" * 5_000 + "}"),
    event_text(properties='{"n":1e' + "9" * 5_000 + "}"),
    event_text(properties='{"n":1' + "0" * MAX_NUMBER_DIGITS + "}"),
    event_text(properties='{"n":NaN}'),
    event_text(properties='{"n":Infinity}'),
    event_text(properties='{"n":-Infinity}'),
    event_text(properties='{"n":1e999}'),
    "NaN",
    event_text(user_id=json.dumps("u" * 1_000_000)),
    event_text(event_id=json.dumps("e" * 1_000_000)),
    event_text(properties=json.dumps({"k" * 100_000: "v" * 100_000})),
    event_text(user=json.dumps({"email": "a" * 1_000_000 + "@example.com", "name": "n" * 100_000})),
    json.dumps({"events": [SEED_EVENT] * (MAX_EVENTS + 1)}),
    json.dumps({"events": [SEED_EVENT | {"user_id": f"u-many-{i}"} for i in range(MAX_EVENTS)]}),
    json.dumps({"events": [SEED_EVENT], "type": "task_started"}),
    '{"events": [], "events": [' + json.dumps(SEED_EVENT) + "]}",  # a repeated key: the last one counts
    event_text(user_id=r'"\ud800"'),  # a lone surrogate
    event_text(user_id=r'"a\u0000b"', instance_id=r'"\u202e"'),
    event_text(type="5", task="[]", user_id="{}"),
    event_text(user='"ada@example.com"', properties="[1,2]", occurred_at="1700000000"),
    event_text(occurred_at='"9999-12-31T23:59:59+14:00"', user=json.dumps({"timezone": "../../etc/passwd"})),
    event_text(occurred_at='"0001-01-01T00:00:00-14:00"'),
    json.dumps({"events": "x"}),
    json.dumps({"events": {"0": SEED_EVENT}}),
    json.dumps({"events": [[SEED_EVENT]]}),
    json.dumps({"events": None}),
    "type=task_started&task=0&user_id=u-form&ada%40example.com=1",
    "events=1&events=2",
    '--xyz\r\nContent-Disposition: form-data; name="type"\r\n\r\ntask_started\r\n--xyz--\r\n',
]


@st.composite
def hostile_bodies(draw: st.DrawFn) -> str | None:
    kind = draw(st.sampled_from(["fixed", "deep", "number", "wrong type", "text", "cut", "form"]))
    if kind == "fixed":
        return draw(st.sampled_from(FIXED_HOSTILE))
    if kind == "deep":
        depth = draw(st.one_of(st.integers(1, 40), st.integers(1, 10_000)))
        inner = nested(
            depth, draw(st.sampled_from(["1", "[]", "{}", '"x"'])), draw(st.sampled_from(["array", "object"]))
        )
        where = draw(st.sampled_from(["body", "properties", "events"]))
        if where == "body":
            return inner
        if where == "events":
            return '{"events":' + inner + "}"
        return event_text(properties='{"p":' + inner + "}")
    if kind == "number":
        digits = draw(st.integers(1, 6_000))
        number = draw(st.sampled_from(["-", ""])) + "1" * digits + draw(st.sampled_from(["", ".5", "e10", "e400"]))
        return event_text(properties='{"n":' + number + "}") if draw(st.booleans()) else number
    if kind == "wrong type":
        field = draw(st.sampled_from(["type", "task", "user_id", "instance_id", "event_id", "occurred_at", "user"]))
        value = draw(
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.floats(allow_nan=False, allow_infinity=False),
                st.lists(st.integers(), max_size=3),
                st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
                st.text(max_size=300),
            )
        )
        return event_text(**{field: json.dumps(value)})
    if kind == "text":
        return draw(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
    if kind == "cut":
        text = json.dumps({"events": [SEED_EVENT, SEED_EVENT | {"user_id": "u-cut"}]})
        return text[: draw(st.integers(0, len(text) - 1))]
    fields = draw(st.dictionaries(st.sampled_from(["type", "task", "user_id", "events", "x"]), st.text(max_size=8)))
    return urlencode(fields)


@st.composite
def requests_to_send(draw: st.DrawFn) -> tuple[str | None, list[str | None], str, list[str]]:
    """(body, two JSON content types, one other content type, three header spellings)."""
    source = draw(st.sampled_from(["positive", "positive", "negative", "hostile", "hostile"]))
    if source == "hostile":
        body = draw(hostile_bodies())
    else:
        mode = GenerationMode.POSITIVE if source == "positive" else GenerationMode.NEGATIVE
        value = draw(OPERATION.as_strategy(generation_mode=mode)).body  # JSON, raw bytes, or NOT_SET (none)
        body = serialize(draw, draw(steered(value)) if source == "positive" else value)
    json_types = draw(st.lists(st.sampled_from(JSON_TYPES), min_size=2, max_size=2))
    headers = draw(st.lists(st.sampled_from(HEADER_NAMES), min_size=3, max_size=3))
    return body, json_types, draw(st.sampled_from(OTHER_TYPES)), headers


# --- the tests ---------------------------------------------------------------------------------


def test_fixed_hostile_bodies(api):
    """Each hostile body as JSON (plain, and one other JSON type in turn) and as every other type."""
    before, started = api.calls, time.monotonic()
    for i, body in enumerate(FIXED_HOSTILE):
        for content_type in dict.fromkeys(["application/json", JSON_TYPES[i % len(JSON_TYPES)]]):
            check_json_answer(api, body, content_type, HEADER_NAMES[i % len(HEADER_NAMES)])
        for content_type in OTHER_TYPES:
            check_other_answer(api, body, content_type, HEADER_NAMES[(i + 1) % len(HEADER_NAMES)])
    print(f"\nfuzz: {api.calls - before} requests with fixed hostile bodies in {time.monotonic() - started:.1f} s")


def test_generated_requests(api):
    """Each generated body three times: two JSON content types (answered alike) and one other."""
    api.statuses.clear()
    api.outcomes.clear()
    before, started = api.calls, time.monotonic()

    @settings(
        max_examples=math.ceil(REQUESTS / 3),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests_to_send())
    def fuzz(request: tuple[str | None, list[str | None], str, list[str]]) -> None:
        body, json_types, other_type, headers = request
        first = check_json_answer(api, body, json_types[0], headers[0])
        again = check_json_answer(api, body, json_types[1], headers[1])
        assert again == first, f"{json_types} answered {first} and {again}"  # the same status, results or message
        check_other_answer(api, body, other_type, headers[2])

    fuzz()
    sent, took = api.calls - before, time.monotonic() - started
    print(f"\nfuzz: {sent} requests in {took:.1f} s; statuses {dict(sorted(api.statuses.items()))}")
    print(f"fuzz: results {dict(sorted(api.outcomes.items()))}")
    assert sent >= REQUESTS
    assert {"armed", "completed", "duplicate", "rejected", "ignored"} <= set(api.outcomes)  # the store was reached


# --- regressions found by this fuzz ------------------------------------------------------------


def test_a_form_is_a_415_that_echoes_nothing(api):
    status, _, raw = api.post("type=task_started&ada%40example.com=1", "application/x-www-form-urlencoded")
    assert status == 415 and "ada@example.com" not in raw


def test_a_media_type_that_only_starts_like_json_is_a_415(api):
    status, _, _ = api.post(json.dumps(SEED_EVENT), "application/jsonx")
    assert status == 415
