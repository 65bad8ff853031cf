"""The site_load table from the pure fold: each node's limit against what the transactions
below it are allocated and draw, per phase, a row whenever one of them changes, the same on
a replay of the same events."""

from __future__ import annotations

import msgspec
import pytest

from hub.domain.facts import Sample
from hub.domain.load import drawn_by_phase
from projections.fold import apply, folds
from projections.rows import Output, SiteLoadRow
from projections.state import State, decode_state, encode_state
from schemas.events import (
    AllocationDecided,
    DailyLimit,
    SiteConnectorAssigned,
    SiteNodeRemoved,
)
from tests.unit.supervisor_stream import Stream, iso
from tests.unit.test_load_management import answer, assign, live, site

Amps = tuple[float, float, float]


def site_load_rows(events: list[object], *, snapshot_every: int = 0) -> list[SiteLoadRow]:
    """The rows of a fold of ``events`` (each at its place in the stream); with
    ``snapshot_every``, restarted from a snapshot of its state that often."""
    state, out = State(), Output()
    for seq, event in enumerate(events, 1):
        if snapshot_every and seq % snapshot_every == 0:
            state = decode_state(encode_state(state))
        if event is not None:
            apply(state, out, seq, event)  # type: ignore[arg-type]
    return [row for row in out.rows["site_load"] if isinstance(row, SiteLoadRow)]


def rows_of(stream: Stream) -> list[SiteLoadRow]:
    return site_load_rows(list(stream.events))


def latest(rows: list[SiteLoadRow]) -> dict[str, SiteLoadRow]:
    return {row.node_id: row for row in rows}


def allocated(row: SiteLoadRow) -> Amps:
    return row.allocated_l1, row.allocated_l2, row.allocated_l3


def measured(row: SiteLoadRow) -> Amps:
    return row.measured_l1, row.measured_l2, row.measured_l3


def amps(stream: Stream, cp: str, tx: int, at: int, **phases: float) -> None:
    """A MeterValues of Current.Import, per phase (``x``: a reading without a phase)."""
    sampled = [
        {"value": f"{value:g}", "measurand": "Current.Import", "unit": "A"}
        | ({} if phase == "x" else {"phase": phase})
        for phase, value in phases.items()
    ]
    answer(
        stream,
        stream.call(
            cp,
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [{"timestamp": iso(at), "sampledValue": sampled}],
            },
            at,
        ),
    )


def charging(stream: Stream, cps: dict[str, int]) -> None:
    """Each charger connects, then starts transaction ``tx`` on connector 1."""
    for n, cp in enumerate(cps):
        answer(stream, stream.connect(cp, stream.at(n)))
    for n, (cp, tx) in enumerate(cps.items()):
        answer(stream, stream.start(cp, 1, tx, stream.at(10 + n)))


def feeder_site(stream: Stream) -> None:
    """A grid connection of 63 A; a feeder of 32 A below it with a three-phase charger and
    a one-phase one; a third charger straight below the grid connection."""
    site(stream, "grid", limit=63.0)
    site(stream, "feeder", limit=32.0, parent="grid")
    assign(stream, "CP-1", "feeder")
    assign(stream, "CP-2", "feeder", phases=1)
    assign(stream, "CP-3", "grid")
    charging(stream, {"CP-1": 100, "CP-2": 101, "CP-3": 102})


def last_limits(stream: Stream) -> dict[str, float]:
    return {
        e.charge_point_id: e.limit_a
        for e in stream.events
        if isinstance(e, AllocationDecided) and e.session
    }


def test_a_feeder_and_its_grid_connection_show_limit_allocation_and_load_per_phase() -> None:
    stream = Stream()
    feeder_site(stream)
    amps(stream, "CP-1", 100, stream.at(20), L1=10, L2=11, L3=12)  # per phase: as read
    amps(stream, "CP-2", 101, stream.at(21), x=7)  # one phase, no phase named: L1
    amps(stream, "CP-3", 102, stream.at(22), x=5)  # three phases, no phase named: on each
    rows = rows_of(stream)
    nodes = latest(rows)
    feeder, grid = nodes["feeder"], nodes["grid"]
    assert (feeder.site_id, feeder.parent, grid.site_id, grid.parent) == (
        "grid",
        "grid",
        "grid",
        "",
    )
    assert (feeder.limit_a, feeder.limit_source, grid.limit_a) == (32.0, "static", 63.0)
    assert measured(feeder) == (17.0, 11.0, 12.0)
    assert measured(grid) == (22.0, 16.0, 17.0)
    assert (feeder.transactions, feeder.metered, grid.transactions, grid.metered) == (2, 2, 3, 3)
    # What the allocator's last decisions gave, on the phases each car uses.
    given = last_limits(stream)
    assert allocated(feeder) == (
        round(given["CP-1"] + given["CP-2"], 3),
        given["CP-1"],
        given["CP-1"],
    )
    assert allocated(grid) == tuple(round(a + given["CP-3"], 3) for a in allocated(feeder))
    assert max(allocated(feeder)) <= feeder.limit_a and max(allocated(grid)) <= grid.limit_a
    # The readings' rows name them; the decisions after them, the allocation.
    meter = [row for row in rows if row.cause == "meter" and row.node_id == "feeder"]
    assert [measured(row) for row in meter] == [(10.0, 11.0, 12.0), (17.0, 11.0, 12.0)]
    # Assigning idle connectors changed nothing a node shows.
    assert {row.cause for row in rows} == {"node", "start", "allocation", "meter"}


