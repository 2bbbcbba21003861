"""Where an HTTP event becomes a timer: validate each event, look up its rule, apply the timer state
machine, and commit with one conditional write. No AWS here: the store and the rules come in through
``redflag.services.ports``.

Cost per request: one batched read of every record the events touch, eventually consistent (half
the read units of a consistent one: every write it leads to is conditional on the version read) unless
it also reads the profiles personalised events need; then one conditional write per event that
changes something (the write also records the event id, so duplicates cost no extra item). Events
for the same record are applied in order; different records are written concurrently. A record is
read again, consistently, only when a concurrent writer won or the read was stale (version conflict),
or before an answer that writes nothing rests on an eventually consistent read.

What a client can rely on: every event gets a status. ``retry`` means a passing fault kept it from
being applied (nothing of it was written): send that event again. Events with any other status are
done; sending them again is harmless if they carry an ``event_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from redflag import kinds
from redflag.core import timers
from redflag.core.activity import Activity, ActivityKey, UserUpdate, apply_update
from redflag.core.baselines import ALL, Threshold, threshold_for
from redflag.core.events import EventResult, EventType, IngestResponse, Outcome, TaskEvent, UserInfo, describe_errors
from redflag.core.rules import RuleFields
from redflag.kinds import InvalidRule, Rule, RuleBook
from redflag.kinds.base import Applied
from redflag.services.ports import (
    BaselineSource,
    Record,
    RecordKey,
    RuleSource,
    StoreUnavailable,
    TimerStore,
    VersionConflict,
)

MAX_ATTEMPTS = 5  # writes of one event before it is answered `retry` (each lost to a concurrent writer)


@dataclass(frozen=True)
class Limits:
    max_future_skew_seconds: int = 300
    max_age_seconds: int = 7 * 86400
    workers: int = 8  # concurrent writes per request (different records); IngestSettings.ingest_concurrency


@dataclass(frozen=True)
class TaskItem:
    """One event of a rule's timer from the tracking API (``redflag.services.tracking``): validated, its
    time settled. ``personalise``: the user's profile, read in the same batched read as the timers,
    fills in what ``event.user`` leaves unset (a track carries no traits of its own)."""

    index: int
    event: TaskEvent
    at: float
    personalise: bool = True


@dataclass(frozen=True)
class UserItem:
    """One update of a user's record (activity, profile) from the tracking API: one per user and request."""

    index: int
    user_id: str
    update: UserUpdate
    event_id: str | None = None


@dataclass(frozen=True)
class _Planned:
    seq: int
    index: int
    key: RecordKey
    at: float
    event_id: str | None
    event: TaskEvent | None = None  # None: an update of the user's record
    rule: Rule | None = None  # as it applies to the user's segment (once known)
    update: UserUpdate | None = None
    threshold: Threshold | None = None  # what a new run is armed with (learned thresholds)
    personalise: bool = False  # the segment, and so the rule, is known after the profile is read


