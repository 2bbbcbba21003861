"""`redflag events`: a file or one event from flags, to a running `redflag serve`, result per event."""

import json
import re
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from typer.testing import CliRunner

from redflag_local.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def events(*args):
    return runner.invoke(app, ["events", *args], env=WIDE)


def test_one_event_from_flags(served):
    result = events(
        "--url", served.url + "/v1/events", "--type", "task_started", "--task", "quick",
        "--user-id", "u-cli-1", "--event-id", "e-cli-1", "--email", "grace.cli@example.com",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "u-cli-1" in result.output and "e-cli-1" in result.output and "armed" in result.output
    assert "grace.cli@example.com" not in result.output  # the table shows ids only
    assert "1 accepted, 0 rejected, 0 not sent" in result.output


def test_a_file_in_batches_of_100_with_a_rejected_event(served, tmp_path):
    batch = [{"type": "user_active", "task": "no_rule_here", "user_id": f"u-batch-{i}"} for i in range(150)]
    batch[120] = {"type": "task_started", "task": "quick"}  # no user_id
    path = tmp_path / "events.json"
    path.write_text(json.dumps({"events": batch}))
    result = events("--url", served.url, str(path))  # a bare host:port gets /v1/events
    assert result.exit_code == 1, result.output
    assert "u-batch-149" in result.output  # the second batch went too
    assert "rejected" in result.output and "user_id: Field required" in result.output
    assert "149 accepted, 1 rejected, 0 not sent" in result.output


def test_a_refused_request_prints_the_message_and_fails(served, tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"type": "task_started", "task": "quick", "user_id": "u-cli-2"}))
    result = events("--url", served.url + "/v2/events", str(path))
    assert result.exit_code == 1
    assert "HTTP 404: not found: POST /v1/events is the only route" in result.output
    assert "0 accepted, 0 rejected, 1 not sent" in result.output


