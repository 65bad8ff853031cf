"""Every row the projections make, over the whole range of what OCPP 1.6 allows, through a
real chDB INSERT and back: what goes in comes out, or is recorded in projection_errors as
docs/projections.md says; nothing wraps, nothing stalls."""

from __future__ import annotations

import asyncio
import itertools
import typing
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.domain.facts import Sample
from hub.domain.timeutil import CH_TIME_END_MS, CH_TIME_FIRST_MS, ch_time, hour_of
from projections import refusals, store
from projections.backends.embedded import ChdbBackend
from projections.fold import apply
from projections.rows import (
    TABLE_OF,
    AnomalyRow,
    BillingRow,
    ChargePointRow,
    ConnectorStatusRow,
    EnergyDeltaRow,
    ErrorRow,
    EventRow,
    MeterValueRow,
    Output,
    ReadingsRow,
    SessionRow,
    WalletLedgerRow,
)
from projections.state import State
from schemas.events import OcppFrame
from tests.projections.helpers import meter_values
from tests.projections.scenario import INT64_MAX, INT64_MIN

DB = "ocpp"
# DateTime64 holds years 1900 to 2299 on every ClickHouse.
_FIRST_MS = -2_208_988_800_000
_LAST_MS = 10_413_791_999_999
# Decimal(18, 4).
_MONEY = Decimal("99999999999999.9999")

_seqs = itertools.count(1)
# The rows each table holds, as read back: meter_values' are made by the store of the fold's
# ReadingsRow (projections.reshapes).
_STORED = {
    (MeterValueRow if kind is ReadingsRow else kind): table for kind, table in TABLE_OF.items()
}
# The events log's time, which its rows carry as milliseconds, read back as such.
_READ_AS_ROWS = {EventRow: " REPLACE (toUnixTimestamp64Milli(received_at) AS received_at)"}

# Integers at every edge a column type could have, and anywhere between.
_EDGES = [INT64_MIN, INT64_MIN + 1, -(1 << 32), -(1 << 31) - 1, -(1 << 31), -1, 0, 1]
_EDGES += [(1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 53) + 1, INT64_MAX]
int64s = st.one_of(st.sampled_from(_EDGES), st.integers(INT64_MIN, INT64_MAX))
# Strings as msgspec decodes them from a charger's JSON: any Unicode but lone surrogates.
_chars = st.characters(blacklist_categories=("Cs",))
texts = st.one_of(
    st.text(_chars, max_size=40),
    st.builds(lambda c, n: c * n, _chars, st.integers(1_000, 20_000)),
)
times = st.integers(_FIRST_MS, _LAST_MS).map(ch_time)
floats = st.floats(allow_nan=False, allow_infinity=False)
money = st.decimals(-_MONEY, _MONEY, places=4, allow_nan=False, allow_infinity=False)

_TIME_FIELDS = frozenset(
    {"received_at", "timestamp", "start_time", "stop_time", "updated_at", "last_boot"}
    | {"observed_at", "detected_at", "resolved_at"}
)


def _strategy(name: str, kind: Any) -> st.SearchStrategy[Any]:
    if typing.get_origin(kind) in (typing.Union, type(int | None)):
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return st.none() | _strategy(name, inner)
    if name == "hour":
        return st.integers(_FIRST_MS, _LAST_MS).map(lambda ms: ch_time(hour_of(ms)))
    if name in _TIME_FIELDS:
        return times
    strategies: dict[Any, st.SearchStrategy[Any]] = {
        int: int64s,
        str: texts,
        float: floats,
        bool: st.booleans(),
        Decimal: money,
        list[str]: st.lists(texts, max_size=3),
    }
    return strategies[kind]


def rows_of(kind: type[Any]) -> st.SearchStrategy[Any]:
    """Rows of ``kind`` with every field over its whole range (``seq`` unique)."""
    hints = typing.get_type_hints(kind)
    fields = {
        name: _strategy(name, hints[name]) for name in kind.__struct_fields__ if name != "seq"
    }
    return st.fixed_dictionaries(fields).map(lambda values: kind(seq=next(_seqs), **values))


_KINDS = (
    ChargePointRow,
    ConnectorStatusRow,
    MeterValueRow,
    SessionRow,
    EnergyDeltaRow,
    BillingRow,
    WalletLedgerRow,
    AnomalyRow,
    ErrorRow,
)


