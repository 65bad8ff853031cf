"""INSERT bodies: rows encoded for the store, in memory or in a file chDB reads itself.

Kept apart from ``projections.store`` so that replay's fold process, which only encodes,
starts without importing the store's logging and backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final, NamedTuple

import msgspec

from projections.rows import TABLES, Output

_encoder: Final = msgspec.json.Encoder(decimal_format="string")


def encode_rows(rows: Sequence[object]) -> bytes:
    """An INSERT body: a JSON array of rows, each an array (``rows``); one encode call for
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
    """Each table's INSERT body in a file of its own, as JSONCompactEachRow (no brackets
    around the rows): chDB reads it from there, so no process copies it again (about 1 kB
    an event)."""
    files: dict[str, Encoded] = {}
    for table in tables:
        if rows := out.rows[table]:
            path = directory / f"{first_seq}-{table}.json"
            path.write_bytes(memoryview(encode_rows(rows))[1:-1])
            files[table] = Encoded(path, rows[-1].seq)
    return files
