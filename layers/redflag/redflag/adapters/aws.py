"""One boto3 client per AWS service per process, configured once: short timeouts, the SDK's standard
retry mode, and a connection pool as wide as the concurrency the services use."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
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
    return boto3.client(service, config=CONFIG)  # type: ignore[call-overload]


def error_code(exc: BaseException) -> str:
    """The AWS error code of a failed call, or the exception class: never the message."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        return error_code(exc) in TRANSIENT
    return isinstance(exc, BotoCoreError)  # connection errors, timeouts
