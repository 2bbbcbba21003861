"""The one clock every piece of Red Flag reads, so tests and the local runner can move time.

Services get ``SYSTEM`` injected by the wiring and pass ``now`` down to the pure domain as a
number; adapters never read the time. ``set_clock`` swaps what ``SYSTEM`` reads (tests, demo).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

_now: Callable[[], float] = time.time
_sleep: Callable[[float], None] = time.sleep


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class _System:
    """Wall time, unless ``set_clock`` replaced it."""

    def now(self) -> float:
        return _now()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            _sleep(seconds)


SYSTEM: Clock = _System()


def set_clock(fn: Callable[[], float] | None, sleeper: Callable[[float], None] | None = None) -> None:
    """Replace the clock (``None`` restores the wall clock). Used by tests and the local runner."""
    global _now, _sleep
    _now = fn or time.time
    _sleep = sleeper or time.sleep
