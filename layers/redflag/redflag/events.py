"""The public event contract of ``POST /v1/events`` (pure pydantic, no AWS)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    StringConstraints,
    field_validator,
    model_validator,
)

MAX_EVENTS = 100
MAX_PROPERTIES_BYTES = 2048

TaskName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ShortText = Annotated[str, StringConstraints(max_length=256)]


class EventType(StrEnum):
    TASK_STARTED = "task_started"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    USER_ACTIVE = "user_active"


class UserInfo(BaseModel):
    """Who the event is about; used to address and personalize alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: (
        Annotated[str, StringConstraints(max_length=254, pattern=r"^[^@\s<>\r\n]+@[^@\s<>\r\n]+\.[^@\s<>\r\n]+$")]
        | None
    ) = None
    name: ShortText | None = None
    segment: Annotated[str, StringConstraints(max_length=64)] | None = None
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None
    account_id: Id | None = None


class TaskEvent(BaseModel):
    """One product event. Unknown fields are an error, so a typo never silently drops data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["task_started", "task_completed", "task_failed", "user_active"]
    task: TaskName = Field(description="Names a rule: `{RulesPath}/{task}`")
    user_id: Id
    instance_id: Id = Field(default="default", description="One timer per (user_id, task, instance_id)")
    event_id: Id | None = Field(default=None, description="A repeated event_id is accepted once")
    occurred_at: AwareDatetime | None = Field(
        default=None, description="RFC 3339 with offset; default: time received; > 5 min ahead is rejected"
    )
    user: UserInfo = UserInfo()
    properties: dict[str, Any] = Field(default_factory=dict, description="<= 2 KB as JSON; copied into CS alerts")

    @field_validator("properties")
    @classmethod
    def _small_properties(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_PROPERTIES_BYTES:
            raise ValueError(f"is {size} bytes serialized; the limit is {MAX_PROPERTIES_BYTES}")
        return value


class EventBatch(BaseModel):
    """Request body: ``{"events": [...]}`` with 1-100 events, or one bare event object.

    Events are validated one by one (see ``redflag.ingest``) so one bad event never drops
    its good neighbours; here only the envelope is checked.
    """

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[SkipValidation[TaskEvent]], Field(min_length=1, max_length=MAX_EVENTS)]

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
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"


class EventResult(BaseModel):
    index: int
    status: Outcome
    event_id: str | None = None
    reason: str | None = None


class IngestResponse(BaseModel):
    results: list[EventResult]
    accepted: int = Field(description="events not rejected")
    rejected: int


def field_of(error: dict[str, Any]) -> str:
    """``user.email`` for a pydantic error; parts are clipped so a location never echoes a payload."""
    parts = [str(p) if len(str(p)) <= 64 else "…" for p in error.get("loc", ()) if p != "body"]
    return ".".join(parts) or "body"


def describe_errors(errors: list[dict[str, Any]]) -> str:
    """Turn pydantic errors into one line that names each field: ``user.email: ...``."""
    return "; ".join(f"{field_of(err)}: {err.get('msg', 'invalid')}" for err in errors)


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx of the API: a message naming the field(s), and the list behind it."""

    message: str
    errors: list[FieldError] | None = None
