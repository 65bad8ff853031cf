"""``hub cmd``: the CLI in front of the command API, as an operator runs it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from hub.api.cli import OPERATIONS, UsageError, build_request
from hub.config import Settings
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from tests.integration.api_helpers import api_token, online
from tests.integration.fanout_helpers import with_fanout

HUB = Path(sys.executable).with_name("hub")


@pytest.fixture
async def ui_port(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[int]:
    async with running_fanout(with_fanout(settings), nats_server.url) as port:
        yield port


async def hub_cmd(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(HUB),
        "cmd",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_hub_cmd_prints_the_chargers_answer(gateway: Gateway, ui_port: int) -> None:
    api = ["--api-url", f"http://127.0.0.1:{ui_port}", "--token", api_token()]
    async with online(gateway.port, ui_port, "CP-1") as charger:
        reset = await hub_cmd("CP-1", "reset", "--type", "Soft", *api)
        config = await hub_cmd("CP-1", "get-configuration", "--key", "HeartbeatInterval", *api)
        refused = await hub_cmd("CP-1", "unlock", "--connector-id", "9", *api)
    assert reset[0] == 0, reset
    answer = msgspec.json.decode(reset[1])
    assert (answer["status"], answer["response"]) == ("accepted", {"status": "Accepted"})
    assert config[0] == 0
    assert msgspec.json.decode(config[1])["response"]["configurationKey"][0]["value"] == "300"
    assert refused[0] == 1 and msgspec.json.decode(refused[1])["error"]["code"] == "InternalError"
    assert [(a, kw) for a, kw in charger.received][:2] == [
        ("Reset", {"type": "Soft"}),
        ("GetConfiguration", {"key": ["HeartbeatInterval"]}),
    ]


async def test_hub_cmd_refuses_bad_flags_before_sending_anything() -> None:
    bad_value = await hub_cmd("CP-1", "reset", "--type", "Sideways", "--token", "t")
    unknown = await hub_cmd("CP-1", "reset", "--colour", "red", "--token", "t")
    operation = await hub_cmd("CP-1", "frobnicate", "--token", "t")
    assert bad_value[0] == unknown[0] == operation[0] == 2
    assert "$.type" in bad_value[2]
    assert "--colour" in unknown[2] and "--type" in unknown[2]
    assert "unknown operation 'frobnicate'" in operation[2]


def test_flags_become_the_ocpp_payload_with_its_types() -> None:
    body, _ = build_request(
        OPERATIONS["remote-start"], ["--id-tag", "007", "--connector-id=2"], None
    )
    assert body is not None and msgspec.json.decode(body) == {"idTag": "007", "connectorId": 2}
    profile = '{"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",'
    profile += ' "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "W",'
    profile += ' "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}]}}'
    body, _ = build_request(
        OPERATIONS["set-charging-profile"],
        ["--connector-id", "1", "--cs-charging-profiles", profile],
        None,
    )
    assert body is not None and msgspec.json.decode(body)["csChargingProfiles"]["stackLevel"] == 0
    with pytest.raises(UsageError, match="connectorId"):
        build_request(OPERATIONS["unlock"], ["--connector-id", "one"], None)
    with pytest.raises(UsageError, match="needs a value"):
        build_request(OPERATIONS["reset"], ["--type"], None)


def test_flags_of_an_operation_several_versions_have_take_the_version_that_fits() -> None:
    soft, _ = build_request(OPERATIONS["reset"], ["--type", "Soft"], None)
    immediate, _ = build_request(
        OPERATIONS["reset"], ["--type", "Immediate", "--evse-id", "1"], None
    )
    assert soft == b'{"type":"Soft"}'
    assert immediate is not None
    assert msgspec.json.decode(immediate) == {"type": "Immediate", "evseId": 1}
    report, _ = build_request(
        OPERATIONS["get-base-report"], ["--request-id", "7", "--report-base", "FullInventory"], None
    )
    assert report is not None
    assert msgspec.json.decode(report) == {"requestId": 7, "reportBase": "FullInventory"}
    assert OPERATIONS["afrr-signal"].versions == ("2.1",)
    with pytest.raises(UsageError, match="Invalid enum value 'Sideways'"):
        build_request(OPERATIONS["reset"], ["--type", "Sideways"], None)
