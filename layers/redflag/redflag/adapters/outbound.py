"""Outgoing HTTP (stdlib): signed webhook POSTs, and Slack's incoming webhooks, with retries that
honour ``Retry-After``. No third-party HTTP client in the layer.

Webhooks are signed the Standard Webhooks way (https://www.standardwebhooks.com, spec 1.0.0), so a
receiver verifies them with a library (``standardwebhooks``, svix) instead of code of its own:

- ``webhook-id``: ``msg_`` and 32 hex digits of SHA-256 of the alert's id, the same for every
  attempt at one alert (never the id itself: it holds user-typed ids, and the spec forbids a ``.``);
- ``webhook-timestamp``: the attempt's Unix time, in seconds;
- ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of ``<id>.<timestamp>.<body>``.

The key: a stored value that begins with ``whsec_`` is a Standard Webhooks secret already (base64
of the key); any other value, such as the template's generated one, is the key itself, as its UTF-8
bytes, and the receiver's secret is ``whsec_`` followed by their base64 (``receiver_secret``). Either
way the key is 24 to 64 bytes, as the specification asks. (The generated value is not read as
base64: whether it is valid base64 would depend on the characters the generator draws, and moto's
draws ``-`` and ``_`` despite ExcludePunctuation; its bytes work whatever they are.)

``X-RedFlag-Signature`` (``t=<t>,v1=<hex HMAC of "<t>.<body>">``, keyed with the stored value's
bytes) is still sent beside them, unchanged, while receivers move over (docs/webhooks.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A POST here is never followed to another URL: urllib would turn a 301/302/303 into a GET to
    wherever ``Location`` points (the signature header with it, the body dropped) and report that
    answer. Refused, the 3xx reaches the caller as the HTTPError it is: a permanent ``Http3xx``."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True)
class Outcome:
    status: int | None  # the last HTTP status; None: no answer
    error: str | None = None  # None: delivered
    transient: bool = False  # worth trying again later (the record is retried)


SECRET_PREFIX = "whsec_"  # noqa: S105  # nosec B105 - the format's prefix, not a secret
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64  # Standard Webhooks: "at least 24 bytes (192 bits, 512 maximum)"


def _text(secret: bytes | str) -> str:
    return (secret.decode() if isinstance(secret, bytes) else secret).strip()


def signing_key(secret: bytes | str) -> bytes:
    """The HMAC key of the stored secret: the base64 after ``whsec_``, else the value's own bytes.
    ValueError (quoting no part of it) unless that is 24 to 64 bytes."""
    text = _text(secret)
    if text.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the webhook secret is not base64 after whsec_") from None
    else:
        key = text.encode()
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"the webhook secret must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
    return key


def receiver_secret(secret: bytes | str) -> str:
    """The secret as a receiver's library takes it: ``whsec_`` and the key in base64."""
    return SECRET_PREFIX + base64.b64encode(signing_key(secret)).decode()


def message_id(alert_id: str) -> str:
    """``webhook-id``: stable per alert, opaque (no user-typed text), ``[a-z0-9_]`` only."""
    return "msg_" + hashlib.sha256(alert_id.encode()).hexdigest()[:32]


def standard_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<msg_id>.<timestamp>.<body>">``: what webhook-signature carries."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """Deprecated: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, keyed with the stored
    secret's bytes as they are: what X-RedFlag-Signature carries."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signed_headers(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: Standard Webhooks', and the deprecated X-RedFlag-Signature."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(signing_key(secret), msg_id, timestamp, body),
        "X-RedFlag-Signature": signature(secret, timestamp, body),
    }


def post_json(
    url: str,
    payload: Any,
    headers: Callable[[bytes], dict[str, str]] | None = None,
    attempts: int = 3,
    timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = 10.0,
) -> Outcome:
    """POST ``payload`` as JSON; retry a 408/429/5xx or a connection error with backoff (0.5 s, 1 s,
    ...), waiting ``Retry-After`` when the server says (up to ``max_wait``). A redirect is never
    followed: it is a permanent failure naming its status (``Http302``)."""
    if not url.startswith(("https://", "http://")):  # the operator's setting: never file: or custom schemes
        raise ValueError("webhook URLs are http(s)")
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    last = Outcome(None, "NoAnswer", transient=True)
    for attempt in range(attempts):
        extra = headers(body) if headers else {}
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "redflag"} | extra,
        )
        wait = 0.5 * 2**attempt
        try:
            with _OPENER.open(request, timeout=timeout) as response:  # nosec B310
                return Outcome(response.status)
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRYABLE:
                return Outcome(exc.code, f"Http{exc.code}")
            last = Outcome(exc.code, f"Http{exc.code}", transient=True)
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            if retry_after and retry_after.strip().isdigit():
                wait = float(retry_after.strip())
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            last = Outcome(None, type(exc).__name__, transient=True)
        if attempt < attempts - 1:
            if wait > max_wait:
                return last  # the server asks for longer than we wait here: the caller retries later
            sleep(wait)
    return last


class WebhookPoster:
    """POSTs red flags to the product, signed so it can tell them from anyone else's (Standard
    Webhooks; each attempt signed at its own time)."""

    def __init__(self, url: str, secret: Callable[[], bytes], now: Callable[[], float] = time.time) -> None:
        self._url = url
        self._secret = secret
        self._now = now

    def post(self, payload: dict[str, Any]) -> Outcome:
        secret = self._secret()
        try:
            signing_key(secret)
        except ValueError:  # the operator stored a secret no receiver's library can take: fix, then replay
            return Outcome(None, "BadWebhookSecret")
        body_id = payload.get("id")
        msg_id = message_id(str(body_id)) if body_id else None

        def headers(body: bytes) -> dict[str, str]:
            return signed_headers(secret, msg_id or message_id(body.decode()), int(self._now()), body)

        return post_json(self._url, payload, headers)
