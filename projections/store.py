"""Projected rows in and out of a backend: schema, positions, batches, snapshots.

A batch is stored as one INSERT per table, each tagged with a token made of the table and
the batch's seq range, then a ``_progress`` row. Before each INSERT the table's position
(its highest ``seq``) is known, and rows at or below it are not sent again: that makes a
retry, or a restart after SIGKILL, harmless (docs/projections.md).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Final, TypeVar

import msgspec
import structlog

from hub.domain import charging
from projections import refusals
from projections.backends import Backend, BackendError

# Re-exported: the runner, replay and tests know them as the store's.
from projections.bodies import Encoded as Encoded
from projections.bodies import encode_output as encode_output
from projections.bodies import encode_rows as encode_rows
from projections.bodies import spool_rows as spool_rows
from projections.reshapes import RESHAPES, plain, quote
from projections.rows import TABLES, ErrorRow, Output
from projections.schema import MIGRATING, RETYPED, ddl, table_ddl
from projections.state import STATE_VERSION, State, decode_state, encode_state

log = structlog.get_logger("projections.store")

_encoder: Final = msgspec.json.Encoder(decimal_format="string")
_raw_rows: Final = msgspec.json.Decoder(list[msgspec.Raw])
# A copy of a table that keeps nothing, to try rows against (refusals).
_PROBE: Final = "__probe"


T = TypeVar("T")


def decode_rows(data: bytes, kind: type[T]) -> list[T]:
    """JSONEachRow to a list of ``kind``."""
    decoder = msgspec.json.Decoder(kind)
    return [decoder.decode(line) for line in data.splitlines() if line.strip()]


class _Max(msgspec.Struct):
    table: str
    seq: int


class _Snapshot(msgspec.Struct):
    seq: int
    state: str


class _ColumnOf(msgspec.Struct):
    table: str
    name: str
    type: str


async def ensure_schema(backend: Backend, db: str) -> None:
    """Tables, columns and views as the DDL has them; only what is missing is made."""
    present = decode_rows(
        await backend.query(
            f"SELECT table, name, type FROM system.columns WHERE database = {quote(db)}"
        ),
        _ColumnOf,
    )
    for statement in ddl(db, {(column.table, column.name) for column in present}):
        await backend.execute(statement)
    await _retype(backend, db, present)


async def _retype(backend: Backend, db: str, present: list[_ColumnOf]) -> None:
    """Rebuild each table whose columns still have a type they no longer have in the DDL
    (``schema.RETYPED``; ``present`` is every column as it was before the DDL ran, which
    adds columns but changes none): its rows are copied into a table made by today's DDL,
    which is then swapped in. Each step is safe to repeat after a crash; the swap is atomic."""
    tables = {column.table for column in present}
    for table in RETYPED:
        if table + MIGRATING in tables:
            # A copy left by a crash, before or after its swap: the table itself is whole.
            await backend.execute(f"DROP TABLE IF EXISTS {db}.{table}{MIGRATING}")
    stale = sorted(
        {
            column.table
            for column in present
            if RETYPED.get(column.table, {}).get(column.name, column.type) != column.type
        }
    )
    for table in stale:
        copy = f"{db}.{table}{MIGRATING}"
        columns = ", ".join(
            f"`{column.name}`"
            for column in decode_rows(await backend.query(f"DESCRIBE TABLE {db}.{table}"), _Column)
        )
        await backend.execute(table_ddl(db, table, table + MIGRATING))
        await backend.execute(f"INSERT INTO {copy} ({columns}) SELECT {columns} FROM {db}.{table}")
        await backend.execute(f"EXCHANGE TABLES {db}.{table} AND {copy}")
        await backend.execute(f"DROP TABLE IF EXISTS {copy}")
        log.info("projections.table_retyped", table=table)


async def positions(backend: Backend, db: str, tables: tuple[str, ...] = TABLES) -> dict[str, int]:
    """The highest seq each table holds (0 when empty)."""
    union = " UNION ALL ".join(
        f"SELECT '{table}' AS table, toInt64(max(seq)) AS seq FROM {db}.{table}" for table in tables
    )
    found = decode_rows(await backend.query(union), _Max)
    return {row.table: row.seq for row in found}


async def store_batch(
    backend: Backend,
    db: str,
    out: Output,
    first_seq: int,
    last_seq: int,
    *,
    tables: tuple[str, ...] = TABLES,
    known: dict[str, int] | None = None,
    on_refused: OnRefused | None = None,
) -> dict[str, int]:
    """Every table's rows, then the batch's progress row (``store_encoded``)."""
    stored = dict(known) if known is not None else await positions(backend, db, tables)
    # Rows at or below a table's position are stored already (a retry, a restart).
    pending = Output(stored)
    for table in tables:
        for row in out.rows[table]:
            pending.add(row)
    return await store_encoded(
        backend,
        db,
        encode_output(pending, tables),
        first_seq,
        last_seq,
        known=stored,
        on_refused=on_refused,
    )


# Told the rows of projection_errors that stand for rows the store refused.
OnRefused = Callable[[list[ErrorRow]], None]
ERRORS: Final = "projection_errors"


async def store_encoded(
    backend: Backend,
    db: str,
    bodies: dict[str, Encoded],
    first_seq: int,
    last_seq: int,
    *,
    suffix: str = "",
    known: dict[str, int] | None = None,
    structures: Mapping[str, str] | None = None,
    keeps_errors: bool = True,
    on_refused: OnRefused | None = None,
    screen: bool = True,
) -> dict[str, int]:
    """One INSERT per table, then the batch's progress row. Safe to call again after a
    failure.

    ``known`` holds each table's position if the caller is sure of it (it stored the
    previous batch itself); otherwise, as after any failure, the positions are read from
    the tables. A body is one INSERT, so one part, stored whole or not at all: a table
    whose position reached its last row has it. Returns the positions after this batch.
    Replay writes into shadow tables (``suffix``) and records no progress: the live
    tables' progress is the runner's.

    An INSERT the store refuses for its rows (``refusals``) does not stop the batch: the
    refused rows of every table still to store are found, recorded in projection_errors
    (when ``keeps_errors``: this store writes that table) before anything else, then the
    rest is stored. Without ``screen``, such an INSERT fails the call instead.
    """
    names = tuple(table + suffix for table in bodies)
    stored = dict(known) if known is not None else await positions(backend, db, names)
    try:
        await _insert_bodies(backend, db, bodies, stored, first_seq, last_seq, suffix, structures)
    except BackendError as error:
        if not screen or not refusals.refused(error):
            raise
        screened = await _screen(backend, db, bodies, stored, suffix, keeps_errors, on_refused)
        if screened is None:
            # No row is refused on its own: nothing to set aside, so waited out as an outage.
            raise
        await _insert_bodies(backend, db, screened, stored, first_seq, last_seq, suffix, structures)
    if not suffix:
        await backend.insert(
            f"{db}._progress",
            _encoder.encode([[last_seq]]),
            token=f"p:{first_seq}:{last_seq}",
        )
    return stored


async def _insert_bodies(
    backend: Backend,
    db: str,
    bodies: dict[str, Encoded],
    stored: dict[str, int],
    first_seq: int,
    last_seq: int,
    suffix: str,
    structures: Mapping[str, str] | None,
) -> None:
    """Each body not stored yet, in order; ``stored`` follows every INSERT that succeeds."""
    for table, encoded in bodies.items():
        name = table + suffix
        if encoded.last_seq <= stored.get(name, 0):
            continue
        target, token = f"{db}.{name}", f"{name}:{first_seq}:{last_seq}"
        reshape = RESHAPES.get(table)
        if isinstance(encoded.body, Path):
            if reshape is None:
                if structures is None:
                    raise TypeError(f"{table}: a body in a file needs its table's structure")
                reshape = plain(structures[table])
            if not encoded.body.is_file():
                # Not an outage to wait out: the rows are gone, and only a new replay
                # makes them again.
                raise FileNotFoundError(f"{table}: {encoded.body} is gone")
            await backend.insert_file(target, encoded.body, reshape=reshape, token=token)
        elif encoded.body != b"[]":
            await backend.insert(target, encoded.body, token=token, reshape=reshape)
        stored[name] = encoded.last_seq


async def _rows_of(body: bytes | Path) -> list[msgspec.Raw]:
    if isinstance(body, bytes):
        return _raw_rows.decode(body)
    # A file holds the rows without the brackets around them (``spool_rows``).
    return _raw_rows.decode(b"[" + await asyncio.to_thread(body.read_bytes) + b"]")


async def _screen(
    backend: Backend,
    db: str,
    bodies: dict[str, Encoded],
    stored: dict[str, int],
    suffix: str,
    keeps_errors: bool,
    on_refused: OnRefused | None,
) -> dict[str, Encoded] | None:
    """The bodies still to store without the rows the store refuses, projection_errors
    first with a row for each refused one; None if no row is refused on its own.

    projection_errors goes first so that the record of a refused row is stored before the
    rest of its table: after a crash in between, the table is stored again, refuses the
    same rows, and their records are found stored (at or below the table's position)."""
    screened: dict[str, Encoded] = {}
    found: list[ErrorRow] = []
    for table, encoded in bodies.items():
        name = table + suffix
        if encoded.last_seq <= stored.get(name, 0):
            continue
        rows = await _rows_of(encoded.body)
        probe = f"{db}.{name}{_PROBE}"
        await backend.execute(f"DROP TABLE IF EXISTS {probe}")
        await backend.execute(f"CREATE TABLE {probe} AS {db}.{name} ENGINE = Null")
        try:
            refused = await refusals.refused_rows(
                functools.partial(
                    backend.insert, probe, token=f"{probe}:probe", reshape=RESHAPES.get(table)
                ),
                rows,
            )
        finally:
            await backend.execute(f"DROP TABLE IF EXISTS {probe}")
        if not refused:
            screened[table] = encoded
            continue
        bad = {id(row) for row, _ in refused}
        kept = [row for row in rows if id(row) not in bad]
        screened[table] = Encoded(refusals.body_of(kept), encoded.last_seq)
        if table == ERRORS:
            # A record of an error the store refuses has nowhere else to go.
            log.warning("projections.error_rows_refused", rows=len(refused), why=refused[0][1])
        else:
            found += [refusals.error_row(table, row, why) for row, why in refused]
    if not found and all(screened[t] is bodies[t] for t in screened):
        return None
    log.warning(
        "projections.rows_refused",
        tables=sorted({row.projection for row in found}),
        seqs=[row.seq for row in found][:20],
        recorded=keeps_errors,
    )
    if on_refused is not None:
        on_refused(found)
    if not keeps_errors or not found:
        return screened
    # The records of refused rows join the batch's own errors, in seq order.
    floor = stored.get(ERRORS + suffix, 0)
    errors = [row for row in found if row.seq > floor]
    previous = screened.pop(ERRORS, None)
    own = await _rows_of(previous.body) if previous is not None else []
    merged = sorted(
        [(refusals.seq_of(row), row) for row in own]
        + [(row.seq, msgspec.Raw(_encoder.encode(row))) for row in errors],
        key=lambda pair: pair[0],
    )
    if not merged:
        return screened
    body = Encoded(refusals.body_of([row for _, row in merged]), merged[-1][0])
    return {ERRORS: body, **screened}


class _Column(msgspec.Struct):
    name: str
    type: str


_LOW_CARDINALITY: Final = re.compile(r"LowCardinality\((.*?)\)")


def _structure(columns: list[_ColumnOf]) -> str:
    """The columns, in order, as a file of a table's rows is read: LowCardinality as the
    plain type, which the INSERT then converts a whole column at a time."""
    plain = [(column.name, _LOW_CARDINALITY.sub(r"\1", column.type)) for column in columns]
    return ", ".join(f"`{name}` {kind}" for name, kind in plain)


async def columns_of(backend: Backend, db: str, tables: Collection[str]) -> dict[str, str]:
    """How a file of rows of each of ``tables`` in ``db`` that exists is read
    (``_structure``), in one query: a statement costs chDB milliseconds even when it has
    nothing to do."""
    if not tables:
        return {}
    names = ", ".join(quote(table) for table in sorted(tables))
    columns = decode_rows(
        await backend.query(
            "SELECT table, name, type FROM system.columns "
            f"WHERE database = {quote(db)} AND table IN ({names}) ORDER BY table, position"
        ),
        _ColumnOf,
    )
    found: dict[str, list[_ColumnOf]] = {}
    for column in columns:
        found.setdefault(column.table, []).append(column)
    return {table: _structure(each) for table, each in found.items()}


async def progress(backend: Backend, db: str) -> int:
    data = await backend.query(f"SELECT toInt64(max(seq)) AS seq FROM {db}._progress")
    return int(msgspec.json.decode(data)["seq"]) if data.strip() else 0


async def save_snapshot(backend: Backend, db: str, state: State) -> None:
    row = [state.last_seq, encode_state(state).decode()]
    await backend.insert(f"{db}._snapshots", _encoder.encode([row]), token=f"s:{state.last_seq}")
    # Older snapshots are never read again.
    await backend.execute(f"DELETE FROM {db}._snapshots WHERE seq < {state.last_seq}")


async def load_snapshot(backend: Backend, db: str, at_most: int) -> State:
    """The latest state no newer than ``at_most`` (the fully projected position), or empty."""
    data = await backend.query(
        f"SELECT seq, state FROM {db}._snapshots WHERE seq <= {at_most} ORDER BY seq DESC LIMIT 1"
    )
    if not data.strip():
        return State()
    snapshot = msgspec.json.decode(data, type=_Snapshot)
    state = decode_state(snapshot.state)
    # A snapshot folded by other projection (or domain) code is no base for this code: start
    # over.
    current = state.version == STATE_VERSION and state.domain.version == charging.STATE_VERSION
    return state if current else State()
