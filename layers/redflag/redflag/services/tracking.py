"""Where a Segment-style call becomes Red Flag's events: the tracking API's service. Pure: the calls are
read with ``redflag.core.tracking`` (the Segment Spec), mapped through the kinds registry, and applied
by the ingest service (``redflag.services.ingest``) with its one batched read and its conditional writes.

What a request turns into:

- each ``track`` a rule maps (``kinds.tracked``: the rule's ``track`` mapping, asked of its kind) is
  one event of that rule's timer, with ``messageId`` as its ``event_id``, the Spec's corrected
  ``timestamp`` as its time, and the user as the request's ``identify`` calls before it and the
  track's own ``context.traits`` tell, the stored profile filling in the rest (after the read);
- each ``track``, ``page`` and ``screen`` is activity: one update of the user's record per user and
  request (however many calls), and, for each rule whose kind counts it (an inactivity rule), one
  event at the latest call's time;
- ``identify`` and ``group`` update the user's profile in that same update of the user's record.

One result per message, in order: the status of what it did (``armed``, ``completed``, ...; a call
that is only activity or profile is ``recorded``), ``rejected`` with the reason, or ``retry`` when a
passing fault kept it from being applied: the API then answers 503 so the SDK sends the batch again,
and what was applied is a ``duplicate`` the second time.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from redflag import kinds
from redflag.core import tracking
from redflag.core.activity import UserUpdate
from redflag.core.events import EventType, Outcome, TaskEvent, UserInfo, describe_errors
from redflag.core.tracking import MAX_MESSAGE_BYTES, CallType, Interaction
from redflag.kinds import Rule
from redflag.services.ingest import IngestService, Limits, TaskItem, UserItem

# what a message's status is, of its items' (a track that armed a timer is `armed`, not `recorded`)
_RANK = {
    Outcome.RETRY: 0,
    Outcome.REJECTED: 1,
    Outcome.FLAGGED: 2,
    Outcome.ARMED: 3,
    Outcome.COMPLETED: 3,
    Outcome.RECORDED: 4,
    Outcome.DUPLICATE: 5,
    Outcome.IGNORED: 6,
}


class MessageResult(BaseModel):
    index: int
    status: Outcome
    message_id: str | None = None
    reason: str | None = None
    tasks: dict[str, Outcome] | None = Field(default=None, description="each rule's task the call was an event of")


class TrackingResponse(BaseModel):
    success: bool = Field(description="every message applied (or already applied, or refused for good)")
    results: list[MessageResult]
    accepted: int = Field(description="messages applied (or already applied): neither rejected nor to retry")
    rejected: int = Field(description="messages that are invalid; sending them again will not help")
    retry: int = Field(default=0, description="messages not applied because of a passing fault: the batch is resent")


class TrackingError(BaseModel):
    """Every 4xx/5xx of the tracking API: what the SDKs read (``code``, ``message``)."""

    code: str
    message: str


@dataclass
class _User:
    """What the request says of one user so far (its calls in order)."""

    traits: dict[str, str] = field(default_factory=dict)  # identify and group, for the profile
    account_id: str | None = None
    identified_at: float | None = None
    active: int = 0
    first_at: float | None = None
    last_at: float | None = None
    messages: list[int] = field(default_factory=list)
    message_ids: list[str | None] = field(default_factory=list)

    def user_info(self, own: dict[str, str], account: str | None) -> dict[str, str]:
        """An event's user: the request's identify and group so far, then the call's own traits."""
        found = {k: v for k, v in self.traits.items() if k in ("email", "name", "timezone", "segment")}
        found |= {k: v for k, v in own.items() if k in ("email", "name", "timezone", "segment")}
        if account or self.account_id:
            found["account_id"] = account or self.account_id or ""
        return found


@dataclass
class _Coalesced:
    """Activity events of one record (an inactivity rule's timer): only the latest call re-arms it."""

    item: TaskItem
    messages: list[int]
    message_ids: list[str | None]


class Gate:
    """Who may post: a write key (the Basic auth username, or ``writeKey`` in the body), one of the keys
    the secret holds, compared in constant time; for the webhook route, Segment's ``X-Signature`` (the
    hex HMAC-SHA1 of the body with the shared secret). The secrets come in as callables (cached reads)."""

    def __init__(self, write_keys: Callable[[], tuple[str, ...]], webhook_secret: Callable[[], bytes]) -> None:
        self._keys = write_keys
        self._secret = webhook_secret

    def key_ok(self, given: str | None) -> bool:
        return tracking.key_matches(given, self._keys()) if given else False

    def signed(self, body: bytes, given: str | None) -> bool:
        return tracking.signature_matches(self._secret(), body, given) if given else False


