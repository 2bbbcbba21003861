"""What customer success sees in Slack: a Block Kit message built from one CS alert. Pure.

The input is the CS alert as it is published on the alert topic (``alerts.compose_*``, or AWS
Chatbot's custom format). Its strings arrive escaped for chat already; they are unescaped and
escaped again here (``&``, ``<``, ``>`` only, as Slack asks), so a value is escaped exactly once
whoever published it: a user named ``<!channel>`` is shown as text and pings nobody, and ``&amp;``
never turns into ``&amp;amp;``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from redflag.core.text import chat_escape, chat_unescape, humanize, one_line

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
    reason = m.get("reason")
    user = m.get("user") if isinstance(m.get("user"), dict) else {}
    facts: list[tuple[str, Any]] = []
    if reason == "escalation":
        facts.append(("Who", f"{m.get('scope', '')} {m.get('user_id') or m.get('account_id') or ''}"))
        facts.append(("Red flags", len(m.get("flags") or [])))
        return facts
    if reason == "usage_drop":
        facts += [("Account", m.get("account_id")), ("Week", m.get("week"))]
        facts.append(("Weekly actives", f"{m.get('actives_before')} -> {m.get('actives_after')}"))
        facts.append(("Drop", f"{m.get('drop_percent')}% (flag at {m.get('threshold_percent')}%)"))
        return facts
    name = user.get("name")
    facts.append(("User", f"{name} ({m.get('user_id')})" if name else m.get("user_id")))
    facts.append(("Task", m.get("label") or m.get("task")))
    if reason == "failures":
        facts.append(("Failures in this run", m.get("run_failures") or m.get("failures")))
    elif isinstance(m.get("elapsed_seconds"), int | float):
        facts.append(("Open for", humanize(float(m["elapsed_seconds"]))))
    if isinstance(m.get("usual_seconds"), int | float):
        facts.append(("Usually", humanize(float(m["usual_seconds"]))))
    elif isinstance(m.get("threshold_seconds"), int | float) and reason != "failures":
        facts.append(("Red flag at", humanize(float(m["threshold_seconds"]))))
    if account := user.get("account_id"):
        facts.append(("Account", account))
    if segment := user.get("segment"):
        facts.append(("Segment", segment))
    return facts


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
    if alert.get("reason") == "escalation" and isinstance(alert.get("flags"), list):
        lines = [f"• {escape(one_line(str(f.get('what', ''))))} at {escape(f.get('at', ''))}" for f in alert["flags"]]
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
