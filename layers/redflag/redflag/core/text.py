"""Text made safe and human: one-line subjects, chat escaping, durations in words. Pure."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

SNS_SUBJECT_MAX = 99  # SNS requires fewer than 100 characters
NAME_MAX = 100  # longer than any name we greet: a sentence, not a name
# letters and symbols that show as nothing: Hangul fillers, the braille blank, Khmer inherent vowels
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5")
_NOT_IN_NAMES = re.compile(
    r"://|\bwww\.|@"  # a URL, an address
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",  # a host name: evil.example, bit.ly
    re.IGNORECASE,
)


def one_line(text: str, limit: int = 200) -> str:
    """Safe for a subject: control, format and line/paragraph separator characters become spaces
    (C0, C1, U+0085, U+2028, U+2029, bidi controls), runs of spaces collapse, length bounded."""
    flat = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") else c for c in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def display_name(text: str, limit: int = 256) -> str | None:
    """A name as a person typed it, made inert, never refused: line and paragraph breaks and other
    control characters become spaces (a trailing CR/LF a web form left), format characters go (a
    zero-width space, a bidi override), as do lone surrogates; runs of spaces collapse, the ends are
    trimmed, and it is clipped to ``limit`` characters. None when nothing is left (the neutral greeting)."""
    kept = []
    for c in text:
        category = unicodedata.category(c)
        if category in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        elif category not in ("Cf", "Cs"):
            kept.append(c)
    name = " ".join("".join(kept).split())[:limit].rstrip()
    return name or None


def plausible_name(name: str | None) -> str | None:
    """The name as one line, if it reads as a person's name; None if it does not (then a greeting is
    neutral and customer success is shown the user id). Not a name: anything with no visible letter
    (whitespace, fillers such as U+3164 that are letters to Unicode but show as nothing, marks or
    punctuation alone), a URL, a host name or an address, or more than ``NAME_MAX`` characters.
    Markup is no reason: a name is escaped for each medium like every value. The one check the
    email's greeting and display name and every kind's CS text use."""
    if not name:
        return None
    flat = one_line(name, NAME_MAX + 1)
    if len(flat) > NAME_MAX or _NOT_IN_NAMES.search(flat):
        return None
    if not any(unicodedata.category(c).startswith("L") and c not in _BLANK_LETTERS for c in flat):
        return None
    return flat


def _strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``fn`` applied to every string of a JSON value, keys too."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {fn(str(k)): _strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v, fn) for v in value]
    return value


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def chat_escape(value: Any) -> Any:
    """``&``, ``<``, ``>`` escaped in every string of a JSON value (keys too): what Slack asks of
    text so that ``<!channel>`` or ``<@U123>`` is shown, never acted on."""
    return _strings(value, _escape)


def chat_unescape(value: Any) -> Any:
    """The inverse of ``chat_escape`` (and of nothing else: other entities stay as typed)."""
    return _strings(value, _unescape)


def humanize(seconds: float) -> str:
    minutes = round(seconds / 60)
    if seconds < 120:
        return f"{round(seconds)} second" + ("" if round(seconds) == 1 else "s")
    if minutes < 120 and minutes % 60:
        return f"{minutes} minutes"
    if seconds >= 2 * 86400:
        days = round(seconds / 86400, 1)
        return f"{days:g} days"
    hours = round(seconds / 3600, 1)
    return f"{hours:g} hour" + ("" if hours == 1 else "s")
