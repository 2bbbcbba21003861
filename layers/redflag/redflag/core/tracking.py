"""The Segment Spec, as the tracking API reads it (pure pydantic and the standard library, no AWS).

The tracking API (``/v1/batch``, ``/v1/track``, ``/v1/identify``, ``/v1/group``, ``/v1/page``,
``/v1/screen``, ``/v1/alias``, and ``/v1/webhook`` for Segment's and RudderStack's webhook
destinations) takes the messages every Segment-compatible SDK sends. What each field means here:

- ``userId`` is the user (Red Flag's ``user_id``). A message with an ``anonymousId`` only is answered
  ``ignored``: Red Flag watches identified users (it has nobody to email, and nothing to merge an
  anonymous history into, as ``alias`` would need: ``alias`` is answered ``ignored`` too).
- ``messageId`` is the event id: a message sent again (an SDK's retry, a replayed batch) is applied
  once, as ``event_id`` is on ``/v1/events``.
- ``timestamp`` is when it happened, corrected for the device's clock skew as the Spec does it:
  ``receivedAt - (sentAt - timestamp)`` (``sentAt`` from the message or the batch). Without
  ``sentAt`` the ``timestamp`` is taken as it is; without either, the time received. Messages from
  Segment's or RudderStack's cloud (the webhook route) were corrected there: their ``timestamp`` is
  taken as it is.
- ``traits`` (an identify's, or ``context.traits`` as RudderStack's SDKs send them): ``email``,
  ``name`` (or ``firstName``/``first_name`` and ``lastName``/``last_name``), ``timezone`` (or
  ``context.timezone``), ``segment``. A value that would not pass ``/v1/events`` (an address SES
  cannot send to, a zone that is not IANA's) is left out, never the message. ``group``: ``groupId``
  is the user's account, ``traits.name`` its name; ``context.groupId`` on any message names it too.

Limits, the Spec's: a batch of at most 500 KB and 2,500 messages, a message of at most 32 KB (as
compact JSON); a single-message route takes a body of at most 32 KB.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SkipValidation,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
)

from redflag.core import mime
from redflag.core.events import MAX_PROPERTIES_BYTES, MAX_PROPERTIES_KEYS, iana_zone

MAX_BATCH_BYTES = 500 * 1024
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_ID_CHARS = 128
MAX_EVENT_NAME_CHARS = 256
CALL_TYPES = ("track", "identify", "group", "page", "screen", "alias")
CallType = Literal["track", "identify", "group", "page", "screen", "alias"]


def _as_id(value: Any) -> Any:
    """Ids may be numbers in the Spec (the SDKs send them as strings): a number is its decimal text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return value


def _printable(value: str) -> str:
    bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")]
    if bad:
        raise ValueError("contains control characters")
    return value


