"""`redflag serve`: the deployed API on your machine, backed by the whole pipeline on moto, in real time.

Every route of the deployed API is answered exactly as it is deployed: the template's Api events say
which function takes a path and method (``/v1/events``; the tracking API ``/v1/batch``, ``/v1/track``,
..., ``/v1/webhook``; ``/v1/unsubscribe`` and ``/v1/users/...``), and whether it needs the API key
(``--api-key``: checked as API Gateway does, 403 without it). The request becomes an API Gateway REST
proxy event (built on ``events/events_to_timers/post_events.json``; a gzip body base64-encoded, as
API Gateway hands a binary body over) handed to that function's real handler, and its statusCode,
headers and body go back unchanged. The tracking routes check their write key themselves, as
deployed: ``--write-key`` puts the keys in the stack's secret (else the generated key is printed).
Any other path or method gets what the events handler's Powertools resolver answers (404).

The clock follows the wall clock: every ``tick`` seconds the sweeper runs, TTL deletes what is
expired, and the stream is delivered to the alerts handler, so a red flag is sent about one tick
after its threshold. Each email (the raw MIME, ``.eml``) and each customer-success message (``.json``)
lands in the outbox folder, named so the files sort by time. Console lines carry ids only (user_id,
task), never addresses or names.

moto runs in this process and is not thread-safe, so every handler call holds one lock. A request
must arrive within ``READ_TIMEOUT_SECONDS``: a body shorter than its Content-Length (or dripped in
slowly) is answered 408 and its connection closed, so it cannot hold a worker thread forever; an idle
keep-alive connection is closed after the same time.

Local-only routes (not part of the deployed API), a tiny SSM for ``redflag rules``::

    GET    /local/rules          {"rules_path": "/redflag/rules", "rules": {"<task>": "<rule JSON>"}}
    GET    /local/report         what `redflag report` shows (redflag_local.ops.report.Report, as JSON)
    PUT    /local/rules/<task>   body: one rule as JSON; validated with redflag.kinds.Rule (422 if not)
    DELETE /local/rules/<task>

A rule written here takes effect on the next event (the ingest handler's rule cache is cleared);
on AWS it takes up to the functions' rule cache, ``RULES_CACHE_SECONDS`` (60 s). Every ``/local/*``
request needs ``x-api-key`` when serve was given one (``redflag rules`` and ``redflag report`` send
``REDFLAG_API_KEY``), and a Host header naming this server: ``localhost``, the host it was started
on, or an IP address, with its port. Any other name is a 403, so a web page whose own name was
rebound to 127.0.0.1 (DNS rebinding) cannot read the report or change a rule from a browser.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.markup import escape

from redflag.adapters.outbound import receiver_secret
from redflag.core.events import TaskName, describe_errors
from redflag.kinds import Rule
from redflag_local.ops.rules_cli import threshold_text
from redflag_local.ops.rules_files import RULES_DIR, as_parameters, load_rules
from redflag_local.standin.receiver import Post, Receiver
from redflag_local.standin.stack import REGION, LocalStack, sample_event
from redflag_local.standin.template import Template

SLACK_PARAMETER = "/redflag/slack-webhook"
SLACK_PATH = "/slack"
WEBHOOK_PATH = "/webhook"
QUIET = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
READ_TIMEOUT_SECONDS = 5.0  # for the request line and headers, each read; for the whole body, in all
LOCAL_RULES = "/local/rules"
LOCAL_REPORT = "/local/report"
LOCAL_PREFIX = "/local/"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?")
LOCAL_HOST_MESSAGE = "Host: name this server (localhost, its address, or the host serve was started on) and its port"
_task_name = TypeAdapter(TaskName)
_FIELD = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


@dataclass
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def json_answer(status: int, payload: Any) -> HttpAnswer:
    return HttpAnswer(status, [("Content-Type", "application/json")], json.dumps(payload).encode())


def proxy_event(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes | None, source_ip: str, now: float
) -> dict[str, Any]:
    """One HTTP request as API Gateway (REST API, proxy integration) hands it to the function."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    event = sample_event("events_to_timers/post_events.json")
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        multi.setdefault(name, []).append(value)
    binary = bool(body) and body is not None and body.startswith(b"\x1f\x8b")  # gzip: API Gateway base64-encodes it
    event.update(
        body=(base64.b64encode(body).decode() if binary else body.decode("utf-8", errors="replace")) if body else None,
        resource=url.path,
        path=url.path,
        httpMethod=method,
        isBase64Encoded=binary,
        queryStringParameters={k: v[-1] for k, v in query.items()} or None,
        multiValueQueryStringParameters=query or None,
        pathParameters=None,
        stageVariables=None,
        headers={k: v[-1] for k, v in multi.items()},
        multiValueHeaders=multi,
    )
    ctx = event["requestContext"]
    stamp = datetime.fromtimestamp(now, UTC)
    ctx.update(
        requestId=str(uuid.uuid4()),
        requestTime=stamp.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        requestTimeEpoch=int(now * 1000),
        path=f"/{ctx['stage']}{url.path}",
        resourcePath=url.path,
        httpMethod=method,
    )
    ctx["identity"].update(sourceIp=source_ip, userAgent=event["headers"].get("User-Agent"))
    return event


