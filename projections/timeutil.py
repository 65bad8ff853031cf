"""Charger timestamps to Unix milliseconds, and milliseconds to what ClickHouse reads."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Final

HOUR_MS: Final = 3_600_000
_MILLIS: Final = tuple(f".{n:03d}" for n in range(1000))


@functools.lru_cache(maxsize=8192)
def parse_ms(text: str) -> int:
    """ISO 8601 as OCPP sends it (``2026-11-22T10:00:00Z``, offsets, fractions) to Unix ms.

    A time without an offset is taken as UTC, which is what OCPP 1.6 chargers mean by it.
    Cached: a MeterValues' timestamp is read twice (to find its session, then its rows).
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def ch_time(ms: int) -> str:
    """DateTime64(3, 'UTC') text, ``YYYY-MM-DD hh:mm:ss.mmm``: exact, and read the same way
    by every ClickHouse (a bare Unix number is ambiguous for small values)."""
    seconds, millis = divmod(ms, 1000)
    return _second(seconds) + _MILLIS[millis]


@functools.lru_cache(maxsize=65_536)
def _second(seconds: int) -> str:
    # Events of one batch share their seconds: formatting each once is a large share of the
    # fold's time otherwise.
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


def hour_of(ms: int) -> int:
    return ms - ms % HOUR_MS
