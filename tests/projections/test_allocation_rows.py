"""The allocations table from the pure fold: one row per allocation.decided, the same on a
replay of the same events."""

from __future__ import annotations

from projections.fold import apply
from projections.rows import AllocationRow, Output
from projections.state import State
from schemas.events import AllocationDecided
from tests.unit.supervisor_stream import Stream
from tests.unit.test_load_management import current, three_cars


def allocation_rows(stream: Stream) -> list[AllocationRow]:
    state, out = State(), Output()
    for seq, event in enumerate(stream.events, 1):
        apply(state, out, seq, event)
    return [row for row in out.rows["allocations"] if isinstance(row, AllocationRow)]


def test_each_decision_is_a_row_with_its_limit_draw_and_reason() -> None:
    stream = Stream()
    three_cars(stream)
    current(stream, "CP-1", 100, 4.0, stream.at(20))
    stream.ticks_until(stream.at(40))
    rows = allocation_rows(stream)
    decided = [e for e in stream.events if isinstance(e, AllocationDecided)]
    assert [row.event_id for row in rows] == [e.id for e in decided]
    meter = next(row for row in rows if row.reason == "meter")
    assert (meter.node_id, meter.charge_point_id, meter.limit_a, meter.drawn_a) == (
        "site",
        "CP-1",
        6.0,
        4.0,
    )
    assert allocation_rows(stream) == rows  # a replay writes the same rows
