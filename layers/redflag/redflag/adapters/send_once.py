"""Exactly once per alert: claim it before sending, keep its result after (``redflag.services.ports.SendOnce``).
Every channel stands on it: the alerts function's email, CS and webhook sends, and the Slack notifier's
posts.

The records are Powertools idempotency's own layout in the idempotency table (``id``, ``status``
INPROGRESS or COMPLETED, ``expiration`` in seconds, ``in_progress_expiration`` in milliseconds,
``data``: the kept result as JSON), so ``redflag dlq`` and an operator read them as before. Why not
Powertools' ``idempotent_function`` itself: it makes two calls per send (the claim, then the result)
and has no batch form; here the claims of a whole stream batch are one transaction and their results
one BatchWriteItem per 25 (docs/benchmarks.md, "AWS calls per red flag").

- **claim**: a conditional put per alert (``attribute_not_exists(id)``, or a record that expired, or a
  claim that lapsed: ``in_progress_expiration`` past), the claims of a batch in one TransactWriteItems
  per 100 (all or none: a crash in the call leaves no claim). A failed condition hands back the stored
  record (``ReturnValuesOnConditionCheckFailure``): COMPLETED is *done* (sent, or refused for good,
  before), INPROGRESS is *busy* (another attempt is sending it: the record is retried).
- **complete**: the results, as COMPLETED records, in BatchWriteItem calls of 25 (unprocessed ones
  asked again). A result that cannot be written leaves the claim in place: no second send before it
  lapses at the invocation's deadline.
- **release**: a claim whose send failed for now is deleted, so the stream's retry sends.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from redflag.adapters import aws, batches
from redflag.services.ports import Claim, StoreUnavailable

KEEP_SECONDS = 3 * 86400  # how long a result is kept: longer than the stream keeps a record (24 h)
TRANSACT_MAX = 100
COMPLETE_ROUNDS = 4
INPROGRESS, COMPLETED = "INPROGRESS", "COMPLETED"


class DynamoSendOnce:
    def __init__(
        self,
        table_name: str,
        client: Any = None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        prefix: str = "alert",
    ) -> None:
        self._table = table_name
        self._client = client or aws.client("dynamodb")
        self._now = now
        self._sleep = sleep
        self._prefix = prefix

    def record_id(self, alert_id: str) -> str:
        return f"{self._prefix}#{hashlib.sha256(alert_id.encode()).hexdigest()[:40]}"

    # --- claim --------------------------------------------------------------------------------------

    def claim(self, alert_ids: Sequence[str], until: float) -> dict[str, tuple[Claim, dict[str, str] | None]]:
        """One transaction per 100 claims: all of them are taken, or none (a crash mid-call leaves no
        claim behind). A claim whose condition fails cancels the transaction, which says which one and
        hands back what is stored; the others are claimed again in the next."""
        now = self._now()
        wanted = list(dict.fromkeys(alert_ids))
        if len(wanted) == 1:
            return {wanted[0]: self._claim_one(wanted[0], now, until)}
        out: dict[str, tuple[Claim, dict[str, str] | None]] = {}
        for i in range(0, len(wanted), TRANSACT_MAX):
            pending = wanted[i : i + TRANSACT_MAX]
            while pending:
                items = [{"Put": self._claim_put(a, now, until)} for a in pending]
                try:
                    self._client.transact_write_items(TransactItems=items)
                except ClientError as exc:
                    if aws.error_code(exc) != "TransactionCanceledException":
                        raise _unavailable(exc) from None
                    retry = []
                    for alert_id, reason in zip(pending, exc.response.get("CancellationReasons") or [], strict=False):
                        code = reason.get("Code")
                        if code == "ConditionalCheckFailed":
                            out[alert_id] = _stored_claim(reason.get("Item") or {})
                        elif code in (None, "None"):
                            retry.append(alert_id)  # not written: cancelled with the others
                        else:  # a conflict, a throttle: nothing was written
                            raise StoreUnavailable(str(code)) from None
                    if len(retry) == len(pending):
                        raise StoreUnavailable("TransactionCanceled") from None
                    pending = retry
                    continue
                except BotoCoreError as exc:
                    raise StoreUnavailable(type(exc).__name__) from None
                out |= dict.fromkeys(pending, (Claim.NEW, None))
                pending = []
        return out

    def _claim_put(self, alert_id: str, now: float, until: float) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Item": {
                "id": {"S": self.record_id(alert_id)},
                "status": {"S": INPROGRESS},
                "expiration": {"N": str(math.ceil(now + KEEP_SECONDS))},
                "in_progress_expiration": {"N": str(math.floor(until * 1000))},
            },
            "ConditionExpression": "attribute_not_exists(id) OR expiration < :now OR "
            "(#status = :inprogress AND in_progress_expiration < :now_ms)",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":now": {"N": str(math.floor(now))},
                ":now_ms": {"N": str(math.floor(now * 1000))},
                ":inprogress": {"S": INPROGRESS},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _claim_one(self, alert_id: str, now: float, until: float) -> tuple[Claim, dict[str, str] | None]:
        try:
            self._client.put_item(**self._claim_put(alert_id, now, until))
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise _unavailable(exc) from None
            return _stored_claim(exc.response.get("Item") or {})
        except BotoCoreError as exc:
            raise StoreUnavailable(type(exc).__name__) from None
        return Claim.NEW, None

    # --- complete and release: batched ------------------------------------------------------------------

    def complete(self, results: Mapping[str, dict[str, str]]) -> None:
        """Keep the results, trying a few rounds: the messages are sent already, so giving up on the
        bookkeeping early is what would let them be sent twice."""
        for attempt in range(COMPLETE_ROUNDS):
            try:
                self._complete(results)
                return
            except StoreUnavailable:
                if attempt == COMPLETE_ROUNDS - 1:
                    raise
                self._sleep(0.1 * 4**attempt)

    def _complete(self, results: Mapping[str, dict[str, str]]) -> None:
        expiration = str(math.ceil(self._now() + KEEP_SECONDS))
        puts = [
            {
                "PutRequest": {
                    "Item": {
                        "id": {"S": self.record_id(alert_id)},
                        "status": {"S": COMPLETED},
                        "expiration": {"N": expiration},
                        "data": {"S": json.dumps(result, sort_keys=True)},
                    }
                }
            }
            for alert_id, result in results.items()
        ]
        self._batch_write(puts)

    def release(self, alert_ids: Sequence[str]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": {"id": {"S": self.record_id(a)}}}} for a in alert_ids])

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        batches.batch_write(self._call, self._table, requests)

    def _call(self, method: str, **params: Any) -> Any:
        try:
            return getattr(self._client, method)(**params)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc) from None


def _stored_claim(stored: dict[str, Any]) -> tuple[Claim, dict[str, str] | None]:
    """What a claim that could not be taken found: a kept result (done), or another attempt's claim (busy)."""
    if stored.get("status", {}).get("S") == COMPLETED:
        return Claim.DONE, _result(stored)
    return Claim.BUSY, None


def _result(stored: dict[str, Any]) -> dict[str, str] | None:
    try:
        kept = json.loads(stored.get("data", {}).get("S") or "null")
    except ValueError:
        return None
    return kept if isinstance(kept, dict) else None


def _unavailable(exc: BaseException) -> StoreUnavailable:
    """Any failure of the idempotency store: nothing is assumed claimed or kept (the caller retries)."""
    return StoreUnavailable(aws.error_code(exc))
