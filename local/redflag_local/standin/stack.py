"""The whole Red Flag pipeline in one process, on moto, driven by a clock you move.

``LocalStack`` deploys template.yaml into moto with CloudFormation, imports each
``functions/<name>/app.py`` with the environment the template gives that function, and plays
the parts AWS would: API Gateway (a proxy event per request), DynamoDB TTL (deletes expired
items, marked with the service identity on the stream), the stream's event source mapping
(filter criteria and batch size from the template), and the sweeper's schedule.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import importlib.util
import io
import json
import os
import random
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from functools import cache, cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import botocore.endpoint
import moto.dynamodb.models as ddb_models
from boto3.dynamodb.types import TypeDeserializer
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.cloudformation.models import Stack as MotoStack
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse
from moto.events.models import EventPattern

from redflag.core import clock
from redflag_local.standin import partiql
from redflag_local.standin.template import ROOT, Template

REGION = "us-east-1"
SENDER = "help@redflag.example"
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
LOCAL_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",  # moto does not route account-id endpoints
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
    # moto answers one call at a time (in-process, GIL-bound, not thread-safe): the functions' pools
    # run one worker wide here; tests/unit drive the pools on thread-safe fakes, and
    # tests/integration/test_concurrency.py runs them at full width on moto
    "INGEST_CONCURRENCY": "1",
    "SWEEP_WORKERS": "1",
    "ALERT_CHANNEL_CONCURRENCY": "1",
    # moto answers an index query by scanning the table: the look-ahead sweeper reads every 20 s here
    # instead of every 5 (that interval only bounds how late a timer armed mid-run with a threshold
    # under a minute is flagged: tests/unit/test_services.py holds it at the default)
    "SWEEP_POLL_SECONDS": "20",
}
_de = TypeDeserializer()
# SES's eventType -> the MatchingEventTypes value of an event destination that takes it
SES_EVENT_TYPES = {
    "Send": "SEND", "Reject": "REJECT", "Bounce": "BOUNCE", "Complaint": "COMPLAINT", "Delivery": "DELIVERY",
    "Open": "OPEN", "Click": "CLICK", "Rendering Failure": "RENDERING_FAILURE", "DeliveryDelay": "DELIVERY_DELAY",
    "Subscription": "SUBSCRIPTION",
}  # fmt: skip


@cache
def _client(service: str) -> Any:
    """The stand-in's own clients, built once per process: moto serves every client in the process
    whenever a mock is started, so a client outlives the stack it was built for (as the functions'
    own do, ``redflag.adapters.aws.client``)."""
    return boto3.client(service, region_name=REGION)


class SimClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float) -> None:
        self.t = start
        # what else runs while a handler waits: each hook gets the wake-up time and may move
        # the clock up to it (running the world's events in between)
        self.on_sleep: list[Callable[[float], None]] = []

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def sleep(self, seconds: float) -> None:
        """A handler waiting (the sweeper between passes): time moves, and the rest of the
        world (the stream, traffic) gets to run."""
        wake = self.t + max(0.0, seconds)
        for hook in self.on_sleep:
            hook(wake)
        self.t = max(self.t, wake)


# --- faults: AWS failing the way it does, for fault runs ------------------------------------------


class LambdaCrash(BaseException):  # a crash, not an error a handler may catch
    """The function instance dies mid-invocation (out of memory, timeout): nothing after it runs."""


@dataclass
class Fault:
    """Fail a share of one AWS operation's calls with a real error response (so the SDK's own retries
    and error parsing run as on AWS), or crash the function (``crash``) on the ``nth`` matching call."""

    service: str  # botocore service name: dynamodb, sesv2, sns, sqs, ...
    operation: str  # PutItem, SendEmail, Publish, ...
    code: str = "ThrottlingException"
    status: int = 400
    rate: float = 0.0  # share of matching calls that fail
    nth: list[int] = field(default_factory=list)  # these matching calls (1-based) fail, whatever the rate
    crash: bool = False
    table: str | None = None  # DynamoDB: only calls on this table
    body_contains: str | None = None  # only calls whose request body holds this text
    calls: int = 0
    injected: int = 0


_PROTOCOL = {"dynamodb": "json", "sesv2": "rest-json", "sns": "query", "sqs": "json", "ssm": "json"}


def _error_response(url: str, service: str, code: str, status: int) -> AWSResponse:
    if _PROTOCOL.get(service, "json") == "query":
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected fault</Message>"
            "</Error><RequestId>fault</RequestId></ErrorResponse>"
        ).encode()
        headers = {"Content-Type": "text/xml"}
    else:
        body = json.dumps({"__type": code, "message": "injected fault"}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": f"{code}:"}
    return AWSResponse(url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]


class Faults:
    """The faults in force. moto answers every AWS call in this process through one stubber; it is
    wrapped once so the faults are consulted first, and a faulted call never reaches moto."""

    def __init__(self) -> None:
        self.rules: list[Fault] = []
        self.rng = random.Random(0)

    def check(self, request: Any, event_name: str) -> AWSResponse | None:
        _, service, operation = [*event_name.split("."), "", "", ""][:3]
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else bytes(body) if isinstance(body, bytes | bytearray) else b""
        for rule in self.rules:
            if rule.service != service or rule.operation != operation:
                continue
            if rule.table is not None and json.loads(body or b"{}").get("TableName") != rule.table:
                continue
            if rule.body_contains is not None and rule.body_contains.encode() not in body:
                continue
            rule.calls += 1
            if rule.calls in rule.nth or (rule.rate and self.rng.random() < rule.rate):
                rule.injected += 1
                if rule.crash:
                    raise LambdaCrash(f"{service}.{operation} call {rule.calls}")
                return _error_response(request.url, service, rule.code, rule.status)
        return None


FAULTS = Faults()
_moto_call = BotocoreStubber.__call__


ASYNC_INVOKES: list[tuple[str, dict[str, Any]]] = []  # (function name, payload): Lambda's event queue
# SES message id -> what its SendEmail asked that moto's SES v2 keeps no record of (the configuration set)
SES_SENDS: dict[str, dict[str, Any]] = {}


def _call_with_faults(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
    if self.enabled and FAULTS.rules:
        injected = FAULTS.check(request, event_name)
        if injected is not None:
            return injected
    if self.enabled and event_name.endswith(".dynamodb.BatchExecuteStatement"):
        # moto's PartiQL cannot run a conditional UPDATE (see partiql.py): each statement as its UpdateItem
        answer = partiql.batch_execute(request, _key_names, lambda name, sub: _call_with_faults(self, name, sub))
        if answer is not None:
            return answer
    asynchronous = request.headers.get("X-Amz-Invocation-Type", b"") in (b"Event", "Event")
    if self.enabled and event_name.endswith(".lambda.Invoke") and asynchronous:
        # moto cannot run code without Docker: an asynchronous invoke is queued for the stand-in to run
        name = request.url.split("/functions/", 1)[1].split("/", 1)[0]
        ASYNC_INVOKES.append((name, json.loads(request.body or b"{}")))
        return AWSResponse(request.url, 202, {}, MockRawResponse(b""))  # type: ignore[arg-type]
    response = _moto_call(self, event_name, request, **kwargs)
    sent = response is not None and response.status_code == 200
    if self.enabled and sent and event_name.endswith(".sesv2.SendEmail"):
        asked = json.loads(request.body or b"{}")
        message_id = json.loads(response.content)["MessageId"]  # type: ignore[union-attr]
        SES_SENDS[message_id] = {k: asked[k] for k in ("ConfigurationSetName",) if k in asked}
    return response


def _key_names(table: str) -> list[str]:
    from moto.dynamodb.models import dynamodb_backends

    t = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_table(table)
    return [t.hash_key_attr] + ([t.range_key_attr] if t.range_key_attr else [])


BotocoreStubber.__call__ = _call_with_faults  # type: ignore[method-assign]


def _parse_template(template: str) -> dict[str, Any]:
    """moto reads a template with PyYAML's pure-Python loader (0.4 s for ours, twice a stack); the
    stand-in always sends JSON, which is YAML too: read it as JSON first."""
    try:
        return json.loads(template)
    except ValueError:
        return _moto_parse_template(template)


_moto_parse_template = MotoStack.parse_template
MotoStack.parse_template = staticmethod(_parse_template)  # type: ignore[method-assign]


class _CopyOnce:
    """``copy`` for moto's DynamoDB while one transaction runs: moto backs a table up before every item
    of a transaction (a deep copy of the whole table, stream included, each time); once per table does
    the same (the backup is only restored if the transaction fails), at a hundredth of the cost."""

    def __init__(self) -> None:
        self._done: dict[int, tuple[Any, Any]] = {}

    def deepcopy(self, value: Any) -> Any:
        if id(value) not in self._done:
            self._done[id(value)] = (value, copy.deepcopy(value))  # the original held: its id stays its own
        return self._done[id(value)][1]


def _transact_once(self: Any, transact_items: list[dict[str, Any]]) -> None:
    saved, ddb_models.copy = ddb_models.copy, _CopyOnce()  # type: ignore[assignment]
    try:
        return _moto_transact(self, transact_items)
    finally:
        ddb_models.copy = saved


_moto_transact = ddb_models.DynamoDBBackend.transact_write_items
ddb_models.DynamoDBBackend.transact_write_items = _transact_once  # type: ignore[method-assign]


class _NoWait:
    """The SDK's retry backoff: moto answers at once, and simulated time does not pass in a backoff."""

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None


