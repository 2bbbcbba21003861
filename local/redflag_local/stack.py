"""The whole Red Flag pipeline in one process, on moto, driven by a clock you move.

``LocalStack`` deploys template.yaml into moto with CloudFormation, imports each
``functions/<name>/app.py`` with the environment the template gives that function, and plays
the parts AWS would: API Gateway (a proxy event per request), DynamoDB TTL (deletes expired
items, marked with the service identity on the stream), the stream's event source mapping
(filter criteria and batch size from the template), and the sweeper's schedule.
"""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.events.models import EventPattern

from redflag import clock
from redflag_local.template import ROOT, Template

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
}
_de = TypeDeserializer()


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
        self._stream_position: dict[str, str] = {}  # shard id -> last sequence number read
        self.handlers: dict[str, ModuleType] = {}
        self.function_env: dict[str, dict[str, str]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalStack:
        os.environ.update(LOCAL_ENV)
        self._mock.start()
        clock.set_clock(self.clock, self.clock.sleep)
        cfn = boto3.client("cloudformation")
        body = self.template.moto_copy(self.parameters)
        cfn.create_stack(
            StackName="redflag",
            TemplateBody=json.dumps(body),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        resources = cfn.describe_stack_resources(StackName="redflag")["StackResources"]
        self.physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}
        boto3.client("ses").verify_email_identity(EmailAddress=self.parameters["SenderEmail"])
        lam = boto3.client("lambda")
        for name in self.template.functions:
            config = lam.get_function_configuration(FunctionName=self.physical[name])
            variables = config.get("Environment", {}).get("Variables", {})
            self.function_env[name] = {k: str(v) for k, v in variables.items()} | {
                "AWS_LAMBDA_FUNCTION_NAME": config["FunctionName"]
            }
        for name, folder in self.template.functions.items():
            self.handlers[name] = self._import(name, folder / "app.py")
        self.table_name = self.physical["TimersTable"]
        self.stream_arn = self.ddb.describe_table(TableName=self.table_name)["Table"]["LatestStreamArn"]
        return self

    @cached_property
    def ddb(self) -> Any:
        return boto3.client("dynamodb")

    @cached_property
    def streams(self) -> Any:
        return boto3.client("dynamodbstreams")

    def stop(self) -> None:
        clock.set_clock(None)
        self._mock.stop()

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
            return self.handlers[function].lambda_handler(event, context)

    # --- rules -----------------------------------------------------------------------------

    def put_rules(self, rules: dict[str, dict[str, Any] | str]) -> None:
        ssm = boto3.client("ssm")
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
        """Delete what DynamoDB TTL would delete now (items expired ``lateness_seconds`` ago)."""
        deleted = 0
        for page in self.ddb.get_paginator("scan").paginate(TableName=self.table_name):
            for raw in page["Items"]:
                if "expires_at" in raw and float(raw["expires_at"]["N"]) <= self.clock() - lateness_seconds:
                    deleted += self.ttl_delete(raw["pk"]["S"], raw["sk"]["S"])
        return deleted

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
        event = sample_event("sweep_due_timers/scheduled.json")
        return self.invoke(self.template.function_for("sweep_due_timers"), event)

    def read_stream(self) -> list[dict[str, Any]]:
        """New stream records, shaped as Lambda receives them (eventSourceARN, TTL identity)."""
        streams = self.streams
        shards = streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        records: list[dict[str, Any]] = []
        for shard in shards:
            sid = shard["ShardId"]
            # A fresh iterator from our last position every time: when a transaction fails, moto
            # restores a deep copy of the table, and iterators taken before then read a dead shard.
            where = {"ShardIteratorType": "TRIM_HORIZON"}
            if sid in self._stream_position:
                where = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._stream_position[sid]}
            iterator = streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=sid, **where)["ShardIterator"]
            while True:  # get_records returns at most 1,000 records a call: read to the end
                out = streams.get_records(ShardIterator=iterator)
                iterator = out["NextShardIterator"]
                records.extend(out["Records"])
                if not out["Records"]:
                    break
                self._stream_position[sid] = out["Records"][-1]["dynamodb"]["SequenceNumber"]
        for record in records:
            record["eventSourceARN"] = self.stream_arn
            keys = record["dynamodb"]["Keys"]
            key = (keys["pk"]["S"], keys["sk"]["S"])
            if record["eventName"] == "REMOVE" and key in self._ttl_deleted:
                self._ttl_deleted.discard(key)
                record["userIdentity"] = dict(TTL_IDENTITY)
            approx = record["dynamodb"].get("ApproximateCreationDateTime")
            if approx is not None and not isinstance(approx, (int, float)):
                record["dynamodb"]["ApproximateCreationDateTime"] = approx.timestamp()
        return records

    def filter_stream(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records the template's FilterCriteria let through to the alerts function."""
        function = self.template.function_for("timers_to_alerts")
        patterns = [EventPattern(None, p) for p in self.template.stream_filters(function)]
        return [r for r in records if any(p.matches_event(r) for p in patterns)]

    def deliver_stream(self, records: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Run the alerts function on the stream as its event source mapping would:
        only records passing the template's filter criteria, in batches of its BatchSize."""
        function = self.template.function_for("timers_to_alerts")
        records = self.read_stream() if records is None else records
        passing = self.filter_stream(records)
        size = int(self.template.function_event(function, "DynamoDB").get("BatchSize", 100))
        responses = []
        for i in range(0, len(passing), size):
            responses.append(self.invoke(function, {"Records": passing[i : i + size]}))
        return responses

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

    def items(self) -> list[dict[str, Any]]:
        ddb = boto3.client("dynamodb")
        pages = ddb.get_paginator("scan").paginate(TableName=self.table_name)
        return [{k: _de.deserialize(v) for k, v in raw.items()} for page in pages for raw in page["Items"]]
