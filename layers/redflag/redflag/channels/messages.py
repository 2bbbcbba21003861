"""What a red flag says, to the user (email) and to customer success (SNS, then chat). Pure Python.

Everything a user typed (name, label, properties) is made inert for the medium it goes into:
HTML-escaped in the HTML part; one line (no control, format or separator characters) and bounded
in subjects, and RFC 2047-encoded in headers by ``redflag.core.mime``; and for customer success, where
messages end up in chat, ``&``, ``<`` and ``>`` are escaped in every string (keys too), so a name
such as ``<!channel>`` mentions nobody.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from redflag.core.interventions import Escalation
from redflag.core.templates import EmailTemplate, render
from redflag.core.text import SNS_SUBJECT_MAX, chat_escape, humanize, one_line
from redflag.core.timers import FlagReason, Timer
from redflag.kinds.usage_drop import AccountFlag


class EmailAlert(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: Literal["user"] = "user"
    alert_id: str
    to_address: str
    to_name: str | None
    subject: str
    text: str
    html: str
    unsubscribe_url: str | None = None  # RFC 8058: List-Unsubscribe + List-Unsubscribe-Post


class CsAlert(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: Literal["cs"] = "cs"
    alert_id: str
    subject: str
    message: dict[str, Any]
    attributes: dict[str, str]


class WebhookAlert(BaseModel):
    """The red flag POSTed, signed, to the product (in-app guidance)."""

    model_config = ConfigDict(frozen=True)

    channel: Literal["webhook"] = "webhook"
    alert_id: str
    payload: dict[str, Any]


Alert = EmailAlert | CsAlert | WebhookAlert
UnsubscribeLinks = Callable[[str, str | None], str]  # (user id, address) -> a signed one-click URL


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


def _elapsed(timer: Timer, now: float) -> float:
    """How long the run had been open (or the user silent) when it was flagged; ``now`` for a TTL delete."""
    end = timer.flagged_at if timer.flagged_at is not None else now
    return max(0.0, end - timer.started_at) if timer.started_at is not None else 0.0


def _reason(timer: Timer) -> FlagReason:
    return timer.flag_reason or (FlagReason.INACTIVITY if timer.kind == "inactivity" else FlagReason.TIME)


_CLOSING = (
    "If something is in your way, just reply to this email: a real person on our team will read it and get "
    "back to you.\n\nThanks,\nThe team"
)
DEFAULT_EMAILS = {
    FlagReason.TIME: EmailTemplate(
        subject="Need a hand with {task_label}?",
        text="Hi {first_name},\n\nWe noticed you've been working on {task_label} for over {threshold}. "
        "{expected_sentence} Can we help?\n\n" + _CLOSING,
    ),
    FlagReason.FAILURES: EmailTemplate(
        subject="Trouble with {task_label}?",
        text="Hi {first_name},\n\nWe noticed {task_label} didn't go through, {failures} times now. That's "
        "frustrating, and often it's something small we can sort out together. Can we help?\n\n" + _CLOSING,
    ),
    FlagReason.INACTIVITY: EmailTemplate(
        subject="We miss you at {task_label}",
        text="Hi {first_name},\n\nIt's been {threshold} since your last {task_label}. No pressure: if something "
        "got in the way, we'd love to hear what would make it easier.\n\n" + _CLOSING,
    ),
}


def email_values(timer: Timer, now: float, unsubscribe_url: str | None = None) -> dict[str, str]:
    """What the placeholders of an email template stand for (raw: ``templates.render`` escapes)."""
    rule = timer.rule
    assert rule is not None
    usual = _usual(timer)
    return {
        "first_name": _first_name(timer.user.name) or "there",
        "task_label": one_line(rule.label, 120),
        "elapsed": humanize(_elapsed(timer, now)),
        "threshold": humanize(_threshold(timer)),
        "expected": f"about {humanize(usual)}" if usual else "a little while",
        "expected_sentence": f"Most people finish in about {humanize(usual)}." if usual else "",
        "failures": str(timer.run_failures or timer.failures),
        "help_url": rule.help_url or "",
        "unsubscribe_url": unsubscribe_url or "",
    }


def _before_body_end(page: str, fragment: str) -> str:
    at = page.lower().rfind("</body>")
    return page[:at] + fragment + page[at:] if at >= 0 else page + fragment


def compose_email(timer: Timer, now: float | None = None, links: UnsubscribeLinks | None = None) -> EmailAlert | None:
    """A short, personal, helpful note: the rule's own template, or the default for the kind of
    struggle; a visible unsubscribe link in the footer. None when we have no address for the user."""
    rule = timer.rule
    if rule is None or not timer.user.email:
        return None
    url = links(timer.key.user_id, timer.user.email) if links is not None else None
    values = email_values(timer, timer.due_at if now is None and timer.due_at else (now or 0.0), url)
    template = rule.email or DEFAULT_EMAILS[_reason(timer)]
    subject, text, page = render(template, values)
    if rule.email is None and rule.help_url:
        text += f"\n\nThis guide may help: {rule.help_url}"
        page = _before_body_end(page, f'<p><a href="{html.escape(rule.help_url)}">A guide that may help</a></p>')
    if url:
        text += f"\n\n--\nDon't want these emails? Unsubscribe with one click: {url}"
        # ses:no-track: SES's click tracking (the configuration set publishes CLICK) never rewrites this link
        anchor = f'<a ses:no-track href="{html.escape(url)}">Unsubscribe</a>'
        link = f'<p style="font-size:small;color:#666">{anchor} from these.</p>'
        page = _before_body_end(page, link)
    return EmailAlert(
        alert_id=timer.alert_id("user"),
        to_address=timer.user.email,
        to_name=one_line(timer.user.name, 80) if timer.user.name else None,
        subject=subject,
        text=text,
        html=page,
        unsubscribe_url=url,
    )


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _cs_alert(alert_id: str, subject: str, message: dict[str, Any], **attributes: str) -> CsAlert:
    """A CS alert: the subject one line under SNS's limit, every string of the message escaped for chat."""
    return CsAlert(
        alert_id=alert_id,
        subject=one_line(subject, SNS_SUBJECT_MAX),
        message=chat_escape(message),
        attributes=attributes,
    )


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
    subject = f"Red flag: {rule.label} ({timer.key.user_id})"
    return _cs_alert(timer.alert_id("cs"), subject, message, task=timer.key.task, severity=rule.severity,
                     user_id=timer.key.user_id)  # fmt: skip


