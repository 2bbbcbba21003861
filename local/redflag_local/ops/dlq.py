"""`redflag dlq`: what was parked in the dead-letter queue, and sending it through again.

Three kinds of message land there (docs/operations.md):

- ``stream_batch``: the stream's event source mapping gave up on a batch after its retries
  (``MaximumRetryAttempts``: a channel kept failing); the message (``DDBStreamBatchInfo``) holds the
  shard and the first and last sequence numbers, not the records. Replay reads those records back
  from the stream (DynamoDB keeps them 24 hours), keeps those the mapping's filter criteria pass,
  and runs the alerts function on them again, in batches of 50; channels already sent stay sent
  (idempotency).
- ``alert_rejected``: a channel's provider refused one alert for good (an invalid address, a bad
  parameter, a configuration error, no webhook URL); the message holds the alert's ids, the channel,
  the error code and the id of its idempotency record. Replay (after you fixed the cause) forgets
  that record, if it still holds the refusal, and runs the alerts function on the change that raised
  the alert, rebuilt from what is stored now (the timer's ``open -> flagged``, or an account's
  usage-drop flag) with its rule snapshot narrowed to that channel: exactly that channel is tried
  again, whatever happened to the idempotency records of the others since (they expire after 3
  days; a message is kept 14). An email goes through the function's gate again (quiet hours, the
  cap, opt-out). Escalation alerts are not rebuilt (their message stays).
- ``slack_post``: the Slack notifier could not post one CS alert: Slack refused it (a 4xx other than
  429: the message holds the HTTP status), or it kept failing for now until Lambda's retries of the
  asynchronous invoke ran out (the function's on-failure destination). Either way the message holds
  the SNS record the function was invoked with (the CS alert, ids and names included, as CS sees
  them in Slack). Replay invokes the notifier with it again: one post per SNS message id, so a
  message replayed twice posts once.

A message is deleted only when its records went through: the function reported no failure, and for
a rejected alert its idempotency record now says ``sent``. Anything else leaves the message in the
queue, with the reason; an alert refused again is parked again by the function, and that new copy
is removed so the queue keeps one message per undelivered alert. Messages are read with a visibility
timeout and put back (``peek``), so listing changes nothing.

Everything is reached through injected clients (``ReplayTarget``): ``stack_target`` builds one for
a deployed stack from its CloudFormation resources; tests build one on moto.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HOLD_SECONDS = 300  # how long a replay keeps a message invisible to others (refreshed per message)
PEEK_SECONDS = 30  # how long a listing holds each message before putting it back
INVOKE_RECORDS = 50  # records per invoke: the event source mapping's BatchSize
INVOKE_BYTES = 4_000_000  # and under Lambda's 6 MB synchronous payload
EMPTY_PAGES = 10  # DynamoDB Streams may answer a few empty pages before the records
KINDS = ("stream_batch", "alert_rejected", "slack_post")
STACK_RESOURCES = {
    "queue_url": "AlertsDeadLetterQueue",
    "table_name": "TimersTable",
    "idempotency_table": "IdempotencyTable",
    "function": "TimersToAlertsFunction",
}

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class DlqError(Exception):
    """The stack or its queue cannot be reached as asked; the message says why (no data in it)."""


@dataclass(frozen=True)
class Parked:
    message_id: str
    receipt: str
    body: dict[str, Any]
    sent_at: float | None = None  # when it was parked (SQS SentTimestamp), epoch seconds
    size: int = 0

    @property
    def kind(self) -> str:
        if isinstance(self.body.get("DDBStreamBatchInfo"), dict):
            return "stream_batch"
        if self.sns_records:  # Lambda's on-failure record of an SNS invoke, or the notifier's own
            return "slack_post"
        kind = self.body.get("kind")
        return kind if kind in KINDS else "unknown"

    @property
    def sns_records(self) -> list[dict[str, Any]]:
        payload = self.body.get("requestPayload")
        records = payload.get("Records") if isinstance(payload, dict) else None
        if not isinstance(records, list) or not records:
            return []
        ok = all(isinstance(r, dict) and r.get("EventSource") == "aws:sns" and isinstance(r.get("Sns"), dict)
                 for r in records)  # fmt: skip
        return records if ok else []

    @property
    def alert_key(self) -> tuple[tuple[str, ...], str]:
        if self.kind == "slack_post":
            return tuple(str(r["Sns"].get("MessageId")) for r in self.sns_records), "slack"
        return tuple(str(x) for x in self.body.get("alert") or ()), str(self.body.get("channel"))

    def summary(self) -> str:
        """Ids, counts and error codes only: never an address, a name or a payload."""
        if self.kind == "stream_batch":
            info = self.body["DDBStreamBatchInfo"]
            first, last = info.get("startSequenceNumber"), info.get("endSequenceNumber")
            why = (self.body.get("requestContext") or {}).get("condition")
            return f"{info.get('batchSize', '?')} stream record(s) {first}..{last}" + (f" ({why})" if why else "")
        if self.kind == "alert_rejected":
            ids, channel = self.alert_key
            owner, task, instance, run = ([*ids, "?", "?", "?", "?"])[:4]
            error = self.body.get("error")
            if owner.startswith("account:"):
                return f"{channel} alert for account {owner[len('account:') :]}, rule {task}, week {instance}: {error}"
            if owner == "escalation":
                return f"{channel} escalation for {task} {instance}: {error}"
            return f"{channel} alert for user {owner}, task {task}/{instance}, run {run}: {error}"
        if self.kind == "slack_post":
            ids, _ = self.alert_key
            context = self.body.get("requestContext") or {}
            why = self.body.get("error") or context.get("condition") or "?"
            return f"slack post of SNS message {', '.join(ids)}: {why}"
        keys = ", ".join(sorted(str(k) for k in self.body)[:8])
        return f"not a message this tool knows ({self.size} bytes; keys: {keys or 'none'})"


def _parked(message: dict[str, Any]) -> Parked:
    raw = message.get("Body") or ""
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    return Parked(
        message["MessageId"],
        message["ReceiptHandle"],
        body if isinstance(body, dict) else {},
        int(sent) / 1000 if sent else None,
        len(raw.encode()),
    )


def _receive_all(sqs: Any, queue_url: str, hold_seconds: int, wait_seconds: int = 0) -> list[Parked]:
    """Every visible message, each held ``hold_seconds``. ``wait_seconds`` > 0 long-polls: on SQS an
    empty short-poll answer does not mean an empty queue (it samples a subset of servers)."""
    seen: dict[str, Parked] = {}
    while True:
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=hold_seconds,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["SentTimestamp"],
        )
        messages = got.get("Messages", [])
        if not messages:
            return list(seen.values())
        for m in messages:
            seen[m["MessageId"]] = _parked(m)  # the latest receipt handle is the one that deletes


def _release(sqs: Any, queue_url: str, parked: Parked, quiet: bool = False) -> None:
    """Make a held message visible again. ``quiet``: a receipt that no longer holds it (the hold ran
    out and someone else received it) is not an error."""
    from botocore.exceptions import ClientError

    try:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=parked.receipt, VisibilityTimeout=0)
    except ClientError:
        if not quiet:
            raise


def peek(sqs: Any, queue_url: str, wait_seconds: int = 0) -> list[Parked]:
    """Every message in the queue, left in it (made visible again at once), oldest first."""
    messages = _receive_all(sqs, queue_url, PEEK_SECONDS, wait_seconds)
    for p in messages:
        _release(sqs, queue_url, p)
    return sorted(messages, key=lambda p: (p.sent_at or 0, p.message_id))


# --- where a replay reads and what it runs --------------------------------------------------------


@dataclass(frozen=True)
class ReplayTarget:
    """Clients and names of one stack (on AWS: ``stack_target``; or the local one in tests)."""

    sqs: Any
    streams: Any  # dynamodbstreams
    dynamodb: Any
    queue_url: str
    stream_arn: str
    table_name: str
    idempotency_table: str
    invoke: Invoke  # runs the alerts function on a stream event; answers its response
    invoke_slack: Invoke | None = None  # runs the Slack notifier on an SNS event (None: the stack has none)
    # the event source mapping's filter patterns; empty: every record in a batch's range is sent (the
    # function re-checks each one, so this only saves invokes)
    filters: tuple[dict[str, Any], ...] = field(default=())
    wait_seconds: int = 0  # long polling when reading the queue (use >= 1 on AWS)


def lambda_invoker(client: Any, function_name: str) -> Invoke:
    """``invoke`` for a deployed function: a synchronous (RequestResponse) Lambda invoke. A function
    error comes back as ``{"FunctionError": ...}`` (its payload is dropped: it may quote data)."""

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        out = client.invoke(
            FunctionName=function_name, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        if out.get("FunctionError"):
            return {"FunctionError": str(out["FunctionError"])}
        stream = out.get("Payload")
        try:
            answer = json.loads(stream.read() if stream is not None else b"null")
        except ValueError:
            answer = None
        return answer if isinstance(answer, dict) else {"FunctionError": "UnexpectedAnswer"}

    return invoke


def stack_target(session: Any, stack_name: str = "redflag", wait_seconds: int = 2) -> ReplayTarget:
    """A deployed stack's queue, tables, stream and alerts function, from its CloudFormation
    resources (``describe_stack_resources``) and the function's event source mapping."""
    from botocore.config import Config
    from botocore.exceptions import ClientError

    try:
        resources = session.client("cloudformation").describe_stack_resources(StackName=stack_name)["StackResources"]
    except ClientError as exc:
        raise DlqError(f"stack {stack_name}: {exc.response.get('Error', {}).get('Message', exc)}") from None
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId") or "" for r in resources}
    missing = sorted(logical for logical in STACK_RESOURCES.values() if not physical.get(logical))
    if missing:
        raise DlqError(f"stack {stack_name} has no {', '.join(missing)}: is it a Red Flag stack?")
    names = {attr: physical[logical] for attr, logical in STACK_RESOURCES.items()}
    dynamodb = session.client("dynamodb")
    stream_arn = dynamodb.describe_table(TableName=names["table_name"])["Table"].get("LatestStreamArn", "")
    # a replay waits for the function (up to its 30 s timeout); a retried invoke is harmless (idempotent)
    lam = session.client("lambda", config=Config(read_timeout=120, retries={"mode": "standard", "max_attempts": 3}))
    return ReplayTarget(
        sqs=session.client("sqs"),
        streams=session.client("dynamodbstreams"),
        dynamodb=dynamodb,
        queue_url=names["queue_url"],
        stream_arn=stream_arn,
        table_name=names["table_name"],
        idempotency_table=names["idempotency_table"],
        invoke=lambda_invoker(lam, names["function"]),
        invoke_slack=lambda_invoker(lam, physical["CsAlertsToSlackFunction"])
        if physical.get("CsAlertsToSlackFunction")
        else None,
        filters=_mapping_filters(lam, names["function"], stream_arn),
        wait_seconds=wait_seconds,
    )