def answer_from_proxy(out: dict[str, Any]) -> HttpAnswer:
    """The function's proxy response as API Gateway sends it on: status, headers, body unchanged."""
    headers = [(k, str(v)) for k, v in (out.get("headers") or {}).items()]
    for name, values in (out.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(v)) for v in values)
    body = out.get("body") or ""
    raw = base64.b64decode(body) if out.get("isBase64Encoded") else body.encode()
    return HttpAnswer(int(out["statusCode"]), headers, raw)


def host_allowed(value: str | None, served_host: str | None, served_port: int | None) -> bool:
    """Whether a Host header names this server: ``localhost``, the host serve was started on, or an IP
    address (a DNS-rebinding page sends its own name, never a bare address), with the served port
    (80 when the header gives none). Without a known port (a LocalServer not run by ``run``), any port."""
    match = _HOST.fullmatch(value or "")
    if match is None:
        return False
    name, port = match[1].lower().strip("[]"), int(match[2]) if match[2] else 80
    if served_port is not None and port != served_port:
        return False
    if name in ("localhost", (served_host or "").lower().strip("[]")):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def alert_ids(header: str | None) -> dict[str, str]:
    """``X-RedFlag-Alert`` (user_id/task/instance_id/run/channel, each URL-quoted) -> ids to log."""
    parts = [unquote(p) for p in (header or "").split("/")]
    if len(parts) != 5:
        return {"alert": header or "?"}
    return dict(zip(("user", "task", "instance", "run", "channel"), parts, strict=True))


def verify_signature(secret: str, post: Post) -> bool:
    """The webhook POST checked as docs/webhooks.md tells a product to: the ``standardwebhooks``
    library with the ``whsec_`` secret (the Standard Webhooks headers; five minutes of tolerance)."""
    from standardwebhooks import Webhook, WebhookVerificationError

    try:
        Webhook(secret).verify(post.body, post.headers, json_parse=False)
    except (WebhookVerificationError, ValueError):
        return False
    return True


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:48]


