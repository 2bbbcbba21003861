"""The small interfaces the services need. AWS adapters and in-memory fakes both fit them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from redflag.alerts import Alert
from redflag.rules import RuleBook
from redflag.timers import Timer, TimerKey


class VersionConflict(Exception):
    """Someone else changed the timer between our read and our write; read again."""


class DuplicateEvent(Exception):
    """This event_id was already applied."""


class TimerStore(Protocol):
    def get(self, key: TimerKey) -> Timer | None: ...

    def commit(self, timer: Timer | None, expected_version: int, event_id: str | None = None) -> None:
        """Write ``timer`` (version bumped) if the stored version is still ``expected_version``
        (0 = must not exist), and claim ``event_id``, atomically. Raises VersionConflict or
        DuplicateEvent; writes nothing then."""
        ...

    def record_activity(self, user_id: str, at: float, event_id: str | None = None) -> None: ...

    def due(self, shard: int, now: float, limit: int) -> Iterable[TimerKey]: ...


class RuleSource(Protocol):
    def rulebook(self) -> RuleBook: ...


class AlertSender(Protocol):
    def send(self, alert: Alert) -> None:
        """Deliver once: a second call with the same ``alert.alert_id`` delivers nothing."""
        ...
