"""Compact round-trip latency recorder.

A log-linear histogram in the spirit of HdrHistogram: exact below 128 ns, then
64 sub-buckets per power of two, so any recorded value is reported within
~0.8 % of its true value. The whole range from 0 ns to ~37 minutes fits in
about 2,400 int64 counters, so recording is O(1) with no allocation and one
recorder can be shared by thousands of simulated chargers in one event loop.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

_SUB_BUCKET_BITS = 7
_SUB_BUCKET_COUNT = 1 << _SUB_BUCKET_BITS
_SUB_BUCKET_HALF = _SUB_BUCKET_COUNT >> 1
# 2**41 ns is ~37 minutes: far past any call timeout, so clamping is harmless.
_MAX_TRACKABLE_NS = 1 << 41


def _bucket_index(value_ns: int) -> int:
    if value_ns < _SUB_BUCKET_COUNT:
        return value_ns if value_ns > 0 else 0
    shift = value_ns.bit_length() - _SUB_BUCKET_BITS
    return shift * _SUB_BUCKET_HALF + (value_ns >> shift)


def _bucket_midpoint(index: int) -> int:
    if index < _SUB_BUCKET_COUNT:
        return index
    shift = index // _SUB_BUCKET_HALF - 1
    low = (index - shift * _SUB_BUCKET_HALF) << shift
    return low + ((1 << shift) >> 1)


_BUCKETS = _bucket_index(_MAX_TRACKABLE_NS) + 1


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Percentiles in milliseconds, ready for a report."""

    count: int
    errors: int
    error_kinds: dict[str, int]
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    min_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class LatencyRecorder:
    """Histogram of CALL→CALLRESULT round trips plus error and action counters."""

    count: int = 0
    total_ns: int = 0
    min_ns: int = 0
    max_ns: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    _counts: array[int] = field(default_factory=lambda: array("q", bytes(8 * _BUCKETS)))

    def record(self, value_ns: int) -> None:
        index = _bucket_index(value_ns)
        if index >= _BUCKETS:
            index = _BUCKETS - 1
        self._counts[index] += 1
        if self.count == 0 or value_ns < self.min_ns:
            self.min_ns = value_ns
        if value_ns > self.max_ns:
            self.max_ns = value_ns
        self.count += 1
        self.total_ns += value_ns

    def record_error(self, kind: str) -> None:
        self.errors[kind] += 1

    def record_action(self, action: str) -> None:
        self.actions[action] += 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def reset(self) -> None:
        self.count = 0
        self.total_ns = 0
        self.min_ns = 0
        self.max_ns = 0
        self.errors.clear()
        self.actions.clear()
        # Rebuilding is faster than zeroing 2,400 slots one by one in Python.
        self._counts = array("q", bytes(8 * _BUCKETS))

    def merge(self, other: LatencyRecorder) -> None:
        if other.count:
            if self.count == 0 or other.min_ns < self.min_ns:
                self.min_ns = other.min_ns
            self.max_ns = max(self.max_ns, other.max_ns)
        self.count += other.count
        self.total_ns += other.total_ns
        self.errors.update(other.errors)
        self.actions.update(other.actions)
        counts = self._counts
        for i, c in enumerate(other._counts):
            if c:
                counts[i] += c

    def percentile_ns(self, percent: float) -> int:
        """Value at `percent` (0-100); 0 when nothing was recorded."""
        if self.count == 0:
            return 0
        if percent <= 0:
            return self.min_ns
        rank = max(1, math.ceil(self.count * percent / 100.0))
        seen = 0
        for index, c in enumerate(self._counts):
            if c:
                seen += c
                if seen >= rank:
                    # Clamping to the exact extremes keeps p0/p100 honest.
                    return min(max(_bucket_midpoint(index), self.min_ns), self.max_ns)
        return self.max_ns

    def summary(self) -> LatencySummary:
        def ms(ns: int | float) -> float:
            return round(ns / 1e6, 4)

        return LatencySummary(
            count=self.count,
            errors=self.error_count,
            error_kinds=dict(self.errors),
            mean_ms=ms(self.total_ns / self.count) if self.count else 0.0,
            p50_ms=ms(self.percentile_ns(50)),
            p90_ms=ms(self.percentile_ns(90)),
            p99_ms=ms(self.percentile_ns(99)),
            p999_ms=ms(self.percentile_ns(99.9)),
            min_ms=ms(self.min_ns),
            max_ms=ms(self.max_ns),
        )

    def to_dict(self) -> dict[str, Any]:
        """Sparse, JSON-able form so recorders can be merged across processes."""
        return {
            "count": self.count,
            "total_ns": self.total_ns,
            "min_ns": self.min_ns,
            "max_ns": self.max_ns,
            "errors": dict(self.errors),
            "actions": dict(self.actions),
            "buckets": {str(i): c for i, c in enumerate(self._counts) if c},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyRecorder:
        rec = cls(
            count=int(data["count"]),
            total_ns=int(data["total_ns"]),
            min_ns=int(data["min_ns"]),
            max_ns=int(data["max_ns"]),
            errors=Counter({str(k): int(v) for k, v in data["errors"].items()}),
            actions=Counter({str(k): int(v) for k, v in data["actions"].items()}),
        )
        for key, c in data["buckets"].items():
            rec._counts[int(key)] = int(c)
        return rec
