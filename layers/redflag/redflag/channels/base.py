"""What every channel shares: the alert it delivers, the red flag it composes from. Pure.

A channel is one module (``email``, ``cs``, ``webhook``, ``slack``) with its alert model and how it
composes one from a red flag, whatever the flag's kind: the words and facts come from the kind
(``redflag.kinds``), the medium's rules (escaping, encoding, limits) from the channel. Each is
delivered by one adapter (``redflag.adapters``: SES, SNS, a signed POST, Slack's incoming webhook),
exactly once (``redflag.adapters.send_once``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from redflag.kinds.base import Kind

S = TypeVar("S")
UnsubscribeLinks = Callable[[str, str | None], str]  # (user id, address) -> a signed one-click URL


class Alert(BaseModel):
    """One message on one channel; ``alert_id`` is what its send is idempotent on."""

    model_config = ConfigDict(frozen=True)

    channel: str
    alert_id: str

    def recipient(self) -> str | None:
        """The person's address it goes to, when it goes to one (the interventions gate it)."""
        return None

    def parked(self, error: str, record_id: str) -> dict[str, Any]:
        """What the dead-letter queue keeps of it when it is refused for good: ids and the error code,
        never its content (``redflag dlq`` reads it; ``record_id``: its send-once record, to forget)."""
        ids = [str(part) for part in json.loads(self.alert_id)]
        return {"kind": "alert_rejected", "channel": self.channel, "alert": ids, "error": error, "record": record_id}


@dataclass(frozen=True)
class RedFlag(Generic[S]):
    """One red flag of any kind: its kind and what it is about (a timer's run, an account's week, an
    escalation's flags)."""

    kind: Kind[S]
    subject: S

    def alert_id(self, channel: str) -> str:
        return self.kind.alert_id(self.subject, channel)


@dataclass(frozen=True)
class Context:
    """What composing needs beyond the red flag: the time, and how to sign an unsubscribe link."""

    now: float
    links: UnsubscribeLinks | None = None


class Channel(Protocol):
    name: ClassVar[str]  # the alert's channel, and the name a rule's ``notify`` uses
    gated: ClassVar[bool]  # held back by the interventions (holdout, opt-out, quiet hours, the cap)
    doc: ClassVar[str]  # where it is documented (checked by tests/unit/test_registries.py)
    sample_event: ClassVar[str]  # events/<function>/<file>.json that ends in an alert on it
    delivered_by: ClassVar[str]  # the template resource whose adapter sends it

    def compose(self, flag: RedFlag[Any], ctx: Context) -> Alert | None:
        """The alert this channel sends for ``flag``; None when it has nothing to send (no address)."""
        ...


class AlertChannel:
    """What the channels the alerts function delivers have in common (a subclass names itself and its
    doc): not held back by the interventions unless it says so, shown by a sweeper-flagged timer."""

    gated: ClassVar[bool] = False
    sample_event: ClassVar[str] = "events/timers_to_alerts/sweeper_flagged_timer.json"
    delivered_by: ClassVar[str] = "TimersToAlertsFunction"
