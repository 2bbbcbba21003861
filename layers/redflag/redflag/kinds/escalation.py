"""The ``escalation`` kind: one user, or one account, tripped ``EscalateAfterFlags`` red flags within
``EscalationWindowHours``. No rule names it: the alerting path raises it while it handles red flags of
the other kinds (``redflag.core.interventions.record_flag``), and customer success gets one critical
alert naming every flag of the window, once per window. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redflag.core.interventions import Escalation
from redflag.core.text import one_line
from redflag.core.timers import FlagReason
from redflag.kinds.base import CsMessage, NoticeKind, iso


class Escalations(NoticeKind[Escalation]):
    name = "escalation"
    reasons = (FlagReason.ESCALATION,)
    doc = "docs/interventions.md#escalation"
    sample_event = "events/timers_to_alerts/sweeper_flagged_timer.json"
    raised_by = "TimersToAlertsFunction"

    def alert_id(self, subject: Escalation, channel: str) -> str:
        return subject.alert_id()  # customer success only: one id, as published since the first release

    def cs_message(self, subject: Escalation, now: float) -> CsMessage:
        state = subject
        what = "; ".join(f"{w} at {iso(at)}" for _, at, w in state.flags)
        who = f"{state.scope} {state.subject_id}"
        message = {
            "summary": one_line(f"Escalation: {who} tripped {len(state.flags)} red flags: {what}", 300),
            "reason": FlagReason.ESCALATION.value,
            "severity": "critical",
            "scope": state.scope,
            f"{state.scope}_id": state.subject_id,
            "flags": [{"flag": f, "at": iso(at), "what": w} for f, at, w in state.flags],
            "escalated_at": iso(state.escalated_at),
        }
        attributes = {"severity": "critical", "task": "escalation", f"{state.scope}_id": state.subject_id}
        return CsMessage(f"Escalation: {who} ({len(state.flags)} red flags)", message, attributes)

    def facts(self, message: Mapping[str, Any]) -> list[tuple[str, Any]]:
        m = message
        who = m.get("user_id") or m.get("account_id") or ""
        return [("Who", f"{m.get('scope', '')} {who}"), ("Red flags", len(m.get("flags") or []))]

    def lines(self, message: Mapping[str, Any]) -> list[str]:
        flags = message.get("flags")
        if not isinstance(flags, list):
            return []
        return [f"• {one_line(str(f.get('what', '')))} at {f.get('at', '')}" for f in flags if isinstance(f, dict)]


KIND = Escalations()