def _mapping_filters(lam: Any, function: str, stream_arn: str) -> tuple[dict[str, Any], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        mappings = lam.list_event_source_mappings(FunctionName=function, EventSourceArn=stream_arn)
    except (BotoCoreError, ClientError):
        return ()
    for mapping in mappings.get("EventSourceMappings", []):
        filters = (mapping.get("FilterCriteria") or {}).get("Filters") or []
        return tuple(json.loads(f["Pattern"]) for f in filters if f.get("Pattern"))
    return ()


# --- filter criteria: the subset the template uses (exact values, nested objects) -----------------


def passes(filters: tuple[dict[str, Any], ...], record: dict[str, Any]) -> bool:
    """Whether a stream record passes any of the filter patterns, as the event source mapping
    decides. A pattern with an operator this does not know counts as passing (the function decides)."""
    return not filters or any(_matches(pattern, record) is not False for pattern in filters)


def _matches(pattern: dict[str, Any], value: Any) -> bool | None:
    """True, False, or None when the pattern uses an operator not modelled here."""
    unknown = False
    for key, want in pattern.items():
        got = value.get(key) if isinstance(value, dict) else None
        if isinstance(want, dict):
            result = _matches(want, got)
        elif isinstance(want, list):
            if any(isinstance(w, dict) for w in want):
                result = None  # prefix, anything-but, numeric, exists, ...
            else:
                result = any(g in want for g in got) if isinstance(got, list) else got in want
        else:
            result = None
        if result is False:
            return False
        unknown = unknown or result is None
    return None if unknown else True


# --- stream records, as Lambda hands them to the function -----------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(type(value).__name__)


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A record from the DynamoDB Streams API in the shape the event source mapping delivers it:
    JSON values (epoch seconds, base64), ``userIdentity`` as ``{"type", "principalId"}`` (the API says
    ``Type``/``PrincipalId``; the function's model, and its TTL check, read the Lambda names), and
    ``eventSourceARN``."""
    out = json.loads(json.dumps(record, default=_jsonable))
    identity = out.get("userIdentity")
    if isinstance(identity, dict):
        out["userIdentity"] = {
            "type": identity.get("Type", identity.get("type")),
            "principalId": identity.get("PrincipalId", identity.get("principalId")),
        }
    out["eventSourceARN"] = stream_arn
    return out


def stream_records(target: ReplayTarget, info: dict[str, Any]) -> list[dict[str, Any]]:
    """The records from the batch's first to its last sequence number (both included)."""
    arn = info.get("streamArn") or target.stream_arn
    start, end = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    iterator = target.streams.get_shard_iterator(
        StreamArn=arn,
        ShardId=info["shardId"],
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=str(info["startSequenceNumber"]),
    )["ShardIterator"]
    out: list[dict[str, Any]] = []
    empty = 0
    while iterator and empty < EMPTY_PAGES:
        page = target.streams.get_records(ShardIterator=iterator, Limit=1000)
        records = page.get("Records", [])
        empty = 0 if records else empty + 1
        for record in records:
            sequence = int(record["dynamodb"]["SequenceNumber"])
            if sequence > end:
                return out
            if sequence >= start:
                out.append(lambda_record(record, arn))
            if sequence == end:
                return out
        iterator = page.get("NextShardIterator")
    return out


def _batches(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for record in records:
        length = len(json.dumps(record))
        if batches[-1] and (len(batches[-1]) >= INVOKE_RECORDS or size + length > INVOKE_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(record)
        size += length
    return [b for b in batches if b]


def _run(target: ReplayTarget, records: list[dict[str, Any]]) -> tuple[int, str | None]:
    """Invoke the function on the records in batches: (records reported failed, a function error)."""
    failed, error = 0, None
    for batch in _batches(records):
        out = target.invoke({"Records": batch})
        if out.get("FunctionError"):
            failed, error = failed + len(batch), str(out["FunctionError"])
        else:
            failed += len(out.get("batchItemFailures") or [])
    return failed, error


# --- a rejected alert: its idempotency record, and its timer as a stream record -------------------


def _idempotency(target: ReplayTarget, record_id: str) -> tuple[str, dict[str, Any] | None]:
    """What the alert's idempotency record (Powertools' layout) says: ``sent``, ``rejected`` (the
    refusal is stored as the alert's answer), ``in_progress`` (a send is under way), ``stale`` (in
    progress past its Lambda's deadline: Powertools lets the next attempt take it over) or ``absent``
    (never written, deleted, or expired)."""
    item = target.dynamodb.get_item(
        TableName=target.idempotency_table, Key={"id": {"S": record_id}}, ConsistentRead=True
    ).get("Item")
    now = time.time()
    if not item or float(item.get("expiration", {}).get("N") or "inf") < now:
        return "absent", item
    if item.get("status", {}).get("S") != "COMPLETED":
        deadline = item.get("in_progress_expiration", {}).get("N")  # milliseconds
        return ("stale" if deadline is not None and float(deadline) / 1000 < now else "in_progress"), item
    try:
        answer = json.loads(item.get("data", {}).get("S") or "null")
    except ValueError:
        answer = None
    status = answer.get("status") if isinstance(answer, dict) else None
    return ("rejected" if status == "rejected" else "sent"), item


def _alert_record(target: ReplayTarget, ids: list[str], channel: str, event_id: str) -> dict[str, Any] | str:
    """The stream record that raised the alert, rebuilt from what is stored now, with the rule
    snapshot narrowed to ``channel``; or why there is none. A timer's alert: the sweeper's
    ``open -> flagged`` change of its run. An account's usage drop: the weekly check's new flag item."""
    owner, task, instance, run = ids[:4]
    if owner.startswith("account:") and run == "usage_drop":
        key = {"pk": {"S": f"account#{owner[len('account:') :]}"}, "sk": {"S": f"flag#{task}#{instance}"}}
        item = _stored(target, key)
        if not item or item.get("kind", {}).get("S") != "account_flag":
            return "the account flag is gone (TTL deleted it, or someone did): its alert cannot be rebuilt"
        narrowed = _narrowed(item, channel)
        if narrowed is None:
            return "the account flag holds no rule snapshot"
        return _change(target, event_id, "INSERT", key, None, narrowed)
    key = {"pk": {"S": owner}, "sk": {"S": f"task#{task}#{instance}"}}
    item = _stored(target, key)
    if not item or item.get("kind", {}).get("S") != "task":
        return "the timer is gone (TTL deleted it, or someone did): its alert cannot be rebuilt"
    started = item.get("started_at", {}).get("N")
    if started is None or str(round(float(started) * 1000)) != run:
        return "the timer has moved on to another run since; this run's alert is not sent again"
    state = item.get("state", {}).get("S")
    if state not in ("flagged", "completed"):
        return f"the timer is {state}, not flagged"
    narrowed = _narrowed(item, channel)
    if narrowed is None:
        return "the timer holds no rule snapshot"
    return _change(
        target, event_id, "MODIFY", key, item | {"state": {"S": "open"}}, narrowed | {"state": {"S": "flagged"}}
    )


def _stored(target: ReplayTarget, key: dict[str, Any]) -> dict[str, Any] | None:
    return target.dynamodb.get_item(TableName=target.table_name, Key=key, ConsistentRead=True).get("Item")


def _narrowed(item: dict[str, Any], channel: str) -> dict[str, Any] | None:
    """The item with its rule snapshot notifying only ``channel``."""
    try:
        rule = json.loads(item["rule"]["S"])
    except (KeyError, ValueError, TypeError):
        return None
    return item | {"rule": {"S": json.dumps(rule | {"notify": [channel]})}}


def _change(
    target: ReplayTarget,
    event_id: str,
    name: str,
    key: dict[str, Any],
    old: dict[str, Any] | None,
    new: dict[str, Any],
) -> dict[str, Any]:
    arn = target.stream_arn
    images = {"NewImage": new} | ({"OldImage": old} if old is not None else {})
    return {
        "eventID": event_id,
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": arn.split(":")[3] if arn.count(":") >= 5 else "",
        "eventSourceARN": arn,
        "dynamodb": {
            "ApproximateCreationDateTime": time.time(),
            "Keys": key,
            **images,
            "SequenceNumber": "1",
            "SizeBytes": len(json.dumps(images)),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


# --- replay -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayResult:
    parked: Parked
    ok: bool
    why: str
    refused_again: bool = False


def replay(target: ReplayTarget, only: set[str] | None = None, kinds: set[str] | None = None) -> list[ReplayResult]:
    """Send parked messages through the alerts function again (``only`` these message ids, ``kinds``
    these kinds; default all). Each one that went through is deleted; the others are put back."""
    from botocore.exceptions import BotoCoreError, ClientError

    held = _receive_all(target.sqs, target.queue_url, HOLD_SECONDS, target.wait_seconds)
    chosen = [
        p
        for p in sorted(held, key=lambda p: (p.sent_at or 0, p.message_id))
        if (only is None or p.message_id in only) and (kinds is None or p.kind in kinds)
    ]
    results: list[ReplayResult] = []
    try:
        for p in chosen:
            try:  # hold it afresh for this message's replay
                target.sqs.change_message_visibility(
                    QueueUrl=target.queue_url, ReceiptHandle=p.receipt, VisibilityTimeout=HOLD_SECONDS
                )
                result = _replay_one(target, p)
            except (BotoCoreError, ClientError) as exc:
                result = ReplayResult(p, False, f"AWS error {_code(exc)}; left in the queue")
            except (KeyError, ValueError, TypeError) as exc:
                result = ReplayResult(p, False, f"a malformed message ({type(exc).__name__}); left in the queue")
            results.append(result)
            if result.ok:
                target.sqs.delete_message(QueueUrl=target.queue_url, ReceiptHandle=p.receipt)
    finally:
        done = {r.parked.message_id for r in results if r.ok}
        for p in held:
            if p.message_id not in done:
                _release(target.sqs, target.queue_url, p, quiet=True)
        _drop_new_copies(target, {r.parked.message_id: r for r in results if r.refused_again}, held)
    return results


def _drop_new_copies(target: ReplayTarget, refused: dict[str, ReplayResult], held: list[Parked]) -> None:
    """The function parks an alert refused again as a new message: delete that copy, the original
    (with its id) stays."""
    if not refused:
        return
    keys = {r.parked.alert_key for r in refused.values()}
    held_ids = {p.message_id for p in held}
    for p in _receive_all(target.sqs, target.queue_url, PEEK_SECONDS, target.wait_seconds):
        if p.message_id not in held_ids and p.kind in ("alert_rejected", "slack_post") and p.alert_key in keys:
            target.sqs.delete_message(QueueUrl=target.queue_url, ReceiptHandle=p.receipt)
        else:
            _release(target.sqs, target.queue_url, p)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def _replay_one(target: ReplayTarget, p: Parked) -> ReplayResult:
    if p.kind == "stream_batch":
        return _replay_batch(target, p)
    if p.kind == "alert_rejected":
        return _replay_alert(target, p)
    if p.kind == "slack_post":
        return _replay_slack(target, p)
    return ReplayResult(p, False, "not a message this tool knows; left in the queue")


def _forget(target: ReplayTarget, item: dict[str, Any]) -> bool:
    """Forget a refusal kept as an alert's result, unless it changed since it was read (then False)."""
    try:
        target.dynamodb.delete_item(
            TableName=target.idempotency_table,
            Key={"id": item["id"]},
            ConditionExpression="#s = :s AND #d = :d",
            ExpressionAttributeNames={"#s": "status", "#d": "data"},
            ExpressionAttributeValues={":s": item["status"], ":d": item["data"]},
        )
    except target.dynamodb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def _replay_slack(target: ReplayTarget, p: Parked) -> ReplayResult:
    if target.invoke_slack is None:
        return ReplayResult(p, False, "this stack has no Slack notifier (SlackWebhookParameter); left in the queue")
    if record_id := p.body.get("record"):  # the notifier parked a refusal: forget it, so the replay posts
        before, item = _idempotency(target, str(record_id))
        if before == "rejected" and item is not None and not _forget(target, item):
            return ReplayResult(p, False, "its idempotency record changed meanwhile; left in the queue, try again")
    answer = target.invoke_slack({"Records": p.sns_records})
    if answer.get("FunctionError"):
        return ReplayResult(p, False, f"the notifier failed ({answer['FunctionError']}); left in the queue")
    if answer.get("rejected"):
        return ReplayResult(p, False, "Slack refused it again; left in the queue", refused_again=True)
    posted, duplicate = int(answer.get("posted") or 0), int(answer.get("duplicate") or 0)
    if posted + duplicate != len(p.sns_records):
        return ReplayResult(p, False, "the notifier answered something unexpected; left in the queue")
    return ReplayResult(p, True, "posted to Slack" if posted else "already posted since it was parked")


def _replay_batch(target: ReplayTarget, p: Parked) -> ReplayResult:
    info = p.body["DDBStreamBatchInfo"]
    everything = stream_records(target, info)
    records = [r for r in everything if passes(target.filters, r)]
    expected = int(info.get("batchSize") or 1)
    if not records:
        return ReplayResult(p, False, "its records are no longer on the stream (kept 24 hours); left in the queue")
    if len(records) < expected:
        return ReplayResult(
            p, False, f"found {len(records)} of its {expected} records on the stream; left in the queue"
        )
    failed, error = _run(target, records)
    if error:
        return ReplayResult(p, False, f"the function failed ({error}); left in the queue")
    if failed:
        return ReplayResult(p, False, f"{failed} of {len(records)} records failed again; left in the queue")
    return ReplayResult(p, True, f"{len(records)} record(s) went through")


def _replay_alert(target: ReplayTarget, p: Parked) -> ReplayResult:
    ids, channel = p.alert_key
    record_id = p.body.get("record")
    if len(ids) != 5 or ids[4] != channel:
        return ReplayResult(p, False, "not an alert id this tool knows; left in the queue")
    if not record_id:
        return ReplayResult(p, False, "names no idempotency record, so a replay could send twice; left in the queue")
    before, item = _idempotency(target, str(record_id))
    if before == "sent":
        return ReplayResult(p, True, "already sent since it was parked")
    if before == "in_progress":
        return ReplayResult(p, False, "being sent right now; left in the queue, try again in a minute")
    record = _alert_record(target, list(ids), channel, f"replay-{p.message_id}")
    if isinstance(record, str):
        return ReplayResult(p, False, f"{record}; left in the queue")
    if before == "rejected" and item is not None and not _forget(target, item):
        return ReplayResult(p, False, "its idempotency record changed meanwhile; left in the queue, try again")
    failed, error = _run(target, [record])
    if error or failed:
        return ReplayResult(p, False, f"the {channel} channel failed again ({error or 'retryable'}); left in the queue")
    after, now = _idempotency(target, str(record_id))
    if after == "sent":
        return ReplayResult(p, True, f"{channel} alert sent")
    attempt = "in_progress_expiration"
    if after in ("in_progress", "stale") and (now or {}).get(attempt) != (item or {}).get(attempt):
        return ReplayResult(p, True, f"{channel} alert sent (its success record could not be written)")
    if after == "rejected":
        code = json.loads((now or {}).get("data", {}).get("S") or "{}").get("error", "?")
        return ReplayResult(p, False, f"refused again ({code}); left in the queue", refused_again=True)
    held = "held back (quiet hours: it goes out when they end; the cap; an opt-out) or nothing to send it to"
    return ReplayResult(p, False, f"nothing sent on {channel} now: {held}; left in the queue")


def parked_at(p: Parked) -> str:
    return "" if p.sent_at is None else datetime.fromtimestamp(p.sent_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
