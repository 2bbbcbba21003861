"""`redflag events`: a file or one event from flags, to a running `redflag serve`, result per event."""

import json

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


def test_an_unreachable_url_fails():
    result = events("--url", "http://127.0.0.1:9/v1/events", "--type", "task_started", "--task", "t", "--user-id", "u")
    assert result.exit_code == 1 and "cannot reach http://127.0.0.1:9/v1/events" in result.output
