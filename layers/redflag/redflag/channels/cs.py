"""The customer-success channel (``notify: cs``): one JSON message per red flag on the alert topic (SNS),
where the Slack notifier, a CS email subscription or AWS Chatbot read it. Pure; published by
``redflag.adapters.sns``.

What it says is the kind's (``Kind.cs_message``); the medium's rules are this module's: the subject
one line under SNS's limit, and ``&``, ``<`` and ``>`` escaped in every string of the message (keys
too), because messages end up in chat, where a name such as ``<!channel>`` must mention nobody.
``CsMessageFormat=chatbot`` publishes AWS Chatbot's custom notification format instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

from redflag.channels.base import Alert, Context, RedFlag
from redflag.core.text import SNS_SUBJECT_MAX, chat_escape, chat_unescape, one_line


class CsAlert(Alert):
    channel: str = "cs"
    subject: str
    message: dict[str, Any]
    attributes: dict[str, str]


class Cs:
    name: ClassVar[str] = "cs"
    gated: ClassVar[bool] = False
    doc: ClassVar[str] = "docs/interventions.md#customer-success"
    sample_event: ClassVar[str] = "events/timers_to_alerts/sweeper_flagged_timer.json"
    delivered_by: ClassVar[str] = "TimersToAlertsFunction"

    def compose(self, flag: RedFlag[Any], ctx: Context) -> CsAlert:
        said = flag.kind.cs_message(flag.subject, ctx.now)
        return CsAlert(
            alert_id=flag.alert_id(self.name),
            subject=one_line(said.subject, SNS_SUBJECT_MAX),
            message=chat_escape(said.message),
            attributes=said.attributes,
        )


def chatbot_message(cs: CsAlert) -> dict[str, Any]:
    """The CS alert in AWS Chatbot's custom notification format (Chatbot posts it to Slack or Teams).
    Built from the values as typed, then every string escaped for chat once (``chat_escape``), as the
    JSON format is: the title (the SNS subject), the context (the SNS attributes), the ids."""
    m = chat_unescape(cs.message)
    user_id = m.get("user_id")
    body = {
        "version": "1.0",
        "source": "custom",
        "id": cs.alert_id,
        "content": {
            "textType": "client-markdown",
            "title": cs.subject,
            "description": str(m.get("summary", "")),
            "nextSteps": [f"Reach out to {user_id}" if user_id else "Look at the account"],
        },
        "metadata": {
            "threadId": str(user_id or m.get("account_id") or "redflag"),
            "summary": str(m.get("summary", "")),
            "eventType": str(m.get("reason", "red_flag")),
            "additionalContext": {k: str(v) for k, v in cs.attributes.items()},
        },
    }
    escaped: dict[str, Any] = chat_escape(body)
    return escaped


CHANNEL = Cs()
