"""One boto3 client per AWS service per process, configured once: short timeouts, the SDK's standard
retry mode, and a connection pool as wide as the concurrency the services use."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from functools import cache
from types import SimpleNamespace
from typing import Any

import boto3
from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries import standard

CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=64,
    # every request is built by this code, from validated values: botocore's own check of each one
    # against the service model repeats that at a tenth of a call's CPU (AWS still refuses a bad one)
    parameter_validation=False,
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
    built = boto3.client(service, config=CONFIG)
    if service == "dynamodb":
        for operation in ITEMS_AS_SENT:
            built.meta.events.register(f"before-parse.dynamodb.{operation}", items_as_sent)
    return built


# Where a DynamoDB answer holds items: botocore's parser walks every attribute value of every item
# through the AttributeValue shape (ten members looked up per value), and gives back what the JSON
# already was, but for binary values (base64 text made bytes). Without a binary value anywhere in the
# answer, the items are taken from the JSON as they came (tests/unit/test_wire_format.py holds them to
# botocore's parse); the rest of the answer is parsed as always. Measured: docs/benchmarks.md, ingest CPU.
ITEMS_AS_SENT = {"BatchGetItem": "Responses", "GetItem": "Item", "Query": "Items", "Scan": "Items"}
# a B or BS type (or a map key "B", or an escaped ASCII letter, as AWS never writes one: parsed as always)
_BINARY = re.compile(rb'"BS?"\s*:|\\u00[4-7]')


def items_as_sent(operation_model: Any, response_dict: dict[str, Any], customized_response_dict: dict[str, Any],
                  **_: Any) -> None:  # fmt: skip
    """botocore's ``before-parse`` event for the operations of ``ITEMS_AS_SENT``."""
    body = response_dict.get("body")
    if response_dict.get("status_code") != 200 or not isinstance(body, bytes) or _BINARY.search(body):
        return
    key = ITEMS_AS_SENT.get(operation_model.name)
    if key is None:
        return
    data = json.loads(body)
    if not isinstance(data, dict) or key not in data:
        return
    customized_response_dict[key] = data.pop(key)
    response_dict["body"] = json.dumps(data).encode()


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


# --- the DynamoDB wire format --------------------------------------------------------------------
# Written and read here with boto3's own rules and answers (tests/unit/test_wire_format.py holds both
# to boto3's TypeSerializer/TypeDeserializer over generated values), the common types on a direct
# path: boto3 walks every value through a chain of isinstance checks and getattr dispatch, the largest
# cost of encoding a timer after botocore itself (measured in docs/benchmarks.md, ingest CPU). The
# rarer types (sets, bytes, subclasses) and anything malformed go to boto3.

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def attribute(obj: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute value, exactly as ``TypeSerializer().serialize``."""
    kind = type(obj)
    if kind is str:
        return {"S": obj}
    if kind is int or kind is Decimal:
        number = str(DYNAMODB_CONTEXT.create_decimal(obj))  # boto3's _serialize_n: 38 digits, or it raises
        if number in ("Infinity", "NaN"):
            raise TypeError("Infinity and NaN not supported")
        return {"N": number}
    if kind is dict:
        return {"M": {k: attribute(v) for k, v in obj.items()}}
    if kind is bool:
        return {"BOOL": obj}
    if kind is list or kind is tuple:
        return {"L": [attribute(v) for v in obj]}
    if obj is None:
        return {"NULL": True}
    return _serializer.serialize(obj)


def value(av: dict[str, Any]) -> Any:
    """One attribute value as Python (numbers as Decimal), exactly as ``TypeDeserializer().deserialize``."""
    if len(av) == 1:
        if "S" in av:
            return av["S"]
        if "N" in av:
            return DYNAMODB_CONTEXT.create_decimal(av["N"])
        if "M" in av:
            return {k: value(v) for k, v in av["M"].items()}
        if "BOOL" in av:
            return av["BOOL"]
        if "L" in av:
            return [value(v) for v in av["L"]]
        if "NULL" in av:
            return None
    return _deserializer.deserialize(av)


def to_attributes(item: dict[str, Any]) -> dict[str, Any]:
    """A Python item (numbers as Decimal or int) as DynamoDB attribute values, for the low-level client."""
    return {k: attribute(v) for k, v in item.items()}


def from_attributes(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values as a Python item (numbers come back as Decimal)."""
    return {k: value(v) for k, v in item.items()}
