"""The fan-out's memory stays flat under refused requests, measured on a real `hub fanout`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from ocpp.v16 import call

from hub.children import LIFELINE
from hub.config import Settings
from hub.fanout.child import port_of
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.tokens import mint
from tests.integration.fanout_helpers import SECRET
from tests.integration.helpers import ocpp_charger

BODY = b"x" * (2 * 1024 * 1024)  # twice aiohttp's client_max_size
REQUESTS = 400  # refused with 413, each alongside one refused with 401
MAX_GROWTH_MB = 50


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@contextlib.asynccontextmanager
async def fanout_process(data_dir: Path, nats_url: str) -> AsyncIterator[tuple[int, int]]:
    """``hub fanout`` as a process of its own; yields its pid and port."""
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "hub.cli", "fanout", "--data-dir", str(data_dir)],
        *["--nats-url", nats_url, "--ui-port", "0", "--log-level", "warning"],
        stdin=asyncio.subprocess.PIPE,  # the lifeline: it stops if this test dies
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "HUB_JWT_SECRET": SECRET, LIFELINE: "stdin"},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            port = port_of((await process.stdout.readline()).decode())
        assert port is not None, "hub fanout did not get ready"
        yield process.pid, port
    finally:
        if process.returncode is None:
            process.terminate()
        async with asyncio.timeout(30):
            await process.wait()


async def test_refused_two_megabyte_bodies_leave_the_fan_out_memory_flat(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings
) -> None:
    async with ocpp_charger(gateway.port, "CP-1") as cp:  # a charger the fan-out knows
        await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
    operator = mint(SECRET, "HS256", chargers="*", ttl_s=600, role="operator", subject="t")
    requests = [
        ("PUT", "/api/v1/tariffs/std", operator, 413),
        ("PUT", "/api/v1/chargers/CP-1/configuration", operator, 413),
        ("PUT", "/api/v1/tariffs/std", None, 401),
        ("POST", "/api/v1/chargers/CP-1/reset", None, 401),
    ]
    async with (
        fanout_process(settings.data_dir, nats_server.url) as (pid, port),
        aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http,
    ):

        async def refuse(count: int) -> None:
            for i in range(count):
                method, path, token, status = requests[i % len(requests)]
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.request(
                    method, path, data=io.BytesIO(BODY), headers=headers
                ) as answer:
                    assert answer.status == status, (path, await answer.text())

        await refuse(len(requests) * 5)  # the allocator's first growth is no leak
        before = rss_mb(pid)
        await refuse(REQUESTS * 2)
        after = rss_mb(pid)
    assert after - before < MAX_GROWTH_MB, f"RSS {before:.0f} -> {after:.0f} MB"
