"""Intervening without annoying: the holdout, quiet hours, the email cap, escalation. Pure.

- **Holdout**: a rule's ``holdout_percent`` of users, picked by a stable hash of the user id, are
  flagged and counted but not emailed, so completion with and without the email can be compared.
- **Quiet hours**: in the user's time zone (``user.timezone``, else the stack's default), an email due
  inside the quiet hours waits for their end; customer success is not deferred.
- **Cap**: at most ``cap`` emails to one user within ``window`` seconds; further ones are not sent
  (counted as capped). A retried alert finds its own slot and is not capped twice.
- **Escalation**: when one user, or one account, trips ``n`` red flags within ``window`` seconds,
  customer success gets one critical alert naming them all, once per window.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict


def in_holdout(user_id: str, percent: float) -> bool:
    if percent <= 0:
        return False
    bucket = int(hashlib.sha256(f"holdout|{user_id}".encode()).hexdigest()[:8], 16) % 10_000
    return bucket < percent * 100


@dataclass(frozen=True)
class QuietHours:
    start_hour: int  # local hour quiet hours begin (22)
    end_hour: int  # local hour they end (8); may be earlier than start: across midnight

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """``22-08``; empty or ``off``: none."""
        if text.strip().lower() in ("", "off", "none"):
            return None
        start, end = (int(p) for p in text.split("-"))
        if not (0 <= start <= 23 and 0 <= end <= 23) or start == end:
            raise ValueError("quiet hours are HH-HH, e.g. 22-08")
        return cls(start, end)

    def quiet(self, hour: int) -> bool:
        if self.start_hour < self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour

    def next_allowed(self, now: float, timezone: str | None, default_timezone: str = "UTC") -> float | None:
        """When an email due ``now`` may go: None if now (not quiet), else the end of the quiet hours,
        in the user's time zone (daylight saving included)."""
        try:
            zone = ZoneInfo(timezone or default_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo(default_timezone)
        local = datetime.fromtimestamp(now, zone)
        if not self.quiet(local.hour):
            return None
        end = local.replace(hour=self.end_hour, minute=0, second=0, microsecond=0)
        if end <= local:
            end = (local + timedelta(days=1)).replace(hour=self.end_hour, minute=0, second=0, microsecond=0)
        # a wall-clock time: re-read it in the zone so a DST change that night is honoured
        return datetime(end.year, end.month, end.day, end.hour, tzinfo=zone).timestamp()


class EmailLog(BaseModel):
    """The emails sent to one user lately: (alert id, when)."""

    model_config = ConfigDict(frozen=True)

    sent: tuple[tuple[str, float], ...] = ()
    version: int = 0


def reserve_email(log: EmailLog, alert_id: str, now: float, cap: int, window: float) -> tuple[bool, EmailLog | None]:
    """(may send, the log to write): a slot for this alert, unless ``cap`` emails already went out in
    the window. A retry of an alert that has its slot may send again (the sender is idempotent);
    ``None`` when nothing needs writing."""
    recent = tuple((a, t) for a, t in log.sent if t > now - window)
    if any(a == alert_id for a, _ in recent):
        return True, None
    if len(recent) >= cap:
        return False, None
    return True, log.model_copy(update={"sent": (*recent, (alert_id, now))})


class Escalation(BaseModel):
    """Recent red flags of one user or account, and the last time it was escalated."""

    model_config = ConfigDict(frozen=True)

    scope: str  # user or account
    subject_id: str
    flags: tuple[tuple[str, float, str], ...] = ()  # (flag id, when, what: user/task/reason)
    escalated_at: float | None = None
    escalated_by: str | None = None  # the flag that escalated (a retry re-sends the same alert)
    version: int = 0

    def alert_id(self) -> str:
        return json.dumps(["escalation", self.scope, self.subject_id, round((self.escalated_at or 0) * 1000)])


@dataclass(frozen=True)
class EscalationDecision:
    state: Escalation | None  # to write (None: unchanged)
    escalate: Escalation | None  # the state to alert from, when this flag escalates (or escalated before)
    flags: list[tuple[str, float, str]] = field(default_factory=list)


def record_flag(current: Escalation, flag_id: str, at: float, what: str, n: int, window: float) -> EscalationDecision:
    """Add one red flag; escalate when it is the Nth within the window and the last escalation is
    more than a window ago. Recording the same flag twice changes nothing (a retry re-sends)."""
    recent = tuple(f for f in current.flags if f[1] > at - window)
    if any(f[0] == flag_id for f in current.flags):
        again = current if current.escalated_by == flag_id else None
        return EscalationDecision(None, again, list(current.flags))
    flags = (*recent, (flag_id, at, what))
    calm = current.escalated_at is None or current.escalated_at <= at - window
    if len(flags) >= n and calm:
        state = current.model_copy(update={"flags": flags, "escalated_at": at, "escalated_by": flag_id})
        return EscalationDecision(state, state, list(flags))
    return EscalationDecision(current.model_copy(update={"flags": flags}), None, list(flags))


class UserState(BaseModel):
    """What the alerting path keeps for one user, in one record written once per stream batch: the
    emails sent lately (the cap) and the user's recent red flags (escalation)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    emails: EmailLog = EmailLog()
    escalation: Escalation
    version: int = 0  # 0: not stored yet

    @classmethod
    def new(cls, user_id: str) -> UserState:
        return cls(user_id=user_id, escalation=Escalation(scope="user", subject_id=user_id))


@dataclass
class Standing:
    """What the alerting path read about the users and accounts of one stream batch."""

    suppressed: set[str] = field(default_factory=set)  # user ids never to email (they, or their address, opted out)
    users: dict[str, UserState] = field(default_factory=dict)
    accounts: dict[str, Escalation] = field(default_factory=dict)

    def user(self, user_id: str) -> UserState:
        return self.users.get(user_id) or UserState.new(user_id)

    def account(self, account_id: str) -> Escalation:
        return self.accounts.get(account_id) or Escalation(scope="account", subject_id=account_id)