SpecId = Annotated[
    str, BeforeValidator(_as_id), StringConstraints(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(_printable)
]
Timestamp = datetime  # ISO 8601; one without an offset is UTC (the Spec's timestamps are): ``epoch``


class _Call(BaseModel):
    """The common fields of every call (the Spec's Common Fields); others are allowed and ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: CallType
    userId: SpecId | None = Field(default=None, description="The user; Red Flag's user_id")
    anonymousId: SpecId | None = Field(default=None, description="Not tracked: a message with only this is ignored")
    messageId: SpecId | None = Field(
        default=None, description="Applied once per user, as event_id: a message sent again is a duplicate"
    )
    timestamp: Timestamp | None = Field(default=None, description="When it happened (ISO 8601)")
    sentAt: Timestamp | None = Field(default=None, description="The device's clock when sent: corrects skew")
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)


class TrackCall(_Call):
    type: Literal["track"] = "track"
    event: Annotated[str, StringConstraints(min_length=1, max_length=MAX_EVENT_NAME_CHARS)] = Field(
        description="The event's name; a rule's `track` mapping names the ones that start, complete or fail a task"
    )
    properties: dict[str, Any] = Field(default_factory=dict)


class IdentifyCall(_Call):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(
        default_factory=dict, description="email, name (or firstName, lastName), timezone, segment: the profile"
    )


class GroupCall(_Call):
    type: Literal["group"] = "group"
    groupId: SpecId = Field(description="The user's account (account_id)")
    traits: dict[str, Any] = Field(default_factory=dict, description="name: the account's name")


class _Viewed(_Call):
    name: Annotated[str, StringConstraints(max_length=MAX_EVENT_NAME_CHARS)] | None = None
    category: Annotated[str, StringConstraints(max_length=MAX_EVENT_NAME_CHARS)] | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class PageCall(_Viewed):
    type: Literal["page"] = "page"


class ScreenCall(_Viewed):
    type: Literal["screen"] = "screen"


class AliasCall(_Call):
    type: Literal["alias"] = "alias"
    previousId: SpecId | None = None


Call = Annotated[
    Annotated[TrackCall, Tag("track")]
    | Annotated[IdentifyCall, Tag("identify")]
    | Annotated[GroupCall, Tag("group")]
    | Annotated[PageCall, Tag("page")]
    | Annotated[ScreenCall, Tag("screen")]
    | Annotated[AliasCall, Tag("alias")],
    Discriminator(lambda v: v.get("type") if isinstance(v, dict) else getattr(v, "type", None)),
]
CALL: TypeAdapter[TrackCall | IdentifyCall | GroupCall | PageCall | ScreenCall | AliasCall] = TypeAdapter(Call)


class TrackingBatch(BaseModel):
    """``POST /v1/batch``: the messages, and what the SDKs add around them."""

    model_config = ConfigDict(extra="allow")

    batch: Annotated[list[SkipValidation[Call]], Field(min_length=1, max_length=MAX_BATCH_MESSAGES)] = Field(
        description=f"1-{MAX_BATCH_MESSAGES} calls; each at most {MAX_MESSAGE_BYTES} bytes as JSON, checked one by one"
    )
    sentAt: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="The device's clock when the batch was sent: corrects each message's skew"
    )
    writeKey: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="The write key, when not sent as the Basic auth username"
    )
    context: dict[str, Any] | None = Field(default=None, description="Merged under each message's context")


# --- what a kind is asked about: one call, as the rules see it -----------------------------------------


class Interaction(BaseModel):
    """A track, page or screen call, as a kind maps it to one of its event types (``Kind.tracked``)."""

    model_config = ConfigDict(frozen=True)

    type: Literal["track", "page", "screen"]
    name: str  # the track's event, the page's or screen's name ("" when it has none)
    properties: dict[str, Any] = Field(default_factory=dict)


# --- time ---------------------------------------------------------------------------------------------


def epoch(value: datetime | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def corrected_time(timestamp: float | None, sent_at: float | None, received: float) -> float:
    """The Spec's ``timestamp``: ``receivedAt - (sentAt - originalTimestamp)`` (the device's clock skew
    taken out); the timestamp as given without ``sentAt``; the time received without a timestamp."""
    if timestamp is None:
        return received
    if sent_at is None:
        return timestamp
    return received - (sent_at - timestamp)


# --- the profile a call carries -------------------------------------------------------------------------


def _text(value: Any, limit: int = 256) -> str | None:
    """A trait as inert text: control and format characters dropped (a trailing CR/LF of a web form, a
    zero-width space), whitespace collapsed, clipped; None when nothing is left or it is not text."""
    if not isinstance(value, str):
        return None
    kept = "".join(c for c in value if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))
    kept = " ".join(kept.split())[:limit]
    return kept or None


def _email(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 254:
        return None
    try:
        return mime.checked_address(value.strip())
    except ValueError:
        return None


def _zone(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return iana_zone(value)
    except ValueError:
        return None


def profile_traits(traits: Any, context: Any = None) -> dict[str, str]:
    """What of a call's traits a red flag's email needs: email, name, timezone, segment; each value
    inert and checked as ``/v1/events`` checks it, a value that is not left out."""
    t = traits if isinstance(traits, dict) else {}
    c = context if isinstance(context, dict) else {}
    first = _text(t.get("firstName", t.get("first_name")), 120)
    last = _text(t.get("lastName", t.get("last_name")), 120)
    name = _text(t.get("name")) or (" ".join(p for p in (first, last) if p) or None)
    found = {
        "email": _email(t.get("email")),
        "name": name,
        "timezone": _zone(t.get("timezone")) or _zone(c.get("timezone")),
        "segment": _text(t.get("segment"), 64),
    }
    return {k: v for k, v in found.items() if v is not None}


def account_traits(group_id: Any, traits: Any) -> dict[str, str]:
    found = {"account_id": _text(_as_id(group_id), MAX_ID_CHARS)}
    if isinstance(traits, dict):
        found["account_name"] = _text(traits.get("name"), 120)
    return {k: v for k, v in found.items() if v is not None}


def _finite_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int)


def bounded_properties(properties: Any) -> dict[str, Any]:
    """The properties a timer keeps (and CS alerts show) of a track's: top-level scalars (text clipped
    to 256 characters), within ``/v1/events``' limits; a track's own may be far larger (32 KB)."""
    if not isinstance(properties, dict):
        return {}
    kept: dict[str, Any] = {}
    size = 2
    for key, value in properties.items():
        if len(kept) >= MAX_PROPERTIES_KEYS or not isinstance(key, str) or len(key) > 64:
            continue
        if isinstance(value, str):
            value = value[:256]
        elif not _finite_scalar(value):
            continue
        item = len(json.dumps({key: value}, separators=(",", ":"), ensure_ascii=False).encode())
        if size + item > MAX_PROPERTIES_BYTES:
            continue
        kept[key] = value
        size += item
    return kept


def size_of(message: Any) -> int:
    """A message's size as the limit counts it: compact JSON, UTF-8 (what an SDK measured is larger)."""
    try:
        return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError):
        return MAX_MESSAGE_BYTES + 1


def parse_call(
    message: Any,
) -> TrackCall | IdentifyCall | GroupCall | PageCall | ScreenCall | AliasCall | ValidationError:
    try:
        return CALL.validate_python(message)
    except ValidationError as exc:
        return exc


# --- authentication: write keys and the webhook destinations' signature --------------------------------


def write_keys(secret_value: str) -> tuple[str, ...]:
    """The write keys a secret holds: a JSON list of keys (several at once, to rotate one), or one key."""
    text = secret_value.strip()
    if text.startswith("["):
        try:
            keys = json.loads(text)
        except ValueError:
            return ()
        return tuple(k.strip() for k in keys if isinstance(k, str) and k.strip())
    return (text,) if text else ()


def key_matches(given: str | None, keys: tuple[str, ...]) -> bool:
    """``given`` is one of ``keys``, compared in constant time (each key is compared, whatever matched)."""
    if not given or not keys:
        return False
    candidate = given.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate, key.encode())
    return found


def signature(secret: bytes, body: bytes) -> str:
    """What Segment's Webhooks destination sends as ``X-Signature``: the hex HMAC-SHA1 of the body."""
    return hmac.new(secret, body, hashlib.sha1).hexdigest()


def signature_matches(secret: bytes, body: bytes, given: str | None) -> bool:
    if not given or not secret:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), given.strip().lower().encode())
