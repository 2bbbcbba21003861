"""The ``email_suppressed`` kind: a user's address will not be emailed again, because it bounced for good,
its owner marked a Red Flag email as spam, or SES holds it on its suppression list. No rule names it:
the SES feedback function raises it (``redflag.services.feedback``), once per address, and customer
success hears of it, so they know the user's red flags now reach only them. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from redflag.core.text import one_line
from redflag.core.timers import FlagReason
from redflag.kinds.base import CsMessage, NoticeKind

WHY = {
    "bounce": "it bounced permanently",
    "complaint": "the recipient marked a Red Flag email as spam",
    "ses_suppression_list": "SES holds it on its suppression list (it bounced or complained before)",
}


class Suppressed(BaseModel):
    """One address suppressed, from one SES event."""

    model_config = ConfigDict(frozen=True)

    key: str  # the address's suppression key (a keyed hash)
    address: str
    user_id: str | None  # from the email's X-RedFlag-Alert header, when SES's record carries it
    reason: str  # bounce, complaint or ses_suppression_list
    detail: str  # SES's bounce type / complaint feedback type, as SES names it
    at: float
    source: str  # SES's feedback id: the event that suppressed it
    message_id: str  # the SES message the event is about


class EmailSuppressed(NoticeKind[Suppressed]):
    name = "email_suppressed"
    reasons = (FlagReason.EMAIL_SUPPRESSED,)
    doc = "docs/operations.md"
    sample_event = "events/ses_events_to_state/bounce_permanent.json"
    raised_by = "SesEventsToStateFunction"

    def alert_id(self, subject: Suppressed, channel: str) -> str:
        return json.dumps(["email_suppressed", subject.key, subject.source])  # CS only: one id

    def cs_message(self, subject: Suppressed, now: float) -> CsMessage:
        s = subject
        who = f"user {s.user_id}" if s.user_id else s.address
        summary = f"Red Flag will not email {who} again: {WHY.get(s.reason, s.reason)} ({s.detail})."
        message = {
            "summary": one_line(summary + " Their red flags still reach customer success.", 300),
            "reason": FlagReason.EMAIL_SUPPRESSED.value,
            "severity": "warning",
            "suppression": s.reason,
            "detail": one_line(s.detail, 120),
            "user_id": s.user_id,
            "email": s.address,
            "suppressed_at": datetime.fromtimestamp(s.at, UTC).isoformat(timespec="seconds"),
            "ses_message_id": s.message_id,
        }
        attributes = {"task": "email_suppressed", "severity": "warning"} | ({"user_id": s.user_id} if s.user_id else {})
        return CsMessage(f"Email suppressed: {s.user_id or s.address} ({s.reason})", message, attributes)

    def facts(self, message: Mapping[str, Any]) -> list[tuple[str, Any]]:
        m = message
        return [("User", m.get("user_id") or "unknown"), ("Address", m.get("email")), ("Why", m.get("suppression"))]


KIND = EmailSuppressed()
