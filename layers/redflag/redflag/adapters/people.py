"""The per-user state the alerting path keeps in the timers table (``redflag.services.ports.People``): opt-out
markers, deferred emails, the email log behind the cap, escalation state. Every change is a
conditional write on the record's version, retried on a conflict."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from redflag.adapters import codec as items
from redflag.adapters.dynamodb import DynamoTimerStore
from redflag.core.interventions import EmailLog, Escalation, record_flag, reserve_email
from redflag.core.timers import Timer
from redflag.services.ports import VersionConflict

ATTEMPTS = 5


class DynamoPeople:
    def __init__(
        self, store: DynamoTimerStore, suppression_keys: Callable[[str, str | None], list[str]], shards: int
    ) -> None:
        self._store = store
        self._keys = suppression_keys
        self._shards = shards

    def suppressed(self, user_id: str, email: str | None) -> bool:
        keys = [items.suppression_item_key(k) for k in self._keys(user_id, email)]
        return bool(self._store.get_items(keys))

    def defer(self, timer: Timer, until: float) -> bool:
        item = items.deferred_item(timer, until, self._shards)
        try:
            self._store.put_if_absent(item)
        except VersionConflict:
            return False
        return True

    def reserve_email(self, user_id: str, alert_id: str, now: float, cap: int, window: float) -> bool:
        key = items.email_log_key(user_id)
        for _ in range(ATTEMPTS):
            stored = self._store.get_items([key]).get((key["pk"], key["sk"]))
            log = EmailLog(
                sent=tuple((a, float(t)) for a, t in json.loads(stored["sent"])) if stored else (),
                version=int(stored["version"]) if stored else 0,
            )
            allowed, changed = reserve_email(log, alert_id, now, cap, window)
            if changed is None:
                return allowed
            item = key | {
                "kind": "email_log",
                "sent": json.dumps(changed.sent),
                "version": log.version + 1,
                "expires_at": math.ceil(now + window),
            }
            try:
                self._store.put_versioned(item, log.version)
            except VersionConflict:
                continue
            return True
        raise VersionConflict()

    def escalate(
        self, scope: str, subject_id: str, flag_id: str, at: float, what: str, n: int, window: float
    ) -> Escalation | None:
        key = items.escalation_key(scope, subject_id)
        for _ in range(ATTEMPTS):
            stored = self._store.get_items([key]).get((key["pk"], key["sk"]))
            state = Escalation(scope=scope, subject_id=subject_id)
            if stored:
                state = Escalation.model_validate_json(stored["state"]).model_copy(
                    update={"version": int(stored["version"])}
                )
            decision = record_flag(state, flag_id, at, what, n, window)
            if decision.state is None:
                return decision.escalate
            item = key | {
                "kind": "escalation",
                "state": decision.state.model_dump_json(exclude={"version"}),
                "version": state.version + 1,
                "expires_at": math.ceil(at + 2 * window),
            }
            try:
                self._store.put_versioned(item, state.version)
            except VersionConflict:
                continue
            return decision.escalate
        raise VersionConflict()
