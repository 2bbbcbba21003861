"""What the timers table holds of one user, for erasure (``redflag.services.users.UserRecords``): one
Query of the user's partition finds their timers, activity record, deferred emails and alerting state;
with them go the user's escalation state of earlier releases (its own partition). Opt-out and
suppression markers are not the user's records: they stay (``redflag.services.users``)."""

from __future__ import annotations

import json
from typing import Any

from redflag.adapters import codec
from redflag.adapters.dynamodb import DynamoTimerStore

# what of a user's partition is the user's: the sort keys the timers table uses for a user's records
USER_SORT_KEYS = (codec.KIND_USER, "emails", codec.KIND_ALERTING)
USER_SORT_PREFIXES = ("task#", "deferred#")


def _is_users(item: dict[str, Any]) -> bool:
    sk = str(item.get("sk", ""))
    return sk in USER_SORT_KEYS or sk.startswith(USER_SORT_PREFIXES)


def accounts_of(item: dict[str, Any]) -> set[str]:
    """The account ids a record of the user names: the activity record's ``account_id``, a timer's
    ``user.account_id``, a deferred email's timer's. Whatever cannot be read names none."""
    found: set[str] = set()
    if isinstance(item.get("account_id"), str):
        found.add(item["account_id"])
    user = item.get("user")
    if isinstance(user, dict) and isinstance(user.get("account_id"), str):
        found.add(user["account_id"])
    if isinstance(item.get("timer"), str):
        try:
            account = json.loads(item["timer"]).get("user", {}).get("account_id")
        except (ValueError, AttributeError):
            account = None
        if isinstance(account, str):
            found.add(account)
    return found


class DynamoUserRecords:
    def __init__(self, store: DynamoTimerStore) -> None:
        self._store = store

    def held(self, user_id: str) -> tuple[list[Any], set[str]]:
        held = [i for i in self._store.query_partition(user_id) if _is_users(i)]
        keys = [{"pk": str(i["pk"]), "sk": str(i["sk"])} for i in held]
        legacy = codec.escalation_key("user", user_id)
        if self._store.get_items([legacy]):
            keys.append(legacy)
        return keys, {a for i in held for a in accounts_of(i)}

    def delete(self, keys: list[Any]) -> int:
        return self._store.delete_keys(keys)
