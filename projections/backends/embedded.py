"""chDB: the ClickHouse engine inside this process, data under the hub's data directory.

A chDB session is not thread-safe and one process may hold one data path, so every call
goes through one dedicated thread that owns the session; the event loop only awaits it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from projections.backends import BackendError
from projections.reshapes import Reshape, quote
from projections.schema import INSERT_SETTINGS

T = TypeVar("T")

_SETTINGS_SQL = ", ".join(f"{name} = {value}" for name, value in INSERT_SETTINGS.items())


def _from_file(table: str, path: Path, reshape: Reshape, token: str) -> str:
    # chDB reads the file itself, with no Python in between, and a structure of plain
    # Strings turns into LowCardinality a column at a time: parsing text straight into
    # LowCardinality costs as much again as the rest of the row (ClickHouse #6935).
    source = f"file({quote(str(path))}, 'JSONCompactEachRow', {quote(reshape.structure)})"
    settings = f"SETTINGS {_SETTINGS_SQL}, insert_deduplication_token = {quote(token)}"
    return reshape.insert(table, source, settings)


class ChdbBackend:
    name = "chdb"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chdb")
        self._session: Any = None

    def _open(self) -> Any:
        if self._session is None:
            from chdb import session

            self.path.mkdir(parents=True, exist_ok=True)
            # chDB ships no type hints.
            self._session = session.Session(str(self.path))  # type: ignore[no-untyped-call]
        return self._session

    async def _run(self, call: Callable[[Any], T]) -> T:
        def work() -> T:
            return call(self._open())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except BackendError:
            raise
        except Exception as error:  # chDB raises its own ChdbError/RuntimeError types
            raise BackendError(str(error).strip()) from None

    async def execute(self, sql: str) -> None:
        await self._run(lambda session: session.query(sql, "Null"))

    async def query(self, sql: str, *, fmt: str = "JSONEachRow", readonly: bool = False) -> bytes:
        # chDB has no per-call read-only switch; callers check statements (projections.query).
        def run(session: Any) -> bytes:
            result = session.query(sql, fmt)
            data: bytes = result.bytes()
            return data

        return await self._run(run)

    async def insert(
        self, table: str, body: bytes, *, token: str, reshape: Reshape | None = None
    ) -> None:
        if reshape is not None:
            await self._run(
                lambda session: self._insert_through_file(session, table, body, reshape, token)
            )
            return
        sql = (
            f"INSERT INTO {table} SETTINGS {_SETTINGS_SQL}, "
            f"insert_deduplication_token = {quote(token)}"
        )

        def run(session: Any) -> None:
            # A streamed INSERT costs half the CPU of the same rows inlined into the query
            # text (measured, chDB 4.4). With the block sizes pinned it still makes one
            # part, committed by finish().
            with session.send_insert(sql, "JSONCompactEachRow") as inserter:
                # JSONCompactEachRow takes a comma between rows, but no array around them.
                inserter.append(body[1:-1])
                inserter.finish()

        await self._run(run)

    @staticmethod
    def _insert_through_file(
        session: Any, table: str, body: bytes, reshape: Reshape, token: str
    ) -> None:
        # chDB streams plain INSERTs only, and a body inlined into the query text is limited
        # by max_query_size: the rows go through a file, as replay's do.
        with tempfile.NamedTemporaryFile(prefix="hub-insert-", suffix=".json") as file:
            file.write(memoryview(body)[1:-1])
            file.flush()
            session.query(_from_file(table, Path(file.name), reshape, token), "Null")

    async def insert_file(self, table: str, path: Path, *, reshape: Reshape, token: str) -> None:
        sql = _from_file(table, path, reshape, token)
        await self._run(lambda session: session.query(sql, "Null"))

    async def close(self) -> None:
        def close(_: Any) -> None:
            if self._session is not None:
                self._session.close()
                self._session = None

        if self._session is not None:
            await self._run(close)
        self._executor.shutdown(wait=True)