def compose_webhook(timer: Timer, now: float) -> WebhookAlert | None:
    """What the product gets to show in-app guidance: ids and numbers, no address or name."""
    rule = timer.rule
    if rule is None:
        return None
    elapsed = _elapsed(timer, now)
    usual = _usual(timer)
    payload = {
        "type": "red_flag",
        "id": timer.alert_id("webhook"),
        "reason": _reason(timer).value,
        "user_id": timer.key.user_id,
        "account_id": timer.user.account_id,
        "task": timer.key.task,
        "label": rule.label,
        "instance_id": timer.key.instance_id,
        "run_id": timer.run_id,
        "started_at": _iso(timer.started_at),
        "flagged_at": _iso(timer.flagged_at or now),
        "elapsed_seconds": round(elapsed),
        "threshold_seconds": _threshold(timer),
        "usual_seconds": None if usual is None else round(usual),
        "failures": timer.run_failures,
        "help_url": rule.help_url,
        "properties": timer.properties,
    }
    return WebhookAlert(alert_id=timer.alert_id("webhook"), payload=payload)


def plan(timer: Timer, now: float, links: UnsubscribeLinks | None = None) -> list[Alert]:
    """The alerts one red flag produces, by the rule snapshot taken when the timer was armed."""
    rule = timer.rule
    if rule is None or not rule.applies_to(timer.user.segment):
        return []
    out: list[Alert] = []
    if "user" in rule.notify and (email := compose_email(timer, now, links)):
        out.append(email)
    if "cs" in rule.notify and (cs := compose_cs_alert(timer, now)):
        out.append(cs)
    if "webhook" in rule.notify and (hook := compose_webhook(timer, now)):
        out.append(hook)
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
    subject = f"Usage drop: account {flag.account_id} ({flag.week})"
    return _cs_alert(flag.alert_id("cs"), subject, message, task=flag.task, severity=rule.severity,
                     account_id=flag.account_id)  # fmt: skip


def plan_account(flag: AccountFlag) -> list[Alert]:
    out: list[Alert] = [compose_account_alert(flag)] if "cs" in flag.rule.notify else []
    if "webhook" in flag.rule.notify:
        payload = {
            "type": "usage_drop",
            "id": flag.alert_id("webhook"),
            "account_id": flag.account_id,
            "task": flag.task,
            "week": flag.week,
            "actives_before": flag.actives_before,
            "actives_after": flag.actives_after,
            "drop_percent": flag.drop_percent,
        }
        out.append(WebhookAlert(alert_id=flag.alert_id("webhook"), payload=payload))
    return out


def compose_escalation(state: Escalation) -> CsAlert:
    """One critical alert naming every red flag of a user (or an account) in the window."""
    what = "; ".join(f"{w} at {_iso(at)}" for _, at, w in state.flags)
    who = f"{state.scope} {state.subject_id}"
    message = {
        "summary": one_line(f"Escalation: {who} tripped {len(state.flags)} red flags: {what}", 300),
        "reason": "escalation",
        "severity": "critical",
        "scope": state.scope,
        f"{state.scope}_id": state.subject_id,
        "flags": [{"flag": f, "at": _iso(at), "what": w} for f, at, w in state.flags],
        "escalated_at": _iso(state.escalated_at),
    }
    subject = f"Escalation: {who} ({len(state.flags)} red flags)"
    return _cs_alert(state.alert_id(), subject, message, severity="critical", task="escalation",
                     **{f"{state.scope}_id": state.subject_id})  # fmt: skip


def chatbot_message(cs: CsAlert) -> dict[str, Any]:
    """The CS alert in AWS Chatbot's custom notification format (Chatbot posts it to Slack or Teams)."""
    m = cs.message
    return {
        "version": "1.0",
        "source": "custom",
        "id": cs.alert_id,
        "content": {
            "textType": "client-markdown",
            "title": cs.subject,
            "description": str(m.get("summary", "")),
            "nextSteps": [f"Reach out to {m['user_id']}" if m.get("user_id") else "Look at the account"],
        },
        "metadata": {
            "threadId": str(m.get("user_id") or m.get("account_id") or "redflag"),
            "summary": str(m.get("summary", "")),
            "eventType": str(m.get("reason", "red_flag")),
            "additionalContext": {k: str(v) for k, v in cs.attributes.items()},
        },
    }
