"""The per-user state the alerting path keeps in the timers table (``redflag.services.ports.People``):
opt-out and suppression markers, one alerting record per user (the email log behind the cap and the
user's recent red flags), an escalation record per account, and emails kept for quiet hours.

A stream batch reads all of it in BatchGetItem calls of 100 keys, consistently, and writes each
changed record once, with a condition on its version (concurrently); a record someone else wrote
meanwhile is reported, not overwritten, so the service reads it again and decides again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from redflag.adapters import codec
from redflag.adapters.dynamodb import DynamoTimerStore
from redflag.core.interventions import Escalation, Standing, UserState
from redflag.core.timers import Timer
from redflag.services.ports import StoreUnavailable, VersionConflict


class DynamoPeople:
    def __init__(
        self,
        store: DynamoTimerStore,
        suppression_keys: Callable[[str, str | None], list[str]],
        shards: int,
        keep_seconds: float,
        workers: int = 16,
    ) -> None:
        self._store = store
        self._keys = suppression_keys
        self._shards = shards
        self._keep = keep_seconds
        self._workers = workers

    def load(self, users: Mapping[str, str | None], accounts: Collection[str]) -> Standing:
        markers: dict[tuple[str, str], str] = {}  # a marker's key -> the user it stops
        keys: list[dict[str, str]] = []
        for user_id, address in users.items():
            keys.append(codec.user_state_key(user_id))
            for k in self._keys(user_id, address):
                marker = codec.suppression_item_key(k)
                markers[(marker["pk"], marker["sk"])] = user_id
                keys.append(marker)
        keys += [codec.escalation_key("account", a) for a in accounts]
        found = self._store.get_items(keys)
        standing = Standing()
        for (pk, sk), item in found.items():
            if (pk, sk) in markers:
                standing.suppressed.add(markers[(pk, sk)])
            elif sk == codec.KIND_ALERTING:
                standing.users[pk] = codec.user_state_of(item)
            elif pk.startswith("esc#account#"):
                escalation = codec.account_escalation_of(item)
                standing.accounts[escalation.subject_id] = escalation
        return standing

    def save(self, users: Sequence[UserState], accounts: Sequence[Escalation]) -> dict[tuple[str, str], str]:
        writes: list[tuple[tuple[str, str], dict[str, Any], int]] = [
            (("user", s.user_id), codec.user_state_item(s, self._keep), s.version) for s in users
        ]
        writes += [
            (("account", e.subject_id), codec.account_escalation_item(e, self._keep), e.version) for e in accounts
        ]

        def write(job: tuple[tuple[str, str], dict[str, Any], int]) -> tuple[tuple[str, str], str] | None:
            subject, item, version = job
            try:
                self._store.put_versioned(item, version)
            except VersionConflict:
                return subject, "lost"
            except StoreUnavailable:
                return subject, "unavailable"
            return None

        return dict(answer for answer in self._map(write, writes) if answer is not None)

    def defer(self, kept: Sequence[tuple[Timer, float]]) -> list[Timer]:
        def put(job: tuple[Timer, float]) -> Timer | None:
            try:
                self._store.put_if_absent(codec.deferred_item(job[0], job[1], self._shards))
            except VersionConflict:
                return None  # kept already (a retried batch): the first stays as it was
            except StoreUnavailable:
                return job[0]
            return None

        return [timer for timer in self._map(put, list(kept)) if timer is not None]

    def _map(self, fn: Callable[[Any], Any], jobs: list[Any]) -> list[Any]:
        if len(jobs) <= 1 or self._workers <= 1:
            return [fn(job) for job in jobs]
        with ThreadPoolExecutor(max_workers=min(self._workers, len(jobs))) as pool:
            return list(pool.map(fn, jobs))
