"""The email channel (``notify: user``): a short, personal, helpful note to the user who is struggling.
Pure; sent as raw MIME through SES by ``redflag.adapters.ses``.

The words are the rule's own template (``email``), else the default its kind has for the reason of
the flag. Every value a user typed is escaped for its medium by ``redflag.core.templates.render``: one
line in the subject, HTML-escaped in the HTML part; the name and subject are RFC 2047-encoded in the
headers by ``redflag.core.mime``. Every email has a visible one-click unsubscribe link in its footer,
and the RFC 8058 headers (``unsubscribe_url``).

Click tracking: the configuration set publishes SES's Click events, and SES rewrites the links of the
HTML part to count them. Only the help link is counted (a click on it is the user's response to the
email: ``HELP_LINK_TAG``, read back by ``redflag.services.feedback``); every other link, the
unsubscribe link first, carries ``ses:no-track`` and is left as written (``track_help_only``). SES
never touches headers: ``List-Unsubscribe`` is sent as written.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser
from typing import Any, ClassVar

from redflag import kinds
from redflag.channels.base import Alert, AlertChannel, Context, RedFlag, UnsubscribeLinks
from redflag.core.templates import render
from redflag.core.text import humanize, one_line, plausible_name
from redflag.core.timers import Timer
from redflag.kinds.base import elapsed_of, reason_of, threshold_of, usual_of

HELP_LINK_TAG = ("redflag", "help")  # SES link tag (ses:tags) of the help link: its Click events' linkTags


class _Anchors(HTMLParser):
    """Where the ``<a>`` start tags of a page are: (offset, the tag as written, its attributes)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self._lines = [0] + [i + 1 for i, c in enumerate(page) if c == "\n"]
        self.found: list[tuple[int, str, dict[str, str | None]]] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text = self.get_starttag_text()
        if tag == "a" and text:
            line, column = self.getpos()
            self.found.append((self._lines[line - 1] + column, text, dict(attrs)))


def track_help_only(page: str, help_url: str | None) -> str:
    """The page with SES's click tracking on the help link only: the anchors pointing at ``help_url``
    tagged ``ses:tags="redflag:help;"``, every other anchor ``ses:no-track`` (one that has it already
    is left as it is)."""
    tag, value = HELP_LINK_TAG
    out = page
    for at, text, attrs in reversed(_Anchors(page).found):
        if "ses:no-track" in attrs or "ses:tags" in attrs:
            continue
        helps = bool(help_url) and (attrs.get("href") or "").strip() == help_url
        marked = f' ses:tags="{tag}:{value};"' if helps else " ses:no-track"
        out = out[:at] + text[:2] + marked + text[2:] + out[at + len(text) :]
    return out


class EmailAlert(Alert):
    channel: str = "user"
    to_address: str
    to_name: str | None
    subject: str
    text: str
    html: str
    unsubscribe_url: str | None = None  # RFC 8058: List-Unsubscribe + List-Unsubscribe-Post

    def recipient(self) -> str | None:
        return self.to_address


def _first_name(name: str | None) -> str | None:
    """The first word of a plausible name (``text.plausible_name``); None: greet neutrally."""
    plausible = plausible_name(name)
    return plausible.split(" ")[0] if plausible else None


def email_values(timer: Timer, now: float, unsubscribe_url: str | None = None) -> dict[str, str]:
    """What the placeholders of an email template stand for (raw: ``templates.render`` escapes)."""
    rule = timer.rule
    assert rule is not None
    usual = usual_of(timer)
    return {
        "first_name": _first_name(timer.user.name) or "there",
        "task_label": one_line(rule.label, 120),
        "elapsed": humanize(elapsed_of(timer, now)),
        "threshold": humanize(threshold_of(timer)),
        "expected": f"about {humanize(usual)}" if usual else "a little while",
        "expected_sentence": f"Most people finish in about {humanize(usual)}." if usual else "",
        "failures": str(timer.run_failures or timer.failures),
        "help_url": rule.help_url or "",
        "unsubscribe_url": unsubscribe_url or "",
    } | kinds.get(timer.kind).email_values(timer)


def _before_body_end(page: str, fragment: str) -> str:
    at = page.lower().rfind("</body>")
    return page[:at] + fragment + page[at:] if at >= 0 else page + fragment


class Email(AlertChannel):
    name: ClassVar[str] = "user"
    gated: ClassVar[bool] = True
    doc: ClassVar[str] = "docs/interventions.md#the-email"

    def compose(self, flag: RedFlag[Any], ctx: Context) -> EmailAlert | None:
        timer = flag.kind.user_timer(flag.subject)
        return None if timer is None else compose_email(timer, ctx.now, ctx.links)


def compose_email(timer: Timer, now: float | None = None, links: UnsubscribeLinks | None = None) -> EmailAlert | None:
    """The email of one timer's red flag (``now``: when it is sent; default its due time); None when we
    have no address for the user (or no rule)."""
    rule = timer.rule
    if rule is None or not timer.user.email:
        return None
    url = links(timer.key.user_id, timer.user.email) if links is not None else None
    values = email_values(timer, timer.due_at if now is None and timer.due_at else (now or 0.0), url)
    template = rule.email or kinds.get(timer.kind).default_emails()[reason_of(timer)]
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
    page = track_help_only(page, rule.help_url)
    return EmailAlert(
        alert_id=timer.alert_id("user"),
        to_address=timer.user.email,
        to_name=one_line(name, 80) if (name := plausible_name(timer.user.name)) else None,
        subject=subject,
        text=text,
        html=page,
        unsubscribe_url=url,
    )


CHANNEL = Email()
