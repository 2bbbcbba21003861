"""`redflag events`: send product events to ``POST /v1/events``, on the local server or the deployed
API, in batches of at most 100 (the API's limit), and report each event's result. Or, with the
``segment`` dialect (``SEGMENT``), send Segment Spec messages (``track``, ``identify``, ...) as the
Segment HTTP Tracking API takes them: ``POST /v1/batch``, ``{"batch": [...], "sentAt": ...}``, the write
key as the Basic auth username, batches of at most 100 messages and 500 KB, a ``messageId`` on each.

Each event is sent with an ``event_id`` (the CLI gives one, ``with_event_ids``, to an event that has
none, unless ``--no-event-ids``): the API applies an id once and answers a repeat ``duplicate``, so a
resend is safe. Events answered ``retry`` (a passing fault kept them from being applied, nothing of
them was written) are sent again, only those, with exponential backoff (``RETRY_DELAYS``, or the
answer's Retry-After if longer). A request that failed as a whole (no answer, 429, a 5xx without
per-event results) may have been applied, so it is sent again only when every event in it has an
event_id. A ``retry`` that never cleared is reported as a failure. The same holds for the Segment
dialect, with ``messageId`` for ``event_id``: a receiver that answers per message (Red Flag's
tracking API: ``results``, 503 with ``Retry-After`` for a passing fault) has its ``retry`` messages
sent again, only those; one that answers ``{"success": true}`` (Segment's own) has each message
reported ``sent``; a 429 or 5xx without results is a whole-batch resend, when every message has an id.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redflag.core.events import MAX_EVENTS

RETRY = "retry"
RETRY_DELAYS = (0.5, 1.0, 2.0)  # before each resend: how many and how long (doubling)
MAX_WAIT_SECONDS = 30.0  # a longer Retry-After is cut to this


class EventsInputError(ValueError):
    """The events to send could not be read; the message says where and why."""


SEGMENT_MAX_MESSAGES = 100  # a batch, as the Segment SDKs send them (analytics-python's upload_size)
SEGMENT_MAX_BATCH_BYTES = 500 * 1024  # the Segment HTTP Tracking API's limits, as compact JSON
SENT = "sent"  # a message the receiver took without a result of its own (Segment answers {"success": true})


@dataclass(frozen=True)
class Dialect:
    """How one API is spoken: the path a bare URL gets, the envelope of a batch and of a file, the id
    field that makes a resend safe, the columns shown, and the auth header."""

    name: str
    path: str  # what a bare http://host:port gets
    envelope: str  # {"<envelope>": [...]}: the body around a batch, and a file's
    id_field: str
    columns: tuple[tuple[str, str], ...]  # (header, field of an item) for the type, name and user
    spec: bool = False  # the Segment Spec: sentAt in the body, Basic auth, results per message, 500 KB

    def body(self, items: list[Any]) -> dict[str, Any]:
        if self.spec:  # sentAt: the Spec corrects the device's clock skew with it, per attempt
            return {self.envelope: items, "sentAt": datetime.now(UTC).isoformat(timespec="milliseconds")}
        return {self.envelope: items}

    def headers(self, key: str | None) -> dict[str, str]:
        if not key:
            return {}
        if self.spec:  # the write key is the Basic auth username, the password empty
            return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        return {"x-api-key": key}

    def results(self, answer: Answer, items: list[Any]) -> list[dict[str, Any]] | None:
        """One result per item (``event_id``: its id), or None when the answer is about the request."""
        results = answer.results(len(items))
        if not self.spec:
            return results
        if results is not None:  # Red Flag's tracking API: one result per message
            return [r | {"event_id": r.get("message_id")} for r in results]
        detailed = isinstance(answer.body, dict) and "results" in answer.body  # but not one per message
        if answer.status is not None and 200 <= answer.status < 300 and not detailed:  # {"success": true}
            return [{"index": i, "status": SENT, "event_id": _id(m, self.id_field)} for i, m in enumerate(items)]
        return None

    def batches(self, items: list[Any], batch_size: int) -> Iterator[tuple[int, list[Any]]]:
        """(first index, items): ``batch_size`` at a time; Segment's also at most 500 KB as JSON (a message
        over that goes alone, for the receiver to refuse)."""
        first, size, batch = 0, 0, []
        for i, item in enumerate(items):
            length = len(json.dumps(item, separators=(",", ":"))) + 1 if self.spec else 0
            if batch and (len(batch) == batch_size or size + length > SEGMENT_MAX_BATCH_BYTES - 1024):
                yield first, batch
                first, size, batch = i, 0, []
            batch.append(item)
            size += length
        if batch:
            yield first, batch


REDFLAG = Dialect(
    "redflag", "/v1/events", "events", "event_id", (("type", "type"), ("task", "task"), ("user_id", "user_id"))
)
SEGMENT = Dialect(
    "segment",
    "/v1/batch",
    "batch",
    "messageId",
    (("type", "type"), ("event", "event"), ("userId", "userId")),
    spec=True,
)
DIALECTS = {d.name: d for d in (REDFLAG, SEGMENT)}


def _id(item: Any, field: str) -> str | None:
    value = item.get(field) if isinstance(item, dict) else None
    return value if isinstance(value, str) and value else None


def events_url(url: str, dialect: Dialect = REDFLAG) -> str:
    """The URL as given; a bare ``http://host:port`` gets the API's path, ``/v1/events`` (``/v1/batch``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EventsInputError(f"{url!r} is not an http(s) URL, e.g. http://127.0.0.1:3000{dialect.path}")
    if parts.path in ("", "/"):
        parts = parts._replace(path=dialect.path)
    return urlunsplit(parts)


