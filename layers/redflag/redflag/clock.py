"""The one clock every piece of Red Flag reads, so tests and the local demo can move time."""

from __future__ import annotations

import time
from collections.abc import Callable

_now: Callable[[], float] = time.time


def now() -> float:
    """Current time in epoch seconds."""
    return _now()


def set_clock(fn: Callable[[], float] | None) -> None:
    """Replace the clock (``None`` restores the wall clock). Used by tests and the local runner."""
    global _now
    _now = fn or time.time
