"""The public event contract of ``POST /v1/events`` (pure pydantic, no AWS).

Everything a user typed is checked here, at the door, with the parsers the senders use later:
an address must be one SES can send to *and* one the MIME layer writes as exactly that address
(``redflag.core.mime``); a segment or account id carries no control characters, and a display name is
made inert instead of refused (a cosmetic field never costs a user their red flag); ``properties``
is small and shallow; ``timezone`` is an IANA zone.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SkipValidation,
    StringConstraints,
    field_validator,
    model_validator,
)

from redflag.core import mime, text

MAX_EVENTS = 100
MAX_PROPERTIES_BYTES = 2048
MAX_PROPERTIES_DEPTH = 4  # {"a": {"b": {"c": {"d": 1}}}} is 4 levels
MAX_PROPERTIES_KEYS = 64  # keys at all levels together
MAX_NAME_CHARS = 256


def _printable(value: str) -> str:
    """No control, format or separator characters: nothing that can end a line or hide text."""
    bad = sorted({f"U+{ord(c):04X}" for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")})
    if bad:
        raise ValueError(f"contains control characters ({', '.join(bad[:3])})")
    return value


def _inert_name(value: Any) -> Any:
    """A string name made inert (``redflag.core.text.display_name``); anything else is left for the
    type check to refuse."""
    return text.display_name(value, MAX_NAME_CHARS) if isinstance(value, str) else value


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
RFC3339_RULE = (
    "must be an RFC 3339 date-time such as 2026-05-01T12:00:00Z or 2026-05-01T17:30:00.250+05:30 "
    "(seconds and an offset required)"
)


def rfc3339(value: Any) -> Any:
    """An RFC 3339 ``date-time`` (section 5.6) as an aware datetime, and nothing else: no epoch numbers,
    no space for the ``T``, no offset without its colon, no missing seconds. As the RFC allows, ``T`` and
    ``Z`` may be lower case and ``-00:00`` is UTC; a fraction has at most 9 digits (read to the
    microsecond); a leap second (``:60``) is refused. An aware datetime object passes as it is."""
    if isinstance(value, datetime):
        return value
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(RFC3339_RULE)
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0))
        if int(off_m or 0) > 59:
            raise ValueError
        zone = timezone(-offset if sign == "-" else offset)
        micros = int((fraction or "0").ljust(6, "0")[:6])
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, zone)
    except ValueError:  # no such day, hour 24, second 60, offset of 24 h or more
        raise ValueError(f"{RFC3339_RULE}; this one names no such time") from None


def _email(value: str) -> str:
    return mime.checked_address(value)


def iana_zone(value: str) -> str:
    """``value`` if it names an IANA time zone (what zoneinfo knows), else a ValueError saying so."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("is not an IANA time zone such as Europe/Paris") from exc
    return value


TaskName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_printable)]
ShortText = Annotated[str, StringConstraints(max_length=256), AfterValidator(_printable)]


class EventType(StrEnum):
    TASK_STARTED = "task_started"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    USER_ACTIVE = "user_active"


