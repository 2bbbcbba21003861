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

from redflag.health import AccountFlag
from redflag.timers import FlagReason, Timer

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


def _threshold(timer: Timer) -> int:
    rule = timer.rule
    assert rule is not None
    return (
        timer.threshold_seconds or rule.threshold_seconds or (rule.threshold.fallback_seconds if rule.threshold else 0)
    )


def _usual(timer: Timer) -> float | None:
    """What "usual" meant when the run was armed: the learned median, or the rule's expected_seconds."""
    return timer.usual_seconds or (timer.rule.expected_seconds if timer.rule else None)


def _reason(timer: Timer) -> FlagReason:
    return timer.flag_reason or (FlagReason.INACTIVITY if timer.kind == "inactivity" else FlagReason.TIME)


def _email_lines(timer: Timer, first: str, label: str) -> tuple[str, str]:
    """(subject, the paragraph that says what we noticed) for the kind of struggle."""
    reason = _reason(timer)
    if reason is FlagReason.FAILURES:
        tries = timer.run_failures or timer.failures
        return (
            f"Trouble with {label}?",
            f"We noticed {label} didn't go through, {tries} times now. That's frustrating, and often "
            "it's something small we can sort out together. Can we help?",
        )
    if reason is FlagReason.INACTIVITY:
        return (
            f"We miss you at {label}",
            f"It's been {humanize(_threshold(timer))} since your last {label}. No pressure: if something "
            "got in the way, we'd love to hear what would make it easier.",
        )
    usual = _usual(timer)
    return (
        f"Need a hand with {label}?",
        f"We noticed you've been working on {label} for over {humanize(_threshold(timer))}."
        + (f" Most people finish in about {humanize(usual)}." if usual else "")
        + " Can we help?",
    )


def compose_email(timer: Timer) -> EmailAlert | None:
    """A short, personal, helpful note. None when we have no address for the user."""
    rule = timer.rule
    if rule is None or not timer.user.email:
        return None
    first = _first_name(timer.user.name) or "there"
    label = one_line(rule.label, 120)
    subject, noticed = _email_lines(timer, first, label)
    lines = [
        f"Hi {first},",
        "",
        noticed,
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
        subject=one_line(subject, 120),
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
    reason = _reason(timer)
    threshold = _threshold(timer)
    if reason is FlagReason.FAILURES:
        said = f"{who} failed {rule.label} {timer.run_failures or timer.failures} times in one run"
    elif reason is FlagReason.INACTIVITY:
        said = f"{who} has not been active for {rule.label} in {humanize(elapsed)} (red flag at {humanize(threshold)})"
    else:
        said = f"{who} has been on {rule.label} for {humanize(elapsed)} (red flag at {humanize(threshold)})"
        usual = _usual(timer)
        said += f"; usually about {humanize(usual)}" if usual else ""
    message = {
        "summary": one_line(said, 300),
        "reason": reason.value,
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
        "threshold_seconds": threshold,
        "threshold_basis": timer.threshold_basis or "fixed",
        "usual_seconds": None if _usual(timer) is None else round(_usual(timer) or 0),
        "expected_seconds": rule.expected_seconds,
        "failures": timer.failures,
        "run_failures": timer.run_failures,
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


def compose_account_alert(flag: AccountFlag) -> CsAlert:
    """A usage drop, for customer success: which account, how far, which week."""
    rule = flag.rule
    summary = (
        f"Account {flag.account_id}: weekly active users fell {flag.drop_percent:g}% in {flag.week} "
        f"({flag.actives_before} -> {flag.actives_after}; {rule.label})"
    )
    message = {
        "summary": one_line(summary, 300),
        "reason": "usage_drop",
        "severity": rule.severity,
        "task": flag.task,
        "label": rule.label,
        "account_id": flag.account_id,
        "week": flag.week,
        "actives_before": flag.actives_before,
        "actives_after": flag.actives_after,
        "drop_percent": flag.drop_percent,
        "threshold_percent": rule.drop_percent,
    }
    return CsAlert(
        alert_id=flag.alert_id("cs"),
        subject=one_line(f"Usage drop: account {flag.account_id} ({flag.week})", SNS_SUBJECT_MAX),
        message=chat_escape(message),
        attributes={"task": flag.task, "severity": rule.severity, "account_id": flag.account_id},
    )


def plan_account(flag: AccountFlag) -> list[Alert]:
    return [compose_account_alert(flag)] if "cs" in flag.rule.notify else []
