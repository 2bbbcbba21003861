"""Ingest reads its records eventually consistently (half the read units): a stale read may cost a
write and a second, consistent read, never a wrong answer. The store here answers an eventually
consistent read from a snapshot taken before the last writes, as DynamoDB may for a moment."""

from __future__ import annotations

import json
from collections.abc import Sequence

from redflag.core.events import Outcome
from redflag.services.ingest import IngestService
from redflag.services.ports import Record, RecordKey
from tests.fakes import MemoryTimerStore, StaticRules

RULES = {"upload": json.dumps({"label": "an upload", "threshold_seconds": 900})}


class LaggingStore(MemoryTimerStore):
    """Eventually consistent reads see ``snapshot`` (what was stored when ``lag`` was called)."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: dict[RecordKey, Record] | None = None
        self.reads: list[bool] = []

    def lag(self) -> None:
        self.snapshot = dict(self.records)

    def load(self, keys: Sequence[RecordKey], consistent: bool = True) -> dict[RecordKey, Record]:
        self.reads.append(consistent)
        if consistent or self.snapshot is None:
            return super().load(keys)
        self.calls.append("load")
        return {k: self.snapshot[k] for k in keys if k in self.snapshot}


class Clock:
    def __call__(self) -> float:
        return 1_700_000_000.0


def ev(kind: str, event_id: str | None = None) -> dict:
    return {"type": kind, "task": "upload", "user_id": "u1"} | ({"event_id": event_id} if event_id else {})


def test_the_batched_read_is_eventually_consistent() -> None:
    store = LaggingStore()
    IngestService(store, StaticRules(RULES), Clock()).ingest([ev("task_started", "s1")])
    assert store.reads == [False]


def test_a_write_on_a_stale_read_is_refused_then_decided_again_on_a_consistent_one() -> None:
    answers, stored = [], []
    for stale in (False, True):
        store = LaggingStore()
        service = IngestService(store, StaticRules(RULES), Clock())
        service.ingest([ev("task_started", "s1")])
        if stale:
            store.lag()  # from here the stale read sees the open timer, version 1
        service.ingest([ev("task_completed", "c1")])  # version 2, completed
        out = service.ingest([ev("task_started", "s2")])  # stale: decided on the open v1, its write refused
        answers.append([(r.status, r.reason) for r in out.results])
        stored.append(list(store.records.values()))
        if stale:
            assert store.reads == [False, False, False, True]  # the refused write's consistent re-read
    assert answers[0] == answers[1] and stored[0] == stored[1]  # as if every read had been consistent
    assert stored[1][0].version == 3


def test_an_answer_that_writes_nothing_is_given_on_a_consistent_read() -> None:
    store = LaggingStore()
    service = IngestService(store, StaticRules(RULES), Clock())
    store.lag()
    service.ingest([ev("task_started")])  # no event id: a completion of an absent timer writes nothing
    out = service.ingest([ev("task_completed")])
    assert [r.status for r in out.results] == [Outcome.COMPLETED]  # not "no timer": the record was read again
    assert store.reads == [False, False, True]


def test_a_duplicate_on_a_stale_read_is_still_a_duplicate() -> None:
    store = LaggingStore()
    service = IngestService(store, StaticRules(RULES), Clock())
    service.ingest([ev("task_started", "s1")])
    store.lag()
    service.ingest([ev("task_completed", "c1")])
    out = service.ingest([ev("task_started", "s1")])  # the stale read still holds s1
    assert [r.status for r in out.results] == [Outcome.DUPLICATE]
    assert [t.state for t in store.records.values()] == ["completed"]
