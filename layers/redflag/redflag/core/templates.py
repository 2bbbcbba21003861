"""Email templates: a rule may word its own email; every value a user typed is escaped for its medium.

A template is three strings (``subject``, ``text``, optional ``html``) with placeholders in braces:

    {first_name}      the user's first name, or "there"
    {task_label}      the rule's label ("creating a landing page")
    {elapsed}         how long the task has been open, or the user silent ("25 minutes")
    {threshold}       the red-flag threshold this run was armed with ("15 minutes")
    {expected}        what usual is ("about 10 minutes"), or "a little while" when nothing is known
    {expected_sentence} "Most people finish in about 10 minutes." or nothing when nothing is known
    {failures}        failed tries in this run ("3")
    {step}            a funnel's step the user is stuck at ("shipping details"); empty for other kinds
    {help_url}        the rule's help_url (empty when the rule has none)
    {unsubscribe_url} the one-click unsubscribe link (also added to every email's footer)

Anything else in braces, a format spec (``{elapsed:>10}``), a conversion (``{elapsed!r}``) or an
attribute (``{first_name.upper}``) is an error when the rule is validated, naming the field. ``{{``
and ``}}`` are literal braces. Values are one line (control characters removed) in the subject,
HTML-escaped in ``html`` (the template's own markup is the rule author's and kept), plain in ``text``.
Without ``html``, the HTML part is the text, escaped, in paragraphs.
"""

from __future__ import annotations

import html
import re
from string import Formatter
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from redflag.core.errors import invalid
from redflag.core.text import one_line

PLACEHOLDERS = (
    "first_name", "task_label", "elapsed", "threshold", "expected", "expected_sentence", "failures", "help_url",
    "unsubscribe_url", "step",
)  # fmt: skip


def placeholders_of(template: str) -> list[str]:
    """The placeholders a template uses; ValueError naming anything that is not one of ours."""
    found = []
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a template: {exc}") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        if spec or conversion:
            raise ValueError(f"{{{name}}}: no format specs or conversions")
        found.append(name)
    return found


class EmailTemplate(BaseModel):
    """A rule's own email. ``subject`` and ``text`` are required, ``html`` optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    text: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    html: Annotated[str, StringConstraints(max_length=20000)] | None = None

    @model_validator(mode="after")
    def _placeholders(self) -> EmailTemplate:
        for name in ("subject", "text", "html"):
            value = getattr(self, name)
            if value is not None:
                try:
                    placeholders_of(value)
                except ValueError as exc:
                    invalid(name, str(exc), "EmailTemplate")
        return self


def render(template: EmailTemplate, values: dict[str, str]) -> tuple[str, str, str]:
    """(subject, text, html) with every placeholder filled, each value escaped for its medium."""
    subject = template.subject.format(**{k: one_line(v, 200) for k, v in values.items()})
    text = "\n".join(re.sub(r"(?<=\S) {2,}(?=\S)", " ", line) for line in template.text.format(**values).split("\n"))
    if template.html is not None:
        page = template.html.format(**{k: html.escape(v) for k, v in values.items()})
    else:
        paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
        page = f'<!doctype html><html><body style="font-family:sans-serif;line-height:1.5">{paragraphs}</body></html>'
    return one_line(subject, 120), text, page


HelpUrl = Annotated[str, Field(pattern=r"^https?://[^\s<>\"]+$", max_length=2000)]
