"""The timers table: the one place that reads or writes timers and activity records."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from redflag.adapters import aws
from redflag.adapters import codec as items
from redflag.core.timers import DeferredKey, TimerKey, TimerState
from redflag.kinds.usage_drop import AccountFlag
from redflag.services.ports import Record, RecordKey, StoreUnavailable, VersionConflict

DUE_INDEX = "due-index"
BATCH_GET_MAX = 100
_av, _py = aws.to_attributes, aws.from_attributes


class DynamoTimerStore:
    def __init__(self, table_name: str, shards: int, client: Any = None) -> None:
        self._table = table_name
        self._shards = shards
        self._client = client or aws.client("dynamodb")

    def _call(self, method: str, **params: Any) -> Any:
        try:
            return getattr(self._client, method)(**params)
        except ClientError as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                raise VersionConflict() from None
            if aws.is_transient(exc):
                raise StoreUnavailable(aws.error_code(exc)) from None
            raise
        except BotoCoreError as exc:
            raise StoreUnavailable(type(exc).__name__) from None

    def load(self, keys: Sequence[RecordKey]) -> dict[RecordKey, Record]:
        """One consistent BatchGetItem per 100 keys; keys DynamoDB leaves unprocessed are asked again."""
        wanted = {tuple(items.key_of(k).values()): k for k in keys}
        found: dict[RecordKey, Record] = {}
        pending = [items.key_of(k) for k in wanted.values()]
        backoffs = 0
        while pending:
            batch, pending = pending[:BATCH_GET_MAX], pending[BATCH_GET_MAX:]
            out = self._call(
                "batch_get_item", RequestItems={self._table: {"Keys": [_av(k) for k in batch], "ConsistentRead": True}}
            )
            for raw in out.get("Responses", {}).get(self._table, []):
                item = _py(raw)
                record = items.record_of(item)
                if record is not None:
                    found[wanted[(item["pk"], item["sk"])]] = record
            unprocessed = out.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
            if unprocessed:
                backoffs += 1
                if backoffs > 5:
                    raise StoreUnavailable("UnprocessedKeys")
                time.sleep(min(0.05 * 2**backoffs, 1.0))
                pending = [_py(k) for k in unprocessed] + pending
        return found

    def save(self, record: Record, expected_version: int) -> None:
        item = items.to_item(record.model_copy(update={"version": expected_version + 1}), self._shards)
        put: dict[str, Any] = {"TableName": self._table, "Item": _av(item)}
        if expected_version == 0:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "version = :v"
            put["ExpressionAttributeValues"] = _av({":v": expected_version})
        self._call("put_item", **put)

    def due(self, shard: int, until: float, limit: int) -> Iterator[tuple[TimerKey | DeferredKey, int]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": "due_shard = :s AND due_at <= :until",
            "ExpressionAttributeValues": _av({":s": shard, ":until": math.floor(until)}),
            "Limit": limit,
        }
        while True:
            page = self._call("query", **kwargs)
            for raw in page.get("Items", []):
                item = _py(raw)
                key = items.record_key(item["pk"], item["sk"])
                if isinstance(key, TimerKey | DeferredKey):  # timers, and emails kept for quiet hours
                    yield key, int(item["due_at"])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- plain items of the same table (account flags, the alerting path's per-user state) ---------

    def get_items(self, keys: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Items by key, read consistently in BatchGetItem calls of 100 keys (duplicates asked once,
        unprocessed keys asked again): (pk, sk) -> item."""
        pending = list({(k["pk"], k["sk"]): k for k in keys}.values())
        found: dict[tuple[str, str], dict[str, Any]] = {}
        backoffs = 0
        while pending:
            batch, pending = pending[:BATCH_GET_MAX], pending[BATCH_GET_MAX:]
            out = self._call(
                "batch_get_item", RequestItems={self._table: {"Keys": [_av(k) for k in batch], "ConsistentRead": True}}
            )
            for raw in out.get("Responses", {}).get(self._table, []):
                item = _py(raw)
                found[(item["pk"], item["sk"])] = item
            unprocessed = out.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
            if unprocessed:
                backoffs += 1
                if backoffs > 5:
                    raise StoreUnavailable("UnprocessedKeys")
                time.sleep(min(0.05 * 2**backoffs, 1.0))
                pending = [_py(k) for k in unprocessed] + pending
        return found

    def put_if_absent(self, item: dict[str, Any]) -> None:
        """Raises VersionConflict when the key exists."""
        self._call("put_item", TableName=self._table, Item=_av(item), ConditionExpression="attribute_not_exists(pk)")

    def put_versioned(self, item: dict[str, Any], expected_version: int) -> None:
        """``item`` (carrying its new version) if the stored one is still ``expected_version`` (0: absent)."""
        if expected_version == 0:
            self.put_if_absent(item)
            return
        self._call(
            "put_item",
            TableName=self._table,
            Item=_av(item),
            ConditionExpression="version = :v",
            ExpressionAttributeValues=_av({":v": expected_version}),
        )

    def delete_keys(self, keys: list[dict[str, str]]) -> int:
        """Delete items by key, 25 a BatchWriteItem (unprocessed ones asked again)."""
        pending = [{"DeleteRequest": {"Key": _av(k)}} for k in keys]
        backoffs = 0
        while pending:
            batch, pending = pending[:25], pending[25:]
            out = self._call("batch_write_item", RequestItems={self._table: batch})
            unprocessed = out.get("UnprocessedItems", {}).get(self._table, [])
            if unprocessed:
                backoffs += 1
                if backoffs > 5:
                    raise StoreUnavailable("UnprocessedItems")
                time.sleep(min(0.05 * 2**backoffs, 1.0))
                pending = unprocessed + pending
        return len(keys)

    def query_partition(self, pk: str) -> list[dict[str, Any]]:
        """Every item of one partition key: one query (paged), no scan."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _av({":pk": pk}),
            "ConsistentRead": True,
        }
        found: list[dict[str, Any]] = []
        while True:
            page = self._call("query", **kwargs)
            found += [_py(raw) for raw in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def put_account_flag(self, flag: AccountFlag, retention_seconds: int) -> bool:
        """Write a usage drop once: False when this rule, account and week already has one."""
        item = items.account_flag_item(flag, retention_seconds)
        try:
            self._call(
                "put_item", TableName=self._table, Item=_av(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except VersionConflict:
            return False
        return True

    def flag_due(self, key: TimerKey | DeferredKey, now: float, expires_at: int) -> bool:
        """``timers.expire`` as one UpdateItem, no read: open and due by ``now`` -> flagged, off the index."""
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key=_av(items.key_of(key)),
                UpdateExpression="SET #s = :flagged, flagged_at = :now, expires_at = :exp, version = version + :one "
                "REMOVE due_shard",
                ConditionExpression="#s = :open AND due_at <= :now",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues=_av(
                    {
                        ":flagged": TimerState.FLAGGED.value,
                        ":open": TimerState.OPEN.value,
                        ":now": items.number(now),
                        ":exp": expires_at,
                        ":one": 1,
                    }
                ),
            )
        except VersionConflict:
            return False
        return True