botocore.endpoint.time = _NoWait  # type: ignore[attr-defined]


@dataclass
class LambdaContext:
    """What Lambda hands a handler; the deadline is on the stack's (simulated) clock."""

    function_name: str
    clock: Callable[[], float] = field(default=lambda: 0.0)
    timeout: float = 30.0
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    function_version: str = "$LATEST"

    def __post_init__(self) -> None:
        self.deadline = self.clock() + self.timeout

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock()) * 1000))


class _TtlIndex:
    """Each item's ``expires_at``, followed from the table's stream records (its own cursor: the stream
    is read for the alerts function separately), and a heap of them, soonest first. What DynamoDB TTL
    needs without reading the table: ``due`` follows the records written since its last call, then
    pops what has expired. An entry whose item has changed or gone since is stale and skipped."""

    def __init__(self) -> None:
        self._expires: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, int, str, str]] = []
        self._next = 0  # sequence number of the next record to read (0: from the shard's start)

    def _follow(self, shard: Any) -> None:
        # by sequence number, not list position (moto swaps in a copy of the table on a failed transaction)
        start = max(0, self._next - shard.starting_sequence_number)
        for record in shard.items[start:]:
            change = record.record["dynamodb"]
            keys = change["Keys"]
            key = (keys["pk"]["S"], keys["sk"]["S"])
            at = (change.get("NewImage") or {}).get("expires_at", {}).get("N")
            seq = int(change["SequenceNumber"])
            if at is None:  # deleted, or no longer expiring
                self._expires.pop(key, None)
            elif self._expires.get(key) != float(at):
                self._expires[key] = float(at)
                heapq.heappush(self._heap, (float(at), seq, *key))
            self._next = seq + 1

    def due(self, shard: Any, cutoff: float) -> list[tuple[float, str, str]]:
        """(expires_at, pk, sk) of the items that expire at or before ``cutoff``, soonest first, taken off
        the index (their deletes, on the stream, would take them off anyway)."""
        self._follow(shard)
        out = []
        while self._heap and self._heap[0][0] <= cutoff:
            at, _seq, pk, sk = heapq.heappop(self._heap)
            if self._expires.get((pk, sk)) == at:
                del self._expires[(pk, sk)]
                out.append((at, pk, sk))
        return out

    def put_back(self, entries: list[tuple[float, str, str]]) -> None:
        """Entries ``due`` gave out that were not deleted after all."""
        for at, pk, sk in entries:
            self._expires.setdefault((pk, sk), at)
            heapq.heappush(self._heap, (at, -1, pk, sk))


