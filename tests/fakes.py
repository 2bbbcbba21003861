"""In-memory fakes behind redflag.ports, with the same conditional semantics as DynamoDB."""

from __future__ import annotations

from collections.abc import Iterable

from redflag import timers
from redflag.alerts import Alert
from redflag.ports import DuplicateEvent, VersionConflict
from redflag.rules import RuleBook, parse_rules


class MemoryTimerStore:
    def __init__(self, shards: int = 4) -> None:
        self.shards = shards
        self.timers: dict[timers.TimerKey, timers.Timer] = {}
        self.event_ids: set[str] = set()
        self.activity: dict[str, tuple[float, int]] = {}

    def get(self, key: timers.TimerKey) -> timers.Timer | None:
        return self.timers.get(key)

    def commit(self, timer: timers.Timer | None, expected_version: int, event_id: str | None = None) -> None:
        if event_id is not None and event_id in self.event_ids:
            raise DuplicateEvent()
        if timer is not None:
            stored = self.timers.get(timer.key)
            if (stored.version if stored else 0) != expected_version:
                raise VersionConflict()
        if event_id is not None:
            self.event_ids.add(event_id)
        if timer is not None:
            self.timers[timer.key] = timer.model_copy(update={"version": expected_version + 1})

    def record_activity(self, user_id: str, at: float, event_id: str | None = None) -> None:
        if event_id is not None:
            if event_id in self.event_ids:
                raise DuplicateEvent()
            self.event_ids.add(event_id)
        last, count = self.activity.get(user_id, (at, 0))
        self.activity[user_id] = (max(last, at), count + 1)

    def due(self, shard: int, now: float, limit: int) -> Iterable[timers.TimerKey]:
        return [
            key
            for key, t in sorted(self.timers.items(), key=lambda kv: kv[1].due_at or 0)
            if t.state is timers.TimerState.OPEN
            and t.due_at is not None
            and t.due_at <= now
            and timers.shard_of(key, self.shards) == shard
        ]


class StaticRules:
    def __init__(self, raw: dict[str, str]) -> None:
        self.book: RuleBook = parse_rules(raw)
        self.reads = 0

    def rulebook(self) -> RuleBook:
        self.reads += 1
        return self.book


class RecordingSender:
    """Idempotent on alert_id, like the real sender."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self._seen: set[str] = set()

    def send(self, alert: Alert) -> None:
        if alert.alert_id in self._seen:
            return
        self._seen.add(alert.alert_id)
        self.sent.append(alert)