class TrackingService:
    def __init__(
        self,
        ingest: IngestService,
        clock: Callable[[], float],
        limits: Limits | None = None,
        keep_seconds: float | None = None,
    ) -> None:
        self._ingest = ingest
        self._clock = clock
        self._limits = limits or Limits()
        self._keep = keep_seconds

    def receive(
        self,
        messages: Sequence[Any],
        sent_at: str | None = None,
        context: dict[str, Any] | None = None,
        call_type: CallType | None = None,
        trusted_time: bool = False,
    ) -> TrackingResponse:
        """Apply the messages of one request. ``sent_at``, ``context``: the batch's; ``call_type``: the
        single-message route's; ``trusted_time``: the timestamps were corrected upstream (Segment's or
        RudderStack's cloud)."""
        received = self._clock()
        book = self._ingest.rulebook()
        results: dict[int, MessageResult] = {}
        users: dict[str, _User] = {}
        items: list[TaskItem | UserItem] = []
        owners: dict[int, list[int]] = {}  # item index -> the messages it carries
        coalesced: dict[tuple[str, str, str], _Coalesced] = {}
        batch_sent = tracking.epoch(sent_at)
        numbers = itertools.count(len(messages))  # items are numbered after the messages

        def item_index() -> int:
            return next(numbers)

        for index, raw in enumerate(messages):
            message_id = _message_id(raw)

            def refuse(status: Outcome, reason: str, i: int = index, m: str | None = message_id) -> None:
                results[i] = MessageResult(index=i, status=status, message_id=m, reason=reason)

            if not isinstance(raw, dict):
                refuse(Outcome.REJECTED, "message: must be a JSON object")
                continue
            size = tracking.size_of(raw)
            if size > MAX_MESSAGE_BYTES:
                refuse(Outcome.REJECTED, f"message: {size} bytes as JSON; the limit is {MAX_MESSAGE_BYTES} (32 KB)")
                continue
            if call_type is not None:
                if raw.get("type", call_type) != call_type:
                    refuse(Outcome.REJECTED, f"type: this route takes {call_type} calls")
                    continue
                raw = raw | {"type": call_type}
            if context and isinstance(raw.get("context", {}), dict):
                raw = raw | {"context": context | raw.get("context", {})}
            call = tracking.parse_call(raw)
            if isinstance(call, ValidationError):
                refuse(Outcome.REJECTED, _describe(call))
                continue
            if call.type == "alias":
                refuse(Outcome.IGNORED, "alias is not supported: Red Flag keys a user's records by userId only")
                continue
            if call.userId is None:
                refuse(Outcome.IGNORED, "no userId: Red Flag watches identified users (anonymousId alone is not kept)")
                continue
            stamp = tracking.epoch(call.timestamp)
            if trusted_time:
                at = stamp if stamp is not None else received
            else:
                at = tracking.corrected_time(stamp, tracking.epoch(call.sentAt) or batch_sent, received)
            user = users.setdefault(call.userId, _User())
            ctx = call.context
            if isinstance(call, tracking.IdentifyCall | tracking.GroupCall):
                if isinstance(call, tracking.IdentifyCall):
                    traits = call.traits or (ctx.get("traits") if isinstance(ctx.get("traits"), dict) else {})
                    user.traits |= tracking.profile_traits(traits, ctx)
                else:
                    group = tracking.account_traits(call.groupId, call.traits)
                    user.account_id = group.pop("account_id", user.account_id)
                    user.traits |= group
                user.identified_at = max(at, user.identified_at or at)
                user.messages.append(index)
                user.message_ids.append(message_id)
                continue
            problem = self._out_of_range(at, received)
            if problem:
                refuse(Outcome.REJECTED, problem)
                continue
            user.active += 1
            user.first_at = min(at, user.first_at or at)
            user.last_at = max(at, user.last_at or at)
            user.messages.append(index)
            user.message_ids.append(message_id)
            account = tracking.account_traits(ctx.get("groupId"), None).get("account_id")
            own = tracking.profile_traits(ctx.get("traits"), ctx)
            name = call.event if isinstance(call, tracking.TrackCall) else (call.name or "")
            interaction = Interaction(type=call.type, name=name, properties=call.properties)
            for task, rule, event_type in kinds.tracked(book, interaction):
                built = _event(task, rule, event_type, call.userId, message_id, at, interaction, user, own, account)
                if isinstance(built, str):
                    refuse(Outcome.REJECTED, built)
                    break
                if event_type is EventType.USER_ACTIVE:  # activity: only the latest call of a record counts
                    record = kinds.get(rule.kind).key(built)
                    slot = (record.user_id, record.task, record.instance_id)
                    if slot not in coalesced or at >= coalesced[slot].item.at:
                        previous = coalesced.get(slot)
                        held = previous.messages if previous else []
                        ids = previous.message_ids if previous else []
                        coalesced[slot] = _Coalesced(TaskItem(-1, built, at), held, ids)
                    coalesced[slot].messages.append(index)
                    coalesced[slot].message_ids.append(message_id)
                    continue
                k = item_index()
                items.append(TaskItem(k, built, at))
                owners[k] = [index]

        for latest in coalesced.values():
            k = item_index()
            event = latest.item.event.model_copy(update={"event_id": _combined(latest.message_ids)})
            items.append(TaskItem(k, event, latest.item.at))
            owners[k] = latest.messages
        for user_id, user in users.items():
            if not user.messages:
                continue
            update = UserUpdate(
                active_events=user.active,
                active_at=user.last_at,
                first_at=user.first_at,
                account_id=user.account_id,
                traits=user.traits,
                identified_at=user.identified_at,
                keep_seconds=self._keep,
            )
            k = item_index()
            items.append(UserItem(k, user_id, update, _combined(user.message_ids)))
            owners[k] = user.messages

        outcomes: dict[int, list[tuple[str | None, Outcome, str | None]]] = {}
        task_of = {i.index: i.event.task for i in items if isinstance(i, TaskItem)}
        for result in self._ingest.apply(items, book) if items else []:
            for message in owners.get(result.index, []):
                outcomes.setdefault(message, []).append((task_of.get(result.index), result.status, result.reason))
        for index, raw in enumerate(messages):
            if index in results:
                continue
            results[index] = _folded(index, _message_id(raw), outcomes.get(index, []))
        ordered = [results[i] for i in range(len(messages))]
        rejected = sum(r.status is Outcome.REJECTED for r in ordered)
        retry = sum(r.status is Outcome.RETRY for r in ordered)
        return TrackingResponse(
            success=retry == 0,
            results=ordered,
            accepted=len(ordered) - rejected - retry,
            rejected=rejected,
            retry=retry,
        )

    def _out_of_range(self, at: float, received: float) -> str | None:
        if at > received + self._limits.max_future_skew_seconds:
            return f"timestamp: more than {self._limits.max_future_skew_seconds} seconds in the future (after skew)"
        if at < received - self._limits.max_age_seconds:
            return f"timestamp: older than {self._limits.max_age_seconds / 86400:g} days"
        return None