def _same(row: Any) -> Any:
    """A row as ClickHouse gives it back: a whole-second column prints no milliseconds."""
    if isinstance(row, EnergyDeltaRow):
        return msgspec.structs.replace(row, hour=row.hour.removesuffix(".000"))
    return row


@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """A real chDB with the projections' schema, and a way to run a coroutine on it."""
    loop = asyncio.new_event_loop()
    backend = ChdbBackend(Path(tmp_path_factory.mktemp("chdb")))
    loop.run_until_complete(store.ensure_schema(backend, DB))

    def run(make: Callable[[ChdbBackend], Any]) -> Any:
        return loop.run_until_complete(make(backend))

    yield run
    loop.run_until_complete(backend.close())
    loop.close()


async def _read(backend: ChdbBackend, kind: type[Any], seqs: list[int]) -> list[Any]:
    table = _STORED[kind]
    data = await backend.query(
        f"SELECT *{_READ_AS_ROWS.get(kind, '')} FROM {DB}.{table} "
        f"WHERE seq IN ({','.join(map(str, seqs))}) ORDER BY seq",
        fmt="JSONCompactEachRow",  # a row is an array, as it was inserted
    )
    decoder = msgspec.json.Decoder(kind)
    return [decoder.decode(line) for line in data.splitlines()]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.tuples(*(st.lists(rows_of(kind), min_size=1, max_size=3) for kind in _KINDS)))
def test_every_row_comes_back_as_it_went_in(
    chdb: Callable[..., Any], batch: tuple[list[Any], ...]
) -> None:
    for rows in batch:

        async def round_trip(backend: ChdbBackend, rows: list[Any] = rows) -> list[Any]:
            kind = type(rows[0])
            table = f"{DB}.{_STORED[kind]}"
            await backend.insert(table, store.encode_rows(rows), token=f"t{rows[0].seq}")
            return await _read(backend, kind, [row.seq for row in rows])

        assert chdb(round_trip) == [_same(row) for row in rows]


# Integers as a charger may send them: any JSON integer, mostly near an edge.
charger_ints = st.one_of(
    int64s,
    st.sampled_from([INT64_MAX + 1, INT64_MIN - 1, 1 << 64, -(1 << 64), 10**30]),
    st.integers(-(1 << 80), 1 << 80),
)


def _text(row: EventRow) -> EventRow:
    """The events row with its payload as the text the column holds."""
    payload = msgspec.json.decode(row.payload)
    text = payload if isinstance(payload, str) else bytes(row.payload).decode()
    return msgspec.structs.replace(row, payload=msgspec.Raw(text.encode()))


