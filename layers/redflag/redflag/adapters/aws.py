"""One boto3 client per AWS service per process, configured once: short timeouts, the SDK's standard
retry mode, and a connection pool as wide as the concurrency the services use."""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries import standard

CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=64,
)

# What "not now" rather than "never" looks like: first what the SDK's standard retry mode itself
# retries (botocore.retries.standard: its transient and throttling codes, 500/502/503/504, 429), read
# from botocore so a code it learns is retried here too; then the few it leaves out that are passing
# for us. A call that fails with one of them was already retried by the SDK (CONFIG); the caller
# retries the record, never records it as refused.
_SDK_RETRYABLE = standard.OrRetryChecker(
    [standard.TransientRetryableChecker(), standard.ThrottledRetryableChecker(), standard.ThrottlingStatusCodeChecker()]
)
# the SDK's checkers retry 429, 500, 502, 503 and 504 by status; 408 (Request Timeout) is HTTP's own
# "send it again", which botocore only knows by its codes (RequestTimeout, RequestTimeoutException)
TRANSIENT_STATUS = frozenset({408})
TRANSIENT = frozenset(
    {
        "TransactionConflictException",  # DynamoDB: another transaction on the item; retry
        "KMSThrottlingException",  # SNS/SQS on an encrypted topic or queue: KMS throttled
        "KMSThrottling",
        "Throttled",
        "SendingPausedException",  # SES paused the account's sending: held, not refused
    }
)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=CONFIG)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a failed call, or the exception class: never the message."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def http_status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status else None


def is_transient(exc: BaseException) -> bool:
    """Worth trying again later: botocore's standard retry conditions (its transient and throttling
    codes; 429, 500, 502, 503, 504), a 408, or a code in TRANSIENT. Any other service error is a
    refusal. An SDK error without an answer (a connection error, a timeout) is transient."""
    if isinstance(exc, ClientError):
        status = http_status(exc)
        if status in TRANSIENT_STATUS or error_code(exc) in TRANSIENT:
            return True
        answer = SimpleNamespace(status_code=status) if status else None
        context = standard.RetryContext(attempt_number=1, parsed_response=exc.response, http_response=answer)
        return bool(_SDK_RETRYABLE.is_retryable(context))
    return isinstance(exc, BotoCoreError)


_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attributes(item: dict[str, Any]) -> dict[str, Any]:
    """A Python item (numbers as Decimal) as DynamoDB attribute values, for the low-level client."""
    return {k: _serializer.serialize(v) for k, v in item.items()}


def from_attributes(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values as a Python item (numbers come back as Decimal)."""
    return {k: _deserializer.deserialize(v) for k, v in item.items()}
