"""`redflag events`: send product events to ``POST /v1/events``, on the local server or the deployed
API, in batches of at most 100 (the API's limit), and report each event's result."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redflag.events import MAX_EVENTS


class EventsInputError(ValueError):
    """The events to send could not be read; the message says where and why."""


def events_url(url: str) -> str:
    """The URL as given; a bare ``http://host:port`` gets the API's path, ``/v1/events``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EventsInputError(f"{url!r} is not an http(s) URL, e.g. http://127.0.0.1:3000/v1/events")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/v1/events")
    return urlunsplit(parts)


def load_events(source: str) -> list[Any]:
    """A JSON file (``-`` = stdin) holding a list of events, a ``{"events": [...]}`` body, or one event."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise EventsInputError(f"{source}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventsInputError(f"{source}: not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if isinstance(data, dict) and "events" in data:
        data = data["events"]
        if not isinstance(data, list):
            raise EventsInputError(f'{source}: "events" must be a list')
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise EventsInputError(f'{source}: expected a list of events, {{"events": [...]}} or one event object')
    if not data:
        raise EventsInputError(f"{source}: no events")
    return data


def build_event(
    type_: str,
    task: str,
    user_id: str,
    email: str | None = None,
    name: str | None = None,
    instance_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": type_, "task": task, "user_id": user_id}
    optional = {"instance_id": instance_id, "event_id": event_id}
    event |= {k: v for k, v in optional.items() if v is not None}
    user = {k: v for k, v in {"email": email, "name": name}.items() if v is not None}
    if user:
        event["user"] = user
    return event


@dataclass(frozen=True)
class BatchOutcome:
    first: int  # index of the batch's first event in the whole list
    events: list[Any]
    status: int | None  # HTTP status; None: no answer (unreachable, timeout)
    body: Any  # the parsed JSON answer, if any
    error: str | None  # why the whole request failed

    @property
    def results(self) -> list[dict[str, Any]]:
        ok = self.error is None and isinstance(self.body, dict)
        return list(self.body.get("results", [])) if ok else []


def post(url: str, body: dict[str, Any], api_key: str | None, timeout: float) -> tuple[int | None, Any, str | None]:
    """POST one JSON body: (status, parsed answer, error message for a failed request)."""
    headers = {"Content-Type": "application/json"} | ({"x-api-key": api_key} if api_key else {})
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return None, None, f"cannot reach {url}: {getattr(exc, 'reason', exc)}"
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    if 200 <= status < 300:
        return status, parsed, None
    message = parsed.get("message") if isinstance(parsed, dict) else raw.decode(errors="replace")[:300]
    return status, parsed, f"HTTP {status}: {message}"


def send(
    url: str, events: list[Any], api_key: str | None = None, timeout: float = 30, batch_size: int = MAX_EVENTS
) -> Iterator[BatchOutcome]:
    """Post the events in order, ``batch_size`` at a time; stop after a request that failed."""
    for first in range(0, len(events), batch_size):
        batch = events[first : first + batch_size]
        status, body, error = post(url, {"events": batch}, api_key, timeout)
        yield BatchOutcome(first, batch, status, body, error)
        if error is not None:
            return


def _field(event: Any, name: str) -> str:
    value = event.get(name) if isinstance(event, dict) else None
    return "" if value is None else str(value)


def report(outcomes: Iterator[BatchOutcome], total: int, console: Any) -> bool:
    """Print one row per event (ids only: no emails or names) and any failed request.
    True when every event was sent and none was rejected."""
    from rich.markup import escape
    from rich.table import Table

    colors = {"armed": "green", "completed": "green", "rejected": "red", "ignored": "yellow"}
    table = Table()
    for column in ("#", "type", "task", "user_id", "event_id", "status", "reason"):
        table.add_column(column, no_wrap=column in ("#", "type", "status"))
    sent = rejected = 0
    failure: str | None = None
    for outcome in outcomes:
        if outcome.error is not None:
            failure = outcome.error
            break
        for result in outcome.results:
            i = outcome.first + int(result.get("index", 0))
            event = outcome.events[i - outcome.first] if 0 <= i - outcome.first < len(outcome.events) else {}
            status = str(result.get("status"))
            rejected += status == "rejected"
            table.add_row(
                str(i), *(escape(_field(event, k)) for k in ("type", "task", "user_id")),
                escape(str(result.get("event_id") or "")), f"[{colors.get(status, 'white')}]{status}[/]",
                escape(str(result.get("reason") or "")),
            )  # fmt: skip
        sent += len(outcome.events)
    if table.row_count:
        console.print(table)
    console.print(f"{sent - rejected} accepted, {rejected} rejected, {total - sent} not sent")
    if failure is not None:
        console.print(f"[red]error:[/] {escape(failure)}")
    return failure is None and rejected == 0
