"""`redflag serve` as a real process: HTTP in, the deployed API's answers out, and a red flag in real
time as an .eml and a .json file in the outbox."""

import json
import socket
import time
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from typer.testing import CliRunner

from redflag_local.cli import app
from redflag_local.ops.report import from_server
from redflag_local.ops.rules_sync import LocalServerRuleStore
from redflag_local.standin.serve import READ_TIMEOUT_SECONDS, LocalServer
from tests.integration.conftest import running_serve, started


def wait_for_files(folder, pattern, predicate, timeout=30.0):
    """The files matching ``pattern`` for which ``predicate(path)`` holds, polled up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = [p for p in sorted(folder.glob(pattern)) if predicate(p)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_started_task_left_open_becomes_an_email_and_a_cs_alert(served):
    event = started("u-serve-1", email="ada.serve@example.com", name="Ada Serve", task="quick", event_id="e-serve-1")
    posted = time.monotonic()
    status, body, headers = served.post(event)
    assert status == 202, body
    assert body["results"] == [{"index": 0, "status": "armed", "event_id": "e-serve-1", "reason": None}]
    assert headers["Content-Type"] == "application/json"

    emails = wait_for_files(served.outbox, "*.eml", lambda p: b"u-serve-1/quick/" in p.read_bytes())
    cs = wait_for_files(served.outbox, "*.json", lambda p: '"user_id": "u-serve-1"' in p.read_text())
    took = time.monotonic() - posted
    assert len(emails) == 1 and len(cs) == 1, f"no alert after {took:.1f} s:\n{served.output()}"
    assert took < 15  # threshold 1 s + about one tick of the clock

    mail = message_from_bytes(emails[0].read_bytes(), policy=policy.default)
    assert mail["To"].addresses[0].addr_spec == "ada.serve@example.com"
    assert "a quick task" in mail["Subject"]
    assert "Hi Ada," in mail.get_body(("plain",)).get_content()
    alert = json.loads(cs[0].read_text())
    assert alert["message"]["task"] == "quick" and alert["attributes"]["user_id"] == "u-serve-1"
    assert sorted(p.name for p in served.outbox.iterdir()) == sorted(
        p.name for p in served.outbox.iterdir() if not p.name.startswith(".")
    )  # no half-written files left behind

    log = served.output()
    assert "user=u-serve-1" in log and "task=quick" in log
    assert "ada.serve@example.com" not in log and "Ada Serve" not in log  # ids only, no PII


def test_slack_messages_and_signed_webhook_posts_land_in_the_outbox(served):
    status, body, _ = served.post(started("u-serve-hook", task="quick_hook", event_id="e-serve-hook"))
    assert status == 202, body
    hooks = wait_for_files(served.outbox, "*-webhook-*.json", lambda p: '"u-serve-hook"' in p.read_text())
    assert len(hooks) == 1, served.output()
    hook = json.loads(hooks[0].read_text())
    assert hook["signature"] == "valid" and hook["headers"]["webhook-signature"].startswith("v1,")  # standardwebhooks
    assert (hook["body"]["type"], hook["body"]["task"]) == ("red_flag", "quick_hook")

    served.post(started("u-serve-slack", task="quick", name="<!channel> Slacker", event_id="e-serve-slack"))
    slack = wait_for_files(served.outbox, "*-slack-*.json", lambda p: "(u-serve-slack)" in p.read_text())
    assert len(slack) == 1, served.output()
    message = json.loads(slack[0].read_text())["body"]
    assert message["blocks"][0]["type"] == "header" and "<!channel>" not in json.dumps(message)
    deadline = time.monotonic() + 10  # the console line follows the file
    while "signature valid" not in served.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "signature valid" in served.output()


ERROR_CASES = [
    ('{"events": [', "/v1/events", "POST"),  # not JSON: 400
    ("", "/v1/events", "POST"),  # no body: 422
    ('{"events": []}', "/v1/events", "POST"),
    ('{"evnts": [{"type": "task_started"}]}', "/v1/events", "POST"),
    (json.dumps({"events": [started(f"u{i}") for i in range(101)]}), "/v1/events", "POST"),  # 101: 422
    (None, "/v1/events", "GET"),  # other methods and paths: what the resolver answers
    ("{}", "/v2/events", "POST"),
]


def test_errors_are_the_handlers_own_answers(served, stack):
    """The same request through HTTP and straight into the handler (as LocalStack.post_events does)."""
    for body, path, method in ERROR_CASES:
        status, out, headers = served.post(body, path=path, method=method)
        if path == "/v1/events" and method == "POST":
            expected = stack.post_events(body, raw=True)
        else:
            expected = (404, {"message": "not found: POST /v1/events is the only route"})
        assert (status, out) == expected, (method, path, (body or "")[:40])
        assert headers["Content-Type"] == "application/json"


def test_the_4xx_bodies(served):
    status, out, _ = served.post('{"events": [')
    assert (status, out) == (400, {"message": "body: not valid JSON"})
    status, out, _ = served.post({"events": [started(f"u{i}") for i in range(101)]})
    assert status == 422 and out["message"].startswith("events:") and "100" in out["message"]
    assert out["errors"][0]["field"] == "events"


def test_bad_events_are_rejected_one_by_one(served):
    status, out, _ = served.post(
        {"events": [started("u-serve-2", task="no_rule_here"), {"type": "task_started", "task": "quick"}]}
    )
    assert status == 202
    assert [r["status"] for r in out["results"]] == ["ignored", "rejected"]
    assert out["results"][1]["reason"].startswith("user_id:")
    assert (out["accepted"], out["rejected"]) == (1, 1)


def test_a_body_that_is_not_utf8_is_a_400(served):
    """Issue 14, defect 5, over HTTP: the byte 0xFF was replaced (as API Gateway does) and stored."""
    status, out, _ = served.post(b'{"type": "task_started", "task": "quick", "user_id": "u-\xff"}')
    assert (status, out["message"]) == (400, "body: not valid UTF-8 (bytes that are not UTF-8 arrive as U+FFFD)")


def read_answer(conn, limit):
    """Everything the server sends until it closes the connection (or ``limit`` seconds pass)."""
    conn.settimeout(limit)
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def test_a_body_shorter_than_its_content_length_is_a_408_not_a_hung_worker(served):
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        head = f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        conn.sendall(f"{head}Content-Length: 100\r\n\r\n".encode() + b'{"events":')  # 10 of 100 bytes
        sent = time.monotonic()
        # meanwhile the server answers others: the short body holds one thread only
        status, out, _ = served.post(started("u-serve-408a", task="quick"))
        assert status == 202 and out["results"][0]["status"] == "armed"
        raw = read_answer(conn, READ_TIMEOUT_SECONDS + 5)
        took = time.monotonic() - sent
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), raw[:200]
    assert b"connection: close" in head.lower()
    message = json.loads(body)["message"]
    assert "10 of 100 bytes" in message
    assert READ_TIMEOUT_SECONDS - 0.5 <= took <= READ_TIMEOUT_SECONDS + 3, took  # and then it closed (recv got b"")
    status, out, _ = served.post(started("u-serve-408b", task="quick"))
    assert status == 202 and out["results"][0]["status"] == "armed"
    assert "408" in served.output()


def test_an_api_key_is_required_when_given(tmp_path):
    server = LocalServer({}, tmp_path / "outbox", api_key="k-123")  # not started: the key is checked first
    answer = server.handle("POST", "/v1/events", [("Content-Type", "application/json")], b"{}", "127.0.0.1")
    assert (answer.status, json.loads(answer.body)) == (403, {"message": "Forbidden"})
    answer = server.handle("POST", "/v1/events", [("X-Api-Key", "wrong")], b"{}", "127.0.0.1")
    assert answer.status == 403


LOCAL_KEY = "k-local-123"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A second `redflag serve`, given an API key (its clock barely ticks: only /local is asked here)."""
    with running_serve(tmp_path_factory.mktemp("keyed"), "--tick", "60", api_key=LOCAL_KEY) as server:
        yield server


