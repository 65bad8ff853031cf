"""The projection contract on the clickhouse-connect backend.

It talks HTTP to the ClickHouse-HTTP test fixture over chDB (tests/fixtures/chdb_http.py),
since no modern ClickHouse server can be installed here; the backend code is the real one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats
import pytest

from hub.config import Settings
from hub.nats_server import EmbeddedNats
from projections.service import STATUS_SUBJECT, Status, running_projections
from tests.projections.contract import ProjectionContract, store_events
from tests.projections.helpers import dump, last_seq
from tests.projections.http_server import chdb_http
from tests.projections.scenario import fleet


def with_url(settings: Settings, url: str) -> Settings:
    return msgspec.structs.replace(
        settings,
        projections=msgspec.structs.replace(settings.projections, clickhouse_url=url),
    )


class TestClickHouseConnect(ProjectionContract):
    @pytest.fixture
    async def projection_settings(
        self, settings: Settings, tmp_path: Path
    ) -> AsyncIterator[Settings]:
        async with chdb_http(tmp_path / "server") as port:
            yield with_url(settings, f"http://127.0.0.1:{port}")


async def test_a_backend_that_goes_down_pauses_the_runner_and_loses_nothing(
    settings: Settings, tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    path = tmp_path / "server"
    events = fleet(3, 3).events
    half = len(events) // 2
    async with contextlib.AsyncExitStack() as first_server:
        port = await first_server.enter_async_context(chdb_http(path))
        settings = with_url(settings, f"http://127.0.0.1:{port}")
        async with running_projections(settings, nats_server.url) as projections:
            runner = projections.runner
            await store_events(settings, nats_server.url, events[:half])
            await runner.wait_for(half)
            await first_server.aclose()

            await store_events(settings, nats_server.url, events[half:])
            await runner.stalled.wait()
            assert runner.projected_seq == half
            assert runner.lag_events == len(events) - half
            assert runner.lag_seconds > 0
            client = await nats.connect(nats_server.url)
            try:
                answer = await client.request(STATUS_SUBJECT, b"", timeout=10)
            finally:
                await client.close()
            status = msgspec.json.decode(answer.data, type=Status)
            assert status.stalled and status.lag_events == len(events) - half
            assert status.projected_seq == half and status.lag_seconds > 0

            async with chdb_http(path, port):
                await runner.wait_for(len(events))
                assert runner.lag_events == 0 and not runner.stalled.is_set()
                stored = await dump(projections.backend)
    assert len(stored["events"]) == len(events) == await last_seq(nats_server.url)
    assert [row["seq"] for row in stored["events"]] == list(range(1, len(events) + 1))
    assert len(stored["session_versions"]) == len(
        {(row["session_id"], row["seq"]) for row in stored["session_versions"]}
    )
