"""The HTTP edge of the tracking API (``functions/tracking_api``): bodies, write keys, every error's answer.

- **Body**: JSON (any case, any ``application/*+json``; anything else is a 415, never read). A body
  whose bytes are gzip (``Content-Encoding: gzip``, as the SDKs send it; API Gateway hands a binary
  body over base64-encoded, ``isBase64Encoded``) is decompressed first, never past the route's limit:
  500 KB for ``/v1/batch`` and ``/v1/webhook``, 32 KB for a single call's route (the Spec's). A body
  over it is a **400** saying so, as Segment answers.
- **Write key**: the Basic auth username (``Authorization: Basic base64(writeKey:)``), or ``writeKey``
  in the body; missing or not one of the keys: **401**, before anything is applied.
- **Errors**: ``{"code": ..., "message": ...}``, what the SDKs read (a body without ``code`` made older
  SDKs retry a 4xx forever). A message never quotes the body or a key.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from redflag.core.tracking import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES

GZIP_MAGIC = b"\x1f\x8b"
BATCH_ROUTES = ("/v1/batch", "/v1/webhook")


class Unauthorized(Exception):
    """No write key, or not one of the keys (or an unsigned or altered webhook body)."""


class BodyProblem(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def limit_of(path: str) -> int:
    return MAX_BATCH_BYTES if path.rstrip("/").endswith(BATCH_ROUTES) else MAX_MESSAGE_BYTES


def header(event: dict[str, Any], name: str) -> str | None:
    """A request header, whatever its case (API Gateway passes names as the client wrote them)."""
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == wanted and value is not None:
            return str(value)
    for key, values in (event.get("multiValueHeaders") or {}).items():
        if key.lower() == wanted and values:
            return str(values[-1])
    return None


def _gunzip(data: bytes, limit: int) -> bytes:
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(data, limit + 1)
    except zlib.error:
        raise BodyProblem("body: not valid gzip") from None
    if len(out) > limit or inflate.unconsumed_tail:
        raise BodyProblem(f"body: more than {limit} bytes once decompressed; the limit is {limit // 1024} KB")
    return out


def body_bytes(event: dict[str, Any]) -> bytes:
    """The request body as the client sent it (base64 undone), before any decompression."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            raise BodyProblem("body: not valid base64") from None
    return body.encode("utf-8", errors="surrogatepass") if isinstance(body, str) else bytes(body)


def prepare(event: dict[str, Any]) -> bytes:
    """The body as JSON text in the event (decompressed when it is gzip), within the route's limit.
    Returns the raw bytes received (what a webhook destination signed). Raises BodyProblem."""
    raw = body_bytes(event)
    limit = limit_of(str(event.get("path") or ""))
    data = _gunzip(raw, limit) if raw.startswith(GZIP_MAGIC) else raw
    if len(data) > limit:
        raise BodyProblem(f"body: {len(data)} bytes; the limit is {limit // 1024} KB ({limit} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyProblem("body: not UTF-8 JSON") from None
    event["body"] = text
    event["isBase64Encoded"] = False
    return raw


def basic_key(event: dict[str, Any]) -> str | None:
    """The write key of a Basic ``Authorization`` header (its username; the password is ignored), or None."""
    value = header(event, "authorization")
    if not value or value[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return ""  # present but unreadable: a wrong key
    return decoded.split(":", 1)[0]


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"code": code, "message": message},
        headers=headers,
    )


def proxy_error(status: int, code: str, message: str) -> dict[str, Any]:
    """An answer before the resolver runs (a body it cannot be handed), in API Gateway's proxy shape."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps({"code": code, "message": message}),
        "isBase64Encoded": False,
    }