def test_local_routes_need_the_api_key_and_a_host_naming_this_server(keyed):
    """Issue 14: /local/* answered anyone, under any Host, even with --api-key (a page whose name was
    rebound to 127.0.0.1 could read the report and change rules from a browser)."""
    key = {"x-api-key": LOCAL_KEY}
    rule = json.dumps({"label": "changed", "threshold_seconds": 99})
    routes = [("/local/rules", "GET", None), ("/local/report", "GET", None), ("/local/rules/quick", "PUT", rule)]
    routes += [("/local/rules/quick", "DELETE", None)]
    for headers in ({}, {"x-api-key": "wrong"}, {"X-Api-Key": LOCAL_KEY[:-1]}):
        for path, method, body in routes:
            status, out, _ = keyed.post(body, path=path, method=method, headers=headers)
            assert (status, out) == (403, {"message": "Forbidden"}), (path, method, headers)
    port = int(keyed.url.rsplit(":", 1)[1])
    for host in ("evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "localhost", f"127.0.0.1:{port + 1}"):
        for path, method, body in routes:
            named = host if ":" in host or host == "localhost" else f"{host}:{port}"
            status, out, _ = keyed.post(body, path=path, method=method, headers=key | {"Host": named})
            assert status == 403 and out["message"].startswith("Host:"), (named, path, method)

    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}"):
        status, out, _ = keyed.post(None, path="/local/rules", method="GET", headers=key | {"Host": host})
        assert status == 200 and json.loads(out["rules"]["quick"])["threshold_seconds"] == 1  # nothing changed
    status, out, _ = keyed.post(None, path="/local/report", method="GET", headers=key)
    assert status == 200 and "tasks" in out
    # the clients of /local send REDFLAG_API_KEY (here given)
    assert "quick" in LocalServerRuleStore(keyed.url, api_key=LOCAL_KEY).read()
    assert from_server(keyed.url, api_key=LOCAL_KEY) is not None
    log = keyed.output()
    assert "GET /local/rules -> 403 (API key)" in log and "PUT /local/rules/quick -> 403 (Host)" in log
    assert LOCAL_KEY not in log


