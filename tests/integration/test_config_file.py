"""Deployments as an operator writes them: a settings file every process of ``hub up`` reads,
and a NATS URL that lists the nodes of a cluster."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from hub.config import Settings
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from tests.integration.helpers import hub_up, raw_socket

HUB = [sys.executable, "-m", "hub.cli"]


async def test_hub_up_hands_its_settings_file_to_the_processes_it_starts(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    # The fan-out runs as a child: only if it reads the file too does it accept tokens that
    # hub up signed with this secret.
    config.write_text(
        '[fanout]\njwt_secret = "a-secret-from-the-settings-file-0123456789"\n'
        "[projections]\nenabled = false\n[supervisor]\nenabled = false\n"
    )
    async with hub_up(tmp_path / "data", "--config", str(config)) as process:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            ready = (await process.stdout.readline()).decode()
            ui = (await process.stdout.readline()).decode()
        assert ready.startswith("hub ready"), ready
        assert not (tmp_path / "data" / "jwt.secret").exists()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/#token=(\S+)", ui)
        assert match, ui
        base, token = match.groups()
        async with aiohttp.ClientSession() as http:
            listing = await http.get(
                base + "/api/v1/chargers", headers={"Authorization": f"Bearer {token}"}
            )
            assert listing.status == 200


def test_a_bad_settings_file_stops_the_command_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("[gateway]\nheartbeat_interval = 60\n")
    done = subprocess.run(
        [*HUB, "gateway", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HUB_CONFIG": str(config), "HUB_NATS_URL": "nats://127.0.0.1:1"},
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"hub: config {config}: unknown key gateway.heartbeat_interval "
        "(did you mean heartbeat_interval_s?)"
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_nats_url_may_list_several_nodes_of_which_one_is_down(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    url = f"nats://127.0.0.1:{_closed_port()},{nats_server.url}"
    async with asyncio.timeout(30), running_gateway(settings, url) as gateway:
        async with raw_socket(gateway.port, "CP-CLUSTER") as ws:
            await ws.send('[2, "hb", "Heartbeat", {}]')
            assert json.loads(await ws.recv())[:2] == [3, "hb"]
