"""Every role serves /metrics, /healthz and /readyz, and ``hub status`` finds them: the
counters a scrape shows are what happened, and readiness follows NATS and the stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import nats
from ocpp.v16 import call
from prometheus_client.parser import text_string_to_metric_families

from hub.bus import ensure_stream
from hub.commands import send_command
from hub.config import Settings
from hub.metrics import METRICS, Role, names_for
from hub.nats_server import EmbeddedNats
from hub.ops import Readiness, serving_ops
from tests.integration.helpers import HUB_CLI, hub_up, ocpp_charger, raw_socket
from tests.integration.helpers import gateway_port as hub_gateway_port
from tests.integration.test_commands import until_held
from tests.integration.test_roles import gateway_port, role

READY_WITHIN_S = 30
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def ops_url(ready_line: str) -> str:
    words = ready_line.split()
    return words[words.index("ops") + 1]


async def scrape(url: str) -> tuple[Samples, set[str]]:
    """The samples of ``url``/metrics by sample name and labels, and the families' names."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: Samples = {}
    names = set()
    for metric in text_string_to_metric_families(text):
        names.add(metric.name)
        for sample in metric.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples, names


def exported(role: Role) -> set[str]:
    """The family names a scrape of ``role`` shows: counters without their ``_total``."""
    kinds = {spec.name: spec.kind for spec in METRICS}
    return {
        name.removesuffix("_total") if kinds[name] == "counter" else name
        for name in names_for(role)
    }


async def readiness(http: aiohttp.ClientSession, url: str) -> tuple[int, Readiness]:
    async with http.get(f"{url}/readyz") as response:
        return response.status, msgspec.json.decode(await response.read(), type=Readiness)


async def until_ready(http: aiohttp.ClientSession, url: str) -> Readiness:
    """/readyz until it says ready: a follower may still be folding the stream's first
    events when its role prints its ready line."""
    async with asyncio.timeout(READY_WITHIN_S):
        while True:
            status, ready = await readiness(http, url)
            if status == 200:
                return ready
            await asyncio.sleep(0.05)


async def test_a_scrape_of_the_gateway_counts_what_a_charger_session_did(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    readings = 7
    flags = ("--host", "127.0.0.1", "--port", "0", "--allow-unknown-chargers")
    client = await nats.connect(nats_server.url)
    try:
        async with (
            role("gateway", tmp_path, nats_server.url, *flags) as (_, line),
            ocpp_charger(gateway_port(line), "CP-M") as cp,
        ):
            await until_held(client, "CP-M")
            now = "2026-01-01T00:00:00Z"
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            await cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing")
            )
            start = await cp.call(
                call.StartTransaction(connector_id=1, id_tag="T1", meter_start=0, timestamp=now)
            )
            for n in range(readings):
                value = {"value": str(n * 100), "measurand": "Energy.Active.Import.Register"}
                await cp.call(
                    call.MeterValues(
                        connector_id=1,
                        transaction_id=start.transaction_id,
                        meter_value=[{"timestamp": now, "sampled_value": [value]}],
                    )
                )
            await cp.call(
                call.StopTransaction(
                    meter_stop=1000, timestamp=now, transaction_id=start.transaction_id
                )
            )
            # The library's charger has no UnlockConnector handler: it answers NotImplemented.
            command = await send_command(client, "CP-M", "UnlockConnector", b'{"connectorId": 1}')
            assert command.status == "callerror"
            async with raw_socket(gateway_port(line), "CP-BAD") as bad:
                await bad.send('[2,"bad-1","MeterValues",{"connectorId":"one"}]')
                refusal = json.loads(await bad.recv())
                code = refusal[2]
                samples, _ = await scrape(ops_url(line))
    finally:
        await client.close()

    assert refusal[:2] == [4, "bad-1"]
    frames = samples["ocpp_hub_frames_total"]
    assert frames == {
        (("action", action), ("ocpp_version", "1.6"), ("outcome", outcome)): count
        for action, outcome, count in (
            ("BootNotification", "ok", 1),
            ("StatusNotification", "ok", 1),
            ("StartTransaction", "ok", 1),
            ("MeterValues", "ok", readings),
            ("StopTransaction", "ok", 1),
            ("UnlockConnector", "NotImplemented", 1),
            ("MeterValues", code, 1),
        )
    }
    assert samples["ocpp_hub_callerrors_total"] == {
        (("code", code), ("direction", "out")): 1,
        (("code", "NotImplemented"), ("direction", "in")): 1,
    }
    assert samples["ocpp_hub_commands_total"] == {
        (("action", "UnlockConnector"), ("outcome", "callerror")): 1
    }
    connected = samples["ocpp_hub_chargers_connected"]
    assert connected[(("ocpp_version", "1.6"),)] == 2
    assert samples["ocpp_hub_frame_store_seconds_count"][()] == readings + 6
    # Every frame and command was stored with a PubAck awaited, besides the connections'.
    assert samples["ocpp_hub_puback_wait_seconds_count"][()] >= readings + 7
    assert samples["ocpp_hub_storage_stall_seconds_total"][()] == 0
    assert samples["ocpp_hub_nats_connected"][()] == 1


