"""The pure core on its own: tariffs, the hourly spread, meter units, read-only checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain import energy
from hub.domain.facts import Sample
from hub.domain.meter_values import kind_of, readings, value_of
from hub.domain.tariffs import Tariff, session_cost
from hub.domain.timeutil import ch_time, parse_ms
from projections import store
from projections.fold import apply, folds
from projections.query import QueryRefused, check_read_only
from projections.reshapes import RESHAPES, SAMPLE
from projections.rows import TABLE_OF, EventRow, Output
from projections.schema import ADDED, table_ddl
from projections.state import State, decode_state, encode_state
from schemas.events import TariffBand
from schemas.ocpp.v16 import SampledValue
from tests.projections.scenario import fleet, mixed
from tests.unit.test_events_golden import golden_samples

H = 3_600_000


def test_time_of_day_band_prices_its_share_of_a_session() -> None:
    tariff = Tariff(
        tariff_id="t",
        currency="EUR",
        per_kwh="0.40",
        per_minute="0.02",
        session_fee="1",
        bands=(TariffBand(start="22:00", end="06:00", per_kwh="0.10", per_minute="0"),),
    )
    # 21:00 -> 23:00, 4 kWh spread evenly: 2 kWh at day price, 2 kWh at night price.
    at = parse_ms("2026-11-22T21:00:00Z")
    cost = session_cost(tariff, [(at, 0.0), (at + 2 * H, 4000.0)])
    assert cost.energy_cost == Decimal("1.0000")  # 2 x 0.40 + 2 x 0.10
    assert cost.time_cost == Decimal("1.2000")  # 60 day minutes x 0.02, night minutes free
    assert cost.total == Decimal("3.2000")


def test_energy_is_spread_over_hours_and_changes_are_deltas() -> None:
    at = parse_ms("2026-11-22T10:30:00Z")
    wh = energy.NANO
    before = energy.hourly([(at, 0.0), (at + H, 1000.0)])
    assert before == {at - H // 2: 500 * wh, at + H // 2: 500 * wh}
    # A late reading at 11:00 says most energy came before the hour.
    points = [(at, 0.0), (at + H, 1000.0)]
    change = energy.place(points, None, None, (at + H // 2, 900.0))
    assert change == {at - H // 2: 400 * wh, at + H // 2: -400 * wh}
    assert energy.changes(before, energy.hourly(points)) == change


@pytest.mark.parametrize(
    ("unit", "value", "base", "expected"),
    [("kWh", "1.5", "Wh", 1500.0), ("kW", "7.4", "W", 7400.0), ("Wh", "12", "Wh", 12.0)],
)
def test_meter_values_are_normalised_to_base_units(
    unit: str, value: str, base: str, expected: float
) -> None:
    sampled = SampledValue(value=value, unit=unit)  # type: ignore[arg-type]
    kind = kind_of(sampled)
    assert (kind.unit, value_of(sampled, kind)) == (base, expected)


def test_a_non_numeric_sample_is_refused_with_its_measurand() -> None:
    with pytest.raises(ValueError, match=r"Energy\.Active\.Import\.Register: value 'abc'"):
        sampled = SampledValue(value="abc")
        value_of(sampled, kind_of(sampled))


_USUAL = [
    SampledValue(value="1.5", measurand="Power.Active.Import", unit="kW"),
    SampledValue(value="1500", unit="Wh", location="Inlet"),
    SampledValue(value="16.0", measurand="Current.Import", phase="L1", unit="A"),
    SampledValue(value="1600", unit="Wh", location="Inlet"),
]


@pytest.mark.parametrize(
    ("values", "first_register", "problems"),
    [
        (_USUAL, 1500.0, 0),
        # The usual shape, with a value that is no number, or none a meter reads.
        (
            [
                *_USUAL[:2],
                SampledValue(value="abc", measurand="Current.Import", phase="L1", unit="A"),
                _USUAL[3],
            ],
            1500.0,
            1,
        ),
        (
            [
                *_USUAL[:2],
                SampledValue(value="nan", measurand="Current.Import", phase="L1", unit="A"),
                _USUAL[3],
            ],
            1500.0,
            1,
        ),
        ([*_USUAL[:3], SampledValue(value="-1e400", unit="Wh", location="Inlet")], 1500.0, 1),
        (
            [SampledValue(value="2e12", measurand="Power.Active.Import", unit="kW"), *_USUAL[1:]],
            1500.0,
            1,
        ),
        (
            [
                SampledValue(value="abc", measurand="Voltage", unit="V", phase="L2"),
                SampledValue(value="00ff", format="SignedData", location="Body"),
                SampledValue(value="1e400", measurand="Temperature", unit="K"),
                SampledValue(value="7.4", unit="kWh", context="Trigger"),
            ],
            7400.0,
            3,
        ),
        ([SampledValue(value="41", measurand="SoC", unit="Percent", location="EV")], None, 0),
    ],
)
def test_a_sample_sets_readings_are_what_kind_of_and_value_of_make_of_each_sample(
    values: list[SampledValue], first_register: float | None, problems: int
) -> None:
    expected: list[Sample] = []
    reasons: list[str] = []
    for sampled in values:
        kind = kind_of(sampled)
        try:
            value = value_of(sampled, kind)
        except ValueError as error:
            reasons.append(str(error))
            continue
        expected.append(msgspec.structs.replace(kind.template, at_ms=7, value=value))
    # Twice: a shape new to the fold, then one it has seen (the usual set's shortcut).
    for _ in range(2):
        samples: list[Sample] = []
        found: list[str] = []
        assert readings(values, 7, samples, found) == first_register
        assert (samples, found) == (expected, reasons)
        assert len(found) == problems


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "select 1; drop table t",
        "OPTIMIZE TABLE t",
        "SYSTEM STOP MERGES",
    ],
)
def test_writes_are_refused(sql: str) -> None:
    with pytest.raises(QueryRefused):
        check_read_only(sql)


def test_reads_pass_even_with_semicolons_in_strings() -> None:
    assert check_read_only("SELECT ';' -- ; comment\n;") == "SELECT ';' -- ; comment"


def test_rows_do_not_depend_on_batching_or_snapshots() -> None:
    events = fleet(3, 3).events + mixed().events
    whole = Output()
    state = State()
    for seq, event in enumerate(events, 1):
        apply(state, whole, seq, event)
    pieces = Output()
    state = State()
    for seq, event in enumerate(events, 1):
        if seq % 17 == 0:
            # A restart from a snapshot taken here must carry on identically.
            state = decode_state(encode_state(state))
        apply(state, pieces, seq, event)
    encode = msgspec.json.Encoder(decimal_format="string").encode
    assert {t: [encode(r) for r in rows] for t, rows in whole.rows.items()} == {
        t: [encode(r) for r in rows] for t, rows in pieces.rows.items()
    }


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_clickhouse_times_are_the_utc_time_to_the_millisecond(ms: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert ch_time(ms) == moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _without_positions(state: State) -> bytes:
    domain = msgspec.structs.replace(state.domain, last_seq=0)
    return encode_state(msgspec.structs.replace(state, last_seq=0, domain=domain))


def test_events_the_fold_skips_change_nothing_but_the_events_log() -> None:
    """Replay's fold process gets only the events ``folds`` names: for every other one,
    ``apply`` must leave the state as it was and add nothing but the event's own row."""
    stream = [*fleet(3, 2).events, *mixed().events, *golden_samples().values()]
    state = State()
    skipped = 0
    for seq, event in enumerate(stream, 1):
        if folds(event):
            apply(state, Output(), seq, event)
            continue
        skipped += 1
        before = _without_positions(state)
        out = Output()
        apply(state, out, seq, event)
        assert _without_positions(state) == before
        assert [type(row) for rows in out.rows.values() for row in rows] == [EventRow]
    # Answers to MeterValues and StatusNotification, Heartbeats: in real streams about half.
    assert skipped > len(stream) / 4


