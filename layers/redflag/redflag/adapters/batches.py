"""DynamoDB's batched and paged reads and writes, written once for every adapter of a table:
BatchGetItem 100 keys a call and BatchWriteItem 25 requests a call (what comes back unprocessed is
asked again first, with exponential backoff, at most 5 times before ``StoreUnavailable``), and Query
page after page. ``call`` is the adapter's own client call (method name and parameters), so each
adapter keeps its own translation of errors. Items come and go as attribute values."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from redflag.services.ports import StoreUnavailable

Call = Callable[..., Any]
BATCH_GET_MAX = 100  # keys a BatchGetItem takes
BATCH_WRITE_MAX = 25  # requests a BatchWriteItem takes
MAX_BACKOFFS = 5


def _backoff(backoffs: int, what: str) -> int:
    backoffs += 1
    if backoffs > MAX_BACKOFFS:
        raise StoreUnavailable(what)
    time.sleep(min(0.05 * 2**backoffs, 1.0))
    return backoffs


def batch_get(
    call: Call, table: str, keys: Sequence[dict[str, Any]], consistent: bool = True
) -> Iterator[dict[str, Any]]:
    """The items (attribute values) found for ``keys`` (attribute values; each asked once as given)."""
    pending, backoffs = list(keys), 0
    while pending:
        batch, pending = pending[:BATCH_GET_MAX], pending[BATCH_GET_MAX:]
        out = call("batch_get_item", RequestItems={table: {"Keys": batch, "ConsistentRead": consistent}})
        yield from out.get("Responses", {}).get(table, [])
        unprocessed = out.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        if unprocessed:
            backoffs = _backoff(backoffs, "UnprocessedKeys")
            pending = unprocessed + pending


def batch_write(call: Call, table: str, requests: Sequence[dict[str, Any]]) -> None:
    """Every PutRequest/DeleteRequest of ``requests`` applied (none conditional: BatchWriteItem's rule)."""
    pending, backoffs = list(requests), 0
    while pending:
        batch, pending = pending[:BATCH_WRITE_MAX], pending[BATCH_WRITE_MAX:]
        out = call("batch_write_item", RequestItems={table: batch})
        unprocessed = out.get("UnprocessedItems", {}).get(table, [])
        if unprocessed:
            backoffs = _backoff(backoffs, "UnprocessedItems")
            pending = unprocessed + pending


def query(call: Call, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item a Query finds (attribute values), page after page."""
    while True:
        page = call("query", **params)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        params = params | {"ExclusiveStartKey": page["LastEvaluatedKey"]}
