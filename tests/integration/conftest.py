import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from redflag_local.ops.dlq import ReplayTarget
from redflag_local.standin.stack import LocalStack

LANDING = {"label": "creating a landing page", "threshold_seconds": 900, "expected_seconds": 600}


@pytest.fixture
def stack():
    """template.yaml deployed into moto; handlers imported with the environment it gives them."""
    with LocalStack() as s:
        s.put_rules({"create_landing_page": LANDING})
        yield s


@pytest.fixture
def json_logs(caplog):
    """The functions' log lines as Powertools writes them (JSON), from this test: call it for the list,
    ``.clear()`` to start over."""
    import logging

    from redflag.adapters.observability import logger

    caplog.set_level(logging.INFO)
    # one Logger serves every function in this process, at the level of the first stack that imported
    # it (a quiet one logs errors only): this test reads its INFO lines
    level = logger.log_level
    logger.setLevel(logging.INFO)
    formatter = logger.registered_formatter

    class Lines:
        def __call__(self):
            return [json.loads(formatter.format(r)) for r in caplog.records if r.name == logger.name]

        def clear(self):
            caplog.clear()

    yield Lines()
    logger.setLevel(level)


@pytest.fixture
def passes_stack():
    """The template with SweepMode=passes (SweepsPerMinute reads a run instead of the look-ahead)."""
    with LocalStack(parameters={"SweepMode": "passes"}) as s:
        s.put_rules({"create_landing_page": LANDING})
        yield s


def started(user_id, email=None, name=None, **extra):
    user = {k: v for k, v in {"email": email, "name": name}.items() if v}
    return {"type": "task_started", "task": "create_landing_page", "user_id": user_id, "user": user} | extra


def completed(user_id, **extra):
    return {"type": "task_completed", "task": "create_landing_page", "user_id": user_id} | extra


# --- `redflag serve` as a real subprocess, shared by the CLI tests ------------------------------

QUICK = {"label": "a quick task", "threshold_seconds": 1}  # red flag one second after the start


@dataclass
class Served:
    url: str  # http://127.0.0.1:<port>
    outbox: Path
    log: Path
    process: subprocess.Popen

    def post(self, body, path="/v1/events", method="POST", headers=None):
        """(status, parsed JSON body, headers) from a real HTTP request."""
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        data = data.encode() if isinstance(data, str) else data
        hdrs = {"Content-Type": "application/json"} | (headers or {})
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null"), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_serve(base: Path, *args: str, api_key: str | None = None):
    """`python -m redflag_local.cli serve` on a free port with a 1-second rule (and ``args``), its outbox
    and log in ``base``; yields a Served once it answers, always stopped."""
    rules = base / "rules"
    rules.mkdir()
    (rules / "quick.yaml").write_text(yaml.safe_dump(QUICK))
    (rules / "quick_hook.yaml").write_text(yaml.safe_dump(QUICK | {"notify": ["webhook"]}))
    log = base / "serve.log"
    port = free_port()
    cmd = [sys.executable, "-m", "redflag_local.cli", "serve", "--port", str(port)]
    cmd += ["--outbox", str(base / "outbox"), "--rules-dir", str(rules)]
    cmd += ["--parameter", "QuietHours=off"]  # emails go out whatever the hour the tests run at
    cmd += [*args, *(["--api-key", api_key] if api_key else [])]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ | {"COLUMNS": "200"})
    server = Served(f"http://127.0.0.1:{port}", base / "outbox", log, process)
    ready = urllib.request.Request(server.url + "/local/rules", headers={"x-api-key": api_key} if api_key else {})
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"redflag serve exited:\n{server.output()}"
            try:
                with urllib.request.urlopen(ready, timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"redflag serve did not answer in 60 s:\n{server.output()}"
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """`python -m redflag_local.cli serve` on a free port, with a 1-second rule; always stopped."""
    with running_serve(tmp_path_factory.mktemp("serve")) as server:
        yield server


# --- `redflag dlq` against the local stack ------------------------------------------------------

ALERTS = "TimersToAlertsFunction"
SLACK = "CsAlertsToSlackFunction"


def target_of(stack, streams=None):
    """The local stack as `redflag dlq` sees a deployed one: boto3 clients (on moto), the alerts
    function run in-process, the template's filter criteria."""
    return ReplayTarget(
        sqs=boto3.client("sqs"),
        streams=streams or boto3.client("dynamodbstreams"),
        dynamodb=stack.ddb,
        queue_url=stack.physical["AlertsDeadLetterQueue"],
        stream_arn=stack.stream_arn,
        table_name=stack.table_name,
        idempotency_table=stack.physical["IdempotencyTable"],
        invoke=lambda event: stack.invoke(ALERTS, event),
        invoke_slack=(lambda event: stack.invoke(SLACK, event)) if SLACK in stack.functions else None,
        filters=tuple(stack.template.stream_filters(ALERTS)),
    )