def load_events(source: str, dialect: Dialect = REDFLAG) -> list[Any]:
    """A JSON file (``-`` = stdin) holding a list of events, a ``{"events": [...]}`` body, or one event
    (Segment: a list of messages, a ``{"batch": [...]}`` body, or one message)."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise EventsInputError(f"{source}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventsInputError(f"{source}: not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    key = dialect.envelope
    what = "messages" if dialect.spec else "events"
    if isinstance(data, dict) and key in data:
        data = data[key]
        if not isinstance(data, list):
            raise EventsInputError(f'{source}: "{key}" must be a list')
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise EventsInputError(f'{source}: expected a list of {what}, {{"{key}": [...]}} or one {what[:-1]} object')
    if not data:
        raise EventsInputError(f"{source}: no {what}")
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


def build_track(
    event: str, user_id: str, email: str | None = None, name: str | None = None, message_id: str | None = None
) -> dict[str, Any]:
    """One Segment ``track`` call; the email and name go in ``context.traits``, as RudderStack's SDKs
    send a user's traits with each call."""
    message: dict[str, Any] = {"type": "track", "event": event, "userId": user_id}
    if message_id is not None:
        message["messageId"] = message_id
    traits = {k: v for k, v in {"email": email, "name": name}.items() if v is not None}
    if traits:
        message["context"] = {"traits": traits}
    return message


def has_event_id(event: Any, field: str = "event_id") -> bool:
    return _id(event, field) is not None


