"""In-memory fakes behind redflag.services.ports, with the same conditional semantics as DynamoDB."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

from redflag.channels.messages import Alert
from redflag.core import timers
from redflag.core.rules import RuleBook, parse_rules
from redflag.core.timers import TimerKey
from redflag.services.ports import (
    ChannelFailed,
    DuePage,
    DueRef,
    FlagResult,
    Record,
    RecordKey,
    StoreUnavailable,
    VersionConflict,
)


def shard_of(key: timers.TimerKey, shards: int) -> int:
    return hash((key.user_id, key.task, key.instance_id)) % shards


class MemoryTimerStore:
    def __init__(self, shards: int = 4) -> None:
        self.shards = shards
        self.records: dict[RecordKey, Record] = {}
        self.calls: list[str] = []
        self.fail_saves: set[int] = set()  # which save calls (1-based) raise StoreUnavailable
        self.pages = 0  # due-index pages read
        self.counts = 0  # due-index pages counted (no entries returned)
        self.flag_calls: list[int] = []  # refs per flag_due_many call
        self.flag_faults: Callable[[DueRef], FlagResult | None] | None = None
        self._lock = threading.Lock()

    @property
    def timers(self) -> dict[timers.TimerKey, timers.Timer]:
        return {k: v for k, v in self.records.items() if isinstance(v, timers.Timer)}

    def get(self, key: RecordKey) -> Record | None:
        return self.records.get(key)

    def load(self, keys: Sequence[RecordKey]) -> dict[RecordKey, Record]:
        with self._lock:
            self.calls.append("load")
            return {k: self.records[k] for k in keys if k in self.records}

    def save(self, record: Record, expected_version: int) -> None:
        with self._lock:
            self.calls.append("save")
            if sum(c == "save" for c in self.calls) in self.fail_saves:
                raise StoreUnavailable("ProvisionedThroughputExceededException")
            stored = self.records.get(record.key)
            if (stored.version if stored else 0) != expected_version:
                raise VersionConflict()
            self.records[record.key] = record.model_copy(update={"version": expected_version + 1})

    def _due(self, shard: int, until: float) -> list[tuple[int, DueRef]]:
        return sorted(
            (t.due_at, ref_of(key))
            for key, t in self.timers.items()
            if t.state is timers.TimerState.OPEN
            and t.due_at is not None
            and t.due_at <= math.floor(until)
            and shard_of(key, self.shards) == shard
        )

    def due_page(self, shard: int, until: float, limit: int, after: object | None = None) -> DuePage:
        """Pages as DynamoDB gives them: by (due_at, key), ``limit`` at a time; the cursor is the last
        entry of a full page. Refs are plain tuples, like the real store's (pk, sk)."""
        with self._lock:
            self.pages += 1
            entries = self._due(shard, until)
            if after is not None:
                entries = [e for e in entries if e > after]  # type: ignore[operator]
            page = entries[:limit]
            cursor = page[-1] if len(page) == limit else None
            return DuePage([(ref, due_at) for due_at, ref in page], cursor)

    def due_count(self, shard: int, until: float, limit: int) -> int:
        with self._lock:
            self.counts += 1
            return min(limit, len(self._due(shard, until)))

    def flag_due(self, key: TimerKey, now: float, expires_at: int) -> bool:
        with self._lock:
            current = self.records.get(key)
            flagged = timers.expire(current, now) if isinstance(current, timers.Timer) else None
            if current is None or flagged is None:
                return False
            self.records[key] = flagged.model_copy(update={"expires_at": expires_at, "version": current.version + 1})
            return True

    def flag_due_many(self, refs: Sequence[DueRef], now: float, expires_at: int) -> list[FlagResult]:
        """One call for all of ``refs``, each its own conditional write; ``flag_faults`` answers some
        items with a fault instead (a throttled statement of a batch)."""
        self.flag_calls.append(len(refs))
        out = []
        for ref in refs:
            fault = self.flag_faults(ref) if self.flag_faults else None
            if fault is not None:
                out.append(fault)
                continue
            out.append(FlagResult.FLAGGED if self.flag_due(key_of(ref), now, expires_at) else FlagResult.LOST)
        return out


def ref_of(key: TimerKey) -> DueRef:
    return (key.user_id, key.task, key.instance_id)


def key_of(ref: DueRef) -> TimerKey:
    user_id, task, instance_id = ref
    return TimerKey(user_id=user_id, task=task, instance_id=instance_id)


class StaticRules:
    def __init__(self, raw: dict[str, str]) -> None:
        self.book: RuleBook = parse_rules(raw)
        self.reads = 0

    def rulebook(self) -> RuleBook:
        self.reads += 1
        return self.book


class RecordingSender:
    """Idempotent on alert_id, like the real sender; ``failing`` channels raise ChannelFailed."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.sent: list[Alert] = []
        self.failing = failing or set()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        if alert.channel in self.failing:
            raise ChannelFailed(alert.channel, "ThrottlingException")
        with self._lock:
            if alert.alert_id in self._seen:
                return
            self._seen.add(alert.alert_id)
            self.sent.append(alert)