def test_a_row_is_written_only_when_what_a_node_shows_changes() -> None:
    stream = Stream()
    feeder_site(stream)
    amps(stream, "CP-1", 100, stream.at(20), x=10)
    before = rows_of(stream)
    # The same reading again, a charger below no node, ticks without a daily limit: nothing
    # moved (but the allocator's word, which may now raise a limit it held back).
    amps(stream, "CP-1", 100, stream.at(30), x=10)
    answer(stream, stream.start("CP-9", 1, 900, stream.at(31)))
    amps(stream, "CP-9", 900, stream.at(32), x=16)
    stream.ticks_until(stream.at(60))
    rows = rows_of(stream)
    assert rows[: len(before)] == before
    assert {row.cause for row in rows[len(before) :]} <= {"allocation"}
    before = rows
    # Another draw: a row for the feeder and one for the grid above it, none for others.
    amps(stream, "CP-1", 100, stream.at(61), x=12)
    new = rows_of(stream)[len(before) :]
    assert [(row.node_id, row.cause, measured(row)[1]) for row in new[:2]] == [
        ("feeder", "meter", 12.0),
        ("grid", "meter", 12.0),
    ]


def test_live_and_daily_limits_are_the_limit_in_force_and_a_tick_writes_a_daily_change() -> None:
    stream = Stream()
    noon = stream.now - stream.now % 86_400_000 + 86_400_000 + 12 * 3_600_000
    stream.now = noon - 20_000
    site(stream, "grid", limit=63.0, daily=(DailyLimit(start="12:00", limit=40.0),))
    site(stream, "feeder", limit=32.0, parent="grid")
    rows = rows_of(stream)
    # Before noon the day's last entry runs over midnight: the schedule's only one.
    assert (latest(rows)["grid"].limit_a, latest(rows)["grid"].limit_source) == (40.0, "daily")
    live(stream, 20.0, noon - 10_000, node="feeder")
    live(stream, None, noon - 5_000, node="feeder")
    rows = rows_of(stream)
    feeder = [(r.limit_a, r.limit_source, r.cause) for r in rows if r.node_id == "feeder"]
    assert feeder == [(32.0, "static", "node"), (20.0, "live", "live"), (32.0, "static", "live")]
    # A schedule that changes at 12:00: the first tick after writes the grid's new limit.
    daily = (DailyLimit(start="00:00", limit=50.0), DailyLimit(start="12:00", limit=40.0))
    site(stream, "grid", limit=63.0, daily=daily)
    stream.ticks_until(noon + 10_000)
    grid = [
        (r.limit_a, r.cause, r.received_at[11:19]) for r in rows_of(stream) if r.node_id == "grid"
    ]
    assert grid[-2:] == [(50.0, "node", "11:59:55"), (40.0, "tick", "12:00:00")]


def test_limits_in_w_are_a_per_phase_over_the_nodes_phases() -> None:
    stream = Stream()
    site(stream, "grid", limit=22_080.0, unit="W")
    assert latest(rows_of(stream))["grid"].limit_a == 32.0


def test_an_ended_transaction_leaves_its_node_and_late_readings_do_not_bring_it_back() -> None:
    stream = Stream()
    feeder_site(stream)
    amps(stream, "CP-1", 100, stream.at(20), x=10)
    answer(stream, stream.stop("CP-1", 100, 5_000, stream.at(30)))
    rows = rows_of(stream)
    ended = next(r for r in rows if r.cause == "end" and r.node_id == "feeder")
    assert (ended.transactions, ended.metered, measured(ended)) == (1, 0, (0.0, 0.0, 0.0))
    assert allocated(ended)[1:] == (0.0, 0.0)  # only CP-2, one phase, is left
    # A reading the charger had queued while offline comes after its Stop.
    amps(stream, "CP-1", 100, stream.at(25), x=30)
    assert rows_of(stream)[len(rows) :] == []


