"""ClickHouse server through clickhouse-connect, when ``HUB_CLICKHOUSE_URL`` is set.

clickhouse-connect is synchronous; its calls run in one worker thread so the event loop
never waits on the network.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from projections.backends import BackendError
from projections.reshapes import Reshape, quote
from projections.schema import INSERT_SETTINGS

T = TypeVar("T")


class ServerBackend:
    name = "clickhouse"

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.url = url
        self._timeout_s = timeout_s
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ch-http")
        self._client: Any = None

    def _open(self) -> Any:
        if self._client is None:
            import clickhouse_connect

            self._client = clickhouse_connect.get_client(
                dsn=self.url,
                connect_timeout=min(self._timeout_s, 10),
                send_receive_timeout=self._timeout_s,
                autogenerate_session_id=False,
            )
        return self._client

    async def _run(self, call: Callable[[Any], T]) -> T:
        def work() -> T:
            try:
                return call(self._open())
            except Exception:
                # A broken connection is rebuilt on the next call.
                self._client = None
                raise

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except Exception as error:
            raise BackendError(str(error).strip()) from None

    async def execute(self, sql: str) -> None:
        await self._run(lambda client: client.command(sql))

    async def query(self, sql: str, *, fmt: str = "JSONEachRow", readonly: bool = False) -> bytes:
        settings = {"readonly": 1} if readonly else None

        def run(client: Any) -> bytes:
            data: bytes = client.raw_query(sql, settings=settings, fmt=fmt)
            return data

        return await self._run(run)

    async def insert(
        self, table: str, body: bytes, *, token: str, reshape: Reshape | None = None
    ) -> None:
        # JSONCompactEachRow takes a comma between rows, but no array around them.
        await self._insert(table, body[1:-1], token, reshape)

    async def insert_file(self, table: str, path: Path, *, reshape: Reshape, token: str) -> None:
        # The server cannot read our files: the body goes over HTTP like any other.
        await self._insert(table, await asyncio.to_thread(path.read_bytes), token, reshape)

    async def _insert(self, table: str, rows: bytes, token: str, reshape: Reshape | None) -> None:
        settings: dict[str, Any] = {**INSERT_SETTINGS, "insert_deduplication_token": token}
        if reshape is not None and reshape.columns:
            # The body read where the SELECT says input(...), as the server reads an INSERT's.
            sql = reshape.insert(table, f"input({quote(reshape.structure)})")
            await self._run(
                lambda client: client.command(
                    f"{sql} FORMAT JSONCompactEachRow", data=rows, settings=settings
                )
            )
            return
        await self._run(
            lambda client: client.raw_insert(
                table, insert_block=rows, settings=settings, fmt="JSONCompactEachRow"
            )
        )

    async def close(self) -> None:
        def close(_: Any) -> None:
            if self._client is not None:
                self._client.close()
                self._client = None

        if self._client is not None:
            await self._run(close)
        self._executor.shutdown(wait=True)