def _frame(seq: int, action: str, direction: str, kind: str, payload: object) -> OcppFrame:
    return OcppFrame(
        id=f"e{seq}",
        received_at=1_795_000_000_000 + seq,
        charge_point_id="CP-1",
        gateway_id="gw",
        connection_id="c",
        ocpp_version="1.6",
        direction=direction,  # type: ignore[arg-type]
        message_type=kind,  # type: ignore[arg-type]
        unique_id=f"u{seq // 2}",
        action=action,
        payload=msgspec.Raw(msgspec.json.encode(payload)),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    connector=charger_ints,
    transaction=charger_ints,
    answered=charger_ints,
    meter_start=charger_ints,
)
def test_charger_integers_are_stored_as_sent_or_recorded(
    chdb: Callable[..., Any], connector: int, transaction: int, answered: int, meter_start: int
) -> None:
    """StatusNotification, StartTransaction (and the hub's answer) and MeterValues with any
    integers, folded, stored in chDB and read back."""
    at = "2026-11-22T10:00:00Z"
    base = next(_seqs) * 10
    for _ in range(9):
        next(_seqs)
    frames = [
        _frame(
            base,
            "StatusNotification",
            "in",
            "CALL",
            {"connectorId": connector, "errorCode": "NoError", "status": "Available"},
        ),
        _frame(
            base + 2,
            "StartTransaction",
            "in",
            "CALL",
            {"connectorId": connector, "idTag": "T", "meterStart": meter_start, "timestamp": at},
        ),
        _frame(
            base + 3,
            "StartTransaction",
            "out",
            "CALLRESULT",
            {"transactionId": answered, "idTagInfo": {"status": "Accepted"}},
        ),
        _frame(
            base + 4,
            "MeterValues",
            "in",
            "CALL",
            {
                "connectorId": connector,
                "transactionId": transaction,
                "meterValue": [{"timestamp": at, "sampledValue": [{"value": "5"}]}],
            },
        ),
    ]
    state, out = State(), Output()
    for frame in frames:
        seq = int(frame.id[1:])
        apply(state, out, seq, frame)
    fits = INT64_MIN <= connector <= INT64_MAX

    async def store_and_read(backend: ChdbBackend) -> dict[type[Any], list[Any]]:
        await store.store_batch(backend, DB, out, base, base + 4, known={})
        seqs = [base, base + 2, base + 3, base + 4]
        return {kind: await _read(backend, kind, seqs) for kind in _STORED}

    stored = chdb(store_and_read)
    # Nothing the fold made was refused, and everything came back as it went in: the events
    # log's payload as the frame's JSON text.
    events = stored.pop(EventRow)
    assert [_text(row) for row in events] == [_text(row) for row in out.rows["events"]]
    for kind, rows in stored.items():
        made = out.rows[_STORED[kind]]
        expected = meter_values(made) if kind is MeterValueRow else made  # type: ignore[arg-type]
        assert rows == [_same(row) for row in expected]
    assert [row.connector_id for row in stored[ConnectorStatusRow]] == ([connector] if fits else [])
    errors = [row.reason for row in stored[ErrorRow]]
    if not fits:
        assert f"connector.status: connector_id {connector} is beyond" in errors[0]
    # An id beyond Int64 keeps its fact out; meterStart is a reading, kept as a Float64.
    started = fits and INT64_MIN <= answered <= INT64_MAX
    if started:
        (session, *_) = stored[SessionRow]
        assert (session.connector_id, session.transaction_id) == (connector, answered)
        assert session.meter_start == float(meter_start)
    elif fits:
        assert any("transaction.started: " in e and " is beyond" in e for e in errors)
    meters = stored[MeterValueRow]
    if fits and INT64_MIN <= transaction <= INT64_MAX:
        assert [(m.connector_id, m.transaction_id, m.value) for m in meters] == [
            (connector, transaction, 5.0)
        ]
    else:
        assert meters == []
        assert any("transaction.metered: " in e and " is beyond" in e for e in errors)


# Times at the edges of what ch_time formats and of what DateTime64 holds on every server,
# and around the epoch, where a millisecond's text is easiest to get wrong.
_EDGE_TIMES = [CH_TIME_FIRST_MS, CH_TIME_FIRST_MS + 1, _FIRST_MS - 1, _FIRST_MS, -1001, -1000]
_EDGE_TIMES += [-999, -1, 0, 1, 1_795_000_060_123, _LAST_MS, _LAST_MS + 1, CH_TIME_END_MS - 1]


@pytest.mark.parametrize("path", ["runner", "replay"])
def test_the_events_log_holds_the_time_ch_time_writes(
    chdb: Callable[..., Any], tmp_path: Path, path: str
) -> None:
    """The events log's time goes to the store as milliseconds (projections.reshapes): the
    table holds what it held when each row carried ch_time's text, from the runner's
    INSERTs and from replay's files alike, over the whole range ch_time formats."""
    out = Output()
    for ms in _EDGE_TIMES:
        seq = next(_seqs)
        apply(
            State(),
            out,
            seq,
            msgspec.structs.replace(_frame(seq, "X", "in", "CALL", {}), received_at=ms),
        )
    first, last = out.rows["events"][0].seq, out.rows["events"][-1].seq

    async def store_and_read(backend: ChdbBackend) -> list[list[Any]]:
        if path == "runner":
            await store.store_batch(backend, DB, out, first, last, known={}, tables=("events",))
        else:
            bodies = store.spool_rows(out, ("events",), tmp_path, first)
            structures = await store.columns_of(backend, DB, ["events"])
            await store.store_encoded(
                backend, DB, bodies, first, last, known={}, structures=structures
            )
        data = await backend.query(
            f"SELECT seq, toString(received_at) FROM {DB}.events "
            f"WHERE seq BETWEEN {first} AND {last} ORDER BY seq",
            fmt="JSONCompactEachRow",
        )
        return [msgspec.json.decode(line) for line in data.splitlines()]

    assert chdb(store_and_read) == [
        [row.seq, ch_time(ms)] for row, ms in zip(out.rows["events"], _EDGE_TIMES, strict=True)
    ]


