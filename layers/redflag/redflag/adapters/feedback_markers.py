"""The suppression markers SES feedback writes (``redflag.services.feedback.Markers``), in the timers table.

Same layout as the opt-out markers (``redflag.adapters.markers``): ``pk = suppress#{key}``,
``sk = suppress``, ``kind = suppress``, no TTL. So the alerting path's ``DynamoPeople.suppressed``
finds them with the keys it already asks for, and erasure, which deletes only the user's own
partition, keeps them. They also say why and when (``reason``, ``at``) and which SES feedback wrote
them (``source``, an SES id: no address).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from redflag.adapters import aws
from redflag.adapters import codec as items
from redflag.adapters.markers import KIND_SUPPRESS
from redflag.services.feedback import Marked
from redflag.services.ports import StoreUnavailable


class DynamoFeedbackMarkers:
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
