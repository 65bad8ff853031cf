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

from hub.cli import build_parser
from hub.config import Settings
from hub.nats_server import EmbeddedNats
from projections import cli as projections_cli
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
    settings: Settings,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    capsys: pytest.CaptureFixture[str],
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
            assert status.retries >= 1 and status.last_error and status.last_error_age_s >= 0
            # `hub status` says so too, and fails, for scripts that alert on it.
            cli_settings = msgspec.structs.replace(settings, nats_url=nats_server.url)
            assert (
                await projections_cli.main(cli_settings, build_parser().parse_args(["status"])) == 1
            )
            shown = capsys.readouterr().out
            assert f"lag            {len(events) - half} events" in shown
            assert "stalled        yes: " in shown and " failed attempts, the latest " in shown

            async with chdb_http(path, port):
                await runner.wait_for(len(events))
                assert runner.lag_events == 0 and not runner.stalled.is_set()
                # An outage is waited out: nothing was set aside as refused.
                assert runner.health.refused_rows == 0 and runner.health.retries == 0
                stored = await dump(projections.backend)
    assert len(stored["events"]) == len(events) == await last_seq(nats_server.url)
    assert [row["seq"] for row in stored["events"]] == list(range(1, len(events) + 1))
    assert len(stored["session_versions"]) == len(
        {(row["session_id"], row["seq"]) for row in stored["session_versions"]}
    )