class Outbox:
    """Writes each message moto's SES and SNS have accepted since the last look, once."""

    def __init__(self, folder: Path, console: Console) -> None:
        self.folder = folder
        self.console = console
        self._emails = 0
        self._cs = 0
        self._seq = 0
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)

    def _write(self, now: float, kind: str, ids: dict[str, str], suffix: str, data: bytes) -> Path:
        with self._lock:  # the receiver writes from its own thread
            self._seq += 1
            seq = self._seq
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{seq:06d}-{kind}-{_safe(ids.get('task', 'alert'))}{suffix}"
        path = self.folder / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a file
        return path

    def collect(self, stack: LocalStack, now: float) -> list[Path]:
        from email import message_from_string

        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends
        from moto.sns.models import sns_backends

        written = []
        sent = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
        for message in sent[self._emails :]:
            raw = getattr(message, "raw_data", None)
            if raw is None:
                continue
            ids = alert_ids(message_from_string(raw).get("X-RedFlag-Alert"))
            path = self._write(now, "email", ids, ".eml", raw.encode())
            self._log("email", ids, path)
            written.append(path)
        self._emails = len(sent)
        topic = sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[stack.physical["AlertTopic"]]
        for message_id, text, subject, attributes, _group in topic.sent_notifications[self._cs :]:
            payload = json.loads(text)
            doc = {
                "message_id": message_id,
                "subject": subject,
                "attributes": {k: v.get("Value", v.get("StringValue")) for k, v in (attributes or {}).items()},
                "message": payload,
            }
            ids = {k: str(payload.get(f)) for k, f in (("user", "user_id"), ("task", "task"), ("severity", "severity"))}
            path = self._write(now, "cs", ids, ".json", json.dumps(doc, indent=2, ensure_ascii=False).encode())
            self._log("cs", ids, path)
            written.append(path)
        self._cs = len(topic.sent_notifications)
        return written

    def received(self, now: float, kind: str, post: Post, signature: str | None) -> Path:
        """A Slack message or a signed webhook POST the local receiver got: path, the headers that
        matter, whether the signature holds, and the JSON body."""
        try:
            body: Any = json.loads(post.body)
        except ValueError:
            body = post.body.decode(errors="replace")
        keep = ("Content-Type", "User-Agent", "webhook-id", "webhook-timestamp", "webhook-signature")
        keep += ("X-RedFlag-Signature",)  # deprecated, still sent (docs/webhooks.md)
        doc = {"path": post.path, "headers": {k: post.header(k) for k in keep if post.header(k)}, "body": body}
        ids = {"task": "slack"}
        if kind == "webhook" and isinstance(body, dict):
            doc["signature"] = signature
            ids = {"user": str(body.get("user_id") or body.get("account_id")), "task": str(body.get("task"))}
        path = self._write(now, kind, ids, ".json", json.dumps(doc, indent=2, ensure_ascii=False).encode())
        extra = f" signature {signature}" if signature else ""
        who = " ".join(f"{k}={escape(v)}" for k, v in ids.items()) if kind == "webhook" else ""
        self.console.print(
            f"[bold red]red flag[/] {kind:<7} {who}{escape(extra)} -> {escape(str(path))}".replace("  ", " ")
        )
        return path

    def _log(self, kind: str, ids: dict[str, str], path: Path) -> None:
        who = " ".join(f"{k}={escape(v)}" for k, v in ids.items() if k in ("user", "task", "instance", "severity"))
        self.console.print(f"[bold red]red flag[/] {kind:<5} {who} -> {escape(str(path))}")