def test_a_connector_assigned_while_charging_counts_from_then_and_unassigned_leaves() -> None:
    stream = Stream()
    site(stream, "grid", limit=63.0)
    charging(stream, {"CP-1": 100})
    amps(stream, "CP-1", 100, stream.at(20), x=10)
    assert [r.transactions for r in rows_of(stream)] == [0]
    assign(stream, "CP-1", "grid")
    grid = latest(rows_of(stream))["grid"]
    assert (grid.cause, grid.transactions, grid.metered) == ("assignment", 1, 0)
    amps(stream, "CP-1", 100, stream.at(30), x=11)
    assert measured(latest(rows_of(stream))["grid"]) == (11.0, 11.0, 11.0)
    stream.add(
        SiteConnectorAssigned(
            id="unassign", received_at=stream.at(40), actor="t", charge_point_id="CP-1",
            connector_id=1, node_id="",
        )
    )  # fmt: skip
    grid = latest(rows_of(stream))["grid"]
    assert (grid.transactions, measured(grid), allocated(grid)) == (0, (0.0,) * 3, (0.0,) * 3)


def test_a_node_removed_gets_a_last_row_and_its_children_head_a_site_of_their_own() -> None:
    stream = Stream()
    site(stream, "grid", limit=63.0)
    site(stream, "feeder", limit=32.0, parent="grid")
    stream.add(SiteNodeRemoved(id="gone", received_at=stream.at(5), actor="t", node_id="grid"))
    rows = rows_of(stream)
    assert [(r.node_id, r.site_id, r.parent, r.removed) for r in rows[-2:]] == [
        ("grid", "grid", "", True),
        ("feeder", "feeder", "", False),
    ]


def test_a_replay_from_the_events_it_folds_and_from_snapshots_writes_the_same_rows() -> None:
    stream = Stream()
    feeder_site(stream)
    for n in range(6):
        amps(stream, "CP-1", 100, stream.at(20 + 5 * n), L1=10 + n, L2=11, L3=12 - n)
        amps(stream, "CP-2", 101, stream.at(21 + 5 * n), x=6 + n)
        stream.ticks_until(stream.at(22 + 5 * n))
    live(stream, 50.0, stream.at(60), node="grid")
    answer(stream, stream.stop("CP-2", 101, 5_000, stream.at(70)))
    events = list(stream.events)
    rows = site_load_rows(events)
    assert len(rows) > 40
    # Replay's fold process gets only the events ``folds`` names, at their sequences.
    assert site_load_rows([e if folds(e) else None for e in events]) == rows
    assert site_load_rows(events, snapshot_every=7) == rows


@pytest.mark.parametrize(
    ("samples", "phases", "expected"),
    [
        ([("Current.Import", "L1", 10), ("Current.Import", "L2", 11), ("Current.Import", "L3", 9)],
         3, (10.0, 11.0, 9.0)),
        # A phase missing: the allocator's count, the highest on each phase the car uses.
        ([("Current.Import", "L1", 10), ("Current.Import", "L2", 11)], 3, (11.0, 11.0, 11.0)),
        ([("Current.Import", "", 8)], 1, (8.0, 0.0, 0.0)),
        ([("Current.Import", "L1", 8), ("Current.Import", "N", 1)], 1, (8.0, 0.0, 0.0)),
        ([("Power.Active.Import", "", 6900)], 3, (10.0, 10.0, 10.0)),
        ([("Energy.Active.Import.Register", "", 1000)], 3, None),
    ],
)  # fmt: skip
def test_a_cars_draw_per_phase(
    samples: list[tuple[str, str, float]], phases: int, expected: Amps | None
) -> None:
    read = [Sample(at_ms=0, measurand=m, phase=p, value=v) for m, p, v in samples]
    assert drawn_by_phase(read, phases) == expected


def test_the_state_snapshots() -> None:
    stream = Stream()
    feeder_site(stream)
    amps(stream, "CP-1", 100, stream.at(20), L1=10, L2=11, L3=12)
    state = State()
    for seq, event in enumerate(stream.events, 1):
        apply(state, Output(), seq, event)
    again = decode_state(encode_state(state))
    assert msgspec.json.encode(again.site_load) == msgspec.json.encode(state.site_load)
    assert again.site_load.below["CP-1\x1f1"].measured == (10_000, 11_000, 12_000)
    assert again.site_load.totals["feeder"].measured == [10_000, 11_000, 12_000]
