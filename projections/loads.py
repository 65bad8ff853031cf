"""Tables ClickHouse fills from rows that are not their columns.

Most tables take rows that are their columns, in order (``projections.rows``). A table in
``LOADS`` takes rows of another shape instead, and ClickHouse makes its rows of them:
``INSERT INTO t (columns) SELECT <expressions> FROM <input> [ARRAY JOIN ...]``. Both
backends run the same SELECT, on the runner's bodies and on replay's files alike.
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Load(NamedTuple):
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
        return (
            f"{into} {settings} {self.select(source)}"
            if settings
            else f"{into} {self.select(source)}"
        )


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def plain(structure: str) -> Load:
    """A body whose columns are the table's (``structure``, ``store.columns_of``)."""
    return Load(structure)


LOADS: Final[dict[str, Load]] = {}
