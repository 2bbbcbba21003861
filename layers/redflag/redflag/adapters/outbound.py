"""Outgoing HTTP (stdlib): signed webhook POSTs, and Slack's incoming webhooks, with retries that
honour ``Retry-After``. No third-party HTTP client in the layer."""

from __future__ import annotations

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


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``: what X-RedFlag-Signature carries."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


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
    """POSTs red flags to the product, signed so it can tell them from anyone else's."""

    def __init__(self, url: str, secret: Callable[[], bytes], now: Callable[[], float] = time.time) -> None:
        self._url = url
        self._secret = secret
        self._now = now

    def post(self, payload: dict[str, Any]) -> Outcome:
        def headers(body: bytes) -> dict[str, str]:
            return {"X-RedFlag-Signature": signature(self._secret(), int(self._now()), body)}

        return post_json(self._url, payload, headers)
