"""Text made safe and human: one-line subjects, chat escaping, durations in words. Pure."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

SNS_SUBJECT_MAX = 99  # SNS requires fewer than 100 characters


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