class UserInfo(BaseModel):
    """Who the event is about; used to address and personalize alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: Annotated[str, StringConstraints(max_length=254), AfterValidator(_email)] | None = Field(
        default=None, description="Where the user's email goes; checked as SES and the MIME writer will read it"
    )
    name: Annotated[str | None, BeforeValidator(_inert_name)] = Field(
        default=None,
        description="Display name. Never a reason to reject the event: control, format and separator "
        "characters are removed (a trailing CR/LF, a zero-width space, a bidi override), spaces collapsed, "
        "and it is clipped to 256 characters; nothing left means the neutral greeting. It is then encoded "
        "in headers and escaped in HTML and chat, like every value",
    )
    segment: Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_printable)] | None = None
    timezone: Annotated[str, StringConstraints(max_length=64), AfterValidator(iana_zone)] | None = None
    account_id: Id | None = None


def _shape(value: Any, depth: int = 1) -> tuple[int, int]:
    """(depth, keys) of a JSON value, iteratively bounded: a deep value is refused, not recursed into."""
    deepest, keys = 0, 0
    stack = [(value, depth)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            keys += len(node)
            deepest = max(deepest, level)
            if level > MAX_PROPERTIES_DEPTH or keys > MAX_PROPERTIES_KEYS:
                return deepest, keys
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, level)
            if level > MAX_PROPERTIES_DEPTH:
                return deepest, keys
            stack.extend((v, level + 1) for v in node)
    return deepest, keys


class TaskEvent(BaseModel):
    """One product event. Unknown fields are an error, so a typo never silently drops data. An event that
    breaks this schema is answered per event (`rejected`, the reason naming the field), not as a 4xx."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["task_started", "task_completed", "task_failed", "user_active"]
    task: TaskName = Field(description="Names a rule: `{RulesPath}/{task}`")
    user_id: Id
    instance_id: Id = Field(default="default", description="One timer per (user_id, task, instance_id)")
    event_id: Id | None = Field(
        default=None,
        description="Your id for this event. A retry with the same event_id (same user, task and instance) "
        "is answered `duplicate` and applied once",
    )
    occurred_at: Annotated[AwareDatetime, BeforeValidator(rfc3339)] | None = Field(
        default=None,
        description="An RFC 3339 date-time (section 5.6) and nothing else: `2026-05-01T12:00:00Z`, "
        "`2026-05-01T17:30:00.250+05:30`; seconds and an offset (`Z` or `+hh:mm`) required, `T` and `Z` in "
        "either case as the RFC allows, a fraction of 1-9 digits. Epoch numbers, a space for the `T`, "
        "`+0530` and leap seconds are rejected. Default: the time received. More than 5 minutes ahead, or "
        "older than 7 days, is rejected",
    )
    user: UserInfo = UserInfo()
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description=f"<= {MAX_PROPERTIES_BYTES} bytes as JSON, <= {MAX_PROPERTIES_DEPTH} levels deep, "
        f"<= {MAX_PROPERTIES_KEYS} keys; copied into CS alerts",
    )

    @field_validator("properties", mode="before")
    @classmethod
    def _small_properties(cls, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        depth, keys = _shape(value)
        if depth > MAX_PROPERTIES_DEPTH:
            raise ValueError(f"is nested more than {MAX_PROPERTIES_DEPTH} levels deep")
        if keys > MAX_PROPERTIES_KEYS:
            raise ValueError(f"has more than {MAX_PROPERTIES_KEYS} keys")
        try:
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        except (TypeError, ValueError) as exc:
            raise ValueError("must hold JSON values only") from exc
        if size > MAX_PROPERTIES_BYTES:
            raise ValueError(f"is {size} bytes serialized; the limit is {MAX_PROPERTIES_BYTES}")
        return value


class EventBatch(BaseModel):
    """Request body: ``{"events": [...]}`` with 1-100 events, or one bare event object; any other JSON
    (an array, a string) is a 422. Only this envelope can make the request a 4xx: each event is checked
    on its own, and one that breaks the TaskEvent schema is answered in the 202 as that event's
    `rejected` result, with the reason naming the field, next to its applied neighbours."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[
        list[SkipValidation[TaskEvent]],
        Field(
            min_length=1,
            max_length=MAX_EVENTS,
            description="1-100 events, each validated on its own (redflag.services.ingest): a schema-invalid "
            "event (a missing, unknown or bad field) is answered per event, `rejected` with its reason, "
            "never as a 4xx of the request",
        ),
    ]

    @model_validator(mode="before")
    @classmethod
    def _accept_bare_event(cls, data: Any) -> Any:
        if isinstance(data, dict) and "events" not in data and "type" in data:
            return {"events": [data]}
        return data


class Outcome(StrEnum):
    ARMED = "armed"
    COMPLETED = "completed"
    RECORDED = "recorded"
    FLAGGED = "flagged"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"
    RETRY = "retry"


class EventResult(BaseModel):
    index: int
    status: Outcome
    event_id: str | None = None
    reason: str | None = None


class IngestResponse(BaseModel):
    results: list[EventResult]
    accepted: int = Field(description="events applied (or already applied): neither rejected nor to retry")
    rejected: int = Field(description="events that are invalid; sending them again will not help")
    retry: int = Field(
        default=0,
        description="events not applied because of a passing fault; send exactly these again "
        "(the others are applied, and an event_id makes any resend safe)",
    )


_TAGS = {"segment-list", "segment-map"}  # union branches pydantic names in a location (redflag.core.rules)
MAX_LISTED_ERRORS = 10  # problems named in an error body or a rejected event's reason; the rest are counted
MAX_FIELD_CHARS = 200  # a location nested 32 levels deep is still one short name
MAX_PROBLEM_CHARS = 300  # one problem's message


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field_of(error: Mapping[str, Any]) -> str:
    """``user.email`` for a pydantic error; parts are clipped so a location never echoes a payload."""
    parts = [str(p) if len(str(p)) <= 64 else "…" for p in error.get("loc", ()) if p != "body" and p not in _TAGS]
    return _clip(".".join(parts), MAX_FIELD_CHARS) or "body"


def problem_of(error: Mapping[str, Any]) -> str:
    return _clip(str(error.get("msg", "invalid")), MAX_PROBLEM_CHARS)


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """Turn pydantic errors into one line that names each field: ``user.email: ...``; the first
    MAX_LISTED_ERRORS only, then ``and N more``, so the line is bounded however many problems a request
    holds (a body with 100,000 unknown keys is answered in a few hundred bytes)."""
    line = "; ".join(f"{field_of(err)}: {problem_of(err)}" for err in errors[:MAX_LISTED_ERRORS])
    return line + (f"; and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else "")


def field_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The first MAX_LISTED_ERRORS problems, as ``FieldError``s."""
    return [{"field": field_of(e), "message": problem_of(e)} for e in errors[:MAX_LISTED_ERRORS]]


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx of the API: a message naming the field(s), and the list behind it. Bounded: the
    first 10 problems are named, and ``error_count`` says how many there were when there were more."""

    message: str
    errors: list[FieldError] | None = Field(default=None, description="the first 10 problems")
    error_count: int | None = Field(default=None, description="how many problems in all, when more than 10")