def sample_event(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "events" / name).read_text())


@contextmanager
def _environ(values: dict[str, str]):
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class LocalStack:
    STATS_SHARD = "shardId-00000001541626099285-f35f62ef"  # the shard the stats function's windows name

    def __init__(
        self,
        clock_start: float = 1_800_000_000.0,
        parameters: dict[str, str] | None = None,
        env_overrides: dict[str, str] | None = None,
    ) -> None:
        self.template = Template()
        self.clock = SimClock(clock_start)
        self.parameters = {"SenderEmail": SENDER} | (parameters or {})
        self.env_overrides = env_overrides or {}
        self._mock = mock_aws()
        self._ttl_deleted: set[tuple[str, str]] = set()
        self._ttl = _TtlIndex()  # what TTL knows of the timers table: each item's expires_at, from its stream
        self._stream_position: dict[str, str] = {}  # shard id -> last sequence number read
        self._shard_of_record: dict[str, str] = {}  # sequence number -> shard id
        self._window: dict[str, Any] | None = None  # the stats function's open tumbling window
        self.handlers: dict[str, ModuleType] = {}
        self.function_env: dict[str, dict[str, str]] = {}
        self.functions: dict[str, Path] = {}
        self._notified: dict[str, int] = {}  # "function:topic arn" -> messages already handed to it
        self._invoke_configs: dict[str, dict[str, Any]] = {}  # function -> its EventInvokeConfig, as deployed

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalStack:
        os.environ.update(LOCAL_ENV)
        self._mock.start()
        FAULTS.rules.clear()
        ASYNC_INVOKES.clear()
        SES_SENDS.clear()
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()  # a new stack is a new account: no secret or parameter of the last one
        self.clock.on_sleep.append(lambda _wake: self.run_async_invokes())
        clock.set_clock(self.clock, self.clock.sleep)
        cfn = _client("cloudformation")
        body = self.template.moto_copy(self.parameters)
        cfn.create_stack(
            StackName="redflag",
            TemplateBody=json.dumps(body),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        resources = cfn.describe_stack_resources(StackName="redflag")["StackResources"]
        self.physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}
        _client("ses").verify_email_identity(EmailAddress=self.parameters["SenderEmail"])
        lam = _client("lambda")
        # the functions this deployment has (a function whose Condition is false is not deployed)
        self.functions = {name: folder for name, folder in self.template.functions.items() if name in self.physical}
        for name in self.functions:
            try:
                self._invoke_configs[name] = lam.get_function_event_invoke_config(FunctionName=self.physical[name])
            except lam.exceptions.ResourceNotFoundException:
                self._invoke_configs[name] = {}  # Lambda's defaults: 2 retries, no destination
            config = lam.get_function_configuration(FunctionName=self.physical[name])
            variables = config.get("Environment", {}).get("Variables", {})
            self.function_env[name] = {k: str(v) for k, v in variables.items()} | {
                "AWS_LAMBDA_FUNCTION_NAME": config["FunctionName"]
            }
        for name, folder in self.functions.items():
            self.handlers[name] = self._import(name, folder / "app.py")
        self.table_name = self.physical["TimersTable"]
        self.stream_arn = self.ddb.describe_table(TableName=self.table_name)["Table"]["LatestStreamArn"]
        return self

    @cached_property
    def ddb(self) -> Any:
        return _client("dynamodb")

    @cached_property
    def streams(self) -> Any:
        return _client("dynamodbstreams")

    def stop(self) -> None:
        FAULTS.rules.clear()
        clock.set_clock(None)
        self._mock.stop()

    @contextmanager
    def faults(self, *rules: Fault, seed: int = 0):
        """Inject ``rules`` (and nothing else) for the duration of the block."""
        FAULTS.rules[:] = list(rules)
        FAULTS.rng = random.Random(seed)
        try:
            yield FAULTS
        finally:
            FAULTS.rules.clear()

    def __enter__(self) -> LocalStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _import(self, name: str, path: Path) -> ModuleType:
        """Import ``functions/<name>/app.py`` as its own module, with its own environment."""
        with _environ(self.function_env[name] | self.env_overrides):
            spec = importlib.util.spec_from_file_location(f"redflag_fn_{path.parent.name}", path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        return module

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        context = LambdaContext(self.physical[function], self.clock, self.template.function_timeout(function))
        with _environ(self.function_env[function] | self.env_overrides):
            if os.environ.get("POWERTOOLS_METRICS_DISABLED") != "true":
                return self.handlers[function].lambda_handler(event, context)
            # Powertools still prints its metrics buffer (EMF) every 100 values when metrics are
            # disabled: keep that off the local console (logs go to their own stream, unaffected)
            with contextlib.redirect_stdout(io.StringIO()):
                return self.handlers[function].lambda_handler(event, context)

    # --- rules -----------------------------------------------------------------------------

    def put_rules(self, rules: dict[str, dict[str, Any] | str]) -> None:
        ssm = _client("ssm")
        path = self.parameters.get("RulesPath", "/redflag/rules")
        for task, rule in rules.items():
            value = rule if isinstance(rule, str) else json.dumps(rule)
            ssm.put_parameter(Name=f"{path}/{task}", Value=value, Type="String", Overwrite=True)

    # --- API Gateway -------------------------------------------------------------------------

    def post_events(self, body: Any, raw: bool = False) -> tuple[int, dict[str, Any]]:
        """POST /v1/events as API Gateway would hand it to the function: (status, json body)."""
        event = sample_event("events_to_timers/post_events.json")
        event["body"] = body if raw else json.dumps(body)
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        out = self.invoke(self.template.function_for("events_to_timers"), event)
        return out["statusCode"], json.loads(out["body"]) if out.get("body") else {}

    # --- time passing: TTL, the sweeper and the stream --------------------------------------

    def expire_ttl(self, lateness_seconds: float = 0) -> int:
        """Delete what DynamoDB TTL would delete now (items expired ``lateness_seconds`` ago), without
        reading the table: each item's ``expires_at`` is followed from the table's stream (``_TtlIndex``),
        so a call costs the stream records since the last one and a delete per expired item, not a scan
        of every item (10 s at 3,000 timers). Items go in order of expiry."""
        due = self._ttl.due(self._timers_shard(), self.clock() - lateness_seconds)
        deleted = 0
        for done, (_at, pk, sk) in enumerate(due):
            try:
                deleted += self.ttl_delete(pk, sk)
            except BaseException:  # an injected fault: what is not deleted yet stays due, as on AWS
                self._ttl.put_back(due[done:])
                raise
        return deleted

    def _timers_shard(self) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_table(self.table_name).stream_shard

    def ttl_delete(self, pk: str, sk: str, only_if_expired: bool = False) -> bool:
        """TTL deleting one item now. ``only_if_expired``: as TTL does, so an item whose
        ``expires_at`` moved on (completed, flagged) stays; without it, whatever the item's state
        (a TTL delete racing the sweeper's flag). True if the item was deleted."""
        condition = {}
        if only_if_expired:
            condition = {
                "ConditionExpression": "expires_at <= :now",
                "ExpressionAttributeValues": {":now": {"N": str(self.clock())}},
            }
        try:
            self.ddb.delete_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, **condition)
        except self.ddb.exceptions.ConditionalCheckFailedException:
            return False
        self._ttl_deleted.add((pk, sk))
        return True

    def delete_item(self, pk: str, sk: str) -> None:
        """A delete by a person or a script: not TTL, so it must never alert."""
        self.ddb.delete_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}})

    def sweep(self) -> dict[str, Any]:
        """One scheduled run of the sweeper (and any worker it starts: they run when it next waits)."""
        event = sample_event("sweep_due_timers/scheduled.json")
        out = self.invoke(self.template.function_for("sweep_due_timers"), event)
        self.run_async_invokes()
        return out

    def check_rates(self) -> dict[str, Any]:
        """One scheduled run of the rate check (its changes reach the alerts function with the stream)."""
        out: dict[str, Any] = self.invoke(
            self.template.function_for("rates_to_flags"), sample_event("rates_to_flags/scheduled.json")
        )
        return out

    def run_async_invokes(self) -> list[Any]:
        """Run what was invoked asynchronously (Lambda's event queue), in order, now."""
        by_name = {self.physical[f]: f for f in self.functions}
        done = []
        while ASYNC_INVOKES:
            name, payload = ASYNC_INVOKES.pop(0)
            done.append(self.invoke(by_name[name], payload))
        return done

    def read_stream(self, table: str = "TimersTable") -> list[dict[str, Any]]:
        """New stream records of a table, shaped as Lambda receives them (eventSourceARN, the TTL
        identity on TTL deletes). Read from moto's stream shard itself, as an event source mapping
        polls it: moto's GetRecords re-serializes every record through its slowest code path
        (seconds per call at a few thousand records), which is moto's cost, not the design's."""
        from moto.dynamodb.models import dynamodb_backends

        name = self.physical[table]
        shard = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_table(name).stream_shard
        # by sequence number, not list position: moto swaps in a copy of the table on a failed
        # transaction, so a shard object taken before may be a dead one
        last = self._stream_position.get(name)
        start = 0 if last is None else int(last) - shard.starting_sequence_number + 1
        raw = shard.items[start:]
        if not raw:
            return []
        records = json.loads(json.dumps([r.record for r in raw], default=lambda d: d.timestamp()))
        self._stream_position[name] = records[-1]["dynamodb"]["SequenceNumber"]
        arn = self.streams_arn(table)
        for record in records:
            self._shard_of_record[record["dynamodb"]["SequenceNumber"]] = shard.id
            record["eventSourceARN"] = arn
            keys = record["dynamodb"]["Keys"]
            key = (keys["pk"]["S"], keys["sk"]["S"])
            if record["eventName"] == "REMOVE" and key in self._ttl_deleted:
                self._ttl_deleted.discard(key)
                record["userIdentity"] = dict(TTL_IDENTITY)
        return records

    def streams_arn(self, table: str = "TimersTable") -> str:
        if table == "TimersTable":
            return self.stream_arn
        return self.ddb.describe_table(TableName=self.physical[table])["Table"]["LatestStreamArn"]

    def filter_stream(self, records: list[dict[str, Any]], folder: str = "timers_to_alerts") -> list[dict[str, Any]]:
        """The records the template's FilterCriteria let through to a stream function."""
        function = self.template.function_for(folder)
        patterns = [EventPattern(None, p) for p in self.template.stream_filters(function)]
        return [r for r in records if any(p.matches_event(r) for p in patterns)]

    def deliver_stream(self, records: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Run the alerts function on the stream as its event source mapping would: only records
        passing the template's filter criteria, in batches of its BatchSize, in order; a record
        reported failed is retried with everything after it; a function error (a crash) bisects the
        batch (BisectBatchOnFunctionError); after MaximumRetryAttempts retries the batch is parked in
        the OnFailure destination (the DLQ) as the batch's shard and sequence numbers, as AWS does.
        Returns every invocation's response, in order (a crash as ``{"crash": ...}``)."""
        function = self.template.function_for("timers_to_alerts")
        mapping = self.template.function_event(function, "DynamoDB")
        records = self.read_stream() if records is None else records
        passing = self.filter_stream(records)
        size = int(mapping.get("BatchSize", 100))
        responses: list[dict[str, Any]] = []
        for i in range(0, len(passing), size):
            self._deliver_batch(function, mapping, passing[i : i + size], responses)
        self._deliver_to_windows(records)
        self.deliver_notifications()
        return responses

    # --- SNS -> Lambda: functions the template subscribes to a topic ---------------------------------

    def deliver_notifications(self) -> list[Any]:
        """Hand every message published since the last call to each function subscribed to its topic
        (an ``SNS`` event in the template), as SNS does: an asynchronous invoke with one record. A
        failed invoke is retried (EventInvokeConfig ``MaximumRetryAttempts``; at once here, a minute or
        two apart on AWS), then sent to the OnFailure destination in the shape Lambda gives it.
        Returns the answers of the invokes that succeeded."""
        from moto.sns.models import sns_backends

        topics = sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics
        answers = []
        for function in self.functions:
            props = self.template.sam["Resources"][function]["Properties"]
            for event in props.get("Events", {}).values():
                if event["Type"] != "SNS":
                    continue
                arn = self.physical[event["Properties"]["Topic"]["Ref"]]
                seen = self._notified.get(f"{function}:{arn}", 0)
                sent = topics[arn].sent_notifications
                self._notified[f"{function}:{arn}"] = len(sent)
                for message_id, message, subject, attributes, _group in sent[seen:]:
                    record = self._sns_record(arn, message_id, message, subject, attributes)
                    answers += self._invoke_async(function, {"Records": [record]})
        return answers

    def _sns_record(self, arn: str, message_id: str, message: str, subject: str | None, attributes: Any) -> dict:
        return {
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": f"{arn}:{uuid.uuid5(uuid.NAMESPACE_URL, arn)}",
            "Sns": {
                "Type": "Notification",
                "MessageId": message_id,
                "TopicArn": arn,
                "Subject": subject,
                "Message": message,
                "Timestamp": datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "SignatureVersion": "1",
                "Signature": "EXAMPLE",
                "SigningCertUrl": f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-local.pem",
                "UnsubscribeUrl": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={arn}:local",
                "MessageAttributes": dict(attributes or {}),
            },
        }

    def _invoke_async(self, function: str, event: dict[str, Any]) -> list[Any]:
        """One asynchronous invoke, with the function's deployed EventInvokeConfig."""
        config = self._invoke_configs[function]
        attempts = 1 + int(config.get("MaximumRetryAttempts", 2))
        error: Exception | None = None
        for _ in range(attempts):
            try:
                return [self.invoke(function, event)]
            except Exception as exc:  # a function error: Lambda retries the event, then gives up
                error = exc
        destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination", "")
        if destination.startswith("arn:aws:sqs:") and error is not None:
            queue = _client("sqs").get_queue_url(QueueName=destination.rsplit(":", 1)[-1])["QueueUrl"]
            message = {
                "version": "1.0",
                "timestamp": datetime.fromtimestamp(self.clock(), UTC).isoformat(),
                "requestContext": {
                    "requestId": str(uuid.uuid4()),
                    "functionArn": f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:{self.physical[function]}",
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": attempts,
                },
                "requestPayload": event,
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "responsePayload": {"errorType": type(error).__name__, "errorMessage": str(error)},
            }
            _client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(message))
        return []

    # --- SES event publishing: the configuration set's event destination ------------------------------

    def ses_event(self, record: dict[str, Any], index: int = -1) -> dict[str, Any]:
        """An SES event record (one of SES's documented examples) as SES would publish it about an email
        sent here (``index``: its place in ``emails()``): that email's message id, recipient, headers and
        configuration set, in the places SES puts them; the rest of the record as given."""
        from email import message_from_bytes

        from moto.ses.models import ses_backends

        sent = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages[index]
        msg = message_from_bytes(sent.raw_data.encode())
        to = parseaddr(str(msg["To"]))[1]
        out = copy.deepcopy(record)
        mail = out["mail"]
        mail |= {"messageId": sent.id, "destination": [to], "headersTruncated": False}
        mail["headers"] = [{"name": k, "value": str(v)} for k, v in msg.items()]
        mail["commonHeaders"] = {"from": [str(msg["From"])], "to": [str(msg["To"])], "messageId": sent.id,
                                 "subject": str(msg["Subject"])}  # fmt: skip
        config = SES_SENDS.get(sent.id, {}).get("ConfigurationSetName")
        mail["tags"] = mail.get("tags", {}) | ({"ses:configuration-set": [config]} if config else {})
        for part, recipients in (("bounce", "bouncedRecipients"), ("complaint", "complainedRecipients"),
                                 ("deliveryDelay", "delayedRecipients")):  # fmt: skip
            if part in out:
                out[part][recipients] = [r | {"emailAddress": to} for r in out[part][recipients][:1]]
        if "delivery" in out:
            out["delivery"]["recipients"] = [to]
        return out

    def publish_ses_event(self, record: dict[str, Any]) -> list[Any]:
        """What SES does with an event of an email sent through a configuration set: the record goes to
        the SNS topic of the set's event destination (as deployed) when the destination takes its event
        type, then SNS hands it to the functions subscribed. An email sent without a configuration set,
        or an event type the destination does not take, publishes nothing. The invocations' answers."""
        from moto.ses.models import ses_backends

        sent_with = SES_SENDS.get(record["mail"]["messageId"], {}).get("ConfigurationSetName")
        destination = ses_backends[DEFAULT_ACCOUNT_ID][REGION].config_set_event_destination.get(sent_with or "")
        kind = SES_EVENT_TYPES[record["eventType"]]
        if not destination or not destination.get("Enabled", True) or kind not in destination["MatchingEventTypes"]:
            return []
        _client("sns").publish(TopicArn=destination["SnsDestination"]["TopicARN"], Message=json.dumps(record))
        return self.deliver_notifications()

    def put_slack_webhook(self, url: str) -> None:
        """The Slack incoming webhook URL, as the operator stores it: an SSM SecureString named by the
        SlackWebhookParameter stack parameter."""
        name = self.parameters["SlackWebhookParameter"]
        _client("ssm").put_parameter(Name=name, Value=url, Type="SecureString", Overwrite=True)

    # --- the stats function: a stream mapping with tumbling windows ----------------------------------

    def _deliver_to_windows(self, records: list[dict[str, Any]]) -> None:
        """The stats function's mapping: records fold into the current window's state; a window whose
        time is up gets its final invocation (which writes), as Lambda's tumbling windows do."""
        function = self.template.function_for("timers_to_stats")
        mapping = self.template.function_event(function, "DynamoDB")
        seconds = int(mapping.get("TumblingWindowInSeconds", 60))
        start = int(self.clock() // seconds * seconds)
        if self._window is not None and self._window["start"] < start:
            self.flush_windows()
        passing = self.filter_stream(records, "timers_to_stats")
        if not passing:
            return
        if self._window is None:
            self._window = {"start": start, "end": start + seconds, "state": None}
        size = int(mapping.get("BatchSize", 100))
        for i in range(0, len(passing), size):
            out = self.invoke(function, self._window_event(passing[i : i + size], final=False))
            self._window["state"] = out.get("state")

    def flush_windows(self) -> Any:
        """Close the open stats window now: its final invocation writes what it folded."""
        if self._window is None:
            return None
        function = self.template.function_for("timers_to_stats")
        out = self.invoke(function, self._window_event([], final=True))
        self._window = None
        return out

    def _window_event(self, records: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        assert self._window is not None
        iso = lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        return {
            "Records": records,
            "window": {"start": iso(self._window["start"]), "end": iso(self._window["end"])},
            "state": self._window["state"] or {},
            "shardId": self.STATS_SHARD,
            "eventSourceARN": self.stream_arn,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": False,
        }

    def _deliver_batch(
        self, function: str, mapping: dict[str, Any], batch: list[dict[str, Any]], responses: list[dict[str, Any]]
    ) -> None:
        retries_left = int(mapping.get("MaximumRetryAttempts", -1))
        bisect = bool(mapping.get("BisectBatchOnFunctionError", False))
        pending = [batch]
        while pending:
            batch = pending.pop(0)
            while batch:
                try:
                    out = self.invoke(function, {"Records": batch})
                except LambdaCrash as crash:
                    responses.append({"crash": str(crash)})
                    if bisect and len(batch) > 1:  # splitting does not use up a retry
                        half = len(batch) // 2
                        pending[:0] = [batch[:half], batch[half:]]
                        break
                    failed_from = 0
                else:
                    responses.append(out)
                    failures = [f["itemIdentifier"] for f in out.get("batchItemFailures", [])]
                    if not failures:
                        break
                    sequence = [r["dynamodb"]["SequenceNumber"] for r in batch]
                    failed_from = min(sequence.index(f) for f in failures)
                batch = batch[failed_from:]
                if retries_left == 0:
                    self._park(batch)
                    break
                retries_left -= 1

    def _park(self, batch: list[dict[str, Any]]) -> None:
        """The OnFailure destination's message for a stream batch that ran out of retries."""
        first, last = batch[0], batch[-1]
        message = {
            "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": "local"},
            "DDBStreamBatchInfo": {
                "shardId": self._shard_of_record.get(first["dynamodb"]["SequenceNumber"], ""),
                "startSequenceNumber": first["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": last["dynamodb"]["SequenceNumber"],
                "batchSize": len(batch),
                "streamArn": self.stream_arn,
            },
        }
        queue = self.physical["AlertsDeadLetterQueue"]
        _client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(message))

    def parked(self) -> list[dict[str, Any]]:
        """Everything in the dead-letter queue now, left in place."""
        from redflag_local.ops.dlq import peek

        return [m.body for m in peek(_client("sqs"), self.physical["AlertsDeadLetterQueue"])]

    def tick(self, seconds: float, sweep: bool = True, ttl_lateness: float | None = None) -> None:
        """Let ``seconds`` pass, then run what would have run: the sweeper, TTL, the stream."""
        self.clock.advance(seconds)
        if sweep:
            self.sweep()
        if ttl_lateness is not None:
            self.expire_ttl(ttl_lateness)
        self.deliver_stream()

    # --- what was delivered ------------------------------------------------------------------

    def emails(self, since: int = 0) -> list[dict[str, Any]]:
        """Emails SES sent (the ``since`` first ones skipped), parsed from their raw MIME."""
        from email import message_from_bytes, policy

        from moto.ses.models import ses_backends

        out = []
        for sent in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages[since:]:
            msg = message_from_bytes(sent.raw_data.encode(), policy=policy.default)
            out.append(
                {
                    "to": str(msg["To"]),
                    "subject": str(msg["Subject"]),
                    "text": msg.get_body(("plain",)).get_content(),
                    "html": msg.get_body(("html",)).get_content(),
                    "message": msg,
                }
            )
        return out

    def cs_alerts(self, since: int = 0) -> list[dict[str, Any]]:
        from moto.sns.models import sns_backends

        topic = sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[self.physical["AlertTopic"]]
        return [
            {"subject": subject, "message": json.loads(message), "attributes": attrs}
            for _id, message, subject, attrs, _group in topic.sent_notifications[since:]
        ]

    def get_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        out = self.ddb.get_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}})
        return {k: _de.deserialize(v) for k, v in out["Item"].items()} if "Item" in out else None

    def get_items(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Several items in one consistent BatchGetItem: (pk, sk) -> item, absent ones left out."""
        if not keys:
            return {}
        request = {
            self.table_name: {"Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys], "ConsistentRead": True}
        }
        out = self.ddb.batch_get_item(RequestItems=request)["Responses"][self.table_name]
        found = [{k: _de.deserialize(v) for k, v in raw.items()} for raw in out]
        return {(i["pk"], i["sk"]): i for i in found}

    def items(self) -> list[dict[str, Any]]:
        ddb = _client("dynamodb")
        pages = ddb.get_paginator("scan").paginate(TableName=self.table_name)
        return [{k: _de.deserialize(v) for k, v in raw.items()} for page in pages for raw in page["Items"]]
