"""Rows a store refuses for what they hold, told apart from a store that is down.

A store that is down (or full, or busy) makes the runner wait and retry: nothing is dropped.
A store that refuses an INSERT because a value does not fit its column gives the same answer
every time, so waiting would stall every projection for ever. Such an INSERT is split in
halves, each tried against a copy of the table that keeps nothing (``ENGINE = Null``), down
to the rows refused on their own; those become rows of ``projection_errors`` and the rest is
stored. Only ClickHouse's codes for values that do not parse or fit count as a refusal:
anything else is waited out.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec

from hub.domain.timeutil import ch_time
from projections.backends import BackendError
from projections.rows import TABLE_OF, ErrorRow

# ClickHouse's error codes for a value that does not parse as, or fit in, its column.
REFUSAL_CODES: Final = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND: a Decimal too large for its column
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER: -1 in an unsigned column
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        407,  # DECIMAL_OVERFLOW
    }
)
_CODE: Final = re.compile(r"Code: (\d+)\.")
_SPACES: Final = re.compile(r"\s+")
# The `projection` of a refused row in projection_errors: this prefix and its table.
PREFIX: Final = "store:"
_REASON_CHARS: Final = 1000


def refused(error: BackendError) -> bool:
    """Whether the store refused the rows themselves (not: is down, full, or misconfigured)."""
    found = _CODE.search(str(error))
    return found is not None and int(found.group(1)) in REFUSAL_CODES


def reason(error: BackendError) -> str:
    """The store's own words, from its code on: the same for every client of one store (the
    HTTP client's prefix names a port)."""
    text = str(error)
    found = _CODE.search(text)
    return _SPACES.sub(" ", text[found.start() if found else 0 :]).strip()[:_REASON_CHARS]


Probe = Callable[[bytes], Awaitable[None]]


def body_of(rows: list[msgspec.Raw]) -> bytes:
    return b"[" + b",".join(rows) + b"]"


async def refused_rows(probe: Probe, rows: list[msgspec.Raw]) -> list[tuple[msgspec.Raw, str]]:
    """The rows ``probe`` refuses on their own, each with the store's reason, found by
    halving: about two probes per refused row and level, so a batch of 20,000 rows with one
    refused row costs some 30 probes. A failure that is not a refusal is raised."""
    try:
        await probe(body_of(rows))
    except BackendError as error:
        if not refused(error):
            raise
        if len(rows) == 1:
            return [(rows[0], reason(error))]
    else:
        return []
    middle = len(rows) // 2
    return await refused_rows(probe, rows[:middle]) + await refused_rows(probe, rows[middle:])


_values: Final = msgspec.json.Decoder(list[msgspec.Raw])
_text: Final = msgspec.json.Decoder(str | int | None)
# Each table's columns in order: a row is an array of its values (``projections.rows``).
_COLUMNS: Final = {
    table: [field.name for field in msgspec.structs.fields(kind)]
    for kind, table in TABLE_OF.items()
}


def error_row(table: str, row: msgspec.Raw, why: str) -> ErrorRow:
    """The row of ``projection_errors`` that stands for a refused row of ``table``: its seq,
    its charger, and its time (``received_at``, the events log's ``received_ms``, else
    ``updated_at``, else the epoch)."""
    values = dict(zip(_COLUMNS[table], _values.decode(row), strict=False))

    def text(name: str) -> str | None:
        value = values.get(name)
        if value is None:
            return None
        decoded = _text.decode(value)
        # The events log's time goes as milliseconds (projections.reshapes).
        return ch_time(decoded) if isinstance(decoded, int) else decoded

    time = text("received_at") or text("received_ms") or text("updated_at")
    return ErrorRow(
        seq=seq_of(row),
        received_at=time or ch_time(0),
        projection=PREFIX + table,
        charge_point_id=text("charge_point_id") or "",
        reason=f"refused by the store: {why}"[:_REASON_CHARS],
    )


def seq_of(row: msgspec.Raw) -> int:
    """A row's seq: its first value."""
    return msgspec.json.decode(_values.decode(row)[0], type=int)
