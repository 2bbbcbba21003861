"""What a red flag says, to the user (email) and to customer success (SNS, then chat). Pure Python.

Everything a user typed (name, label, properties) is made inert for the medium it goes into:
HTML-escaped in the HTML part; one line (no control, format or separator characters) and bounded
in subjects, and RFC 2047-encoded in headers by ``redflag.mime``; and for customer success, where
messages end up in chat, ``&``, ``<`` and ``>`` are escaped in every string (keys too), so a name
such as ``<!channel>`` mentions nobody.
"""

from __future__ import annotations

import html
import unicodedata
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from redflag.timers import Timer

SNS_SUBJECT_MAX = 99  # SNS requires fewer than 100 characters


def one_line(text: str, limit: int = 200) -> str:
    """Safe for a subject: control, format and line/paragraph separator characters become spaces
    (C0, C1, U+0085, U+2028, U+2029, bidi controls), runs of spaces collapse, length bounded."""
    flat = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") else c for c in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def chat_escape(value: Any) -> Any:
    """``&``, ``<``, ``>`` escaped in every string of a JSON value (keys too): what Slack asks of
    text so that ``<!channel>`` or ``<@U123>`` is shown, never acted on."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if isinstance(value, dict):
        return {chat_escape(str(k)): chat_escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [chat_escape(v) for v in value]
    return value


def humanize(seconds: float) -> str:
    minutes = round(seconds / 60)
    if seconds < 120:
        return f"{round(seconds)} second" + ("" if round(seconds) == 1 else "s")
    if minutes < 120 and minutes % 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600, 1)
    return f"{hours:g} hour" + ("" if hours == 1 else "s")


class EmailAlert(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: Literal["user"] = "user"
    alert_id: str
    to_address: str
    to_name: str | None
    subject: str
    text: str
    html: str


class CsAlert(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: Literal["cs"] = "cs"
    alert_id: str
    subject: str
    message: dict[str, Any]
    attributes: dict[str, str]


Alert = EmailAlert | CsAlert


def _first_name(name: str | None) -> str | None:
    if not name:
        return None
    first = one_line(name, 80).split(" ")[0]
    return first or None


def compose_email(timer: Timer) -> EmailAlert | None:
    """A short, personal, helpful note. None when we have no address for the user."""
    rule = timer.rule
    if rule is None or not timer.user.email:
        return None
    first = _first_name(timer.user.name)
    label = one_line(rule.label, 120)
    over = humanize(rule.threshold_seconds)
    lines = [
        f"Hi {first or 'there'},",
        "",
        f"We noticed you've been working on {label} for over {over}."
        + (f" Most people finish in about {humanize(rule.expected_seconds)}." if rule.expected_seconds else "")
        + " Can we help?",
        "",
        "If something is in your way, just reply to this email: a real person on our team will read it "
        "and get back to you.",
        "",
        "Thanks,",
        "The team",
    ]
    text = "\n".join(lines)
    body = "".join(f"<p>{html.escape(p)}</p>" for p in "\n".join(lines).split("\n\n"))
    page = f'<!doctype html><html><body style="font-family:sans-serif;line-height:1.5">{body}</body></html>'
    return EmailAlert(
        alert_id=timer.alert_id("user"),
        to_address=timer.user.email,
        to_name=one_line(timer.user.name, 80) if timer.user.name else None,
        subject=one_line(f"Need a hand with {label}?", 120),
        text=text,
        html=page.replace("\n", "<br>"),
    )


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def compose_cs_alert(timer: Timer, now: float) -> CsAlert | None:
    rule = timer.rule
    if rule is None:
        return None
    elapsed = max(0.0, now - timer.started_at) if timer.started_at is not None else 0.0
    who = timer.user.name or timer.key.user_id
    summary = one_line(
        f"{who} has been on {rule.label} for {humanize(elapsed)} (red flag at {humanize(rule.threshold_seconds)})",
        300,
    )
    message = {
        "summary": summary,
        "severity": rule.severity,
        "task": timer.key.task,
        "label": rule.label,
        "user_id": timer.key.user_id,
        "instance_id": timer.key.instance_id,
        "run_id": timer.run_id,
        "user": timer.user.model_dump(exclude_none=True),
        "started_at": _iso(timer.started_at),
        "due_at": _iso(timer.due_at),
        "elapsed_seconds": round(elapsed),
        "threshold_seconds": rule.threshold_seconds,
        "expected_seconds": rule.expected_seconds,
        "failures": timer.failures,
        "properties": timer.properties,
    }
    return CsAlert(
        alert_id=timer.alert_id("cs"),
        subject=one_line(f"Red flag: {rule.label} ({timer.key.user_id})", SNS_SUBJECT_MAX),
        message=chat_escape(message),
        attributes={"task": timer.key.task, "severity": rule.severity, "user_id": timer.key.user_id},
    )


def plan(timer: Timer, now: float) -> list[Alert]:
    """The alerts one red flag produces, by the rule snapshot taken when the timer was armed."""
    rule = timer.rule
    if rule is None or not rule.applies_to(timer.user.segment):
        return []
    out: list[Alert] = []
    if "user" in rule.notify and (email := compose_email(timer)):
        out.append(email)
    if "cs" in rule.notify and (cs := compose_cs_alert(timer, now)):
        out.append(cs)
    return out
