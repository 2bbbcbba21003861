"""How a user email is written: RFC 5322 headers and RFC 2047 encoded words. Pure stdlib.

One rule for everything a user typed that reaches a header (display name, subject): it is always
written as RFC 2047 encoded words (``=?utf-8?b?...?=``), never as header syntax, so no text can add
a header, a recipient or a group, however it looks (CR/LF, ``Bcc:``, or an encoded word of its own,
which then stays literal text inside ours). Addresses are checked at the door by
``checked_address``, with the same writer and reader the sender uses, so an address that would not
come back out of the MIME layer as exactly itself is refused when the event arrives, not when the
alert is sent.
"""

from __future__ import annotations

import json
import re
from email import message_from_bytes
from email import policy as email_policy
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
from functools import lru_cache
from urllib.parse import quote

# compat32 headers are written as given (our encoded words), CRLF line ends as SMTP wants
SMTP = email_policy.compat32.clone(linesep="\r\n", max_line_length=78)


def encoded(text: str) -> str:
    """Header-safe form of user text: RFC 2047 encoded words, whatever the text holds."""
    return Header(text, "utf-8").encode()


def address_header(display_name: str | None, address: str) -> str:
    """``=?utf-8?...?= <address>``: the name is always encoded, the address was checked at the door."""
    return f"{encoded(display_name)} <{address}>" if display_name else address


_PLAIN = re.compile(r"^[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+$")  # nothing a header parser treats specially


@lru_cache(maxsize=4096)
def checked_address(value: str) -> str:
    """The address as SES needs it (ASCII, IDN domains in punycode), or ValueError saying why.

    email-validator checks the syntax (no quoted local parts, no SMTPUTF8: SES accepts neither) and,
    with ``strict=True``, the RFC 5321 limit of 64 octets before the @ (its only length check that is
    off by default; SMTPUTF8 being refused, characters are octets here). The whole address is held
    to 254 by the event model and by email-validator's own total-length check. Then, unless it is
    made of letters, digits and ``._+-`` only, the address must survive our own To header and come
    back, parsed, as exactly one address equal to itself.
    """
    # imported here: a function that never checks an address (the sweeper, the stats) never loads it
    from email_validator import EmailNotValidError, validate_email

    try:
        info = validate_email(value, check_deliverability=False, allow_smtputf8=False, strict=True)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    address = info.ascii_email or info.normalized
    if _PLAIN.match(address):
        return address
    probe = MIMEMultipart(policy=SMTP)
    probe["To"] = address_header("x", address)
    parsed = message_from_bytes(probe.as_bytes(), policy=email_policy.default)["To"].addresses
    if len(parsed) != 1 or parsed[0].addr_spec != address:
        raise ValueError("cannot be written as one email address")
    return address


def build_raw(
    *,
    sender: str,
    to_name: str | None,
    to_address: str,
    subject: str,
    text: str,
    html: str,
    alert_ids: list[str],
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """The raw MIME message (SES v2 ``Content.Raw``): text and HTML alternatives, encoded headers.
    ValueError when the address cannot be written as itself (it should have been refused at the door)."""
    if checked_address(to_address) != to_address:
        raise ValueError("the address is not in the form it was checked in")
    msg = MIMEMultipart("alternative", policy=SMTP)
    msg["From"] = sender
    msg["To"] = address_header(to_name, to_address)
    msg["Subject"] = encoded(subject)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip(">"))
    # which run this is, for tracing and dedupe downstream: URL-quoted parts, nothing user-typed raw
    msg["X-RedFlag-Alert"] = "/".join(quote(str(part), safe="") for part in alert_ids)
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.attach(MIMEText(text, "plain", "utf-8"))
    msg.attach(MIMEText(html, "html", "utf-8"))
    return msg.as_bytes()


def alert_id_parts(alert_id: str) -> list[str]:
    return [str(p) for p in json.loads(alert_id)]
