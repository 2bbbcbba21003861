"""One-click unsubscribe (RFC 8058): signed tokens and the hashed suppression markers. Pure.

A token names the user (and a hash of the address the email went to) and when it expires, signed
with HMAC-SHA256 under the stack's secret: ``<payload>.<signature>``, both base64url. Altering any
byte, or presenting it after it expires, fails verification. An opt-out is kept as suppression
markers: keyed HMACs of the user id and of the address, never the id or the address themselves, so
a user who opted out and was then erased is still never emailed again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass


class InvalidToken(Exception):
    """The token is malformed, forged (altered) or expired; the message says which, nothing more."""


@dataclass(frozen=True)
class Subscriber:
    user_id: str
    email_hash: str  # suppression_key(secret, "email", address), or "" when the email had no address


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def suppression_key(secret: bytes, kind: str, value: str) -> str:
    """A marker's key: a keyed hash of ``kind`` (user or email) and the value; not reversible
    without the secret."""
    normal = value.strip().lower() if kind == "email" else value
    return hmac.new(secret, f"suppress|{kind}|{normal}".encode(), hashlib.sha256).hexdigest()[:32]


def sign(secret: bytes, user_id: str, email: str | None, expires_at: int) -> str:
    payload = {"u": user_id, "e": suppression_key(secret, "email", email) if email else "", "x": expires_at}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(secret, f"unsubscribe|{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify(secret: bytes, token: str, now: float) -> Subscriber:
    if not token.isascii():  # a token is base64url and a dot; anything else (a lone surrogate) is malformed
        raise InvalidToken("malformed")
    try:
        body, mac = token.split(".")
        given = _unb64(mac)
    except ValueError:
        raise InvalidToken("malformed") from None
    expected = hmac.new(secret, f"unsubscribe|{body}".encode(), hashlib.sha256).digest()
    # the signature in its one canonical spelling: base64's spare bits make others decode alike
    if not hmac.compare_digest(given, expected) or not hmac.compare_digest(mac, _b64(expected)):
        raise InvalidToken("forged")
    try:
        payload = json.loads(_unb64(body))
        user_id, email_hash, expires_at = str(payload["u"]), str(payload["e"]), int(payload["x"])
    except (ValueError, KeyError, TypeError):
        raise InvalidToken("malformed") from None
    if now > expires_at:
        raise InvalidToken("expired")
    return Subscriber(user_id, email_hash)
