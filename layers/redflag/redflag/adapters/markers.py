"""The markers: opt-out and suppression markers in the timers table (``redflag.services.users`` writes the
opt-outs, ``redflag.services.feedback`` the suppressions SES reports), and the member markers in the
stats table. Every opt-out and suppression marker has one layout: ``pk = suppress#{key}``,
``sk = suppress``, ``kind = suppress``, no TTL, ``key`` a keyed hash of a user id or an address; so
the alerting path finds them all with the keys it asks for, and erasure, which deletes only the user's
own partition, keeps them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from redflag.adapters import aws
from redflag.adapters import codec as items
from redflag.adapters.dynamodb import DynamoTimerStore
from redflag.adapters.stats_table import user_hash
from redflag.services.feedback import Marked
from redflag.services.ports import StoreUnavailable, VersionConflict

KIND_SUPPRESS = "suppress"


class DynamoSuppressions:
    """Opt-out markers ``suppress#{key}`` / ``suppress``: no TTL, they are kept for good."""

    def __init__(self, store: DynamoTimerStore) -> None:
        self._store = store

    def suppress(self, keys: Sequence[str], at: float) -> None:
        for key in keys:
            item = items.suppression_item_key(key) | {"kind": KIND_SUPPRESS, "suppressed_at": items.number(at)}
            try:
                self._store.put_if_absent(item)
            except VersionConflict:
                continue  # opted out already: the first marker stays as written

    def allow(self, keys: Sequence[str]) -> None:
        self._store.delete_keys([items.suppression_item_key(k) for k in keys])

    def suppressed(self, keys: Sequence[str]) -> bool:
        return bool(self._store.get_items([items.suppression_item_key(k) for k in keys]))


class DynamoMembers:
    """The stats table's ``member#{account}`` / ``user_hash(account, user)`` markers. The stats table
    has the timers table's key schema (pk, sk), so its batched deletes are ``DynamoTimerStore``'s."""

    def __init__(self, stats: DynamoTimerStore) -> None:
        self._stats = stats

    def forget(self, user_id: str, accounts: Sequence[str]) -> int:
        # the member markers, and the retention entries (adapters/stats_table.py) keyed the same way
        keys = [{"pk": f"{p}#{a}", "sk": user_hash(a, user_id)} for a in accounts for p in ("member", "retain")]
        return self._stats.delete_keys(keys) if keys else 0


class DynamoFeedbackMarkers:
    """The suppression markers SES feedback writes (``redflag.services.feedback.Markers``): the opt-out
    markers' layout (so the alerting path finds them with the keys it asks for, and erasure keeps them),
    plus why and when (``reason``, ``at``) and which SES feedback wrote them (``source``, an SES id).
    """

    def __init__(self, table_name: str, client: Any = None) -> None:
        self._table = table_name
        self._client = client or aws.client("dynamodb")

    def mark(self, key: str, reason: str, at: float, source: str) -> Marked:
        """One conditional PutItem; when the marker exists, the refusal hands back the stored one
        (ReturnValuesOnConditionCheckFailure), so no second call tells a retry from a second bounce."""
        item = items.suppression_item_key(key) | {
            "kind": KIND_SUPPRESS,
            "reason": reason,
            "at": items.number(at),
            "source": source,
        }
        try:
            self._client.put_item(
                TableName=self._table,
                Item=aws.to_attributes(item),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            code = aws.error_code(exc)
            if code == "ConditionalCheckFailedException":
                stored = aws.from_attributes(exc.response.get("Item") or {})
                return Marked.REPEATED if stored.get("source") == source else Marked.KEPT
            if aws.is_transient(exc):
                raise StoreUnavailable(code) from None
            raise
        except BotoCoreError as exc:
            raise StoreUnavailable(type(exc).__name__) from None
        return Marked.NEW
