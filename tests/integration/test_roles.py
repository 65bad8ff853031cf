"""Each part of the hub runs alone against a NATS URL: two gateways side by side, the
projections and the supervisor, as a deployment that scales the gateway would run them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
from pathlib import Path

import msgspec
from ocpp.v16 import call

from hub.config import Settings
from hub.nats_server import EmbeddedNats
from hub.roles import role_children
from schemas.events import OcppFrame
from tests.integration.helpers import (
    HUB_CLI,
    ocpp_charger,
    raw_socket,
    role_process,
    stored_events,
)

READY_WITHIN_S = 60


# ``hub NAME`` against a NATS URL: the process and its ready line.
role = role_process


def gateway_port(ready_line: str) -> int:
    match = re.search(r"ws://127\.0\.0\.1:(\d+)/ocpp/", ready_line)
    assert match, ready_line
    return int(match.group(1))


async def test_two_gateways_side_by_side_store_into_one_stream(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    gateway_flags = ("--host", "127.0.0.1", "--port", "0", "--allow-unknown-chargers")
    async with (
        role("gateway", tmp_path / "a", nats_server.url, *gateway_flags) as (_, first),
        role("gateway", tmp_path / "b", nats_server.url, *gateway_flags) as (_, second),
    ):
        for port, charger in ((gateway_port(first), "CP-A"), (gateway_port(second), "CP-B")):
            async with ocpp_charger(port, charger) as cp:
                answer = await cp.call(
                    call.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
                assert answer.status == "Accepted"
    frames = [e for _, e in await stored_events(nats_server.url) if isinstance(e, OcppFrame)]
    boots = {(f.charge_point_id, f.direction) for f in frames if f.action == "BootNotification"}
    assert boots == {("CP-A", "in"), ("CP-A", "out"), ("CP-B", "in"), ("CP-B", "out")}
    gateways = {f.gateway_id for f in frames}
    assert len(gateways) == 2, "each gateway takes an id of its own"


async def test_the_projections_and_the_supervisor_start_alone(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    async with (
        role("project", tmp_path, nats_server.url) as (_, projecting),
        role("supervise", tmp_path, nats_server.url) as (_, supervising),
    ):
        assert "nats " in projecting and "nats " in supervising


async def test_a_gateway_takes_more_chargers_than_the_soft_open_files_limit(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    """Started under a soft limit of 64 open files (the usual default is 1,024), the gateway
    lifts it to the hard limit: 100 chargers all get in and are answered."""

    def low_soft_limit() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))

    process = await asyncio.create_subprocess_exec(
        *HUB_CLI,
        "gateway",
        "--data-dir",
        str(tmp_path),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--allow-unknown-chargers",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "HUB_NATS_URL": nats_server.url},
        preexec_fn=low_soft_limit,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(READY_WITHIN_S):
            while not (line := (await process.stdout.readline()).decode()).startswith(
                "gateway ready: "
            ):
                assert line, "hub gateway exited before it was ready"
        port = gateway_port(line)
        async with contextlib.AsyncExitStack() as chargers:
            sockets = [
                await chargers.enter_async_context(raw_socket(port, f"CP-FD-{index}"))
                for index in range(100)
            ]
            for ws in sockets:
                await ws.send('[2, "hb", "Heartbeat", {}]')
            async with asyncio.timeout(30):
                answers = [json.loads(await ws.recv()) for ws in sockets]
        assert [answer[0] for answer in answers] == [3] * 100
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()


async def test_hub_up_runs_its_projections_at_the_nice_it_is_given(
    settings: Settings, nats_server: EmbeddedNats
) -> None:
    # Under overload the answers to chargers come first: `hub project` yields the CPU, the
    # supervisor (whose limits keep a site safe) does not.
    settings = msgspec.structs.replace(
        settings,
        projections=msgspec.structs.replace(settings.projections, nice=7),
        fanout=msgspec.structs.replace(settings.fanout, enabled=False),
    )
    children = {child.name: child for child in role_children(settings, nats_server.url)}
    assert set(children) == {"project", "supervise"}
    try:
        await asyncio.gather(*(child.start() for child in children.values()))
        own = os.getpriority(os.PRIO_PROCESS, 0)
        niceness = {
            name: os.getpriority(os.PRIO_PROCESS, child.pid or 0)
            for name, child in children.items()
        }
        assert niceness == {"project": own + 7, "supervise": own}
    finally:
        await asyncio.gather(*(child.stop() for child in children.values()))