def _ddl_columns(table: str) -> list[str]:
    body = table_ddl("db", table).split("(", 1)[1].split(") ENGINE", 1)[0]
    return [line.split()[0].strip("`") for line in body.strip().splitlines()]


@pytest.mark.parametrize("kind", list(TABLE_OF))
def test_a_row_is_its_tables_columns_in_order(kind: type[Any]) -> None:
    # Rows are inserted as arrays (JSONCompactEachRow): a value lands in the column at its
    # position, so a field out of order would fill the wrong column, silently when the types
    # agree.
    table = TABLE_OF[kind]
    fields = [field.name for field in msgspec.structs.fields(kind)]
    reshape = RESHAPES.get(table)
    # A table ClickHouse fills from rows of another shape takes rows of that shape.
    assert fields == (_structure_names(reshape.structure) if reshape else _ddl_columns(table))
    assert msgspec.json.decode(store.encode_rows([_example(kind)]))[0][0] == 7


def _structure_names(structure: str) -> list[str]:
    # Columns split at the commas outside parentheses: a type may hold commas.
    names, depth, start = [], 0, 0
    for index, char in enumerate(structure + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            names.append(structure[start:index].split()[0])
            start = index + 1
    return names


@pytest.mark.parametrize("table", list(RESHAPES))
def test_a_load_makes_every_column_of_its_table_in_order(table: str) -> None:
    assert [column for column, _ in RESHAPES[table].columns] == _ddl_columns(table)


def test_a_sample_encodes_as_the_tuple_meter_values_reads() -> None:
    sample = Sample(
        at_ms=-1, measurand="M", value=1.5, unit="U", phase="P", location="L", context="C"
    )
    # Tuple(at_ms Int64, measurand String, value Float64, unit, phase, location, context)
    assert msgspec.json.decode(msgspec.json.encode(sample)) == [-1, "M", 1.5, "U", "P", "L", "C"]
    assert SAMPLE == "Tuple(Int64, String, Float64, String, String, String, String)"


@pytest.mark.parametrize("table", list(ADDED))
def test_columns_added_later_come_last_in_the_ddl_in_the_order_they_are_added(table: str) -> None:
    # A table from before gets them appended in this order: its columns are then in the
    # order of the DDL, which the rows follow.
    added = [column.split()[0] for column in ADDED[table]]
    assert _ddl_columns(table)[-len(added) :] == added


def _example(kind: type[Any]) -> Any:
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(kind):
        values[field.name] = 7 if field.name == "seq" else None
    return kind(**values)
