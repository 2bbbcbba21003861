"""In-memory fakes behind redflag.services.ports, with the same conditional semantics as DynamoDB."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from redflag import channels
from redflag.channels.base import Alert
from redflag.core import timers
from redflag.core.interventions import Escalation, Standing, UserState
from redflag.core.timers import TimerKey
from redflag.kinds import RuleBook, parse_rules
from redflag.services.ports import (
    ChannelFailed,
    Claim,
    DuePage,
    DueRef,
    FlagResult,
    Record,
    RecordKey,
    Refused,
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

    def load(self, keys: Sequence[RecordKey], consistent: bool = True) -> dict[RecordKey, Record]:
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
    """Every channel's adapter at once (``Deliverer``): records what it sends; ``failing`` channels
    raise ChannelFailed (a passing fault), ``refusing`` ones refuse for good."""

    def __init__(self, failing: set[str] | None = None, refusing: set[str] | None = None) -> None:
        self.sent: list[Alert] = []
        self.failing = failing or set()
        self.refusing = refusing or set()
        self._lock = threading.Lock()

    def deliver(self, alert: Alert) -> str | Refused:
        if alert.channel in self.failing:
            raise ChannelFailed(alert.channel, "ThrottlingException")
        if alert.channel in self.refusing:
            return Refused("MessageRejected")
        with self._lock:
            self.sent.append(alert)
            return f"m-{len(self.sent)}"

    def senders(self) -> dict[str, RecordingSender]:
        return dict.fromkeys(channels.REGISTRY, self)


class MemorySendOnce:
    """``SendOnce`` in memory, with DynamoDB's semantics: a claim is a conditional write."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[Claim, dict[str, str] | None, float]] = {}  # a crashed claim never lapses here
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def record_id(self, alert_id: str) -> str:
        return f"alert#{alert_id}"

    def claim(self, alert_ids: Sequence[str], until: float) -> dict[str, tuple[Claim, dict[str, str] | None]]:
        out: dict[str, tuple[Claim, dict[str, str] | None]] = {}
        with self._lock:
            for a in alert_ids:
                self.calls.append("claim")
                stored = self.records.get(a)
                if stored is None:
                    self.records[a] = (Claim.BUSY, None, until)
                    out[a] = (Claim.NEW, None)
                else:
                    out[a] = (stored[0], stored[1])
        return out

    def complete(self, results: Mapping[str, dict[str, str]]) -> None:
        with self._lock:
            self.calls.append("complete")
            for a, result in results.items():
                self.records[a] = (Claim.DONE, result, 0.0)

    def release(self, alert_ids: Sequence[str]) -> None:
        with self._lock:
            self.calls.append("release")
            for a in alert_ids:
                self.records.pop(a, None)


class NoParking:
    def __init__(self) -> None:
        self.parked: list[tuple[str, str]] = []

    def park(self, alert: Alert, error: str, record_id: str) -> None:
        self.parked.append((alert.alert_id, error))


class MemoryPeople:
    """``People`` in memory: versioned states, conditional writes; ``suppressed`` user ids; ``steal``:
    a concurrent writer bumps these states once, between the read and the write."""

    def __init__(self, suppressed: set[str] | None = None) -> None:
        self.users: dict[str, UserState] = {}
        self.accounts: dict[str, Escalation] = {}
        self.suppressed = suppressed or set()
        self.deferred: dict[str, float] = {}
        self.calls: list[str] = []
        self.steal: set[tuple[str, str]] = set()

    def load(self, users: Mapping[str, str | None], accounts: Collection[str]) -> Standing:
        self.calls.append("load")
        return Standing(
            suppressed={u for u in users if u in self.suppressed},
            users={u: self.users[u] for u in users if u in self.users},
            accounts={a: self.accounts[a] for a in accounts if a in self.accounts},
        )

    def save(self, users: Sequence[UserState], accounts: Sequence[Escalation]) -> dict[tuple[str, str], str]:
        lost: dict[tuple[str, str], str] = {}
        for subject in list(self.steal):
            scope, sid = subject
            if scope == "user" and sid in self.users:
                self.users[sid] = self.users[sid].model_copy(update={"version": self.users[sid].version + 1})
            self.steal.discard(subject)
        for s in users:
            self.calls.append("save")
            stored = self.users.get(s.user_id)
            if (stored.version if stored else 0) != s.version:
                lost[("user", s.user_id)] = "lost"
                continue
            self.users[s.user_id] = s.model_copy(update={"version": s.version + 1})
        for e in accounts:
            self.calls.append("save")
            stored_e = self.accounts.get(e.subject_id)
            if (stored_e.version if stored_e else 0) != e.version:
                lost[("account", e.subject_id)] = "lost"
                continue
            self.accounts[e.subject_id] = e.model_copy(update={"version": e.version + 1})
        return lost

    def defer(self, kept: Sequence[tuple[timers.Timer, float]]) -> list[timers.Timer]:
        for timer, until in kept:
            self.deferred.setdefault(timer.alert_id("user"), until)
        return []


class MemoryFlags:
    """The timers table's flag items (``put_flag``, ``flags``) and account flags, in memory."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], tuple[str, Any]] = {}
        self.account_flags: dict[str, Any] = {}

    def put_flag(self, kind: Any, subject: Any, retention_seconds: int, now: float) -> bool:
        ref = kind.flag_ref(subject)
        if ref in self.items:
            return False
        self.items[ref] = (kind.name, subject)
        return True

    def flags(self, group: str, latest: int | None = None) -> list[tuple[str, Any]]:
        found = [flag for (g, _), flag in sorted(self.items.items()) if g == group]
        return found[::-1][:latest] if latest is not None else found

    def put_account_flag(self, flag: Any, retention_seconds: int) -> bool:
        key = f"{flag.account_id}#{flag.task}#{flag.week}"
        if key in self.account_flags:
            return False
        self.account_flags[key] = flag
        return True


class FoldBuckets:
    """A stats fold's rate buckets, read as the stats table answers them."""

    def __init__(self, fold: Any) -> None:
        self.fold = fold

    def rate_window(self, name: str, first: int, end: int) -> dict[str, int]:
        total: dict[str, int] = {}
        for (n, minute), counts in self.fold.buckets.items():
            if n == name and first <= minute < end:
                for k, v in counts.items():
                    total[k] = total.get(k, 0) + v
        return total