class LocalServer:
    """The pipeline on moto, on a clock kept in step with real time; answers HTTP requests."""

    def __init__(
        self,
        rules: dict[str, Rule],
        outbox: Path,
        api_key: str | None = None,
        write_keys: list[str] | None = None,
        tick_seconds: float = 1.0,
        verbose: bool = False,
        console: Console | None = None,
        parameters: dict[str, str] | None = None,
    ) -> None:
        self.console = console or Console(soft_wrap=True, file=sys.stdout)
        self.rules = rules
        self.api_key = api_key
        self.tick_seconds = tick_seconds
        # the loop below already sweeps every second: one pass per sweeper run, no waiting inside it
        once = {"SWEEP_MODE": "passes", "SWEEPS_PER_MINUTE": "1"}
        self.outbox = Outbox(outbox, self.console)
        # Slack's incoming webhook and the product's webhook, played by one local receiver
        self.receiver = Receiver(on_post=self._received)
        parameters = {"SlackWebhookParameter": SLACK_PARAMETER} | (parameters or {})
        hooks = {} if "WebhookUrl" in parameters else {"WEBHOOK_URL": self.receiver.url(WEBHOOK_PATH)}
        self.stack = LocalStack(
            clock_start=time.time(), env_overrides=once | hooks | ({} if verbose else QUIET), parameters=parameters
        )
        self._webhook_secret = ""  # whsec_…, as the product is given it
        self.write_keys = list(write_keys or [])  # the tracking API's (empty: the stack's generated key)
        self.tracking_secret = ""  # the webhook destinations' shared secret (X-Signature)
        self.routes = self.stack.template.api_routes
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.served_on: tuple[str, int] | None = None  # (host, port) once ``run`` has bound them

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalServer:
        self.receiver.start()
        with self.lock:
            self.stack.start()
            self.ingest = self.stack.template.function_for("events_to_timers")
            self.rules_path = self.stack.function_env[self.ingest]["RULES_PATH"]
            self.stack.put_rules(as_parameters(self.rules))  # type: ignore[arg-type]
            if self.slack_on:
                self.stack.put_slack_webhook(self.receiver.url(SLACK_PATH))
            import boto3

            secret = self.stack.function_env[self.stack.template.function_for("timers_to_alerts")]["WEBHOOK_SECRET_ARN"]
            value = boto3.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
            self._webhook_secret = receiver_secret(value)  # read now: the receiver's thread must not call moto
            self.tracking = self.stack.template.function_for("tracking_api")
            env = self.stack.function_env[self.tracking]
            secrets = boto3.client("secretsmanager")
            if self.write_keys:  # one key, or a JSON list (several at once, as while rotating one)
                value = self.write_keys[0] if len(self.write_keys) == 1 else json.dumps(self.write_keys)
                secrets.put_secret_value(SecretId=env["WRITE_KEYS_SECRET_ARN"], SecretString=value)
            else:
                self.write_keys = [secrets.get_secret_value(SecretId=env["WRITE_KEYS_SECRET_ARN"])["SecretString"]]
            secret_id = env["TRACKING_WEBHOOK_SECRET_ARN"]
            self.tracking_secret = secrets.get_secret_value(SecretId=secret_id)["SecretString"]
        self._ticker = threading.Thread(target=self._tick_loop, name="redflag-clock", daemon=True)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._ticker:
            self._ticker.join(timeout=5)
        with self.lock:
            self.stack.stop()
        self.receiver.stop()

    @property
    def slack_on(self) -> bool:
        return "CsAlertsToSlackFunction" in self.stack.functions

    def _received(self, post: Post) -> None:
        """A POST the functions made to the local receiver: into the outbox, the webhook's signature checked."""
        kind = "slack" if post.path == SLACK_PATH else "webhook"
        signature = None
        if kind == "webhook":
            signature = "valid" if verify_signature(self._webhook_secret, post) else "INVALID"
        self.outbox.received(time.time(), kind, post, signature)

    def _sync_clock(self) -> float:
        gap = time.time() - self.stack.clock()
        if gap > 0:  # the simulated clock only moves forward
            self.stack.clock.advance(gap)
        return self.stack.clock()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception as exc:  # keep serving; the next tick retries. The type only: a message may quote data
                self.console.print(
                    f"[red]tick failed:[/] {escape(type(exc).__name__)} (run with -v for the functions' logs)"
                )

    def tick(self) -> list[Path]:
        """What AWS would have done by now: the sweeper, TTL, the stream to the alerts function."""
        with self.lock:
            now = self._sync_clock()
            self.stack.sweep()
            self.stack.expire_ttl()
            self.stack.deliver_stream()
            return self.outbox.collect(self.stack, now)

    # --- HTTP --------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None, client_ip: str
    ) -> HttpAnswer:
        path = urlsplit(target).path
        if path.startswith(LOCAL_PREFIX) and (refused := self._local_refusal(headers)) is not None:
            self.console.print(f"{method} {escape(path)} -> 403 ({refused})")
            return json_answer(403, {"message": "Forbidden" if refused == "API key" else LOCAL_HOST_MESSAGE})
        if path == LOCAL_REPORT and method == "GET":
            from redflag_local.ops.report import from_stack

            with self.lock:  # what the stream holds so far is folded first (alerts reach the outbox next tick)
                self._sync_clock()
                self.stack.deliver_stream()
                report = from_stack(self.stack)
            return HttpAnswer(200, [("Content-Type", "application/json")], report.model_dump_json().encode())
        if path == LOCAL_RULES or path.startswith(LOCAL_RULES + "/"):
            answer = self._rules_route(method, path[len(LOCAL_RULES) :].strip("/"), body)
            self.console.print(f"{method} {escape(path)} -> {answer.status}")
            return answer
        route = next(((r, found) for r in self.routes if (found := r.match(method, path)) is not None), None)
        keyed = route is None or route[0].api_key  # an unknown route goes to the events function, keyed
        if self.api_key is not None and keyed:
            given = next((v for k, v in headers if k.lower() == "x-api-key"), None)
            if given != self.api_key:  # what API Gateway answers for a missing or wrong key
                self.console.print(f"{method} {escape(path)} -> 403 (API key)")
                return json_answer(403, {"message": "Forbidden"})
        with self.lock:
            now = self._sync_clock()
            event = proxy_event(method, target, headers, body, client_ip, now)
            function = self.ingest
            if route is not None:  # as API Gateway hands it: the route's pattern and its path parameters
                function = route[0].function
                event.update(resource=route[0].path, pathParameters=route[1] or None)
                event["requestContext"]["resourcePath"] = route[0].path
            out = self.stack.invoke(function, event)
        answer = answer_from_proxy(out)
        self.console.print(f"{method} {escape(path)} -> {answer.status} {escape(_summary(answer))}")
        return answer

    def _local_refusal(self, headers: list[tuple[str, str]]) -> str | None:
        """Why a ``/local/*`` request is refused ("Host", "API key"), or None: the Host header must name
        this server (DNS rebinding), and the API key, when serve has one, must be given."""
        host, port = self.served_on or (None, None)
        if not host_allowed(next((v for k, v in headers if k.lower() == "host"), None), host, port):
            return "Host"
        if self.api_key is not None:
            given = next((v for k, v in headers if k.lower() == "x-api-key"), "")
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                return "API key"
        return None

    def _rules_route(self, method: str, task: str, body: bytes | None) -> HttpAnswer:
        import boto3

        if not task and method == "GET":
            with self.lock:
                ssm = boto3.client("ssm")
                raw: dict[str, str] = {}
                for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=self.rules_path):
                    for p in page["Parameters"]:
                        raw[p["Name"].rsplit("/", 1)[-1]] = p["Value"]
            return json_answer(200, {"rules_path": self.rules_path, "rules": raw})
        try:
            _task_name.validate_python(task)
        except ValidationError:
            return json_answer(404, {"message": f"not found: {LOCAL_RULES} or {LOCAL_RULES}/<task>"})
        name = f"{self.rules_path}/{task}"
        if method == "PUT":
            try:
                rule = Rule.model_validate_json(body or b"")
            except ValidationError as exc:
                return json_answer(422, {"message": describe_errors(exc.errors())})
            with self.lock:
                self.stack.put_rules(as_parameters({task: rule}))  # type: ignore[arg-type]
                self._forget_cached_rules()
            return json_answer(200, {"name": name, "rule": rule.model_dump(mode="json", exclude_none=True)})
        if method == "DELETE":
            with self.lock:
                ssm = boto3.client("ssm")
                try:
                    ssm.delete_parameter(Name=name)
                except ssm.exceptions.ParameterNotFound:
                    return json_answer(404, {"message": f"no rule at {name}"})
                self._forget_cached_rules()
            return json_answer(200, {"name": name, "deleted": True})
        return json_answer(405, {"message": f"{method} not allowed here: GET {LOCAL_RULES}, PUT or DELETE {name}"})

    def _forget_cached_rules(self) -> None:
        """Locally a rule change applies at once (on AWS: within the 60 s rule cache)."""
        for function in (self.ingest, self.tracking):
            service = getattr(self.stack.handlers[function], "service", None)
            rules = getattr(getattr(service, "_ingest", service), "_rules", None)  # the tracking API's ingest
            provider = getattr(rules, "_provider", None)
            if provider is not None:
                provider.clear_cache()


