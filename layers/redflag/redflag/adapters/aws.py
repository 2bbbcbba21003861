"""One boto3 client per AWS service per process, configured once: short timeouts, the SDK's standard
retry mode, and a connection pool as wide as the concurrency the services use."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=64,
)

# error codes that mean "not now" rather than "never": retried by the SDK, then by us or by the caller
TRANSIENT = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "Throttled",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "TransactionConflictException",
        "InternalServerError",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "KMSThrottlingException",
        "KMSThrottling",
        "SendingPausedException",
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


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        return error_code(exc) in TRANSIENT
    return isinstance(exc, BotoCoreError)  # connection errors, timeouts


_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attributes(item: dict[str, Any]) -> dict[str, Any]:
    """A Python item (numbers as Decimal) as DynamoDB attribute values, for the low-level client."""
    return {k: _serializer.serialize(v) for k, v in item.items()}


def from_attributes(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values as a Python item (numbers come back as Decimal)."""
    return {k: _deserializer.deserialize(v) for k, v in item.items()}
