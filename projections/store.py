"""Projected rows in and out of a backend: schema, positions, batches, snapshots.

A batch is stored as one INSERT per table, each tagged with a token made of the table and
the batch's seq range, then a ``_progress`` row. Before each INSERT the table's position
(its highest ``seq``) is known, and rows at or below it are not sent again: that makes a
retry, or a restart after SIGKILL, harmless (docs/projections.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, NamedTuple, TypeVar

import msgspec

from projections.backends import Backend
from projections.rows import TABLES, Output
from projections.schema import ddl
from projections.state import STATE_VERSION, State, decode_state, encode_state

_encoder: Final = msgspec.json.Encoder(decimal_format="string")


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


async def ensure_schema(backend: Backend, db: str) -> None:
    for statement in ddl(db):
        await backend.execute(statement)


async def positions(backend: Backend, db: str, tables: tuple[str, ...] = TABLES) -> dict[str, int]:
    """The highest seq each table holds (0 when empty)."""
    union = " UNION ALL ".join(
        f"SELECT '{table}' AS table, toInt64(max(seq)) AS seq FROM {db}.{table}" for table in tables
    )
    found = decode_rows(await backend.query(union), _Max)
    return {row.table: row.seq for row in found}


def encode_rows(rows: Sequence[object]) -> bytes:
    """An INSERT body: JSONEachRow reads a JSON array of rows too, and one encode call for
    the whole list costs half of one call per row."""
    return _encoder.encode(rows)


class Encoded(NamedTuple):
    """One table's rows of a batch as the body of its INSERT, or a file that holds it."""

    body: bytes | Path
    # The seq of its last row: once the table's position reaches it, the body is stored.
    last_seq: int


def encode_output(out: Output, tables: tuple[str, ...] = TABLES) -> dict[str, Encoded]:
    return {
        table: Encoded(encode_rows(rows), rows[-1].seq)
        for table in tables
        if (rows := out.rows[table])
    }


def spool_rows(
    out: Output, tables: tuple[str, ...], directory: Path, first_seq: int
) -> dict[str, Encoded]:
    """Each table's INSERT body in a file of its own: chDB reads it from there, so no
    process copies it again (about 2 kB an event)."""
    files: dict[str, Encoded] = {}
    for table in tables:
        if rows := out.rows[table]:
            path = directory / f"{first_seq}-{table}.json"
            path.write_bytes(encode_rows(rows))
            files[table] = Encoded(path, rows[-1].seq)
    return files


async def store_batch(
    backend: Backend,
    db: str,
    out: Output,
    first_seq: int,
    last_seq: int,
    *,
    tables: tuple[str, ...] = TABLES,
    known: dict[str, int] | None = None,
) -> dict[str, int]:
    """Every table's rows, then the batch's progress row (``store_encoded``)."""
    stored = dict(known) if known is not None else await positions(backend, db, tables)
    # Rows at or below a table's position are stored already (a retry, a restart).
    pending = Output(stored)
    for table in tables:
        for row in out.rows[table]:
            pending.add(row)
    return await store_encoded(
        backend, db, encode_output(pending, tables), first_seq, last_seq, known=stored
    )


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
) -> dict[str, int]:
    """One INSERT per table, then the batch's progress row. Safe to call again after a
    failure.

    ``known`` holds each table's position if the caller is sure of it (it stored the
    previous batch itself); otherwise, as after any failure, the positions are read from
    the tables. A body is one INSERT, so one part, stored whole or not at all: a table
    whose position reached its last row has it. Returns the positions after this batch.
    Replay writes into shadow tables (``suffix``) and records no progress: the live
    tables' progress is the runner's.
    """
    names = tuple(table + suffix for table in bodies)
    stored = dict(known) if known is not None else await positions(backend, db, names)
    for table, name in zip(bodies, names, strict=True):
        encoded = bodies[table]
        if encoded.last_seq > stored.get(name, 0):
            target, token = f"{db}.{name}", f"{name}:{first_seq}:{last_seq}"
            if isinstance(encoded.body, Path):
                if structures is None:
                    raise TypeError(f"{table}: a body in a file needs its table's structure")
                if not encoded.body.is_file():
                    # Not an outage to wait out: the rows are gone, and only a new replay
                    # makes them again.
                    raise FileNotFoundError(f"{table}: {encoded.body} is gone")
                structure = structures[table]
                await backend.insert_file(target, encoded.body, structure=structure, token=token)
            else:
                await backend.insert(target, encoded.body, token=token)
            stored[name] = encoded.last_seq
    if not suffix:
        await backend.insert(
            f"{db}._progress",
            _encoder.encode({"seq": last_seq}),
            token=f"p:{first_seq}:{last_seq}",
        )
    return stored


class _Column(msgspec.Struct):
    name: str
    type: str


_LOW_CARDINALITY: Final = re.compile(r"LowCardinality\((.*?)\)")


async def file_structure(backend: Backend, table: str) -> str:
    """``table``'s columns, in order, as a file of its rows is read: LowCardinality as the
    plain type, which the INSERT then converts a whole column at a time."""
    columns = decode_rows(await backend.query(f"DESCRIBE TABLE {table}"), _Column)
    plain = [(column.name, _LOW_CARDINALITY.sub(r"\1", column.type)) for column in columns]
    return ", ".join(f"`{name}` {kind}" for name, kind in plain)


async def progress(backend: Backend, db: str) -> int:
    data = await backend.query(f"SELECT toInt64(max(seq)) AS seq FROM {db}._progress")
    return int(msgspec.json.decode(data)["seq"]) if data.strip() else 0


async def save_snapshot(backend: Backend, db: str, state: State) -> None:
    row = {"seq": state.last_seq, "state": encode_state(state).decode()}
    await backend.insert(f"{db}._snapshots", _encoder.encode(row), token=f"s:{state.last_seq}")
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
    # A snapshot folded by other projection code is no base for this code: start over.
    return state if state.version == STATE_VERSION else State()