@contextlib.asynccontextmanager
async def all_roles(data_dir: Path, nats_url: str) -> AsyncIterator[dict[Role, str]]:
    """The four roles side by side; yields each one's ops URL."""
    async with (
        role("gateway", data_dir / "g", nats_url, "--port", "0") as (_, gateway),
        role("fanout", data_dir / "f", nats_url, "--ui-port", "0") as (_, fanout),
        role("project", data_dir / "p", nats_url) as (_, project),
        role("supervise", data_dir / "s", nats_url) as (_, supervise),
    ):
        lines: dict[Role, str] = {
            "gateway": gateway,
            "fanout": fanout,
            "project": project,
            "supervise": supervise,
        }
        yield {name: ops_url(line) for name, line in lines.items()}


async def hub_status(nats_url: str, data_dir: Path, *flags: str) -> tuple[int, str]:
    """``hub status`` against ``nats_url`` (empty: the hub running on ``data_dir``)."""
    env = {k: v for k, v in os.environ.items() if k != "HUB_NATS_URL"}
    process = await asyncio.create_subprocess_exec(
        *HUB_CLI,
        "status",
        "--data-dir",
        str(data_dir),
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "HUB_NATS_URL": nats_url} if nats_url else env,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_every_role_answers_metrics_health_and_readiness_and_hub_status_lists_them(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    async with all_roles(tmp_path, nats_server.url) as urls, aiohttp.ClientSession() as http:
        for name, url in urls.items():
            async with http.get(f"{url}/healthz") as health:
                assert health.status == 200
                assert (await health.json())["role"] == name
            ready = await until_ready(http, url)
            assert (ready.role, ready.reasons, ready.version) == (name, [], "0.1.0")
            _, names = await scrape(url)
            assert names == exported(name), name
        code, shown = await hub_status(nats_server.url, tmp_path)
        json_code, as_json = await hub_status(nats_server.url, tmp_path, "--json")

    assert code == 0, shown
    lines = shown.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("role "))) :]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert set(rows) == {"gateway", "fanout", "project", "supervise"}
    for name, row in rows.items():
        assert row[2] == "ready", shown
        # One writer each among several, by a lease: alone, each holds it.
        assert row[3] == ("active" if name in ("project", "supervise") else "-"), shown
        assert row[-1] == urls[name]
    assert "0.1.0, OCPP 1.6" in shown  # the gateway's versions
    assert "projections 0 events" in shown
    assert json_code == 0
    roles = json.loads(as_json)["roles"]
    assert {r["record"]["role"] for r in roles if r["readiness"]["ready"]} == set(rows)


async def test_hub_up_gives_its_gateway_and_each_child_an_ops_server_of_its_own(
    tmp_path: Path,
) -> None:
    async with hub_up(tmp_path, "--allow-unknown-chargers") as process:
        await hub_gateway_port(process)  # its ready line: every child is ready too
        code, as_json = await hub_status("", tmp_path, "--json")
        roles = json.loads(as_json)["roles"]
        urls = {r["record"]["role"]: r["record"]["url"] for r in roles}
        assert set(urls) == {"gateway", "fanout", "project", "supervise"}, as_json
        assert len(set(urls.values())) == 4
        async with aiohttp.ClientSession() as http:
            for url in urls.values():
                await until_ready(http, url)
        code, shown = await hub_status("", tmp_path)
    assert code == 0, shown
    assert shown.count(" ready ") == 4, shown


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_readyz_says_what_it_waits_for_until_nats_and_the_stream_are_there(
    tmp_path: Path, settings: Settings
) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    async with serving_ops("supervise", settings, url) as ops, aiohttp.ClientSession() as http:
        async with http.get(f"{ops.url}/healthz") as health:
            assert health.status == 200  # alive, whatever NATS does
        status, ready = await readiness(http, ops.url)
        assert (status, ready.reasons) == (503, ["nats: not connected", "supervise: starting"])

        async with EmbeddedNats(tmp_path / "nats", port=port):
            async with asyncio.timeout(10):
                await ops.recorded.wait()
            status, ready = await readiness(http, ops.url)
            assert (status, ready.reasons) == (
                503,
                ["nats: stream OCPP_EVENTS does not exist", "supervise: starting"],
            )
            assert ops.connection is not None
            await ensure_stream(ops.connection.js, settings.stream)
            await ops.serving()
            status, ready = await readiness(http, ops.url)
            assert (status, ready.ready, ready.reasons) == (200, True, [])

        status, ready = await readiness(http, ops.url)
        assert (status, ready.reasons) == (503, ["nats: not connected"])


def test_docs_operations_lists_every_metric_with_its_type_and_labels() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if (
            len(cells) >= 3
            and cells[0].startswith("`")
            and cells[1]
            in (
                "counter",
                "gauge",
                "histogram",
            )
        ):
            labels = tuple(label.strip("` ") for label in cells[2].split(",") if label.strip("` "))
            rows[cells[0].strip("`")] = (cells[1], labels)
    assert rows == {spec.name: (spec.kind, spec.labels) for spec in METRICS}
