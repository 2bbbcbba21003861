"""The timer table: the one place that reads or writes it (timers, event-id claims, activity)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from redflag import clock, timers
from redflag.ports import DuplicateEvent, VersionConflict

DUE_INDEX = "due-index"
_Op = tuple[str, dict[str, Any], type[Exception]]  # ("Put" | "Update", params, error on condition)
_ser = TypeSerializer()
_de = TypeDeserializer()


def _av(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items()}


def _py(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


class DynamoTimerStore:
    def __init__(
        self, table_name: str, shards: int, event_id_retention_seconds: int = 48 * 3600, client: Any = None
    ) -> None:
        self._table = table_name
        self._shards = shards
        self._event_ttl = event_id_retention_seconds
        self._client = client or boto3.client("dynamodb")

    def get(self, key: timers.TimerKey) -> timers.Timer | None:
        out = self._client.get_item(TableName=self._table, Key=_av({"pk": key.pk, "sk": key.sk}), ConsistentRead=True)
        return timers.from_item(_py(out["Item"])) if "Item" in out else None

    def _event_claim(self, event_id: str, now: float) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Item": _av(
                {
                    "pk": f"event#{event_id}",
                    "sk": "event",
                    "kind": "event",
                    "expires_at": math.ceil(now + self._event_ttl),
                }
            ),
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    def _timer_put(self, timer: timers.Timer, expected_version: int) -> dict[str, Any]:
        item = timers.to_item(timer.model_copy(update={"version": expected_version + 1}), self._shards)
        put: dict[str, Any] = {"TableName": self._table, "Item": _av(item)}
        if expected_version == 0:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "#v = :v"
            put["ExpressionAttributeNames"] = {"#v": "version"}
            put["ExpressionAttributeValues"] = _av({":v": expected_version})
        return put

    def commit(self, timer: timers.Timer | None, expected_version: int, event_id: str | None = None) -> None:
        ops: list[_Op] = []
        if event_id is not None:
            ops.append(("Put", self._event_claim(event_id, clock.now()), DuplicateEvent))
        if timer is not None:
            ops.append(("Put", self._timer_put(timer, expected_version), VersionConflict))
        self._write(ops)

    def record_activity(self, user_id: str, at: float, event_id: str | None = None) -> None:
        """Count a user_active event and keep the latest activity time (an older one only counts)."""
        claim: list[_Op] = [("Put", self._event_claim(event_id, clock.now()), DuplicateEvent)] if event_id else []
        base = {"TableName": self._table, "Key": _av({"pk": user_id, "sk": "user"})}
        latest = base | {
            "UpdateExpression": "SET kind = :k, last_active_at = :t ADD active_events :one",
            "ConditionExpression": "attribute_not_exists(last_active_at) OR last_active_at <= :t",
            "ExpressionAttributeValues": _av({":k": "user", ":t": timers.to_number(at), ":one": 1}),
        }
        older = base | {"UpdateExpression": "ADD active_events :one", "ExpressionAttributeValues": _av({":one": 1})}
        try:
            self._write([*claim, ("Update", latest, VersionConflict)])
        except VersionConflict:
            self._write([*claim, ("Update", older, VersionConflict)])

    def due(self, shard: int, now: float, limit: int) -> Iterator[timers.TimerKey]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": "due_shard = :s AND due_at <= :now",
            "ExpressionAttributeValues": _av({":s": shard, ":now": math.floor(now)}),
            "Limit": limit,
        }
        while True:
            page = self._client.query(**kwargs)
            for raw in page.get("Items", []):
                item = _py(raw)
                yield timers.TimerKey.from_keys(item["pk"], item["sk"])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- one write path: a single op directly, several in one transaction --------------------

    def _write(self, ops: list[_Op]) -> None:
        if not ops:
            return
        if len(ops) == 1:
            kind, params, on_condition = ops[0]
            call = self._client.put_item if kind == "Put" else self._client.update_item
            try:
                call(**params)
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    raise on_condition() from exc
                raise
            return
        try:
            self._client.transact_write_items(TransactItems=[{kind: params} for kind, params, _ in ops])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            for reason, (_, _, on_condition) in zip(reasons, ops, strict=False):
                if reason.get("Code") == "ConditionalCheckFailed":
                    raise on_condition() from exc
            raise
