"""What customer success sees in Slack: a Block Kit message built from one CS alert. Pure.

The input is the CS alert as it is published on the alert topic (``alerts.compose_*``, or AWS
Chatbot's custom format). Its strings arrive escaped for chat already; they are unescaped and
escaped again here (``&``, ``<``, ``>`` only, as Slack asks), so a value is escaped exactly once
whoever published it: a user named ``<!channel>`` is shown as text and pings nobody, and ``&amp;``
never turns into ``&amp;amp;``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import quote

from redflag import kinds
from redflag.channels.base import Alert
from redflag.core.text import chat_escape, chat_unescape, one_line

SECTION_MAX = 3000  # Slack's limit for a section's text
FIELD_MAX = 2000  # and for one field
HEADER_MAX = 150  # and for a header's plain text
PROPERTIES_MAX = 1500  # of the JSON shown in the properties block
ICONS = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}


def escape(text: Any) -> str:
    """Any value as Slack text, ``&``, ``<``, ``>`` escaped exactly once (escaped input is unescaped first)."""
    return chat_escape(chat_unescape(str(text)))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(label: str, value: Any) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _clip(f"*{label}*\n{escape(one_line(str(value), FIELD_MAX))}", FIELD_MAX)}


def _link(template: str, message: dict[str, Any]) -> str | None:
    """The operator's link back (``CsLinkTemplate``): ``{user_id}``, ``{account_id}``, ``{task}``
    replaced by URL-encoded values; None without a template."""
    if not template:
        return None
    values = {k: quote(chat_unescape(str(message.get(k) or "")), safe="") for k in ("user_id", "account_id", "task")}
    if not values["account_id"] and isinstance(message.get("user"), dict):
        values["account_id"] = quote(chat_unescape(str(message["user"].get("account_id") or "")), safe="")
    url = template
    for k, v in values.items():
        url = url.replace("{" + k + "}", v)
    return url


def _facts(m: dict[str, Any]) -> list[tuple[str, Any]]:
    """What the message lists: the facts of the red flag's kind, read from the message its kind published."""
    return kinds.by_reason(m.get("reason")).facts(m)


def message(alert: dict[str, Any], subject: str | None = None, link_template: str = "") -> dict[str, Any]:
    """The incoming-webhook payload for one CS alert: ``text`` (the notification's fallback) and
    blocks: a header, the summary, the facts as fields, the properties, a link back."""
    if alert.get("source") == "custom" and isinstance(alert.get("content"), dict):  # Chatbot's format
        content = alert["content"]
        alert = {"summary": content.get("description", ""), "severity": "warning"} | {
            "reason": alert.get("metadata", {}).get("eventType", "red_flag")
        }
        subject = subject or content.get("title")
    severity = str(alert.get("severity") or "warning")
    summary = escape(one_line(str(alert.get("summary") or subject or "Red flag"), 300))
    title = one_line(chat_unescape(str(subject or alert.get("label") or "Red flag")), HEADER_MAX - 4)
    headline = _clip(f"{ICONS.get(severity, '')} {summary}", SECTION_MAX)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": escape(title), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
    ]
    facts = [(k, v) for k, v in _facts(alert) if v not in (None, "")]
    if facts:
        blocks.append({"type": "section", "fields": [_field(k, v) for k, v in facts[:10]]})
    if lines := [escape(line) for line in kinds.by_reason(alert.get("reason")).lines(alert)]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip("\n".join(lines), SECTION_MAX)}})
    props = alert.get("properties")
    if isinstance(props, dict) and props:
        shown = _clip(json.dumps(chat_unescape(props), ensure_ascii=False, sort_keys=True), PROPERTIES_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Properties*\n```{escape(shown)}```"}})
    context = [f"severity *{escape(severity)}*", f"reason {escape(alert.get('reason') or 'red_flag')}"]
    if alert.get("run_id"):
        context.append(f"run {escape(alert['run_id'])}")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    if url := _link(link_template, alert):
        blocks.append(
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": url}],
            }
        )
    return {"text": headline, "blocks": blocks}


class SlackAlert(Alert):
    """One CS alert as a Slack message: idempotent on the SNS message id that carried it."""

    channel: str = "slack"
    payload: dict[str, Any]  # the incoming webhook's JSON: text and blocks
    record: dict[str, Any]  # the SNS record it came in, kept when it is parked (a replay sends it again)

    def parked(self, error: str, record_id: str) -> dict[str, Any]:
        """In the shape of Lambda's on-failure record, which ``redflag dlq replay`` hands the notifier again."""
        body = {"kind": "slack_post", "error": error, "record": record_id, "requestContext": {"condition": "Rejected"}}
        return body | {"requestPayload": {"Records": [self.record]}}


def compose(record: dict[str, Any], link_template: str = "") -> SlackAlert:
    """The Slack message for one SNS record of the alert topic, whoever published it (plain text too)."""
    sns = record["Sns"]
    try:
        alert = json.loads(sns["Message"])
    except ValueError:
        alert = {"summary": str(sns["Message"])}  # someone published plain text: shown as text
    if not isinstance(alert, dict):
        alert = {"summary": str(alert)}
    payload = message(alert, sns.get("Subject"), link_template)
    return SlackAlert(alert_id=str(sns["MessageId"]), payload=payload, record=record)


class Slack:
    """The channel record: Slack hears every CS alert, through the notifier function."""

    name: ClassVar[str] = "slack"
    gated: ClassVar[bool] = False
    doc: ClassVar[str] = "docs/interventions.md#slack"
    sample_event: ClassVar[str] = "events/cs_alerts_to_slack/cs_alert.json"
    delivered_by: ClassVar[str] = "CsAlertsToSlackFunction"


CHANNEL = Slack()
