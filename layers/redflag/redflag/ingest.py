"""Where an HTTP event becomes a timer: validate each event, look up its rule, apply the
timer state machine, and commit with a conditional write. No AWS here: the store and the
rules come in through ``redflag.ports``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from redflag import timers
from redflag.events import EventResult, EventType, IngestResponse, Outcome, TaskEvent, describe_errors
from redflag.ports import DuplicateEvent, RuleSource, TimerStore, VersionConflict
from redflag.rules import InvalidRule, RuleBook

MAX_ATTEMPTS = 5


class IngestService:
    def __init__(
        self,
        store: TimerStore,
        rules: RuleSource,
        clock: Callable[[], float],
        policy: timers.Policy = timers.Policy(),
        max_future_skew_seconds: int = 300,
    ) -> None:
        self._store = store
        self._rules = rules
        self._clock = clock
        self._policy = policy
        self._skew = max_future_skew_seconds

    def ingest(self, raw_events: Sequence[Any]) -> IngestResponse:
        now = self._clock()
        book = self._rules.rulebook()
        results = [self._one(index, raw, now, book) for index, raw in enumerate(raw_events)]
        rejected = sum(r.status is Outcome.REJECTED for r in results)
        return IngestResponse(results=results, accepted=len(results) - rejected, rejected=rejected)

    def _one(self, index: int, raw: Any, now: float, book: RuleBook) -> EventResult:
        event_id = raw.get("event_id") if isinstance(raw, dict) and isinstance(raw.get("event_id"), str) else None
        try:
            event = TaskEvent.model_validate(raw)
        except ValidationError as exc:
            return EventResult(
                index=index, status=Outcome.REJECTED, event_id=event_id, reason=describe_errors(exc.errors())
            )
        at = event.occurred_at.timestamp() if event.occurred_at else now
        if at > now + self._skew:
            reason = f"occurred_at: more than {self._skew} seconds in the future"
            return EventResult(index=index, status=Outcome.REJECTED, event_id=event_id, reason=reason)
        outcome, reason = self._apply(event, at, now, book)
        return EventResult(index=index, status=outcome, event_id=event_id, reason=reason)

    def _apply(self, event: TaskEvent, at: float, now: float, book: RuleBook) -> tuple[Outcome, str | None]:
        kind = EventType(event.type)
        if kind is EventType.USER_ACTIVE:
            try:
                self._store.record_activity(event.user_id, at, event.event_id)
            except DuplicateEvent:
                return Outcome.DUPLICATE, "event_id already received"
            return Outcome.RECORDED, None
        rule = book.lookup(event.task)
        if rule is None:
            return Outcome.IGNORED, f"no rule for task '{event.task}'"
        if isinstance(rule, InvalidRule):
            return Outcome.IGNORED, f"the rule for task '{event.task}' is invalid: {rule.reason}"
        if not rule.applies_to(event.user.segment):
            return Outcome.IGNORED, f"the rule for task '{event.task}' does not cover this user's segment"
        key = timers.TimerKey(user_id=event.user_id, task=event.task, instance_id=event.instance_id)
        for _ in range(MAX_ATTEMPTS):
            current = self._store.get(key)
            decision = timers.apply_event(current, key, kind, at, rule, now, event.user, event.properties, self._policy)
            if decision.timer is None and event.event_id is None:
                return decision.outcome, decision.reason
            try:
                self._store.commit(decision.timer, current.version if current else 0, event.event_id)
            except DuplicateEvent:
                return Outcome.DUPLICATE, "event_id already received"
            except VersionConflict:
                continue
            return decision.outcome, decision.reason
        return Outcome.REJECTED, "the timer kept changing under concurrent writes; retry the event"
