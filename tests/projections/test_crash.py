"""SIGKILL the runner in the middle of a batch, restart it: the tables equal a rebuild."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import msgspec
import pytest

from hub.config import ProjectionSettings, Settings
from hub.nats_server import EmbeddedNats
from projections.service import running_projections
from tests.projections.contract import store_events
from tests.projections.helpers import dump, last_seq, replay_in
from tests.projections.scenario import fleet, mixed

_REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kill_after", [13, 30])
async def test_sigkill_mid_batch_then_restart_equals_a_rebuild(
    settings: Settings, nats_server: EmbeddedNats, kill_after: int
) -> None:
    events = fleet(5, 4).events + mixed().events
    await store_events(settings, nats_server.url, events)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.projections.crashing_runner",
        "--nats-url",
        nats_server.url,
        "--data-dir",
        str(settings.data_dir),
        "--kill-after",
        str(kill_after),
        cwd=_REPO,
    )
    async with asyncio.timeout(60):
        assert await child.wait() == -signal.SIGKILL

    restarted = msgspec.structs.replace(
        settings, projections=ProjectionSettings(batch_size=40, snapshot_every=100)
    )
    async with running_projections(restarted, nats_server.url) as projections:
        # It resumed from what the killed process had stored, not from scratch.
        assert projections.runner.projected_seq > 0
        await projections.runner.wait_for(await last_seq(nats_server.url))
        after_crash = await dump(projections.backend)
        assert [row["seq"] for row in after_crash["events"]] == list(range(1, len(events) + 1))
        await replay_in(projections)
        rebuilt = await dump(projections.backend)
    assert after_crash == rebuilt
