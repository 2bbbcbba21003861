"""Where a timer becomes an alert: a stream change that is a red flag is turned into the
email and CS message its rule asks for, each sent exactly once (the sender is idempotent)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redflag import alerts, timers
from redflag.ports import AlertSender


class AlertingService:
    def __init__(self, sender: AlertSender, clock: Callable[[], float]) -> None:
        self._sender = sender
        self._clock = clock

    def handle_change(
        self, event_name: str, by_ttl: bool, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> list[alerts.Alert]:
        timer = timers.red_flag(event_name, by_ttl, old, new)
        if timer is None:
            return []
        planned = alerts.plan(timer, self._clock())
        for alert in planned:
            self._sender.send(alert)
        return planned