class IngestService:
    def __init__(
        self,
        store: TimerStore,
        rules: RuleSource,
        clock: Callable[[], float],
        policy: timers.Policy = timers.Policy(),
        limits: Limits = Limits(),
        baselines: BaselineSource | None = None,
    ) -> None:
        self._store = store
        self._rules = rules
        self._clock = clock
        self._policy = policy
        self._limits = limits
        self._baselines = baselines

    def ingest(self, raw_events: Sequence[Any]) -> IngestResponse:
        now = self._clock()
        book = self._rules.rulebook()
        results: dict[int, EventResult] = {}
        planned: list[_Planned] = []
        for index, raw in enumerate(raw_events):
            p = self._plan(index, raw, now, book)
            if isinstance(p, EventResult):
                results[index] = p
            else:
                planned.append(p)
        results |= {r.index: r for r in self._run(planned, now)}
        ordered = [results[i] for i in range(len(raw_events))]
        rejected = sum(r.status is Outcome.REJECTED for r in ordered)
        retry = sum(r.status is Outcome.RETRY for r in ordered)
        return IngestResponse(results=ordered, accepted=len(ordered) - rejected - retry, rejected=rejected, retry=retry)

    def apply(self, items: Sequence[TaskItem | UserItem], book: RuleBook | None = None) -> list[EventResult]:
        """The tracking API's items, with one batched read (timers and the profiles they need) and one
        conditional write per record change; one result per item (``index``: the item's message)."""
        now = self._clock()
        book = book if book is not None else self._rules.rulebook()
        done: list[EventResult] = []
        planned: list[_Planned] = []
        for seq, item in enumerate(items):
            if isinstance(item, UserItem):
                key = ActivityKey(user_id=item.user_id)
                planned.append(_Planned(seq, item.index, key, now, item.event_id, update=item.update))
                continue
            p = self._check(seq, item.index, item.event, item.at, now, book, item.personalise)
            (done if isinstance(p, EventResult) else planned).append(p)  # type: ignore[arg-type]  # each list takes its own
        return done + self._run(planned, now)

    def rulebook(self) -> RuleBook:
        return self._rules.rulebook()

    # --- validation and rules: nothing touches the store yet ----------------------------------

    def _plan(self, index: int, raw: Any, now: float, book: RuleBook) -> _Planned | EventResult:
        event_id = raw.get("event_id") if isinstance(raw, dict) and isinstance(raw.get("event_id"), str) else None
        event_id = event_id if event_id is not None and len(event_id) <= 128 else None
        try:
            event = TaskEvent.model_validate(raw)
        except ValidationError as exc:
            reason = describe_errors(exc.errors())
            return EventResult(index=index, status=Outcome.REJECTED, event_id=event_id, reason=reason)
        at = event.occurred_at.timestamp() if event.occurred_at is not None else now
        return self._check(index, index, event, at, now, book, personalise=False)

    def _check(
        self, seq: int, index: int, event: TaskEvent, at: float, now: float, book: RuleBook, personalise: bool
    ) -> _Planned | EventResult:
        def done(status: Outcome, reason: str | None) -> EventResult:
            return EventResult(index=index, status=status, event_id=event.event_id, reason=reason)

        if at > now + self._limits.max_future_skew_seconds:
            return done(
                Outcome.REJECTED, f"occurred_at: more than {self._limits.max_future_skew_seconds} seconds in the future"
            )
        if at < now - self._limits.max_age_seconds:
            days = self._limits.max_age_seconds / 86400
            return done(Outcome.REJECTED, f"occurred_at: older than {days:g} days")
        rule = book.lookup(event.task)
        kind = kinds.get(rule.kind) if isinstance(rule, Rule) else None
        if EventType(event.type) is EventType.USER_ACTIVE and not (
            kind is not None and EventType.USER_ACTIVE in kind.takes
        ):
            update = UserUpdate(active_events=1, active_at=at, first_at=at, account_id=event.user.account_id)
            return _Planned(seq, index, ActivityKey(user_id=event.user_id), at, event.event_id, event, update=update)
        if rule is None:
            return done(Outcome.IGNORED, f"no rule for task '{event.task}'")
        if isinstance(rule, InvalidRule):
            return done(Outcome.IGNORED, f"the rule for task '{event.task}' is invalid: {rule.reason}")
        assert kind is not None
        if not kind.takes:
            return done(Outcome.IGNORED, kind.ignored(EventType(event.type), rule))
        planned = _Planned(seq, index, kind.key(event), at, event.event_id, event, rule, personalise=personalise)
        return planned if personalise else self._for_segment(planned)

    def _for_segment(self, p: _Planned) -> _Planned | EventResult:
        """The rule as it applies to the user's segment, or `ignored` when it does not cover it."""
        assert p.event is not None and p.rule is not None
        segment = p.event.user.segment
        if not p.rule.applies_to(segment):
            reason = f"the rule for task '{p.event.task}' does not cover this user's segment"
            return EventResult(index=p.index, status=Outcome.IGNORED, event_id=p.event_id, reason=reason)
        return replace(p, rule=p.rule.for_segment(segment), personalise=False)

    def _with_thresholds(self, planned: list[_Planned]) -> list[_Planned]:
        """Runs armed under a learned threshold get it from the durations their kind names (a task's own,
        a funnel step's): one cached read of the distributions the request needs, however many events ask."""
        asks: dict[int, tuple[str, RuleFields]] = {}
        segments: dict[int, str | None] = {}
        for i, p in enumerate(planned):
            if p.rule is not None and p.event is not None:
                learned = kinds.get(p.rule.kind).learning(p.rule, p.event)
                if learned is not None:
                    asks[i], segments[i] = learned, p.event.user.segment
        if not asks:
            return planned
        keys = sorted({(name, seg) for i, (name, _) in asks.items() for seg in [segments[i] or ALL, ALL]})
        try:
            found = self._baselines.histograms(keys) if self._baselines is not None else {}
        except StoreUnavailable:
            found = {}  # learning is best effort: the fallback threshold applies
        out = list(planned)
        for i, (name, rule) in asks.items():
            per_segment = {seg: hist for (task, seg), hist in found.items() if task == name}
            out[i] = replace(planned[i], threshold=threshold_for(rule, segments[i], per_segment))
        return out

    def _run(self, planned: list[_Planned], now: float) -> list[EventResult]:
        """One batched read of every record the items touch (and the profiles personalised events need),
        the segments settled, then the writes."""
        if not planned:
            return []
        profiles = {ActivityKey(user_id=p.event.user_id) for p in planned if p.personalise and p.event is not None}
        keys = list(dict.fromkeys([p.key for p in planned] + sorted(profiles, key=lambda k: k.user_id)))
        consistent = bool(profiles)  # a profile decides the rule: read as it is; a timer is guarded by its write
        try:
            stored = self._store.load(keys, consistent=consistent)
        except StoreUnavailable as exc:
            return [_retry(p, f"store unavailable ({exc.code})") for p in planned]
        out: list[EventResult] = []
        ready: list[_Planned] = []
        for p in planned:
            if p.personalise and p.event is not None:
                record = stored.get(ActivityKey(user_id=p.event.user_id))
                event = p.event.model_copy(update={"user": _personalised(p.event.user, record)})
                settled = self._for_segment(replace(p, event=event))
                (out if isinstance(settled, EventResult) else ready).append(settled)  # type: ignore[arg-type]  # each list takes its own
            else:
                ready.append(p)
        groups: dict[RecordKey, list[_Planned]] = {}
        for p in self._with_thresholds(ready):
            groups.setdefault(p.key, []).append(p)
        jobs = [(key, group, stored.get(key)) for key, group in groups.items()]
        if len(jobs) == 1 or self._limits.workers <= 1:
            outcomes = [self._apply_group(key, group, current, now, consistent) for key, group, current in jobs]
        else:
            with ThreadPoolExecutor(max_workers=min(self._limits.workers, len(jobs))) as pool:
                outcomes = list(pool.map(lambda job: self._apply_group(job[0], job[1], job[2], now, consistent), jobs))
        return out + [r for group in outcomes for r in group]

    # --- the writes: one conditional write per record change ------------------------------------

    def _apply_group(
        self, key: RecordKey, planned: list[_Planned], current: Record | None, now: float, fresh: bool = True
    ) -> list[EventResult]:
        """The events of one record, in order. A fault stops the group: the rest are `retry` too,
        so a resend applies them in their order. ``fresh``: ``current`` was read consistently (else
        it may be stale, until this group writes the record or reads it again)."""
        out: list[EventResult] = []
        for position, p in enumerate(planned):
            try:
                result, current, fresh = self._apply_one(key, p, current, now, fresh)
            except StoreUnavailable as exc:
                return out + [_retry(q, f"store unavailable ({exc.code})") for q in planned[position:]]
            except Exception as exc:  # a bug must not turn applied neighbours into a 500
                return out + [_retry(q, f"internal error ({type(exc).__name__})") for q in planned[position:]]
            out.append(result)
            if result.status is Outcome.RETRY:
                later = planned[position + 1 :]
                return out + [_retry(q, "an earlier event for the same timer was not applied") for q in later]
        return out

    def _apply_one(
        self, key: RecordKey, p: _Planned, current: Record | None, now: float, fresh: bool
    ) -> tuple[EventResult, Record | None, bool]:
        """One event on its record; the record after it, and whether that is known to be the stored one.
        A stale read is safe for an answer that writes: the write is conditional on the version read, so
        a stale one only loses the write, and the record is read again (consistently) and the event
        decided again. An answer that writes nothing is given on a consistent read only. A duplicate's
        may rest on any read: an event id the record holds was applied, however stale the read."""
        event_id = p.event_id

        def done(status: Outcome, reason: str | None = None) -> EventResult:
            return EventResult(index=p.index, status=status, event_id=event_id, reason=reason)

        for _ in range(MAX_ATTEMPTS):
            if current is not None and timers.seen_before(current.seen, event_id):
                return done(Outcome.DUPLICATE, "event_id already applied"), current, fresh
            outcome, reason, changed = self._decide(key, p, current, now)
            if changed is None and (event_id is None or current is None):
                if not fresh:  # nothing to write: make sure of the record before answering
                    current, fresh = self._store.load([key]).get(key), True
                    continue
                return done(outcome, reason), current, fresh
            base = changed if changed is not None else current
            assert base is not None
            expected = current.version if current is not None else 0
            # one copy: the event id remembered, and the version the store writes
            record = base.model_copy(update={"seen": timers.remember(base.seen, event_id), "version": expected + 1})
            try:
                self._store.save(record, expected)
            except VersionConflict:  # someone else won, or the read was stale: read again, decide again
                current, fresh = self._store.load([key]).get(key), True
                continue
            return done(outcome, reason), record, True
        retry = done(Outcome.RETRY, "the timer kept changing under concurrent writes; send this event again")
        return retry, current, fresh

    def _decide(
        self, key: RecordKey, p: _Planned, current: Record | None, now: float
    ) -> tuple[Outcome, str | None, Record | None]:
        e = p.event
        if isinstance(key, ActivityKey):
            assert p.update is not None and (current is None or isinstance(current, Activity))
            return Outcome.RECORDED, None, apply_update(current, key, p.update, now, self._policy)
        assert e is not None and p.rule is not None and (current is None or isinstance(current, timers.Timer))
        applied = Applied(key, EventType(e.type), p.at, p.rule, now, e.user, e.properties, self._policy, p.threshold)
        decision = kinds.get(p.rule.kind).apply(current, applied)
        return decision.outcome, decision.reason, decision.timer


def _personalised(user: UserInfo, record: Record | None) -> UserInfo:
    """The event's own user info, with what the user's profile holds where it leaves a field unset."""
    if not isinstance(record, Activity):
        return user
    stored = record.user().model_dump(exclude_none=True)
    own = user.model_dump(exclude_none=True)
    if not stored:
        return user
    return UserInfo.model_construct(**(stored | own))  # both checked at the door: the profile when written


def _retry(p: _Planned, why: str) -> EventResult:
    return EventResult(index=p.index, status=Outcome.RETRY, event_id=p.event_id, reason=f"{why}; send again")
