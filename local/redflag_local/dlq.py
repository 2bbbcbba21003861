"""`redflag dlq`: what was parked in the dead-letter queue, and sending it through again.

Two kinds of message land there (docs/operations.md):

- ``RetryAttemptsExhausted``: the stream's event source mapping gave up on a batch after its retries
  (a channel kept failing); the message holds the shard and sequence numbers, not the records.
  Replay reads those records back from the stream (DynamoDB keeps them 24 hours) and runs the alerts
  function on them again; channels already sent stay sent (idempotency).
- ``alert_rejected``: a channel's provider refused one alert for good (an invalid address, a bad
  parameter, a configuration error); the message holds the alert's ids, the error code and its
  idempotency record. Replay (after you fixed the cause) forgets that record and runs the alerts
  function on the timer as stored now, so exactly that channel is tried again.

Messages are read with a visibility timeout and put back (``peek``); a replayed message is deleted
only when the function succeeded on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Parked:
    message_id: str
    receipt: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        if "DDBStreamBatchInfo" in self.body:
            return "stream_batch"
        return str(self.body.get("kind", "unknown"))

    def summary(self) -> str:
        if self.kind == "stream_batch":
            info = self.body["DDBStreamBatchInfo"]
            first, last = info["startSequenceNumber"], info["endSequenceNumber"]
            return f"{info.get('batchSize', '?')} stream records {first}..{last}"
        if self.kind == "alert_rejected":
            user, task, instance, run, channel = (self.body.get("alert") or ["?"] * 5)[:5]
            return f"{channel} alert for user {user}, task {task}/{instance}, run {run}: {self.body.get('error')}"
        return json.dumps(self.body)[:200]


def _receive_all(sqs: Any, queue_url: str, hold_seconds: int) -> list[Parked]:
    seen: dict[str, Parked] = {}
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=hold_seconds)
        messages = got.get("Messages", [])
        if not messages:
            return list(seen.values())
        for m in messages:
            seen.setdefault(m["MessageId"], Parked(m["MessageId"], m["ReceiptHandle"], json.loads(m["Body"])))


def _release(sqs: Any, queue_url: str, parked: Parked) -> None:
    sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=parked.receipt, VisibilityTimeout=0)


def peek(sqs: Any, queue_url: str) -> list[Parked]:
    """Every message in the queue, left in it (made visible again at once)."""
    messages = _receive_all(sqs, queue_url, 60)
    for p in messages:
        _release(sqs, queue_url, p)
    return messages


@dataclass(frozen=True)
class ReplayTarget:
    """Where a replay reads and what it runs: clients and names of one stack (AWS or the local one)."""

    sqs: Any
    streams: Any
    dynamodb: Any
    queue_url: str
    stream_arn: str
    table_name: str
    idempotency_table: str
    invoke: Callable[[dict[str, Any]], dict[str, Any]]  # runs the alerts function on a stream event


def _stream_records(target: ReplayTarget, info: dict[str, Any]) -> list[dict[str, Any]]:
    iterator = target.streams.get_shard_iterator(
        StreamArn=info.get("streamArn") or target.stream_arn,
        ShardId=info["shardId"],
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=info["startSequenceNumber"],
    )["ShardIterator"]
    end = int(info["endSequenceNumber"])
    out: list[dict[str, Any]] = []
    while iterator:
        page = target.streams.get_records(ShardIterator=iterator)
        for record in page["Records"]:
            if int(record["dynamodb"]["SequenceNumber"]) > end:
                return out
            record["eventSourceARN"] = info.get("streamArn") or target.stream_arn
            out.append(record)
        if not page["Records"]:
            break
        iterator = page.get("NextShardIterator")
    return out


def _timer_record(target: ReplayTarget, ids: list[str]) -> dict[str, Any] | None:
    """A stream record for the timer as stored now: the sweeper's open -> flagged change."""
    user, task, instance = ids[:3]
    key = {"pk": {"S": user}, "sk": {"S": f"task#{task}#{instance}"}}
    item = target.dynamodb.get_item(TableName=target.table_name, Key=key, ConsistentRead=True).get("Item")
    if not item or item.get("state", {}).get("S") not in ("flagged", "completed"):
        return None
    old = item | {"state": {"S": "open"}}
    new = item | {"state": {"S": "flagged"}}
    return {
        "eventID": f"replay-{user}-{task}-{instance}",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": target.stream_arn,
        "dynamodb": {
            "Keys": key,
            "OldImage": old,
            "NewImage": new,
            "SequenceNumber": "0",
            "SizeBytes": 1,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


@dataclass(frozen=True)
class ReplayResult:
    parked: Parked
    ok: bool
    why: str


def replay(target: ReplayTarget, only: set[str] | None = None) -> list[ReplayResult]:
    """Send parked messages through the alerts function again; delete each one that went through,
    put the others back."""
    held = _receive_all(target.sqs, target.queue_url, 300)
    results = []
    try:
        for p in held:
            if only is not None and p.message_id not in only:
                continue
            result = _replay_one(target, p)
            results.append(result)
            if result.ok:
                target.sqs.delete_message(QueueUrl=target.queue_url, ReceiptHandle=p.receipt)
    finally:
        done = {r.parked.message_id for r in results if r.ok}
        for p in held:
            if p.message_id not in done:
                _release(target.sqs, target.queue_url, p)
    return results


def _replay_one(target: ReplayTarget, p: Parked) -> ReplayResult:
    if p.kind == "stream_batch":
        records = _stream_records(target, p.body["DDBStreamBatchInfo"])
        if not records:
            return ReplayResult(p, False, "the records are no longer on the stream (24 h)")
    elif p.kind == "alert_rejected":
        record = _timer_record(target, [str(x) for x in p.body.get("alert", [])])
        if record is None:
            return ReplayResult(p, False, "the timer is gone or was never flagged")
        if p.body.get("record"):
            target.dynamodb.delete_item(TableName=target.idempotency_table, Key={"id": {"S": p.body["record"]}})
        records = [record]
    else:
        return ReplayResult(p, False, "unknown message")
    out = target.invoke({"Records": records})
    failed = out.get("batchItemFailures") if isinstance(out, dict) else None
    if failed or (isinstance(out, dict) and out.get("FunctionError")):
        return ReplayResult(p, False, f"{len(failed or [])} records failed again; left in the queue")
    return ReplayResult(p, True, f"{len(records)} records sent through")
