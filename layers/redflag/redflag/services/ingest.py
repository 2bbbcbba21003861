"""Where an HTTP event becomes a timer: validate each event, look up its rule, apply the timer state
machine, and commit with one conditional write. No AWS here: the store and the rules come in through
``redflag.services.ports``.

Cost per request: one batched, consistent read of every record the events touch, then one
conditional write per event that changes something (the write also records the event id, so
duplicates cost no extra item). Events for the same record are applied in order; different records
are written concurrently. A record is read again only when a concurrent writer won (version
conflict).

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
from redflag.core.activity import Activity, ActivityKey, apply_activity
from redflag.core.baselines import ALL, Threshold, threshold_for
from redflag.core.events import EventResult, EventType, IngestResponse, Outcome, TaskEvent, describe_errors
from redflag.kinds import InvalidRule, Rule, RuleBook
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
    workers: int = 16  # concurrent writes per request (different records)


@dataclass(frozen=True)
class _Planned:
    index: int
    event: TaskEvent
    at: float
    rule: Rule | None  # as it applies to the user's segment; None: user_active (an activity record)
    threshold: Threshold | None = None  # what a new run is armed with (learned thresholds)


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
        groups: dict[RecordKey, list[_Planned]] = {}
        planned_all: list[_Planned] = []
        for index, raw in enumerate(raw_events):
            planned = self._plan(index, raw, now, book)
            if isinstance(planned, EventResult):
                results[index] = planned
            else:
                planned_all.append(planned)
        for planned in self._with_thresholds(planned_all):
            groups.setdefault(_key_of(planned), []).append(planned)
        if groups:
            results |= self._apply_all(groups, now)
        ordered = [results[i] for i in range(len(raw_events))]
        rejected = sum(r.status is Outcome.REJECTED for r in ordered)
        retry = sum(r.status is Outcome.RETRY for r in ordered)
        return IngestResponse(results=ordered, accepted=len(ordered) - rejected - retry, rejected=rejected, retry=retry)

    # --- validation and rules: nothing touches the store yet ----------------------------------

    def _plan(self, index: int, raw: Any, now: float, book: RuleBook) -> _Planned | EventResult:
        event_id = raw.get("event_id") if isinstance(raw, dict) and isinstance(raw.get("event_id"), str) else None
        event_id = event_id if event_id is not None and len(event_id) <= 128 else None

        def done(status: Outcome, reason: str | None) -> EventResult:
            return EventResult(index=index, status=status, event_id=event_id, reason=reason)

        try:
            event = TaskEvent.model_validate(raw)
        except ValidationError as exc:
            return done(Outcome.REJECTED, describe_errors(exc.errors()))
        at = event.occurred_at.timestamp() if event.occurred_at is not None else now
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
            return _Planned(index, event, at, None)  # the user's activity record
        if rule is None:
            return done(Outcome.IGNORED, f"no rule for task '{event.task}'")
        if isinstance(rule, InvalidRule):
            return done(Outcome.IGNORED, f"the rule for task '{event.task}' is invalid: {rule.reason}")
        assert kind is not None
        if not kind.takes:
            return done(Outcome.IGNORED, kind.ignored(EventType(event.type), rule))
        if not rule.applies_to(event.user.segment):
            return done(Outcome.IGNORED, f"the rule for task '{event.task}' does not cover this user's segment")
        return _Planned(index, event, at, rule.for_segment(event.user.segment))

    def _with_thresholds(self, planned: list[_Planned]) -> list[_Planned]:
        """Runs armed under a learned threshold get it from the durations their kind names (a task's own,
        a funnel step's): one cached read of the distributions the request needs, however many events ask."""
        asks = {
            i: learned
            for i, p in enumerate(planned)
            if p.rule is not None and (learned := kinds.get(p.rule.kind).learning(p.rule, p.event)) is not None
        }
        if not asks:
            return planned
        segments = {i: planned[i].event.user.segment for i in asks}
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

    # --- the store: one batched read, then the writes ------------------------------------------

    def _apply_all(self, groups: dict[RecordKey, list[_Planned]], now: float) -> dict[int, EventResult]:
        try:
            stored = self._store.load(list(groups))
        except StoreUnavailable as exc:
            return {p.index: _retry(p, f"store unavailable ({exc.code})") for ps in groups.values() for p in ps}
        jobs = [(key, planned, stored.get(key)) for key, planned in groups.items()]
        if len(jobs) == 1 or self._limits.workers <= 1:
            outcomes = [self._apply_group(key, planned, current, now) for key, planned, current in jobs]
        else:
            with ThreadPoolExecutor(max_workers=min(self._limits.workers, len(jobs))) as pool:
                outcomes = list(pool.map(lambda job: self._apply_group(job[0], job[1], job[2], now), jobs))
        return {r.index: r for group in outcomes for r in group}

    def _apply_group(
        self, key: RecordKey, planned: list[_Planned], current: Record | None, now: float
    ) -> list[EventResult]:
        """The events of one record, in order. A fault stops the group: the rest are `retry` too,
        so a resend applies them in their order."""
        out: list[EventResult] = []
        for position, p in enumerate(planned):
            try:
                result, current = self._apply_one(key, p, current, now)
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
        self, key: RecordKey, p: _Planned, current: Record | None, now: float
    ) -> tuple[EventResult, Record | None]:
        event_id = p.event.event_id

        def done(status: Outcome, reason: str | None = None) -> EventResult:
            return EventResult(index=p.index, status=status, event_id=event_id, reason=reason)

        for _ in range(MAX_ATTEMPTS):
            if current is not None and timers.seen_before(current.seen, event_id):
                return done(Outcome.DUPLICATE, "event_id already applied"), current
            outcome, reason, changed = self._decide(key, p, current, now)
            if changed is None and (event_id is None or current is None):
                return done(outcome, reason), current
            base = changed if changed is not None else current
            assert base is not None
            record = base.model_copy(update={"seen": timers.remember(base.seen, event_id)})
            expected = current.version if current is not None else 0
            try:
                self._store.save(record, expected)
            except VersionConflict:
                current = self._store.load([key]).get(key)  # someone else won: read again, decide again
                continue
            return done(outcome, reason), record.model_copy(update={"version": expected + 1})
        return done(Outcome.RETRY, "the timer kept changing under concurrent writes; send this event again"), current

    def _decide(
        self, key: RecordKey, p: _Planned, current: Record | None, now: float
    ) -> tuple[Outcome, str | None, Record | None]:
        e = p.event
        if isinstance(key, ActivityKey):
            assert current is None or isinstance(current, Activity)
            return Outcome.RECORDED, None, apply_activity(current, key, p.at, now, e.user, self._policy)
        assert p.rule is not None and (current is None or isinstance(current, timers.Timer))
        decision = kinds.get(p.rule.kind).apply(
            current, key, EventType(e.type), p.at, p.rule, now, e.user, e.properties, self._policy, p.threshold
        )
        return decision.outcome, decision.reason, decision.timer


def _key_of(p: _Planned) -> RecordKey:
    e = p.event
    if p.rule is None:
        return ActivityKey(user_id=e.user_id)
    return kinds.get(p.rule.kind).key(e)


def _retry(p: _Planned, why: str) -> EventResult:
    return EventResult(index=p.index, status=Outcome.RETRY, event_id=p.event.event_id, reason=f"{why}; send again")
