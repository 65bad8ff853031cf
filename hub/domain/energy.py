"""Energy of a session: its meter curve, and that curve spread over clock hours.

A session's register readings are kept sorted by the charger's timestamps, so a meter value
that arrives late, out of order, or flushed from an offline queue lands where it belongs.
Energy between two neighbouring readings is spread evenly over the time between them; when
a reading lands, only the segment it splits changes, so only that segment's hours are
updated (``place``). Hours are counted in whole nano-Wh: integer sums do not depend on the
order of additions, so the hours kept up reading by reading are exactly the hours of the
whole curve (``hourly``), whatever order the readings came in.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Final

from hub.domain.tariffs import Point
from hub.domain.timeutil import HOUR_MS

# nano-Wh per Wh: the unit of every hour's sum.
NANO: Final = 1_000_000_000
# Energy between two readings further apart than this is not spread over the hours between.
MAX_SPREAD_MS: Final = 7 * 24 * HOUR_MS
# Start of the UTC hour (Unix ms) -> nano-Wh in it.
Hours = dict[int, int]

_time: Final = itemgetter(0)


def curve(
    points: Iterable[Point],
    start: Point | None,
    stop: Point | None,
) -> list[Point]:
    """The session's register readings, bounded by its start and stop readings when known."""
    # Sorted by time, then by arrival: equal timestamps keep a deterministic order.
    return bounded(sorted(points, key=_time), start, stop)


def bounded(points: list[Point], start: Point | None, stop: Point | None) -> list[Point]:
    """``curve`` of readings already sorted by time (a session's ``points``): cut where the
    bounds fall, not filtered and sorted again for every session version."""
    low = 0 if start is None else bisect.bisect_left(points, start[0], key=_time)
    high = len(points) if stop is None else bisect.bisect_right(points, stop[0], key=_time)
    result = points[low:high]
    if start is not None:
        result.insert(0, start)
    if stop is not None:
        result.append(stop)
    return result


def energy_wh(points: Sequence[Point]) -> float:
    if len(points) < 2:
        return 0.0
    return points[-1][1] - points[0][1]


def _spread(into: Hours, first: Point, second: Point, sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) the segment's energy, hour by hour."""
    (t0, v0), (t1, v1) = first, second
    delta = v1 - v0
    if t1 - t0 > MAX_SPREAD_MS:
        # Readings this far apart say nothing of when the energy flowed (a charger whose
        # clock jumped, or a fuzzer): it is booked in the hour of the later reading, so one
        # frame cannot make a row per hour of 15 years.
        hour = t1 - t1 % HOUR_MS
        into[hour] = into.get(hour, 0) + sign * round(delta * NANO)
        return
    if t1 <= t0:
        hour = t0 - t0 % HOUR_MS
        into[hour] = into.get(hour, 0) + sign * round(delta * NANO)
        return
    span = t1 - t0
    hour = t0 - t0 % HOUR_MS
    if t1 <= hour + HOUR_MS:
        # Within one hour, as nearly every segment is: the loop below run once. Its share
        # is delta * span / span, not delta: the very float the loop makes.
        into[hour] = into.get(hour, 0) + sign * round(delta * span / span * NANO)
        return
    edge = t0
    while edge < t1:
        hour = edge - edge % HOUR_MS
        until = hour + HOUR_MS
        if until > t1:  # not min(): a call per segment of every reading
            until = t1
        into[hour] = into.get(hour, 0) + sign * round(delta * (until - edge) / span * NANO)
        edge = until


def hourly(points: Sequence[Point]) -> Hours:
    """nano-Wh per hour of a whole curve (sorted), energy spread evenly between readings."""
    result: Hours = {}
    for first, second in itertools.pairwise(points):
        t0, t1 = first[0], second[0]
        hour = t0 - t0 % HOUR_MS
        if t0 < t1 <= hour + HOUR_MS:
            # _spread's case of a segment within one hour, as nearly every one is, without a
            # call for each: a session's end works out all of its hours again.
            span = t1 - t0
            result[hour] = result.get(hour, 0) + round((second[1] - first[1]) * span / span * NANO)
        else:
            _spread(result, first, second, 1)
    return _nonzero(result)


def _nonzero(hours: Hours) -> Hours:
    """``hours`` without the hours with no energy: itself, as nearly always, when it has none
    (checked in C, not rebuilt for every reading)."""
    return hours if all(hours.values()) else {hour: value for hour, value in hours.items() if value}


def changes(before: Hours, after: Hours) -> Hours:
    """What to add to each hour to go from ``before`` to ``after`` (nonzero only)."""
    out: Hours = {}
    for hour in before.keys() | after.keys():
        delta = after.get(hour, 0) - before.get(hour, 0)
        if delta:
            out[hour] = delta
    return out


def insert(points: list[Point], point: Point) -> int:
    """Put ``point`` into the sorted ``points`` after readings of the same time, where a
    stable sort of the arrivals puts it; returns its index."""
    if not points or points[-1][0] <= point[0]:
        # In order, as almost every reading comes.
        points.append(point)
        return len(points) - 1
    index = bisect.bisect_right(points, point[0], key=_time)
    points.insert(index, point)
    return index


def place(points: list[Point], start: Point | None, stop: Point | None, point: Point) -> Hours:
    """Insert ``point`` into the sorted ``points`` and return how the hours of the curve
    bounded by ``start`` and ``stop`` change: the segment it splits goes, its halves come."""
    at = point[0]
    index = insert(points, point)
    if (start is not None and at < start[0]) or (stop is not None and at > stop[0]):
        return {}
    before = points[index - 1] if index > 0 else None
    if before is None or (start is not None and before[0] < start[0]):
        before = start
    after = points[index + 1] if index + 1 < len(points) else None
    if after is None or (stop is not None and after[0] > stop[0]):
        after = stop
    out: Hours = {}
    if before is not None and after is not None:
        _spread(out, before, after, -1)
    if before is not None:
        _spread(out, before, point, 1)
    if after is not None:
        _spread(out, point, after, 1)
    return _nonzero(out)


def apply(hours: Hours, change: Hours) -> None:
    """``hours`` plus ``change``, keeping only hours with energy in them."""
    for hour, delta in change.items():
        value = hours.get(hour, 0) + delta
        if value:
            hours[hour] = value
        else:
            hours.pop(hour, None)
