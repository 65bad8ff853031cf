"""The command API end to end: REST -> NATS -> the gateway holding the charger -> an
ocpp-library charger, and back, with every step recorded as events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.config import Settings
from hub.fanout import running_fanout
from hub.gateway.connection import COMMANDQUEUE_DEPTH
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from schemas.events import AccessDenied, CommandFinished, CommandRequested, OcppFrame
from tests.conftest import with_gateway
from tests.integration.api_helpers import SAMPLES, api_client, api_token, online
from tests.integration.fanout_helpers import messages_until, ui_socket, with_fanout
from tests.integration.helpers import charger_events, ocpp_charger, stored_events


@pytest.fixture
async def ui_port(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[int]:
    async with running_fanout(with_fanout(settings), nats_server.url) as port:
        yield port


async def test_every_endpoint_sends_its_call_and_returns_the_chargers_answer(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats
) -> None:
    async with online(gateway.port, ui_port, "CP-ALL") as charger, api_client(ui_port) as api:
        for method, name, body, params, action in SAMPLES:
            status, answer = await api.call(
                method, f"/api/v1/chargers/CP-ALL/{name}", body, params=params
            )
            assert status == 200, (name, answer)
            assert answer["action"] == action
            assert answer["status"] in ("accepted", "rejected"), (name, answer)
            assert charger.received[-1][0] == action
            tracked = await api.call("GET", f"/api/v1/commands/{answer['commandId']}")
            assert tracked == (200, answer)
    assert answer["response"] == {"status": "NotFound"}
    assert answer["status"] == "rejected"
    frames = [
        e for e in await charger_events(nats_server.url, "CP-ALL") if isinstance(e, OcppFrame)
    ]
    calls = [f.action for f in frames if f.direction == "out" and f.message_type == "CALL"]
    assert calls == [action for *_, action in SAMPLES]


async def test_answers_map_to_http_statuses_and_are_audited_and_pushed_to_the_ui(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats
) -> None:
    base = "/api/v1/chargers/CP-1"
    async with (
        online(gateway.port, ui_port, "CP-1"),
        api_client(ui_port) as api,
        ui_socket(ui_port, "/ws/chargers/CP-1", token_value=api_token("viewer")) as ws,
    ):
        accepted = await api.call("POST", f"{base}/reset", {"type": "Hard"})
        rejected = await api.call("PUT", f"{base}/configuration", {"key": "ReadOnly", "value": "1"})
        callerror = await api.call("POST", f"{base}/unlock", {"connectorId": 9})
        timeout = await api.call(
            "POST", f"{base}/remote-start", {"idTag": "SLOW"}, params={"timeout": "0.5"}
        )
        pushed = await messages_until(
            ws, lambda m: m["type"] == "command" and m["commandId"] == timeout[1]["commandId"]
        )
    assert accepted[0] == 200 and accepted[1]["response"] == {"status": "Accepted"}
    assert accepted[1]["status"] == "accepted" and accepted[1]["actor"] == "alice"
    assert rejected[0] == 200 and rejected[1]["status"] == "rejected"
    assert callerror[0] == 502
    assert callerror[1]["error"] == {
        "code": "InternalError",
        "description": "connector 9 is on fire",
    }
    assert callerror[1]["status"] == "failed"
    assert timeout[0] == 504 and timeout[1]["status"] == "timeout"
    commands = [m for m in pushed if m["type"] == "command"]
    assert [(m["action"], m["status"]) for m in commands] == [
        ("Reset", "accepted"),
        ("ChangeConfiguration", "rejected"),
        ("UnlockConnector", "failed"),
        ("RemoteStartTransaction", "timeout"),
    ]
    admin = [e for _, e in await stored_events(nats_server.url, "ev.admin.command.>")]
    requested = [e for e in admin if isinstance(e, CommandRequested)]
    finished = [e for e in admin if isinstance(e, CommandFinished)]
    assert [(e.actor, e.action, e.command_id) for e in requested] == [
        ("alice", action, answer["commandId"])
        for action, answer in (
            ("Reset", accepted[1]),
            ("ChangeConfiguration", rejected[1]),
            ("UnlockConnector", callerror[1]),
            ("RemoteStartTransaction", timeout[1]),
        )
    ]
    assert [e.status for e in finished] == ["answered", "answered", "callerror", "timeout"]
    # The request was stored before its CALL went out.
    frames = await stored_events(nats_server.url, "ev.>")
    seq_of = {
        (type(e).__name__, getattr(e, "unique_id", getattr(e, "command_id", ""))): seq
        for seq, e in frames
    }
    command_id = accepted[1]["commandId"]
    assert seq_of[("CommandRequested", command_id)] < seq_of[("OcppFrame", command_id)]


async def test_offline_unknown_and_bad_requests(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats
) -> None:
    async with api_client(ui_port) as api:
        async with online(gateway.port, ui_port, "CP-GONE"):
            pass
        # The live state knows the charger but no gateway holds it any more.
        async with ui_socket(
            ui_port, "/ws/chargers/CP-GONE", token_value=api_token("viewer")
        ) as ws:
            # A snapshot taken after the disconnect was folded, or the live message saying so.
            await messages_until(
                ws,
                lambda m: (
                    (m["type"] == "snapshot" and not m["connected"])
                    or (m["type"] == "connection" and m["state"] == "disconnected")
                ),
            )
        offline = await api.call("POST", "/api/v1/chargers/CP-GONE/reset", {"type": "Soft"})
        unknown = await api.call("POST", "/api/v1/chargers/CP-NEVER/reset", {"type": "Soft"})
        async with online(gateway.port, ui_port, "CP-2"):
            bad = [
                await api.call("POST", "/api/v1/chargers/CP-2/reset", {"type": "Sideways"}),
                await api.call("POST", "/api/v1/chargers/CP-2/remote-start", {"connectorId": 1}),
                await api.call("POST", "/api/v1/chargers/CP-2/reset", data=b"{not json"),
                await api.call("POST", "/api/v1/chargers/CP-2/unlock", {"connectorId": "one"}),
                await api.call(
                    "POST", "/api/v1/chargers/CP-2/reset", {"type": "Soft"}, params={"wait": "x"}
                ),
            ]
    assert offline[0] == 409 and offline[1]["outcome"] == "offline"
    assert unknown[0] == 404
    assert [status for status, _ in bad] == [400] * 5
    messages = [body["message"] for _, body in bad]
    assert "$.type" in messages[0]
    assert "idTag" in messages[1]
    assert "not valid JSON" in messages[2]
    assert "$.connectorId" in messages[3]
    assert messages[4].startswith("wait:")
    sent = [e for e in await charger_events(nats_server.url, "CP-2") if isinstance(e, OcppFrame)]
    assert [f for f in sent if f.direction == "out"] == []


async def test_roles_and_scopes_are_enforced_and_refusals_audited(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats
) -> None:
    async with online(gateway.port, ui_port, "CP-S"), api_client(ui_port) as api:
        allowed = await api.call(
            "POST",
            "/api/v1/chargers/CP-S/reset",
            {"type": "Soft"},
            token=api_token(chargers=["CP-S"]),
        )
        command = f"/api/v1/commands/{allowed[1]['commandId']}"
        refusals = [
            await api.call("POST", "/api/v1/chargers/CP-S/reset", {"type": "Soft"}, token=""),
            await api.call(
                "POST", "/api/v1/chargers/CP-S/reset", {"type": "Soft"}, token="not-a-jwt"
            ),
            await api.call(
                "POST",
                "/api/v1/chargers/CP-S/reset",
                {"type": "Soft"},
                token=api_token("viewer", subject="vic"),
            ),
            await api.call(
                "POST",
                "/api/v1/chargers/CP-S/reset",
                {"type": "Soft"},
                token=api_token(chargers=["CP-OTHER"], subject="olga"),
            ),
            await api.call("GET", command, token=api_token("viewer", ["CP-OTHER"], "olga")),
        ]
        viewer_reads = await api.call("GET", command, token=api_token("viewer", ["CP-S"]))
    assert allowed[0] == 200
    assert [status for status, _ in refusals] == [401, 401, 403, 403, 403]
    assert viewer_reads == (200, allowed[1])
    denied = [
        e
        for _, e in await stored_events(nats_server.url, "ev.admin.access.>")
        if isinstance(e, AccessDenied)
    ]
    assert [(e.http_status, e.actor, e.method) for e in denied] == [
        (401, "", "POST"),
        (401, "", "POST"),
        (403, "vic", "POST"),
        (403, "olga", "POST"),
        (403, "olga", "GET"),
    ]
    assert all(e.charge_point_id == "CP-S" for e in denied)


async def test_ten_concurrent_commands_to_one_charger_are_serialised_with_every_answer(
    gateway: Gateway, ui_port: int
) -> None:
    async with online(gateway.port, ui_port, "CP-BUSY") as charger, api_client(ui_port) as api:
        answers = await asyncio.gather(
            *(
                api.call(
                    "POST",
                    "/api/v1/chargers/CP-BUSY/reset",
                    {"type": "Hard" if i % 2 else "Soft"},
                )
                for i in range(10)
            )
        )
    assert [status for status, _ in answers] == [200] * 10
    assert len({body["commandId"] for _, body in answers}) == 10
    assert sorted(kwargs["type"] for _, kwargs in charger.received) == ["Hard"] * 5 + ["Soft"] * 5


async def test_commands_reach_the_gateway_holding_each_charger(
    nats_server: EmbeddedNats, settings: Settings, ui_port: int
) -> None:
    second = with_gateway(settings, gateway_id="gw-second")
    async with (
        running_gateway(settings, nats_server.url) as one,
        running_gateway(second, nats_server.url) as two,
        online(one.port, ui_port, "CP-A") as a,
        online(two.port, ui_port, "CP-B") as b,
        api_client(ui_port) as api,
    ):
        answers = [
            await api.call("POST", f"/api/v1/chargers/{cp}/unlock", {"connectorId": n})
            for n, cp in ((1, "CP-A"), (2, "CP-B"), (3, "CP-A"))
        ]
    assert [status for status, _ in answers] == [200] * 3
    assert [kw["connector_id"] for _, kw in a.received] == [1, 3]
    assert [kw["connector_id"] for _, kw in b.received] == [2]
    for cp, gateway_id in (("CP-A", "gw-test"), ("CP-B", "gw-second")):
        calls = [e for e in await charger_events(nats_server.url, cp) if isinstance(e, OcppFrame)]
        assert {e.gateway_id for e in calls if e.action == "UnlockConnector"} == {gateway_id}


async def test_tracking_survives_an_api_restart(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings
) -> None:
    fanout_settings = with_fanout(settings)
    async with running_fanout(fanout_settings, nats_server.url) as port:
        async with online(gateway.port, port, "CP-R"), api_client(port) as api:
            queued = await api.call(
                "POST", "/api/v1/chargers/CP-R/reset", {"type": "Soft"}, params={"wait": "false"}
            )
            done = await api.call("POST", "/api/v1/chargers/CP-R/reset", {"type": "Hard"})
    assert queued[0] == 202 and queued[1]["status"] == "pending"
    async with running_fanout(fanout_settings, nats_server.url) as port, api_client(port) as api:
        again = await api.call("GET", f"/api/v1/commands/{done[1]['commandId']}")
        first = await api.call("GET", f"/api/v1/commands/{queued[1]['commandId']}")
        missing = await api.call("GET", "/api/v1/commands/nope")
    assert again == (200, done[1])
    # Commands to one charger are serialised, so the queued one finished before the second.
    assert first[0] == 200 and first[1]["status"] == "accepted"
    assert first[1]["response"] == {"status": "Accepted"}
    assert missing[0] == 404


async def test_a_charger_that_is_not_known_yet_is_not_commanded(
    gateway: Gateway, ui_port: int
) -> None:
    # Never seen, even though the id is plausible: 404, nothing stored or sent.
    async with ocpp_charger(gateway.port, "CP-X"), api_client(ui_port) as api:
        status, body = await api.call("GET", "/api/v1/chargers/CP-Y/configuration")
    assert status == 404 and body["error"] == "not_found"


@contextlib.asynccontextmanager
async def gateway_process(nats_url: str, data_dir: Path, gateway_id: str) -> AsyncIterator[int]:
    """A second gateway in its own process (``hub up`` on the same NATS); yields its port."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "up",
        "--data-dir",
        str(data_dir),
        "--nats-url",
        nats_url,
        "--port",
        "0",
        "--gateway-id",
        gateway_id,
        "--allow-unknown-chargers",
        "--no-ui",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "HUB_PROJECTIONS": "false"},
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            ready = (await process.stdout.readline()).decode()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/", ready)
        assert match, ready
        yield int(match[1])
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await process.wait()