def _message_id(raw: Any) -> str | None:
    value = raw.get("messageId") if isinstance(raw, dict) else None
    value = tracking._as_id(value)
    return value if isinstance(value, str) and 0 < len(value) <= tracking.MAX_ID_CHARS else None


def _combined(message_ids: list[str | None]) -> str | None:
    """One id for an update several messages made (the same messages sent again make the same id);
    None when any of them has no id of its own."""
    if not message_ids or any(m is None for m in message_ids):
        return None
    if len(message_ids) == 1:
        return message_ids[0]
    digest = hashlib.sha256("\x00".join(sorted(m for m in message_ids if m)).encode()).hexdigest()
    return f"batch:{digest[:40]}"


def _describe(error: ValidationError) -> str:
    """The first problems of a call, named by field (the call's type left out of the location)."""
    errors = [e | {"loc": tuple(e["loc"][1:]) if e["loc"] and e["loc"][0] in tracking.CALL_TYPES else e["loc"]}
              for e in error.errors()[:5]]  # fmt: skip
    return describe_errors(errors)[:500]


def _event(
    task: str,
    rule: Rule,
    event_type: EventType,
    user_id: str,
    message_id: str | None,
    at: float,
    call: Interaction,
    user: _User,
    own: dict[str, str],
    account: str | None,
) -> TaskEvent | str:
    """The rule's event a call is, or why it cannot be one (a reason, naming the task)."""
    instance = "default"
    prop = rule.track.instance_property if rule.track is not None else None
    if prop:
        value = tracking._as_id(call.properties.get(prop))
        if not isinstance(value, str) or not value:
            return f"properties.{prop}: missing; the rule for task '{task}' keys its instances by it"
        instance = value
    try:
        return TaskEvent(
            type=event_type.value,
            task=task,
            user_id=user_id,
            instance_id=instance,
            event_id=message_id,
            occurred_at=datetime.fromtimestamp(at, UTC),
            user=UserInfo.model_validate(user.user_info(own, account)),
            properties=tracking.bounded_properties(kinds.get(rule.kind).tracked_properties(rule, call)),
        )
    except ValidationError as exc:
        return f"task '{task}': {describe_errors(exc.errors()[:3])}"[:500]


def _folded(
    index: int, message_id: str | None, outcomes: list[tuple[str | None, Outcome, str | None]]
) -> MessageResult:
    """A message's result from its items': a passing fault wins (it is sent again), then what its tasks did."""
    if not outcomes:
        return MessageResult(index=index, status=Outcome.RECORDED, message_id=message_id)
    tasks = {task: status for task, status, _ in outcomes if task is not None}
    chosen = min(outcomes, key=lambda o: (_RANK[o[1]], o[0] is None))
    return MessageResult(index=index, status=chosen[1], message_id=message_id, reason=chosen[2], tasks=tasks or None)