def with_event_ids(events: list[Any], field: str = "event_id") -> list[Any]:
    """The events, each object without an id (``event_id``; Segment: ``messageId``) given a new one
    (uuid4 hex): safe to resend."""
    out = []
    for event in events:
        if isinstance(event, dict) and event.get(field) is None:
            event = event | {field: uuid.uuid4().hex}
        out.append(event)
    return out


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status (None: no answer at all), parsed JSON body, why it failed as a whole."""

    status: int | None
    body: Any
    error: str | None
    retry_after: float | None = None

    def results(self, count: int) -> list[dict[str, Any]] | None:
        """The per-event results, in order, when the answer holds one for each of ``count`` events
        (a 202; a 503 when every event is ``retry``); None for an answer about the whole request."""
        if self.status not in range(200, 300) and self.status != 503:
            return None
        results = self.body.get("results") if isinstance(self.body, dict) else None
        if not isinstance(results, list) or len(results) != count:
            return None
        if [r.get("index") if isinstance(r, dict) else None for r in results] != list(range(count)):
            return None
        return results

    @property
    def transient(self) -> bool:
        """No answer, too many requests, or a server error: the same request may succeed later."""
        return self.status is None or self.status == 429 or self.status >= 500


def retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def post(url: str, body: dict[str, Any], api_key: str | None, timeout: float, dialect: Dialect = REDFLAG) -> Answer:
    """POST one JSON body (``api_key``: the dialect's key, an API key or a write key)."""
    headers = {"Content-Type": "application/json"} | dialect.headers(api_key)
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, wait = response.status, response.read(), response.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        status, wait = exc.code, exc.headers.get("Retry-After") if exc.headers else None
        try:
            raw = exc.read()
        except OSError:
            raw = b""
    except (urllib.error.URLError, OSError) as exc:
        return Answer(None, None, f"cannot reach {url}: {getattr(exc, 'reason', exc)}")
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    if 200 <= status < 300:
        return Answer(status, parsed, None, retry_after(wait))
    message = parsed.get("message") if isinstance(parsed, dict) else raw.decode(errors="replace")[:300]
    if message is None and isinstance(parsed, dict) and isinstance(parsed.get("results"), list):
        message = f"{parsed.get('retry', '?')} of {len(parsed['results'])} to retry"
    return Answer(status, parsed, f"HTTP {status}: {message}", retry_after(wait))


@dataclass(frozen=True)
class BatchOutcome:
    first: int  # index of the batch's first event in the whole list
    events: list[Any]
    results: list[dict[str, Any] | None]  # per event: its last result (index in the whole list); None: no answer
    error: str | None  # why the last request for this batch failed as a whole, if it did
    attempts: int = 1

    @property
    def pending(self) -> int:
        """Events still to apply: no answer, or ``retry`` to the end."""
        return sum(r is None or r.get("status") == RETRY for r in self.results)


RetryNotice = Callable[[list[int], float, str], None]  # (event numbers, seconds to wait, why)


def send_batch(
    url: str,
    first: int,
    events: list[Any],
    api_key: str | None = None,
    timeout: float = 30,
    delays: tuple[float, ...] = RETRY_DELAYS,
    on_retry: RetryNotice | None = None,
    sleep: Callable[[float], None] = time.sleep,
    dialect: Dialect = REDFLAG,
) -> BatchOutcome:
    """Send one batch; resend what is to retry, ``len(delays)`` times at most."""
    results: list[dict[str, Any] | None] = [None] * len(events)
    pending = list(range(len(events)))  # positions in the batch still to send
    error: str | None = None
    attempt = 0
    while True:
        sending = [events[i] for i in pending]
        answer = post(url, dialect.body(sending), api_key, timeout, dialect)
        attempt += 1
        answered = dialect.results(answer, sending)
        if answered is not None:
            error = None
            for position, result in zip(pending, answered, strict=True):
                results[position] = result | {"index": first + position}
            pending = [p for p, r in zip(pending, answered, strict=True) if r.get("status") == RETRY]
            why = f"{len(pending)} event(s) answered retry"
        else:
            error = answer.error or f"HTTP {answer.status}: the answer does not hold one result per event"
            if not (answer.transient and all(has_event_id(events[i], dialect.id_field) for i in pending)):
                break  # not safe (or no use) to send again
            why = str(error)
        if not pending or attempt > len(delays):
            break
        wait = min(MAX_WAIT_SECONDS, max(delays[attempt - 1], answer.retry_after or 0.0))
        if on_retry is not None:
            on_retry([first + p for p in pending], wait, why)
        sleep(wait)
    return BatchOutcome(first, events, results, error, attempt)


def send(
    url: str,
    events: list[Any],
    api_key: str | None = None,
    timeout: float = 30,
    batch_size: int = MAX_EVENTS,
    delays: tuple[float, ...] = RETRY_DELAYS,
    on_retry: RetryNotice | None = None,
    sleep: Callable[[float], None] = time.sleep,
    dialect: Dialect = REDFLAG,
) -> Iterator[BatchOutcome]:
    """Post the events in order, ``batch_size`` at a time (Segment: and at most 500 KB); stop after a
    batch that is not all applied (a later event may depend on it, e.g. a completion on its start)."""
    for first, batch in dialect.batches(events, batch_size):
        outcome = send_batch(url, first, batch, api_key, timeout, delays, on_retry, sleep, dialect)
        yield outcome
        if outcome.error is not None or outcome.pending:
            return


def _field(event: Any, name: str) -> str:
    value = event.get(name) if isinstance(event, dict) else None
    return "" if value is None else str(value)


COLORS = {
    "armed": "green", "completed": "green", "recorded": "green", "duplicate": "green", SENT: "green",
    "flagged": "yellow", "ignored": "yellow", "rejected": "red", RETRY: "red",
}  # fmt: skip


def report(outcomes: Iterator[BatchOutcome], total: int, console: Any, dialect: Dialect = REDFLAG) -> bool:
    """Print one row per answered event (ids only: no emails or names) and any failed request.
    True when every event was applied (or was a duplicate or ignored) and none was rejected."""
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    keys = [k for _, k in dialect.columns]
    for column in ("#", *(h for h, _ in dialect.columns), dialect.id_field, "status", "reason"):
        table.add_column(column, no_wrap=column in ("#", "type", "status"))
    answered = rejected = retry = 0
    failure: str | None = None
    for outcome in outcomes:
        for position, (event, result) in enumerate(zip(outcome.events, outcome.results, strict=True)):
            if result is None:
                continue
            status = str(result.get("status"))
            answered += 1
            rejected += status == "rejected"
            retry += status == RETRY
            table.add_row(
                str(outcome.first + position), *(escape(_field(event, k)) for k in keys),
                escape(str(result.get("event_id") or "")), f"[{COLORS.get(status, 'white')}]{status}[/]",
                escape(str(result.get("reason") or "")),
            )  # fmt: skip
        if outcome.error is not None:
            tries = f" (after {outcome.attempts} attempts)" if outcome.attempts > 1 else ""
            failure = outcome.error + tries
    if table.row_count:
        console.print(table)
    line = f"{answered - rejected - retry} accepted, {rejected} rejected, {total - answered} not sent"
    console.print(line + (f", {retry} still to retry (send them again later)" if retry else ""))
    if failure is not None:
        console.print(f"[red]error:[/] {escape(failure)}")
    return failure is None and rejected == 0 and retry == 0 and answered == total


def print_retry(console: Any) -> RetryNotice:
    """A console line per resend: event numbers and the reason, never contents."""

    def notice(numbers: list[int], wait: float, why: str) -> None:
        from rich.markup import escape

        shown = ", ".join(f"#{n}" for n in numbers[:10]) + (", …" if len(numbers) > 10 else "")
        console.print(f"[yellow]retry:[/] {len(numbers)} event(s) ({shown}) again in {wait:g} s: {escape(why)}")

    return notice
