"""INSERT bodies: rows encoded for the store, in memory or in a file chDB reads itself.

Kept apart from ``projections.store`` so that replay's fold process, which only encodes,
starts without importing the store's logging and backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple

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


class Spool:
    """A batch's bodies as ``spool_rows`` writes them, but written as the rows are made:
    ``take`` moves a chunk's rows out of an ``Output`` into the files. A batch's rows never
    all wait in memory (replay's are about 40 MB at a time otherwise, each page of it a
    fault in a fresh process), and they are encoded while the cache still holds them."""

    def __init__(self, tables: tuple[str, ...], directory: Path, name: str) -> None:
        self._tables = tables
        self._directory = directory
        self._name = name
        self._files: dict[str, BinaryIO] = {}
        self._last_seq: dict[str, int] = {}
        # Reused from chunk to chunk: encoding allocates nothing new once it has grown.
        self._buffer = bytearray()

    def take(self, out: Output) -> None:
        """Append ``out``'s rows to their tables' bodies, and empty its tables (rows of
        tables not spooled are dropped, as ``spool_rows`` leaves them)."""
        for table, rows in out.rows.items():
            if not rows:
                continue
            if table not in self._tables:
                rows.clear()
                continue
            _encoder.encode_into(rows, self._buffer)
            file = self._files.get(table)
            if file is None:
                path = self._directory / f"{self._name}-{table}.json"
                file = self._files[table] = path.open("wb")
            else:
                file.write(b",")  # the same bytes as one body encoded whole
            file.write(memoryview(self._buffer)[1:-1])
            self._last_seq[table] = rows[-1].seq
            rows.clear()

    def close(self) -> dict[str, Encoded]:
        """The batch's bodies, complete, in the order of its tables (as ``spool_rows``)."""
        bodies: dict[str, Encoded] = {}
        for table in self._tables:
            if (file := self._files.get(table)) is not None:
                file.close()
                bodies[table] = Encoded(Path(file.name), self._last_seq[table])
        self._files = {}
        return bodies