def test_bad_input_is_a_clear_error_before_sending(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"events": [')
    cases = [
        (["--url", "http://127.0.0.1:9/v1/events", str(broken)], "not JSON: line 1"),
        (["--url", "http://127.0.0.1:9/v1/events", str(tmp_path / "missing.json")], "missing.json"),
        (["--url", "http://127.0.0.1:9/v1/events", "--type", "task_started"], "--task and --user-id"),
        (["--url", "127.0.0.1:3000", "--type", "task_started", "--task", "t", "--user-id", "u"], "not an http(s) URL"),
        (["--url", "http://127.0.0.1:9/v1/events", str(broken), "--task", "t"], "not both"),
    ]
    for args, message in cases:
        result = events(*args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)


def test_an_unreachable_url_fails_after_its_retries():
    one = ["--url", "http://127.0.0.1:9/v1/events", "--type", "task_started", "--task", "t", "--user-id", "u"]
    result = events(*one, "--retries", "1")
    assert result.exit_code == 1 and "cannot reach http://127.0.0.1:9/v1/events" in result.output
    assert "retry: 1 event(s) (#0) again in 0.5 s" in result.output and "(after 2 attempts)" in result.output
    result = events(*one, "--no-event-ids")  # no event_id: it is not safe to send it again
    assert result.exit_code == 1 and "cannot reach" in result.output and "retry:" not in result.output


# --- event ids and retries, against a scripted stand-in for the API -----------------------------

HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")


def applied(events, status="armed"):
    """The API's 202 body for these events, all with ``status``."""
    results = [
        {"index": i, "status": status, "event_id": e.get("event_id"), "reason": None} for i, e in enumerate(events)
    ]
    retry = len(results) if status == "retry" else 0
    return {"results": results, "accepted": len(results) - retry, "rejected": 0, "retry": retry}


@contextmanager
def fake_api(*answers):
    """POST /v1/events on 127.0.0.1: the n-th request gets ``answers[n](events)`` -> (status, body,
    headers); the last answer repeats. Yields (url, the list of event lists received)."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            events = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["events"]
            received.append(events)
            status, body, headers = answers[min(len(received), len(answers)) - 1](events)
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/events", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def write_events(tmp_path, events):
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))
    return str(path)


def test_event_ids_are_generated_unless_given_or_turned_off(tmp_path):
    given = {"type": "task_started", "task": "quick", "user_id": "u-id-1", "event_id": "mine-1"}
    bare = {"type": "task_started", "task": "quick", "user_id": "u-id-2"}
    file = write_events(tmp_path, [given, bare])
    with fake_api(lambda evs: (202, applied(evs), None)) as (url, received):
        assert events("--url", url, file).exit_code == 0
        assert events("--url", url, "--no-event-ids", file).exit_code == 0
    (first, second) = received
    assert first[0]["event_id"] == "mine-1" and HEX_ID.fullmatch(first[1]["event_id"])
    assert second == [given, bare]  # as written: no ids added
    assert json.loads((tmp_path / "events.json").read_text())[1] == bare  # the file is not touched


def test_a_generated_event_id_is_shown_for_the_real_api(served):
    args = ["--url", served.url, "--type", "task_started", "--task", "quick", "--user-id", "u-cli-gen"]
    result = events(*args)
    assert result.exit_code == 0, result.output
    assert "armed" in result.output and HEX_ID.search(result.output)
    result = events(*args, "--no-event-ids", "--instance-id", "other")
    assert result.exit_code == 0, result.output
    assert not HEX_ID.search(result.output)


def test_only_the_events_answered_retry_are_sent_again_with_their_event_ids(tmp_path):
    batch = [
        {"type": "task_started", "task": "quick", "user_id": f"u-retry-{i}", "user": {"email": f"u{i}@example.com"}}
        for i in range(3)
    ]

    def one_retry(evs):
        body = applied(evs)
        body["results"][1] |= {"status": "retry", "reason": "store unavailable (Throttling); send again"}
        return 202, body | {"accepted": 2, "retry": 1}, {"Retry-After": "1"}

    with fake_api(one_retry, lambda evs: (202, applied(evs), None)) as (url, received):
        started_at = time.monotonic()
        result = events("--url", url, write_events(tmp_path, batch))
        took = time.monotonic() - started_at
    assert result.exit_code == 0, result.output
    assert len(received) == 2
    assert received[1] == [received[0][1]]  # only the retry event, with the same event_id
    assert HEX_ID.fullmatch(received[1][0]["event_id"])
    assert took >= 1  # Retry-After: 1 outweighs the first backoff (0.5 s)
    assert "retry: 1 event(s) (#1) again in 1 s" in result.output
    assert "3 accepted, 0 rejected, 0 not sent" in result.output
    assert "@example.com" not in result.output  # ids only


def test_a_retry_that_never_clears_fails(tmp_path):
    one = write_events(tmp_path, [{"type": "task_started", "task": "quick", "user_id": "u-stuck"}])
    every_time = lambda evs: (503, applied(evs, "retry"), {"Retry-After": "0"})  # noqa: E731
    with fake_api(every_time) as (url, received):
        result = events("--url", url, "--retries", "2", one)
    assert result.exit_code == 1, result.output
    assert len(received) == 3 and received[0] == received[1] == received[2]
    assert "0 accepted, 0 rejected, 0 not sent, 1 still to retry" in result.output


def test_a_whole_request_failure_is_resent_only_when_every_event_has_an_id(tmp_path):
    one = write_events(tmp_path, [{"type": "task_started", "task": "quick", "user_id": "u-500"}])
    crash = lambda evs: (500, {"message": "internal error; nothing was applied"}, None)  # noqa: E731
    with fake_api(crash, lambda evs: (202, applied(evs), None)) as (url, received):
        result = events("--url", url, one)
    assert result.exit_code == 0, result.output
    assert len(received) == 2 and received[0] == received[1]
    with fake_api(crash, lambda evs: (202, applied(evs), None)) as (url, received):
        result = events("--url", url, "--no-event-ids", one)
    assert result.exit_code == 1 and len(received) == 1  # it may have been applied: not sent twice
    assert "HTTP 500: internal error; nothing was applied" in result.output


def test_an_answer_without_a_result_per_event_fails(tmp_path):
    one = write_events(tmp_path, [{"type": "task_started", "task": "quick", "user_id": "u-odd"}])
    with fake_api(lambda evs: (202, {"accepted": 1}, None)) as (url, received):
        result = events("--url", url, one)
    assert result.exit_code == 1 and len(received) == 1
    assert "HTTP 202: the answer does not hold one result per event" in result.output
    assert "0 accepted, 0 rejected, 1 not sent" in result.output


# --- the Segment dialect: Segment Spec messages to /v1/batch, against a fake receiver ----------------


@contextmanager
def fake_segment(*answers):
    """POST /v1/batch as the Segment HTTP Tracking API takes it: the n-th request gets
    ``answers[n](messages)`` -> (status, body, headers); the last repeats. Yields (base URL, requests:
    (path, Authorization, body))."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, self.headers.get("Authorization"), self.headers["Content-Type"], body))
            status, out, headers = answers[min(len(received), len(answers)) - 1](body["batch"])
            data = json.dumps(out).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


SUCCESS = lambda batch: (200, {"success": True}, None)  # noqa: E731  # what Segment itself answers
BASIC_WK = "Basic " + __import__("base64").b64encode(b"wk-123:").decode()  # the write key, an empty password


def per_message(batch, retry=()):
    """What Red Flag's tracking API answers: one result per message (``retry``: these positions)."""
    results = [
        {"index": i, "status": "retry" if i in retry else "armed", "message_id": m.get("messageId"), "reason": None}
        for i, m in enumerate(batch)
    ]
    return {"success": not retry, "results": results, "accepted": len(batch) - len(retry), "rejected": 0,
            "retry": len(retry)}  # fmt: skip


def test_the_segment_dialect_posts_spec_batches_with_the_write_key(tmp_path):
    given = {"type": "identify", "userId": "u-seg-1", "traits": {"email": "ada@example.com"}, "messageId": "m-1"}
    tracks = [{"type": "track", "event": "Landing Page Started", "userId": f"u-seg-{i}"} for i in range(249)]
    file = write_events(tmp_path, {"batch": [given, *tracks]})
    with fake_segment(SUCCESS) as (url, received):
        result = events("--url", url, "--dialect", "segment", "--write-key", "wk-123", file)  # a bare host
    assert result.exit_code == 0, result.output
    assert [len(body["batch"]) for *_, body in received] == [100, 100, 50]  # at most 100 a batch
    for path, auth, content_type, body in received:
        assert (path, auth, content_type) == ("/v1/batch", BASIC_WK, "application/json")
        assert set(body) == {"batch", "sentAt"} and body["sentAt"].endswith("+00:00")
    sent = [m for *_, body in received for m in body["batch"]]
    assert sent[0] == given and all(HEX_ID.fullmatch(m["messageId"]) for m in sent[1:])  # ids added, kept
    assert "250 accepted, 0 rejected, 0 not sent" in result.output and "sent" in result.output
    assert "Landing Page Started" in result.output and "ada@example.com" not in result.output  # ids only

    big = [
        {"type": "track", "event": "Big", "userId": f"u-big-{i}", "properties": {"x": "y" * 30_000}} for i in range(40)
    ]
    with fake_segment(SUCCESS) as (url, received):
        assert events("--url", url + "/v1/batch", "--dialect", "segment", write_events(tmp_path, big)).exit_code == 0
    sizes = [len(json.dumps(body)) for *_, body in received]
    assert len(received) == 3 and max(sizes) <= 500 * 1024  # the Spec's 500 KB a batch
    assert received[0][1] is None  # no write key given: no Authorization (the receiver answers 401)


def test_the_segment_dialect_resends_only_what_is_to_retry_and_stops_on_a_401(tmp_path):
    one = ["--dialect", "segment", "--event", "Landing Page Started", "--user-id", "u-seg-r", "--email", "r@x.io"]
    three = write_events(tmp_path, [{"type": "track", "event": "E", "userId": f"u-r-{i}"} for i in range(3)])
    flaky = lambda b: (503, per_message(b, retry=(1,)), {"Retry-After": "0"})  # noqa: E731
    with fake_segment(flaky, lambda b: (200, per_message(b), None)) as (url, received):
        result = events("--url", url, "--dialect", "segment", three)
    assert result.exit_code == 0, result.output
    assert [len(body["batch"]) for *_, body in received] == [3, 1]
    assert received[1][3]["batch"] == [received[0][3]["batch"][1]]  # the retry message, its messageId kept
    assert "retry: 1 event(s) (#1) again" in result.output and "3 accepted" in result.output

    crash = lambda b: (500, {"code": "internal", "message": "send the batch again"}, None)  # noqa: E731
    with fake_segment(crash, SUCCESS) as (url, received):
        result = events("--url", url, *one)  # one track call from flags
    assert result.exit_code == 0 and len(received) == 2 and received[0][3]["batch"] == received[1][3]["batch"]
    (message,) = received[0][3]["batch"]
    assert message["type"] == "track" and message["event"] == "Landing Page Started"
    assert message["userId"] == "u-seg-r" and message["context"] == {"traits": {"email": "r@x.io"}}

    refused = lambda b: (401, {"code": "unauthorized", "message": "not a write key of this stack"}, None)  # noqa: E731
    with fake_segment(refused) as (url, received):
        result = events("--url", url, *one, "--write-key", "wrong")
    assert result.exit_code == 1 and len(received) == 1
    assert "HTTP 401: not a write key of this stack" in result.output and "wrong" not in result.output
    for args, message in [
        (["--dialect", "segment", "--type", "task_started", "--task", "t", "--user-id", "u"], "give --event"),
        (["--event", "E", "--user-id", "u"], "with --dialect segment"),
        (["--dialect", "segment", "--event", "E"], "--event and --user-id"),
    ]:
        result = events("--url", "http://127.0.0.1:9", *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
