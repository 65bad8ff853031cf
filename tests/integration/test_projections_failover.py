"""Two ``hub project`` processes on one stream and one chDB data directory: one projects,
held by the lease, the other waits as a standby. Killing the active one with SIGKILL in the
middle of its catch-up hands over within seconds, and the tables end as a rebuild makes
them: no row doubled or lost."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import msgspec
import nats
import nats.errors
import pytest

from hub.bus import Connection
from hub.config import Settings
from hub.nats_server import EmbeddedNats
from hub.ops import Readiness
from projections import service
from projections.service import (
    STATUS_SUBJECT,
    LeasedProjections,
    Status,
    leased_projections,
    running_projections,
)
from tests.integration.helpers import role_process
from tests.projections.contract import store_events
from tests.projections.helpers import dump, last_seq, replay_in
from tests.projections.scenario import fleet, mixed

PROJECT_ENV = {
    "HUB_LEASE_TTL": "3",
    "HUB_LEASE_RENEW": "1",
    # Small batches, so that the active one is killed between two of them or in one.
    "HUB_PROJECTION_BATCH_SIZE": "20",
    "HUB_PROJECTION_LINGER": "0.01",
}


class Project:
    def __init__(self, process: asyncio.subprocess.Process, ops_url: str) -> None:
        self.process = process
        self.ops_url = ops_url

    async def readiness(self) -> Readiness:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.ops_url}/readyz") as response,
        ):
            return msgspec.json.decode(await response.read(), type=Readiness)

    async def becomes(self, lease: str, within: float) -> float:
        """Seconds until its /readyz says ``lease`` (active or standby), and ready."""
        started = time.monotonic()
        async with asyncio.timeout(within):
            while True:
                readiness = await self.readiness()
                if readiness.lease == lease and readiness.ready:
                    return time.monotonic() - started
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def project(data_dir: Path, nats_url: str) -> AsyncIterator[Project]:
    """``hub project``, ready (active or standby); stopped at the end unless killed."""
    async with role_process("project", data_dir, nats_url, env=PROJECT_ENV) as (process, ready):
        yield Project(process, ready.split(" ops ")[-1].strip())


async def projected_seq(client: nats.NATS) -> int:
    """What the active ``hub project`` has stored (0 while none answers)."""
    try:
        msg = await client.request(STATUS_SUBJECT, b"", timeout=2)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return 0
    return msgspec.json.decode(msg.data, type=Status).projected_seq


async def projected_until(
    client: nats.NATS, wanted: Callable[[int], bool], *, within: float, every: float
) -> None:
    async with asyncio.timeout(within):
        while True:
            if wanted(await projected_seq(client)):
                return
            await asyncio.sleep(every)


async def test_killing_the_active_hub_project_hands_over_and_the_tables_equal_a_rebuild(
    settings: Settings, nats_server: EmbeddedNats
) -> None:
    url = nats_server.url
    await store_events(settings, url, fleet(8, 6).events)
    begun = await last_seq(url)
    client = await nats.connect(url)
    try:
        async with project(settings.data_dir, url) as first:
            await first.becomes("active", within=15)
            async with project(settings.data_dir, url) as second:
                # Waiting: ready all the same, and writing nothing.
                await second.becomes("standby", within=15)
                await store_events(settings, url, mixed().events)
                # Mid-run: some of the stream stored, not all of it.
                await projected_until(client, lambda seq: 0 < seq < begun, within=30, every=0.01)
                first.process.send_signal(signal.SIGKILL)
                await first.process.wait()
                await store_events(settings, url, mixed().events)
                handover = await second.becomes("active", within=15)
                end = await last_seq(url)
                await projected_until(client, lambda seq: seq >= end, within=60, every=0.05)
    finally:
        await client.close()
    assert handover < 6.0, f"the standby took over after {handover:.1f} s"
    # Both stopped: the tables as the standby left them, then rebuilt from the stream.
    async with running_projections(settings, url) as projections:
        await projections.runner.wait_for(end)
        after_failover = await dump(projections.backend)
        assert [row["seq"] for row in after_failover["events"]] == list(range(1, end + 1))
        await replay_in(projections)
        assert await dump(projections.backend) == after_failover


async def test_a_hub_project_fenced_by_the_clock_projects_again_once_its_lease_is_renewed(
    settings: Settings, nats_server: EmbeddedNats
) -> None:
    # NATS away for about a TTL: the runner's fence stops it before a write, then the
    # renewal gets through (nobody took over) before the lease's loop saw it run out.
    # Renewals are left to the test, one step at a time (no look within the test).
    settings = msgspec.structs.replace(settings, lease_ttl_s=120.0, lease_renew_s=60.0)
    url = nats_server.url
    async with leased_projections(settings, url) as projecting:
        await asyncio.wait_for(projecting.activated.wait(), 15)
        await store_events(settings, url, fleet(2, 1).events)
        await _projected(projecting, await last_seq(url))
        lease = projecting.lease
        fenced = asyncio.Event()
        holds = lease.state.holds

        def watched(now: float) -> bool:
            held = holds(now)
            if not held:
                fenced.set()
            return held

        lease.state.holds = watched  # type: ignore[method-assign]
        lease.state.valid_until = 0.0  # run out by the clock
        await store_events(settings, url, mixed().events)
        await asyncio.wait_for(fenced.wait(), 15)
        await lease.step()  # the renewal that gets through
        assert lease.holds()
        await _projected(projecting, await last_seq(url))


async def _projected(projecting: LeasedProjections, seq: int) -> None:
    """Until the active runner has stored ``seq`` (whichever runner it is by then)."""
    async with asyncio.timeout(30):
        while True:
            await projecting.activated.wait()
            assert projecting.active is not None
            with contextlib.suppress(TimeoutError):
                # A runner stopped for good never gets there: look again at the active one.
                await asyncio.wait_for(projecting.active.runner.wait_for(seq), 0.5)
                return


async def test_hub_project_stopped_as_its_runner_starts_stops_though_the_cancel_is_lost(
    settings: Settings, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nats-py catches CancelledError in its flush, and Python 3.11's wait_for loses one
    that comes with its answer: `hub up` stopped just as `hub project` connected its runner
    (a test that boots one charger and presses Ctrl-C) went on to project, and waited out
    the shutdown grace to exit 1."""
    connecting = asyncio.Event()
    real_connect = service.connect

    async def losing_the_cancel(url: str, *, name: str) -> Connection:
        if name == "hub-projections":
            connecting.set()
            with contextlib.suppress(asyncio.CancelledError):  # as nats-py's flush does
                await asyncio.sleep(1.0)
        return await real_connect(url, name=name)

    monkeypatch.setattr(service, "connect", losing_the_cancel)
    async with asyncio.timeout(20):
        async with leased_projections(settings, nats_server.url) as projecting:
            await connecting.wait()
    assert projecting.active is None
