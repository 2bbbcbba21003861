"""The HTTP edge of the events API, in one place: which bodies are read, and every error's answer.

- Content type: ``application/json`` or any ``application/*+json``, matched case-insensitively
  (media types are), with any parameters; no content type is read as JSON. Anything else is a
  **415** before its body is looked at, so nothing of it is echoed.
- Body: parsed by ``safe_json``: nesting deeper than ``MAX_JSON_DEPTH`` or a number longer than
  ``MAX_NUMBER_DIGITS`` digits is "not valid JSON" (**400**), not a crash; a body that held bytes
  that are not UTF-8 (U+FFFD where API Gateway replaced them) is "not valid UTF-8" (**400**).
- A JSON body that breaks the envelope (no ``events``, 0 or more than 100 events; an array or any
  other JSON that is not an object: ``object_json``) is a **422** naming the field. Problems with
  one event are never raised: they come back as that event's ``rejected`` result, next to its
  accepted neighbours.
- Every error body is bounded: the first ``MAX_LISTED_ERRORS`` problems, ``error_count`` when there
  were more, the message clipped (a 6 MB answer is a 502 on AWS: Lambda's response limit).
- Anything unexpected is a **500** that says nothing was applied and the request can be retried;
  it is logged with its class only (a message can quote the body).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from redflag.adapters.observability import logger
from redflag.core.events import MAX_LISTED_ERRORS, describe_errors, field_errors

MAX_JSON_DEPTH = 32
MAX_NUMBER_DIGITS = 40
LIMIT_WORDS = ("nested more than", "a number", "NaN", "Infinity", "-Infinity")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number longer than {MAX_NUMBER_DIGITS} digits")
    return int(text)


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("a number out of range")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


NOT_UTF8 = "bytes that are not UTF-8 arrive as U+FFFD"


def safe_json(text: str) -> Any:
    """``json.loads`` that refuses, as a JSONDecodeError (-> 400), what would crash or stall the
    handler: nesting deeper than MAX_JSON_DEPTH, huge integers, NaN/Infinity; and a body that held
    bytes that are not UTF-8. API Gateway (REST, a text body) hands those over replaced by U+FFFD, so
    a raw U+FFFD in the text is refused rather than stored as if sent (a client that means the
    character writes it escaped, ``\\ufffd``, which reads back as a value like any other)."""
    if "\ufffd" in text:
        raise json.JSONDecodeError(NOT_UTF8, "", text.index("\ufffd"))
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_float=_finite, parse_constant=_no_constants)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError(f"nested more than {MAX_JSON_DEPTH} levels deep", "", 0) from None
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc), "", 0) from None
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise json.JSONDecodeError(f"nested more than {MAX_JSON_DEPTH} levels deep", "", 0)
    return value


class NotAnObject(ValueError):
    """The body is JSON but not an object (an array, a string, a number, null): a shape no route of these
    APIs defines. Refused whole with a **422** naming it, never read in part (Powertools would hand a
    model field the first item of an array and drop the rest)."""


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "null"


def object_json(hint: str) -> Callable[[str], Any]:
    """A ``json_body_deserializer``: ``safe_json`` that takes a JSON object only, else NotAnObject
    (``a JSON array; <hint>``)."""

    def parse(text: str) -> Any:
        value = safe_json(text)
        if not isinstance(value, dict):
            raise NotAnObject(f"a JSON {_kind(value)}; {hint}")
        return value

    return parse


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


NOT_JSON = "application/x-redflag-not-json"  # a type Powertools parses as nothing: it answers 415


def normalize_content_type(event: dict[str, Any]) -> bool:
    """One media type for Powertools to compare (it compares case-sensitively, by prefix): every
    Content-Type value of the proxy event (both header maps) becomes ``application/json`` when all of
    them are JSON, else ``NOT_JSON``, so a form, a multipart body or ``application/jsonx`` is never
    parsed (and never echoed) but refused with a 415. False when the body is not JSON."""
    headers = event.get("headers") or {}
    multi = event.get("multiValueHeaders") or {}
    names = {k for k in [*headers, *multi] if k.lower() == "content-type"}
    values = [headers[k] for k in names if k in headers] + [v for k in names if k in multi for v in (multi[k] or [])]
    ok = all(is_json(v) for v in values)
    for k in names:
        if k in headers:
            headers[k] = "application/json" if ok else NOT_JSON
        if k in multi:
            multi[k] = ["application/json" if ok else NOT_JSON]
    return ok


MAX_MESSAGE_CHARS = 4000  # an error body stays a few KB, whatever the request (core.events bounds the lists)


def error(status: int, message: str, errors: list[dict] | None = None, count: int | None = None) -> Response:
    """An error body, bounded: the message clipped, the first MAX_LISTED_ERRORS problems listed and
    ``error_count`` when there were more (``count``: how many there were, when ``errors`` is a slice)."""
    count = max(count or 0, len(errors or ()))
    body: dict[str, Any] = {"message": message if len(message) <= MAX_MESSAGE_CHARS else message[:3999] + "…"}
    if errors:
        body["errors"] = errors[:MAX_LISTED_ERRORS]
    if count > MAX_LISTED_ERRORS:
        body["error_count"] = count
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


UNSUPPORTED = "content-type: send application/json"


def invalid_request(exc: RequestValidationError, content_type: str | None) -> Response:
    """The answer to a request Powertools' validation refused: 415 for a form it parsed (never echoed),
    400 for a body that is not JSON (naming our limit, if one was hit), else 422 naming the fields."""
    if not is_json(content_type):  # a form was parsed: never echo it
        return error(415, UNSUPPORTED)
    errors = list(exc.errors())
    bad_json = [e for e in errors if e.get("type") == "json_invalid"]
    if bad_json:
        why = str((bad_json[0].get("ctx") or {}).get("error") or "")
        if why == NOT_UTF8:
            return error(400, f"body: not valid UTF-8 ({NOT_UTF8})")
        limit = why if why.startswith(LIMIT_WORDS) else None  # our limits are named; json's own words are not
        return error(400, f"body: not valid JSON ({limit})" if limit else "body: not valid JSON")
    return error(422, describe_errors(errors), field_errors(errors), len(errors))


def not_an_object(exc: NotAnObject) -> Response:
    return error(422, f"body: {exc}", [{"field": "body", "message": str(exc)}])


def register_error_handlers(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported(_exc: RequestUnsupportedContentType) -> Response:
        return error(415, UNSUPPORTED)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response:
        return invalid_request(exc, app.current_event.headers.get("content-type"))

    @app.exception_handler(NotAnObject)
    def _not_an_object(exc: NotAnObject) -> Response:
        return not_an_object(exc)

    @app.not_found
    def _not_found(_exc: Exception) -> Response:
        return error(404, "not found: POST /v1/events is the only route")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if not is_json(app.current_event.headers.get("content-type")):
            return error(415, UNSUPPORTED)
        if isinstance(exc, binascii.Error | UnicodeDecodeError):  # isBase64Encoded with a bad body
            return error(400, "body: not valid base64-encoded UTF-8")
        logger.error("unhandled error", extra={"error": type(exc).__name__})
        return error(500, "internal error; nothing was applied, the request can be sent again")
