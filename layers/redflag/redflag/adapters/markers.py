"""The stores behind ``redflag.services.users``: the opt-out markers in the timers table and the member markers
in the stats table."""

from __future__ import annotations

from collections.abc import Sequence

from redflag.adapters import codec as items
from redflag.adapters.dynamodb import DynamoTimerStore
from redflag.adapters.stats_table import user_hash
from redflag.services.ports import VersionConflict

KIND_SUPPRESS = "suppress"


class DynamoSuppressions:
    """Opt-out markers ``suppress#{key}`` / ``suppress``: no TTL, they are kept for good."""

    def __init__(self, store: DynamoTimerStore) -> None:
        self._store = store

    def suppress(self, keys: Sequence[str], at: float) -> None:
        for key in keys:
            item = items.suppression_item_key(key) | {"kind": KIND_SUPPRESS, "suppressed_at": items.number(at)}
            try:
                self._store.put_if_absent(item)
            except VersionConflict:
                continue  # opted out already: the first marker stays as written

    def allow(self, keys: Sequence[str]) -> None:
        self._store.delete_keys([items.suppression_item_key(k) for k in keys])

    def suppressed(self, keys: Sequence[str]) -> bool:
        return bool(self._store.get_items([items.suppression_item_key(k) for k in keys]))


class DynamoMembers:
    """The stats table's ``member#{account}`` / ``user_hash(account, user)`` markers. The stats table
    has the timers table's key schema (pk, sk), so its batched deletes are ``DynamoTimerStore``'s."""

    def __init__(self, stats: DynamoTimerStore) -> None:
        self._stats = stats

    def forget(self, user_id: str, accounts: Sequence[str]) -> int:
        keys = [{"pk": f"member#{a}", "sk": user_hash(a, user_id)} for a in accounts]
        return self._stats.delete_keys(keys) if keys else 0