def _summary(answer: HttpAnswer) -> str:
    """Counts per status, or the error message: ids and field names only, never event contents."""
    try:
        body = json.loads(answer.body or b"{}")
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("results"), list):
        counts = Counter(str(r.get("status")) for r in body["results"] if isinstance(r, dict))
        return " ".join(f"{status}={n}" for status, n in sorted(counts.items()))
    if isinstance(body.get("errors"), list):  # a message can quote the body (a form-encoded POST): names only
        names = {str(e.get("field")) for e in body["errors"] if isinstance(e, dict)}
        return "invalid: " + ", ".join(sorted(n if _FIELD.match(n) else "(body)" for n in names))
    return str(body.get("message", ""))[:120]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "redflag-local"
    protocol_version = "HTTP/1.1"

    timeout = READ_TIMEOUT_SECONDS  # set on the socket before the request line is read

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            status, message = (413, "Request Too Long") if length > 0 else (400, "bad Content-Length")
            self._send(json_answer(status, {"message": message}))
            return
        try:
            body = self._read_body(length) if length else None
        except _ShortBody as short:
            self.close_connection = True  # what is left of this body would be read as the next request
            self.server.app.console.print(
                f"{escape(self.command)} {escape(urlsplit(self.path).path)} -> {short.status} ({short.message})"
            )
            self._send(json_answer(short.status, {"message": short.message}))
            return
        client = self.client_address[0]
        try:
            answer = self.server.app.handle(self.command, self.path, list(self.headers.items()), body, client)
        except Exception as exc:  # the handler answers its own errors; this is the local plumbing failing
            self.server.app.console.print(f"[red]{escape(self.command)} failed:[/] {escape(type(exc).__name__)}")
            answer = json_answer(500, {"message": "local server error; see its console"})
        self._send(answer)

    def _read_body(self, length: int) -> bytes:
        """Exactly ``length`` bytes, all within READ_TIMEOUT_SECONDS (a slow drip runs out of time too)."""
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        chunks: list[bytes] = []
        got = 0
        try:
            while got < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(length - got, 64 * 1024))
                if not chunk:
                    raise _ShortBody(400, f"body: the connection ended after {got} of {length} bytes (Content-Length)")
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError:
            raise _ShortBody(
                408, f"body: {got} of {length} bytes (Content-Length) arrived in {READ_TIMEOUT_SECONDS:g} s"
            ) from None
        finally:
            self.connection.settimeout(self.timeout)
        return b"".join(chunks)

    def _send(self, answer: HttpAnswer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: LocalServer logs one line per request, with ids only."""


class _ShortBody(Exception):
    """The body did not arrive in full: 408 (out of time) or 400 (the connection ended)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: LocalServer) -> None:
        self.app = app
        super().__init__(address, _Handler)


