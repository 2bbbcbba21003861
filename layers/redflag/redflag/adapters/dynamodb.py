"""The timers table: the one place that reads or writes timers and activity records."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, cast

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from redflag.adapters import aws, batches
from redflag.adapters import codec as items
from redflag.core.timers import DeferredKey, TimerKey, TimerState
from redflag.kinds.base import Kind
from redflag.kinds.usage_drop import AccountFlag
from redflag.services.ports import (
    DuePage,
    DueRef,
    FlagResult,
    Record,
    RecordKey,
    StoreUnavailable,
    VersionConflict,
)

DUE_INDEX = "due-index"
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

    def load(self, keys: Sequence[RecordKey], consistent: bool = True) -> dict[RecordKey, Record]:
        """One BatchGetItem per 100 keys (strongly consistent unless ``consistent`` is False: then half
        the read units); keys DynamoDB leaves unprocessed are asked again."""
        wanted = {tuple(items.key_of(k).values()): k for k in keys}
        found: dict[RecordKey, Record] = {}
        asked = [_av(items.key_of(k)) for k in wanted.values()]
        for raw in batches.batch_get(self._call, self._table, asked, consistent):
            item = _py(raw)
            record = items.record_of(item)
            if record is not None:
                found[wanted[(item["pk"], item["sk"])]] = record
        return found

    def save(self, record: Record, expected_version: int) -> None:
        """``record`` written as version ``expected_version + 1`` if the stored one is still
        ``expected_version`` (0: absent); whatever version the record holds is not what is written."""
        item = items.to_item(record, self._shards) | {"version": expected_version + 1}
        put: dict[str, Any] = {"TableName": self._table, "Item": _av(item)}
        if expected_version == 0:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "version = :v"
            put["ExpressionAttributeValues"] = {":v": {"N": str(expected_version)}}
        self._call("put_item", **put)

    def _due_query(self, shard: int, until: float, limit: int) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": "due_shard = :s AND due_at <= :until",
            "ExpressionAttributeValues": {":s": {"N": str(shard)}, ":until": {"N": str(math.floor(until))}},
            "Limit": limit,
        }

    def due_page(self, shard: int, until: float, limit: int, after: object | None = None) -> DuePage:
        """One Query of the sparse due index (``KEYS_ONLY``): refs as ``(pk, sk)`` strings, read straight
        from the wire format; the cursor is DynamoDB's ``LastEvaluatedKey``."""
        kwargs = self._due_query(shard, until, limit)
        if after is not None:
            kwargs["ExclusiveStartKey"] = after
        page = self._call("query", **kwargs)
        entries: list[tuple[DueRef, int]] = []
        for raw in page.get("Items", []):
            pk, sk = raw["pk"]["S"], raw["sk"]["S"]
            if isinstance(items.record_key(pk, sk), TimerKey | DeferredKey):  # timers, and emails kept for quiet hours
                entries.append(((pk, sk), int(raw["due_at"]["N"])))
        return DuePage(entries, page.get("LastEvaluatedKey"))

    def due_count(self, shard: int, until: float, limit: int) -> int:
        """The same Query with ``Select=COUNT``: billed alike, but the answer holds no items to parse."""
        return int(self._call("query", **self._due_query(shard, until, limit), Select="COUNT").get("Count", 0))

    def due(self, shard: int, until: float, limit: int) -> Iterator[tuple[TimerKey | DeferredKey, int]]:
        """Every due entry of one shard as keys, ``limit`` a page (tools and tests; the sweeper holds
        a page of refs at a time with ``due_page``)."""
        after = None
        while True:
            page = self.due_page(shard, until, limit, after)
            for (pk, sk), due_at in page.entries:
                yield cast(TimerKey | DeferredKey, items.record_key(pk, sk)), due_at
            if page.cursor is None:
                return
            after = page.cursor

    # --- plain items of the same table (account flags, the alerting path's per-user state) ---------

    def get_items(self, keys: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Items by key, read consistently in BatchGetItem calls of 100 keys (duplicates asked once,
        unprocessed keys asked again): (pk, sk) -> item."""
        asked = [_av(k) for k in {(k["pk"], k["sk"]): k for k in keys}.values()]
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for raw in batches.batch_get(self._call, self._table, asked):
            item = _py(raw)
            found[(item["pk"], item["sk"])] = item
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
        batches.batch_write(self._call, self._table, [{"DeleteRequest": {"Key": _av(k)}} for k in keys])
        return len(keys)

    def query_partition(self, pk: str) -> list[dict[str, Any]]:
        """Every item of one partition key: one query (paged), no scan."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _av({":pk": pk}),
            "ConsistentRead": True,
        }
        return [_py(raw) for raw in batches.query(self._call, **kwargs)]

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

    def put_flag(self, kind: Kind[Any], subject: BaseModel, retention_seconds: int, now: float) -> bool:
        """Write a red flag of a kind that keeps no timer once (``Kind.flag_ref``): False when it exists."""
        group, ref = kind.flag_ref(subject)
        item = items.flag_item(kind.name, group, ref, subject, math.ceil(now + retention_seconds))
        try:
            self.put_if_absent(item)
        except VersionConflict:
            return False
        return True

    def flags(self, group: str, latest: int | None = None) -> list[tuple[str, BaseModel]]:
        """The red flags written in one group, by id (``latest``: only the last ones, newest first):
        one query, no scan."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _av({":pk": items.flag_key(group, "")["pk"]}),
            "ConsistentRead": True,
        }
        if latest is not None:
            kwargs |= {"ScanIndexForward": False, "Limit": latest}
        found: list[tuple[str, BaseModel]] = []
        while True:
            page = self._call("query", **kwargs)
            found += [f for raw in page.get("Items", []) if (f := items.flag_of(_py(raw))) is not None]
            if latest is not None or "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def flag_due_many(self, refs: Sequence[DueRef], now: float, expires_at: int) -> list[FlagResult]:
        """``timers.expire`` for each ref, no read: open and due by ``now`` -> flagged, off the index.
        One PartiQL ``UPDATE ... WHERE`` per ref (the ``WHERE`` is the condition, per statement), 25 to a
        ``BatchExecuteStatement``; each statement's outcome is its own. Raises StoreUnavailable when a
        whole call hit a passing fault (after the SDK's retries)."""
        now_n, exp_n = {"N": str(items.number(now))}, {"N": str(expires_at)}
        flagged, opened = {"S": TimerState.FLAGGED.value}, {"S": TimerState.OPEN.value}
        statement = FLAG_STATEMENT.format(table=self._table.replace('"', '""'))
        out: list[FlagResult] = []
        for i in range(0, len(refs), FLAG_BATCH):
            batch = [
                {"Statement": statement, "Parameters": [flagged, now_n, exp_n, _ONE, *_key(pk, sk), opened, now_n]}
                for pk, sk in refs[i : i + FLAG_BATCH]
            ]
            answer = self._call("batch_execute_statement", Statements=batch)
            out += [_flag_result(r) for r in answer.get("Responses", [])]
        if len(out) != len(refs):
            raise StoreUnavailable("BatchExecuteStatementResponses")  # never seen: a short answer is not trusted
        return out


FLAG_BATCH = 25  # statements a BatchExecuteStatement takes
# timers.expire as one conditional update (the WHERE beyond the key is the condition); every name quoted
FLAG_STATEMENT = (
    'UPDATE "{table}" SET "state" = ? SET "flagged_at" = ? SET "expires_at" = ? SET "version" = "version" + ? '
    'REMOVE "due_shard" WHERE "pk" = ? AND "sk" = ? AND "state" = ? AND "due_at" <= ?'
)
_ONE = {"N": "1"}
# a statement's error codes (BatchStatementErrorCodeEnum) that mean "not now": the next read retries
_STATEMENT_RETRY = frozenset(
    {
        "ProvisionedThroughputExceeded",
        "ThrottlingError",
        "RequestLimitExceeded",
        "TransactionConflict",
        "InternalServerError",
    }
)


def _key(pk: str, sk: str) -> tuple[dict[str, str], dict[str, str]]:
    return {"S": pk}, {"S": sk}


def _flag_result(response: dict[str, Any]) -> FlagResult:
    error = response.get("Error")
    if not error:
        return FlagResult.FLAGGED
    code = error.get("Code", "")
    if code == "ConditionalCheckFailed":  # not open, not due, or gone: someone else got there first
        return FlagResult.LOST
    return FlagResult.RETRY if code in _STATEMENT_RETRY else FlagResult.REJECTED
