"""The one clock every piece of Red Flag reads, so tests and the local demo can move time."""

from __future__ import annotations

import time
from collections.abc import Callable

_now: Callable[[], float] = time.time
_sleep: Callable[[float], None] = time.sleep


def now() -> float:
    """Current time in epoch seconds."""
    return _now()


def sleep(seconds: float) -> None:
    """Wait (a simulated clock moves instead)."""
    if seconds > 0:
        _sleep(seconds)


def set_clock(fn: Callable[[], float] | None, sleeper: Callable[[float], None] | None = None) -> None:
    """Replace the clock (``None`` restores the wall clock). Used by tests and the local runner."""
    global _now, _sleep
    _now = fn or time.time
    _sleep = sleeper or time.sleep