def _stop_on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run(
    host: str = "127.0.0.1",
    port: int = 3000,
    outbox: Path = Path("outbox"),
    rules_dir: Path = RULES_DIR,
    console: Console | None = None,
    **server: Any,
) -> None:
    """Serve until Ctrl-C (or SIGTERM). ``server``: LocalServer's options (api_key, write_keys,
    tick_seconds, verbose, parameters: stack parameters, as ``sam deploy`` takes them)."""
    parameters = server.get("parameters") or {}
    tick_seconds = server.get("tick_seconds", 1.0)
    api_key = server.get("api_key")
    # bound to the real stdout now: the stand-in silences the functions' EMF output by redirecting
    # sys.stdout while one runs, and the receiver's thread prints while the alerts function waits on it
    console = console or Console(soft_wrap=True, file=sys.stdout)
    known = Template().sam.get("Parameters", {})
    if unknown := sorted(set(parameters) - set(known)):
        raise ServeError(f"unknown stack parameter(s) {', '.join(unknown)}; template.yaml has {', '.join(known)}")
    rules, problems = load_rules(rules_dir)
    if problems:
        raise ServeError("\n".join(map(str, problems)) + f"\nfix the rules in {rules_dir} (redflag rules validate)")
    try:
        app = LocalServer(rules, outbox, console=console, **server)
    except OSError as exc:
        raise ServeError(f"cannot use {outbox} as the outbox: {exc.strerror or exc}") from exc
    try:
        httpd = _Server((host, port), app)  # bind first: a busy port fails before moto starts
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    bound_host, bound_port = httpd.server_address[:2]
    app.served_on = (host, int(bound_port))  # the host as given (a name such as localhost stays a name)
    app.start()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    console.print(f"[bold]Red Flag local API[/]: POST http://{bound_host}:{bound_port}/v1/events")
    keys = " or ".join(escape(k) for k in app.write_keys)
    console.print(
        f"  tracking API (Segment, RudderStack SDKs): host http://{bound_host}:{bound_port}, write key {keys}"
        f" (/v1/batch, /v1/track, ...; /v1/webhook signed with {escape(app.tracking_secret)})"
    )
    console.print(f"  pipeline: template.yaml on moto, clock = wall clock, sweeper + stream every {tick_seconds:g} s")
    names = ", ".join(f"{t} ({threshold_text(r)})" for t, r in sorted(rules.items())) or "none"
    console.print(f"  rules from {escape(str(rules_dir))} into SSM {app.rules_path}: {escape(names)}")
    console.print(
        f"  alerts -> {escape(str(outbox))}/ (.eml per email, .json per CS alert, Slack message, webhook POST)"
    )
    console.print(
        f"  Slack and the product's webhook: a local receiver on {app.receiver.url('')} "
        f"(Slack {'on' if app.slack_on else 'off'}; webhook signatures checked)"
    )
    alerts_env = app.stack.function_env[app.stack.template.function_for("timers_to_alerts")]
    quiet, zone = alerts_env.get("QUIET_HOURS", ""), alerts_env.get("DEFAULT_TIMEZONE", "UTC")
    if quiet not in ("", "off"):
        console.print(
            f"  quiet hours {escape(quiet)} (user.timezone, else {escape(zone)}): emails due then wait for their end"
            " (--parameter QuietHours=off to send at once)"
        )
    if api_key is None:
        console.print("  no API key required (--api-key KEY to require x-api-key like the deployed API, /local too)")
    if host not in LOOPBACK:
        console.print(f"[yellow]warning:[/] listening on {escape(host)}, not loopback; there is no authentication")
    console.print("  Ctrl-C to stop", highlight=False)
    try:
        httpd.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        httpd.server_close()
        app.stop()


class ServeError(Exception):
    """The server cannot start; the message says why."""
