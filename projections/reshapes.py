"""Tables ClickHouse fills from rows that are not their columns.

Most tables take rows that are their columns, in order (``projections.rows``). A table in
``RESHAPES`` takes rows of another shape instead, and ClickHouse makes its rows of them:
``INSERT INTO t (columns) SELECT <expressions> FROM <input> [ARRAY JOIN ...]``. Both
backends run the same SELECT, on the runner's bodies and on replay's files alike. A
meter_values row per sampled value was most of the rows the fold built field by field: it
now makes one per TransactionMetered fact, its samples an array ClickHouse expands, which
costs the fold a tenth less and chDB half (docs/projections.md).
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Reshape(NamedTuple):
    """How the rows of an INSERT body become a table's rows."""

    # The body's columns, in order (``name Type, ...``): what its rows are read as.
    structure: str
    # Each column of the table, in order, and the expression over the body's columns that
    # makes it; empty: the body's columns are the table's.
    columns: tuple[tuple[str, str], ...] = ()
    # After ``FROM <input>``: an ARRAY JOIN that makes several rows of one.
    expand: str = ""

    def select(self, source: str) -> str:
        """The SELECT that makes the table's rows of the body read from ``source`` (a
        table function: ``file(...)``, ``input(...)``)."""
        if not self.columns:
            return f"SELECT * FROM {source}"
        values = ", ".join(
            expression if expression == column else f"{expression} AS `{column}`"
            for column, expression in self.columns
        )
        return f"SELECT {values} FROM {source} {self.expand}".rstrip()

    def insert(self, table: str, source: str, settings: str = "") -> str:
        """``INSERT INTO table ... SELECT``, ``settings`` (a SETTINGS clause) between."""
        names = ", ".join(f"`{column}`" for column, _ in self.columns)
        into = f"INSERT INTO {table} ({names})" if names else f"INSERT INTO {table}"
        return " ".join(part for part in (into, settings, self.select(source)) if part)


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def plain(structure: str) -> Reshape:
    """A body whose columns are the table's (``structure``, ``store.columns_of``)."""
    return Reshape(structure)


# The samples of hub.domain.facts.Sample (array-like), in its field order.
SAMPLE: Final = (
    "Tuple(Int64, String, Float64, String, String, String, String)"
    # at_ms, measurand, value, unit, phase, location, context
)

RESHAPES: Final[dict[str, Reshape]] = {
    # One row per event (rows.EventRow), its time as milliseconds: formatting each as text
    # was a tenth of replay's reading loop. DateTime64 made of them by ClickHouse, as for
    # meter_values, is the value the text made (docs/projections.md).
    "events": Reshape(
        structure=(
            "seq UInt64, received_ms Int64, type String, charge_point_id String, "
            "ocpp_version String, direction String, message_type String, unique_id String, "
            "action String, payload String, error_code String"
        ),
        columns=(
            ("seq", "seq"),
            ("received_at", "fromUnixTimestamp64Milli(received_ms, 'UTC')"),
            ("type", "type"),
            ("charge_point_id", "charge_point_id"),
            ("ocpp_version", "ocpp_version"),
            ("direction", "direction"),
            ("message_type", "message_type"),
            ("unique_id", "unique_id"),
            ("action", "action"),
            ("payload", "payload"),
            ("error_code", "error_code"),
        ),
    ),
    "meter_values": Reshape(
        structure=(
            "seq UInt64, charge_point_id String, connector_id Int64, "
            "transaction_id Nullable(Int64), session_id String, transaction_ref String, "
            f"samples Array({SAMPLE})"
        ),
        columns=(
            ("seq", "seq"),
            ("timestamp", "fromUnixTimestamp64Milli(sample.1, 'UTC')"),
            ("charge_point_id", "charge_point_id"),
            ("connector_id", "connector_id"),
            ("transaction_id", "transaction_id"),
            ("session_id", "session_id"),
            ("measurand", "sample.2"),
            ("phase", "sample.5"),
            ("location", "sample.6"),
            ("unit", "sample.4"),
            ("context", "sample.7"),
            ("value", "sample.3"),
            ("transaction_ref", "transaction_ref"),
        ),
        expand="ARRAY JOIN samples AS sample",
    ),
}
