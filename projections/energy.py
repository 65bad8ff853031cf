"""Energy of a session: its meter curve, and that curve spread over clock hours.

Everything works on the whole curve, sorted by the charger's timestamps, so a meter value
that arrives late, out of order, or flushed from an offline queue lands where it belongs:
the projection recomputes the session's hours and writes only the differences.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from projections.tariffs import Point
from projections.timeutil import HOUR_MS, hour_of


def curve(
    points: Iterable[Point],
    start: Point | None,
    stop: Point | None,
) -> list[Point]:
    """The session's register readings, bounded by its start and stop readings when known."""
    lower = start[0] if start is not None else None
    upper = stop[0] if stop is not None else None
    inside = [
        point
        for point in points
        if (lower is None or point[0] >= lower) and (upper is None or point[0] <= upper)
    ]
    # Sorted by time, then by arrival: equal timestamps keep a deterministic order.
    result = sorted(inside, key=lambda point: point[0])
    if start is not None:
        result.insert(0, start)
    if stop is not None:
        result.append(stop)
    return result


def energy_wh(points: Sequence[Point]) -> float:
    if len(points) < 2:
        return 0.0
    return points[-1][1] - points[0][1]


def hourly(points: Sequence[Point]) -> dict[int, float]:
    """Wh per hour (start of the hour, Unix ms), energy spread evenly between readings."""
    result: dict[int, float] = {}
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        delta = v1 - v0
        if t1 <= t0:
            result[hour_of(t0)] = result.get(hour_of(t0), 0.0) + delta
            continue
        edge = t0
        while edge < t1:
            hour = hour_of(edge)
            until = min(hour + HOUR_MS, t1)
            result[hour] = result.get(hour, 0.0) + delta * (until - edge) / (t1 - t0)
            edge = until
    return {hour: round(wh, 6) for hour, wh in result.items()}


def changes(before: dict[int, float], after: dict[int, float]) -> list[tuple[int, float]]:
    """What to add to each hour to go from ``before`` to ``after``, in hour order."""
    out = []
    for hour in sorted(before.keys() | after.keys()):
        delta = round(after.get(hour, 0.0) - before.get(hour, 0.0), 6)
        if delta != 0.0:
            out.append((hour, delta))
    return out
