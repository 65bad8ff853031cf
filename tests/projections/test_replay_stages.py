"""Replay's fixed costs and idle stages: what it asks of the store besides the rows, and
what it stores while the fold process, the stage every other waits for, is still busy."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.bus import event_backbone
from hub.config import Settings
from hub.nats_server import EmbeddedNats
from projections import store
from projections.backends.embedded import ChdbBackend
from projections.fold_process import Spare
from projections.replay import SHADOW, replay
from projections.reshapes import Reshape
from projections.schema import PROJECTED
from tests.projections.contract import store_events
from tests.projections.helpers import dump, last_seq, rows
from tests.projections.scenario import fleet, mixed

_WAIT_S = 20.0


class _Watched:
    """The real chDB backend, with every statement written down and each table's first
    stored file told."""

    def __init__(self, backend: ChdbBackend) -> None:
        self.backend = backend
        self.name = backend.name
        self.executed: list[str] = []
        self.queried: list[str] = []
        self.stored: dict[str, asyncio.Event] = {}

    def stored_into(self, table: str) -> asyncio.Event:
        return self.stored.setdefault(table, asyncio.Event())

    async def execute(self, sql: str) -> None:
        self.executed.append(sql)
        await self.backend.execute(sql)

    async def query(self, sql: str, *, fmt: str = "JSONEachRow", readonly: bool = False) -> bytes:
        self.queried.append(sql)
        return await self.backend.query(sql, fmt=fmt, readonly=readonly)

    async def insert(
        self, table: str, body: bytes, *, token: str, reshape: Reshape | None = None
    ) -> None:
        await self.backend.insert(table, body, token=token, reshape=reshape)

    async def insert_file(self, table: str, path: Path, *, reshape: Reshape, token: str) -> None:
        await self.backend.insert_file(table, path, reshape=reshape, token=token)
        self.stored_into(table).set()

    async def close(self) -> None:
        await self.backend.close()


@pytest.fixture
async def chdb(tmp_path: Path) -> AsyncIterator[_Watched]:
    backend = _Watched(ChdbBackend(tmp_path / "clickhouse"))
    try:
        yield backend
    finally:
        await backend.close()


async def _replay(
    backend: _Watched, settings: Settings, url: str, spare: Spare | None = None
) -> None:
    async with event_backbone(settings, url, name="test-replay") as (connection, _):
        await replay(
            backend,  # type: ignore[arg-type]
            connection,
            database="ocpp",
            stream="OCPP_EVENTS",
            projections=[],
            spare=spare,
        )


async def test_the_events_log_is_stored_while_the_fold_process_still_folds(
    chdb: _Watched, settings: Settings, nats_server: EmbeddedNats
) -> None:
    """The events log is made as the stream is read: a batch's is stored as soon as the
    batch is read, not after the fold process answers for it (it was a third of the
    store's time, and the last batches' waited for the fold's end)."""
    await store_events(settings, nats_server.url, mixed().events)
    end = await last_seq(nats_server.url)
    async with Spare() as spare:
        fold = spare.pid
        assert fold is not None
        # The fold process folds nothing until it is let go.
        os.kill(fold, signal.SIGSTOP)
        try:
            replaying = asyncio.create_task(_replay(chdb, settings, nats_server.url, spare))
            await asyncio.wait_for(chdb.stored_into(f"ocpp.events{SHADOW}").wait(), _WAIT_S)
            logged = await rows(chdb.backend, f"SELECT count() AS n FROM ocpp.events{SHADOW}")
            assert logged == [{"n": end}]
            assert not replaying.done()
        finally:
            os.kill(fold, signal.SIGCONT)
        await asyncio.wait_for(replaying, _WAIT_S)
    tables = await dump(chdb.backend)
    assert len(tables["events"]) == end
    assert tables["session_versions"] and tables["meter_values"]


async def test_a_replay_asks_the_store_for_its_shadow_tables_and_the_swap_only(
    chdb: _Watched, settings: Settings, nats_server: EmbeddedNats
) -> None:
    """Each statement costs chDB milliseconds even when it has nothing to do, and they ran
    while the first batch was folded: a replay over a schema in place creates each shadow
    table, exchanges it and drops the old one, with a few lookups, and no more. A shadow
    a stopped replay left behind (with rows) is still dropped, not added to."""
    await store_events(settings, nats_server.url, fleet(3, 2).events)
    await store.ensure_schema(chdb, "ocpp")  # type: ignore[arg-type]
    await chdb.backend.execute(f"CREATE TABLE ocpp.events{SHADOW} AS ocpp.events")
    await chdb.backend.execute(f"INSERT INTO ocpp.events{SHADOW} (seq, payload) VALUES (1, 'x')")
    chdb.executed.clear()
    chdb.queried.clear()

    await _replay(chdb, settings, nats_server.url)

    dropped = [sql for sql in chdb.executed if sql.startswith("DROP")]
    assert len(dropped) == len(PROJECTED) + 1  # the old tables, and the shadow left behind
    assert len(chdb.executed) == 3 * len(PROJECTED) + 1
    assert not [sql for sql in chdb.queried if sql.startswith("DESCRIBE")]
    assert len(chdb.queried) <= 3
    events = await rows(chdb.backend, "SELECT seq, payload FROM ocpp.events ORDER BY seq")
    assert len(events) == await last_seq(nats_server.url)
    assert events[0]["payload"] != "x"