async def test_commands_reach_the_gateway_process_holding_each_charger(
    gateway: Gateway, nats_server: EmbeddedNats, ui_port: int, tmp_path: Path
) -> None:
    async with (
        gateway_process(nats_server.url, tmp_path / "second", "gw-process") as second_port,
        online(gateway.port, ui_port, "CP-HERE") as here,
        online(second_port, ui_port, "CP-THERE") as there,
        api_client(ui_port) as api,
    ):
        answers = [
            await api.call("POST", f"/api/v1/chargers/{cp}/unlock", {"connectorId": n})
            for n, cp in ((1, "CP-THERE"), (2, "CP-HERE"), (3, "CP-THERE"))
        ]
    assert [status for status, _ in answers] == [200] * 3
    assert [kw["connector_id"] for _, kw in there.received] == [1, 3]
    assert [kw["connector_id"] for _, kw in here.received] == [2]
    calls = [
        e for e in await charger_events(nats_server.url, "CP-THERE") if isinstance(e, OcppFrame)
    ]
    assert {e.gateway_id for e in calls if e.action == "UnlockConnector"} == {"gw-process"}


async def test_a_full_queue_answers_429_and_a_charger_gone_mid_command_409(
    gateway: Gateway, ui_port: int
) -> None:
    slow = {"idTag": "SLOW"}  # the charger never answers these
    async with api_client(ui_port) as api:
        async with online(gateway.port, ui_port, "CP-Q"):
            pending = {
                asyncio.create_task(
                    api.call(
                        "POST",
                        "/api/v1/chargers/CP-Q/remote-start",
                        slow,
                        params={"timeout": "60"},
                    )
                )
                for _ in range(40)
            }
            # The gateway holds COMMANDQUEUE_DEPTH (the outstanding one included) and refuses
            # the others at once.
            refused = 40 - COMMANDQUEUE_DEPTH
            busy: list[tuple[int, Any]] = []
            while len(busy) < refused:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                busy += [task.result() for task in done]
        # The charger disconnects: the outstanding and the queued ones fail as offline.
        gone = await asyncio.gather(*pending)
    assert [status for status, _ in busy] == [429] * refused
    assert {body["outcome"] for _, body in busy} == {"busy"}
    assert [status for status, _ in gone] == [409] * COMMANDQUEUE_DEPTH
