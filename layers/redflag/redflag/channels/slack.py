"""What customer success sees in Slack: a Block Kit message built from one CS alert. Pure.

The input is the CS alert as it is published on the alert topic (``alerts.compose_*``, or AWS
Chatbot's custom format). Its strings arrive escaped for chat already; they are unescaped and
escaped again here (``&``, ``<``, ``>`` only, as Slack asks), so a value is escaped exactly once
whoever published it: a user named ``<!channel>`` is shown as text and pings nobody, and ``&amp;``
never turns into ``&amp;amp;``.

Then, and only then, each text is clipped to Slack's limit for its place (``clip_escaped``): the
limits count the escaped text Slack receives, and a cut never falls inside an entity (``&amp;`` is
kept whole or dropped whole), so every message is valid Block Kit however dense in ``&<>`` a name, a
label or the properties are (Slack refuses a message over a limit with ``invalid_blocks``).
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
CONTEXT_MAX = 3000  # and for a context element's text
URL_MAX = 3000  # and for a button's URL
PROPERTIES_MAX = 1500  # of the JSON shown in the properties block, escaped
SUMMARY_MAX = 300  # of the summary, before escaping
ICONS = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}


def escape(text: Any) -> str:
    """Any value as Slack text, ``&``, ``<``, ``>`` escaped exactly once (escaped input is unescaped first)."""
    return chat_escape(chat_unescape(str(text)))


def clip_escaped(raw: str, limit: int) -> str:
    """``raw`` text (unescaped) escaped for Slack, then clipped to ``limit`` characters of the escaped
    text, an ellipsis marking the cut; whole entities only: a character whose escape does not fit is
    dropped whole."""
    escaped = chat_escape(raw)
    if len(escaped) <= limit:
        return escaped
    out: list[str] = []
    size = 0
    for char in raw:
        piece = chat_escape(char)
        if size + len(piece) > limit - 1:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + "…"


def _field(label: str, value: Any) -> dict[str, str]:
    head = f"*{escape(label)}*\n"
    shown = one_line(chat_unescape(str(value)), 10 * FIELD_MAX)
    return {"type": "mrkdwn", "text": head + clip_escaped(shown, FIELD_MAX - len(head))}


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
    summary = one_line(chat_unescape(str(alert.get("summary") or subject or "Red flag")), SUMMARY_MAX)
    title = one_line(chat_unescape(str(subject or alert.get("label") or "Red flag")), 10 * HEADER_MAX)
    icon = f"{ICONS.get(severity, '')} "
    headline = icon + clip_escaped(summary, SECTION_MAX - len(icon))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip_escaped(title, HEADER_MAX), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
    ]
    facts = [(k, v) for k, v in _facts(alert) if v not in (None, "")]
    if facts:
        blocks.append({"type": "section", "fields": [_field(k, v) for k, v in facts[:10]]})
    if lines := [chat_unescape(str(line)) for line in kinds.by_reason(alert.get("reason")).lines(alert)]:
        text = clip_escaped("\n".join(lines), SECTION_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    props = alert.get("properties")
    if isinstance(props, dict) and props:
        shown = clip_escaped(json.dumps(chat_unescape(props), ensure_ascii=False, sort_keys=True), PROPERTIES_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Properties*\n```{shown}```"}})
    reason = chat_unescape(str(alert.get("reason") or "red_flag"))
    context = [f"severity *{clip_escaped(chat_unescape(severity), 100)}*", f"reason {clip_escaped(reason, 100)}"]
    if alert.get("run_id"):
        context.append(f"run {clip_escaped(chat_unescape(str(alert['run_id'])), 100)}")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    url = _link(link_template, alert)
    if url and len(url) <= URL_MAX:  # a clipped URL would lead somewhere else: no button instead
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
