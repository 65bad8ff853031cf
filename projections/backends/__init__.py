"""Where projected rows are stored: chDB in-process by default, ClickHouse server by URL.

Both speak the same SQL (``projections.schema``) and take rows as a JSON array of rows,
each an array of its values in column order (``projections.rows``), or in the order of a
reshape's structure (``projections.reshapes``), so the runner, replay
and queries never know which one they have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from projections.reshapes import Reshape


class BackendError(Exception):
    """The store refused or could not run a statement; the message is the store's own."""


class Backend(Protocol):
    name: str

    async def execute(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, EXCHANGE, INSERT ... SELECT)."""
        ...

    async def query(self, sql: str, *, fmt: str = "JSONEachRow", readonly: bool = False) -> bytes:
        """Run a query, the result in ClickHouse format ``fmt``."""
        ...

    async def insert(
        self, table: str, body: bytes, *, token: str, reshape: Reshape | None = None
    ) -> None:
        """Store ``body``, a JSON array of rows that are arrays in column order, in
        ``table`` with one INSERT, deduplicated by ``token``; with ``reshape``, rows of its
        structure, which its SELECT makes the table's rows of (``projections.reshapes``)."""
        ...

    async def insert_file(self, table: str, path: Path, *, reshape: Reshape, token: str) -> None:
        """``insert`` of the JSONCompactEachRow file at ``path`` (the rows of a body without
        the brackets around them), whose columns are ``reshape.structure`` (``name Type, ...``):
        the table's own, in order (``reshapes.plain``, ``projections.store.columns_of``), or a
        reshape's."""
        ...

    async def close(self) -> None: ...


def open_backend(clickhouse_url: str, data_dir: Path) -> Backend:
    """ClickHouse at ``clickhouse_url`` if given, else chDB under ``<data_dir>/clickhouse``."""
    if clickhouse_url:
        from projections.backends.server import ServerBackend

        return ServerBackend(clickhouse_url)
    from projections.backends.embedded import ChdbBackend

    return ChdbBackend(data_dir / "clickhouse")
