"""Hours kept up reading by reading equal the hours of the whole curve, in any arrival order.

The reference is the whole-curve computation the projection used before it went incremental:
every hour recomputed from the sorted curve on every reading, in float Wh.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain import energy
from hub.domain.tariffs import Point
from hub.domain.timeutil import HOUR_MS, ch_time, hour_of
from projections.fold import apply
from projections.rows import EnergyDeltaRow, Output, SessionRow
from projections.sessions import VERSION_EVERY_MS
from projections.state import State
from tests.projections.scenario import Builder

T0 = 1_795_340_000_000  # 2026-11-22T09:33:20Z, not on an hour


def whole_curve_hours(points: list[Point]) -> dict[int, float]:
    """The former projection's hours: float Wh, rounded per hour."""
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


def close(hours: dict[int, int], reference: dict[int, float], segments: int) -> bool:
    # Each segment's share of an hour is rounded to a nano-Wh.
    tolerance = 1e-6 + segments * 1e-9
    return all(
        abs(hours.get(hour, 0) / energy.NANO - reference.get(hour, 0.0)) <= tolerance
        for hour in hours.keys() | reference.keys()
    )


times = st.integers(min_value=0, max_value=5 * HOUR_MS // 1000).map(lambda s: T0 + s * 1000)
readings = st.tuples(times, st.floats(min_value=0, max_value=200_000, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(
    arrivals=st.lists(readings, max_size=40),
    start=st.none() | readings,
    stop=st.none() | readings,
)
def test_placing_readings_one_by_one_gives_the_whole_curve(
    arrivals: list[Point], start: Point | None, stop: Point | None
) -> None:
    points: list[Point] = []
    # The bounds are set first: the fold works out the whole (empty) curve then.
    hours = energy.hourly(energy.curve(points, start, stop))
    for point in arrivals:
        energy.apply(hours, energy.place(points, start, stop, point))
    whole = energy.curve(arrivals, start, stop)
    assert points == sorted(arrivals, key=lambda point: point[0])
    # A session's curve is cut from its sorted readings: the same as filtering and sorting.
    assert energy.bounded(points, start, stop) == whole
    assert hours == energy.hourly(whole)
    assert close(hours, whole_curve_hours(whole), len(whole))


@settings(max_examples=150, deadline=None)
@given(
    meter=st.lists(
        st.tuples(st.integers(0, 4 * 3600), st.integers(0, 50_000)), min_size=1, max_size=15
    ),
    stop_after=st.integers(min_value=0, max_value=15),
    late_ids=st.booleans(),
)
def test_energy_hourly_of_a_session_in_any_arrival_order(
    meter: list[tuple[int, int]], stop_after: int, late_ids: bool
) -> None:
    """Late, out-of-order, and after-Stop readings, also under an id the hub never issued:
    the energy_deltas rows sum to the hours of the whole curve."""
    b = Builder()
    b.tariff("std", "0.30")

    def stamp(second: int) -> str:
        return _iso(T0 + second * 1000)

    tx = b.start("CP-P", 1, stamp(0), 1000)
    sent = -1 if late_ids else tx
    for index, (second, wh) in enumerate(meter):
        if index == stop_after:
            b.stop("CP-P", sent, stamp(4 * 3600 + 60), 99_000)
        b.meter("CP-P", 1, sent if index < stop_after else tx, stamp(second), 1000 + wh)
    if stop_after >= len(meter):
        b.stop("CP-P", sent, stamp(4 * 3600 + 60), 99_000)
    state, out = State(), Output()
    for seq, event in enumerate(b.events, 1):
        apply(state, out, seq, event)
    sums: dict[int, float] = defaultdict(float)
    for row in out.rows["energy_deltas"]:
        assert isinstance(row, EnergyDeltaRow)
        sums[row.hour] += row.energy_wh
    points = [(T0 + second * 1000, float(1000 + wh)) for second, wh in meter]
    curve = energy.curve(points, (T0, 1000.0), (T0 + (4 * 3600 + 60) * 1000, 99_000.0))
    reference = {ch_time(hour): wh for hour, wh in whole_curve_hours(curve).items()}
    for hour in sums.keys() | reference.keys():
        assert abs(sums.get(hour, 0.0) - reference.get(hour, 0.0)) < 1e-5
    final = out.rows["session_versions"][-1]
    assert isinstance(final, SessionRow)
    assert (final.state, final.energy_wh) == ("completed", 98_000.0)


def test_a_reading_writes_a_session_version_at_most_every_five_minutes_of_charger_time() -> None:
    b = Builder()
    tx = b.start("CP-V", 1, _iso(T0), 0)
    for minute in range(1, 13):
        b.meter("CP-V", 1, tx, _iso(T0 + minute * 60_000), minute * 100)
    # Late: behind the latest version, it writes one (no later reading may come to).
    b.meter("CP-V", 1, tx, _iso(T0 + 30_000), 50)
    b.stop("CP-V", tx, _iso(T0 + 13 * 60_000), 1300)
    state, out = State(), Output()
    for seq, event in enumerate(b.events, 1):
        apply(state, out, seq, event)
    versions = [row for row in out.rows["session_versions"] if isinstance(row, SessionRow)]
    assert VERSION_EVERY_MS == 5 * 60_000
    # Start, the readings at 5 and 10 minutes, the late one, Stop.
    assert [v.energy_wh for v in versions] == [0.0, 500.0, 1000.0, 1200.0, 1300.0]
    assert len(out.rows["billing_versions"]) == len(versions)
    # Every reading moved energy_hourly at once, the late one too.
    assert len(out.rows["energy_deltas"]) >= 13


def _iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def test_readings_years_apart_cost_one_hour_not_one_per_hour_between() -> None:
    """A charger whose clock jumped 15 years: the energy is kept, in the later reading's
    hour, and the work is bounded (one frame once made 131,496 hourly rows)."""
    start = (1_600_000_000_000, 1_000.0)
    later = (start[0] + 15 * 365 * 24 * 3_600_000, 3_000.0)
    hours = energy.hourly([start, later])
    assert list(hours.values()) == [2_000 * energy.NANO]
    assert list(hours) == [later[0] - later[0] % 3_600_000]
    week = (start[0] + 7 * 24 * 3_600_000, 2_000.0)
    assert len(energy.hourly([start, week])) == 7 * 24 + 1  # a week from mid-hour
