"""The hub's wall clock, in the unit every event carries."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def monotonic_s() -> float:
    """Seconds on a clock that never jumps, for durations (lockouts, log windows); tests
    replace it with one they advance by hand."""
    return time.monotonic()