def test_a_time_beyond_what_ch_time_formats_fails_the_event_as_its_text_did() -> None:
    for ms in (CH_TIME_FIRST_MS - 1, CH_TIME_END_MS):
        with pytest.raises(OverflowError):
            apply(
                State(),
                Output(),
                1,
                msgspec.structs.replace(_frame(1, "X", "in", "CALL", {}), received_at=ms),
            )


def test_a_refused_events_row_is_recorded_with_its_time() -> None:
    """A row of the events log the store refuses is recorded in projection_errors with its
    time as text, which its row carries as milliseconds."""
    out = Output()
    apply(State(), out, 7, _frame(7, "Heartbeat", "in", "CALL", {}))
    (row,) = out.rows["events"]
    error = refusals.error_row("events", msgspec.Raw(store.encode_rows([row])[1:-1]), "too long")
    assert (error.seq, error.received_at, error.charge_point_id) == (
        7,
        ch_time(1_795_000_000_007),
        "CP-1",
    )


_TOO_BIG = st.sampled_from([_MONEY + Decimal("0.0001"), -_MONEY - 1, Decimal("1e20")])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bills=st.lists(
        st.tuples(rows_of(BillingRow), st.none() | _TOO_BIG), min_size=1, max_size=12
    ).map(lambda pairs: sorted(pairs, key=lambda pair: pair[0].seq))
)
def test_rows_the_store_refuses_are_recorded_and_the_rest_is_stored(
    chdb: Callable[..., Any], bills: list[tuple[BillingRow, Decimal | None]]
) -> None:
    """Bills beyond Decimal(18, 4) among good ones, in one batch: the store refuses those
    rows alone, each becomes a row of projection_errors, and every other row is stored."""
    out = Output()
    refused: list[int] = []
    for row, total in bills:
        if total is not None:
            row = msgspec.structs.replace(row, total=total)
            refused.append(row.seq)
        out.add(row)
    seqs = [row.seq for row, _ in bills]

    async def store_and_read(backend: ChdbBackend) -> tuple[list[Any], list[Any]]:
        await store.store_batch(backend, DB, out, seqs[0], seqs[-1], known={})
        return await _read(backend, BillingRow, seqs), await _read(backend, ErrorRow, seqs)

    stored, errors = chdb(store_and_read)
    assert stored == [row for row in out.rows["billing_versions"] if row.seq not in refused]
    assert [(e.seq, e.projection) for e in errors] == [
        (seq, "store:billing_versions") for seq in refused
    ]
    assert all(e.reason.startswith("refused by the store: Code: ") for e in errors)


def test_readings_the_store_refuses_cost_their_message_one_record(
    chdb: Callable[..., Any],
) -> None:
    """meter_values is sent a row per message (its samples together, projections.reshapes):
    a message with a value no column takes (a reading that is text, which the fold never
    lets through) is refused whole and recorded once; the others are stored, their times
    beyond what DateTime64 shows included."""
    good = tuple(
        Sample(at_ms=ms, measurand=m, value=v, unit="Wh", phase=p)
        for ms, m, v, p in [(_FIRST_MS - 1, "E", 1.5, ""), (_LAST_MS + 1, "P", -2.0, "L1")]
    )
    bad = (*good, Sample(at_ms=0, measurand="E", value="many"))  # type: ignore[arg-type]
    seqs = [next(_seqs) for _ in range(3)]
    out = Output()
    for seq, samples in zip(seqs, [good, bad, good], strict=True):
        out.add(
            ReadingsRow(
                seq=seq,
                charge_point_id="CP-1",
                connector_id=1,
                transaction_id=None,
                session_id="",
                transaction_ref="",
                samples=samples,
            )
        )

    async def store_and_read(backend: ChdbBackend) -> tuple[list[Any], list[Any]]:
        await store.store_batch(backend, DB, out, seqs[0], seqs[-1], known={})
        return await _read(backend, MeterValueRow, seqs), await _read(backend, ErrorRow, seqs)

    stored, errors = chdb(store_and_read)
    kept = [row for row in out.rows["meter_values"] if row.seq != seqs[1]]
    assert stored == meter_values(kept)  # type: ignore[arg-type]
    assert [row.timestamp for row in stored[:2]] == [ch_time(_FIRST_MS - 1), ch_time(_LAST_MS + 1)]
    assert [(e.seq, e.projection, e.charge_point_id) for e in errors] == [
        (seqs[1], "store:meter_values", "CP-1")
    ]
    assert errors[0].reason.startswith("refused by the store: Code: ")