def test_a_tick_flags_and_expires_without_scanning_the_table(tmp_path, monkeypatch):
    """Issue 14: each tick scanned the whole table for TTL (10-15 s at 3,000 open timers, alerts 10 s
    late). Now the sweeper reads its due index, as deployed, and TTL what the stream says expires when."""
    import io

    import moto.dynamodb.models as ddb_models
    from rich.console import Console

    from redflag.kinds import Rule

    scans = []
    real_scan = ddb_models.DynamoDBBackend.scan
    monkeypatch.setattr(
        ddb_models.DynamoDBBackend, "scan", lambda self, *a, **k: scans.append(1) or real_scan(self, *a, **k)
    )
    rules = {t: Rule.model_validate({"label": t, "threshold_seconds": s}) for t, s in (("quick", 1), ("slow", 3600))}
    server = LocalServer(rules, tmp_path / "outbox", tick_seconds=60, console=Console(file=io.StringIO()))
    server.start()
    try:
        stack = server.stack
        begun = datetime.fromtimestamp(stack.clock() - 5, UTC).isoformat()
        events = [started(f"u-tick-{i}", task="slow") for i in range(10)]
        events += [started("u-tick-quick", "q@example.com", task="quick", occurred_at=begun)]
        assert stack.post_events({"events": events})[0] == 202

        def tick():
            scans.clear()
            written = server.tick()
            assert scans == []  # not one Scan call, from the stand-in or a function
            return written

        assert [p.name.split("-")[2] for p in tick()] == ["email", "cs"]  # the quick one, due: flagged
        stack.clock.advance(31 * 86400)  # past the slow ones' due time, and the flagged one's 30 days
        tick()
        timers = {i["user_id"]: i["state"] for i in stack.items() if i.get("kind") == "task"}
        assert timers == {f"u-tick-{i}": "flagged" for i in range(10)}  # swept; the old flagged one expired
        assert len(list((tmp_path / "outbox").glob("*-cs-*.json"))) == 11
        assert tick() == []
    finally:
        server.stop()


def test_serve_refuses_to_start_on_bad_rules_or_a_busy_port(tmp_path):
    bad = tmp_path / "rules"
    bad.mkdir()
    (bad / "bad.yaml").write_text("label: x\nthreshold_seconds: 0\n")
    result = CliRunner().invoke(app, ["serve", "--rules-dir", str(bad), "--outbox", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "bad.yaml: threshold_seconds: Input should be greater than 0" in result.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(port), "--outbox", str(tmp_path / "o")])
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output


def test_redflag_report_reads_a_running_serve_and_draws_the_plot(served, tmp_path):
    from datetime import UTC, datetime, timedelta

    from redflag_local.cli import app as cli

    begun = (datetime.now(UTC) - timedelta(seconds=0.5)).isoformat()
    served.post({"events": [started("u-report", task="quick", occurred_at=begun, event_id="e-report-1"),
                            {"type": "task_completed", "task": "quick", "user_id": "u-report",
                             "event_id": "e-report-2"}]})  # fmt: skip
    runner = CliRunner()
    out = runner.invoke(
        cli, ["report", "--endpoint", served.url, "--format", "json", "--plot", str(tmp_path / "r.png")]
    )
    assert out.exit_code == 0, out.output
    rows = {(r["task"], r["segment"]): r for r in json.loads(out.stdout)["tasks"]}
    assert rows[("quick", "all")]["completed"] >= 1
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    nobody = runner.invoke(cli, ["report", "--endpoint", "http://127.0.0.1:9"])
    assert nobody.exit_code == 1 and "no `redflag serve` at http://127.0.0.1:9" in nobody.output
