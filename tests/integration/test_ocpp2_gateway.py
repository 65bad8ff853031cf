"""OCPP 2.0.1 and 2.1 at the gateway (issue #12, items 1 and 2's RPC framework): version
negotiation, per hub and per charger, the version in the connection event and the snapshot,
and every bad-input case 1.6 answers given its 2.x answer over raw 2.0.1 and 2.1
connections. Real nats-server, real gateway, the ocpp library's v201 ChargePoint."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from schemas.events import (
    ChargerConnected,
    ChargerRegistered,
    ConnectionRefused,
    FrameRejected,
    OcppFrame,
)
from tests.conftest import with_gateway
from tests.integration.api_helpers import api_client, api_token
from tests.integration.fanout_helpers import messages_until, ui_socket
from tests.integration.helpers import (
    charger_events,
    raw_socket,
    registrations_folded,
    stored_events,
)
from tests.integration.test_credentials import hub_command, ui_port

__all__ = ["ui_port"]  # a fixture: imported for pytest, which finds it here

EVERY = "2.1,2.0.1,1.6"
OFFER_ALL = ["ocpp2.1", "ocpp2.0.1", "ocpp1.6"]
BOOT_201 = '{"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "Acme"}}'


@pytest.fixture
async def gateway(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway that negotiates every version."""
    async with running_gateway(
        with_gateway(settings, ocpp_versions=EVERY), nats_server.url
    ) as running:
        yield running


@contextlib.asynccontextmanager
async def speaking(
    port: int, charge_point_id: str, *offered: str
) -> AsyncIterator[ClientConnection]:
    async with raw_socket(port, charge_point_id, subprotocols=list(offered), max_size=None) as ws:
        yield ws


async def closed_with(
    port: int, charge_point_id: str, offered: list[str]
) -> tuple[str | None, int | None]:
    """The subprotocol the gateway answered, and the close code if it closed at once."""
    async with speaking(port, charge_point_id, *offered) as ws:
        chosen = ws.subprotocol
        if chosen is None:
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    await ws.recv()
            return None, ws.close_code
        await ws.send('[2, "hb", "Heartbeat", {}]')
        async with asyncio.timeout(10):
            await ws.recv()
        return chosen, None


async def opened(url: str, charge_point_id: str) -> list[str]:
    return [
        e.ocpp_version
        for e in await charger_events(url, charge_point_id)
        if isinstance(e, ChargerConnected)
    ]


# -- negotiation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hub_versions", "offered", "chosen"),
    [
        (EVERY, OFFER_ALL, "ocpp2.1"),
        (EVERY, ["ocpp1.6", "ocpp2.0.1"], "ocpp2.0.1"),
        ("2.0.1,1.6", OFFER_ALL, "ocpp2.0.1"),
        ("1.6", OFFER_ALL, "ocpp1.6"),
        ("1.6", ["ocpp2.0.1"], None),
        ("2.1", ["ocpp2.0.1", "ocpp1.6"], None),
    ],
)
async def test_the_gateway_negotiates_the_newest_version_both_sides_have(
    nats_server: EmbeddedNats,
    settings: Settings,
    hub_versions: str,
    offered: list[str],
    chosen: str | None,
) -> None:
    async with running_gateway(
        with_gateway(settings, ocpp_versions=hub_versions), nats_server.url
    ) as gateway:
        answered, close_code = await closed_with(gateway.port, "CP-NEG", offered)
    assert answered == chosen
    if chosen is None:
        # OCPP-J §3.1.2: the handshake completes without a subprotocol, then 1002.
        assert close_code == 1002
        [refused] = [
            e
            for _, e in await stored_events(nats_server.url, "ev.gw.refused")
            if isinstance(e, ConnectionRefused)
        ]
        assert (refused.reason, list(refused.offered_subprotocols)) == (
            "unsupported_subprotocol",
            offered,
        )
        assert await opened(nats_server.url, "CP-NEG") == []
    else:
        # The connection event records the version negotiated.
        assert await opened(nats_server.url, "CP-NEG") == [chosen.removeprefix("ocpp")]


async def test_per_charger_versions_by_cli_and_rest_under_one_rule_set(
    gateway: Gateway, nats_server: EmbeddedNats, ui_port: int
) -> None:
    url = nats_server.url
    both_folded = registrations_folded(gateway.registry, "CP-PINNED", "CP-REST")
    code, out, err = await hub_command(
        "chargers", "add", "CP-PINNED", "--ocpp-versions", "1.6", "--nats-url", url
    )
    assert (code, out.strip()) == (0, "registered CP-PINNED (OCPP 1.6)"), err
    code, _, err = await hub_command(
        "chargers", "add", "CP-NO", "--ocpp-versions", "1.6,2.0", "--nats-url", url
    )
    assert (code, err.strip()) == (
        1,
        "hub: --ocpp-versions: unknown OCPP version '2.0'; expected 1.6, 2.0.1, 2.1",
    )
    async with api_client(ui_port) as api:
        status, view = await api.call(
            "PUT", "/api/v1/chargers/CP-REST/registration", {"ocppVersions": ["2.0.1"]}
        )
        assert (status, view["ocppVersions"]) == (200, ["2.0.1"]), view
        for body, problem in [
            (
                {"ocppVersions": ["1.5"]},
                "unknown OCPP version '1.5'; expected 1.6, 2.0.1, 2.1 - at `$.ocppVersions`",
            ),
            ({"ocppVersions": []}, "name at least one OCPP version - at `$.ocppVersions`"),
        ]:
            assert await api.call("PUT", "/api/v1/chargers/CP-NO/registration", body) == (
                400,
                {"error": "bad_request", "message": problem},
            )
    registered = {
        e.charge_point_id: e.ocpp_versions
        for _, e in await stored_events(url, "ev.admin.>")
        if isinstance(e, ChargerRegistered)
    }
    assert registered == {"CP-PINNED": ("1.6",), "CP-REST": ("2.0.1",)}
    async with asyncio.timeout(10):
        await both_folded.wait()
    # Each gets the newest version its registration allows; others get the gateway's newest.
    assert await closed_with(gateway.port, "CP-PINNED", OFFER_ALL) == ("ocpp1.6", None)
    assert await closed_with(gateway.port, "CP-REST", OFFER_ALL) == ("ocpp2.0.1", None)
    assert await closed_with(gateway.port, "CP-FREE", OFFER_ALL) == ("ocpp2.1", None)
    # Offering only what its registration leaves out: refused, and operators see why.
    assert await closed_with(gateway.port, "CP-REST", ["ocpp1.6"]) == (None, 1002)
    async with (
        ui_socket(ui_port, "/ws/chargers/CP-FREE", token_value=api_token("viewer")) as ui,
        speaking(gateway.port, "CP-FREE", "ocpp2.1"),
    ):
        await messages_until(ui, lambda m: m["type"] == "connection" and m["state"] == "connected")
    async with api_client(ui_port) as api:
        status, listed = await api.call("GET", "/api/v1/refusals", token=api_token("viewer"))
        assert status == 200
        assert [
            (r["chargePointId"], r["reason"], r["offeredSubprotocols"]) for r in listed["refused"]
        ] == [("CP-REST", "unsupported_subprotocol", ["ocpp1.6"])]
        status, snapshot = await api.call(
            "GET", "/api/v1/chargers/CP-PINNED", token=api_token("viewer")
        )
        assert (status, snapshot["ocppVersion"]) == (200, "1.6")
        status, snapshot = await api.call(
            "GET", "/api/v1/chargers/CP-FREE", token=api_token("viewer")
        )
        assert (status, snapshot["ocppVersion"]) == (200, "2.1")


async def test_the_version_reaches_the_ui_with_the_connection(
    gateway: Gateway, ui_port: int
) -> None:
    async with ui_socket(ui_port, "/ws/chargers/CP-UI", token_value=api_token("viewer")) as ui:
        async with speaking(gateway.port, "CP-UI", "ocpp2.0.1"):
            seen = await messages_until(
                ui, lambda m: m["type"] == "connection" and m["state"] == "connected"
            )
    assert seen[-1]["ocppVersion"] == "2.0.1"


# -- the 2.x RPC framework --------------------------------------------------------------------

# Every bad-input case of 1.6's CALLERROR table (docs/gateway.md, test_bad_input.py,
# test_poison_frames.py) as a 2.x connection answers it: (frame, uniqueId, code, reason).
TABLE_2X = [
    ("this is not json", "-1", "RpcFrameworkError", "not_json"),
    ('{"a": 1}', "-1", "RpcFrameworkError", "bad_shape"),
    ("[]", "-1", "RpcFrameworkError", "bad_shape"),
    ('[2, 17, "Heartbeat", {}]', "-1", "RpcFrameworkError", "bad_shape"),
    ('[2, "m1", "Heartbeat"]', "m1", "RpcFrameworkError", "bad_shape"),
    ('["2", "t1", "Heartbeat", {}]', "t1", "RpcFrameworkError", "bad_shape"),
    ('[1e400, "t2", "Heartbeat", {}]', "t2", "RpcFrameworkError", "bad_shape"),
    (
        '[2, "t3", "DataTransfer", ' + "[" * 2000 + "]" * 2000 + "]",
        "t3",
        "RpcFrameworkError",
        "bad_shape",
    ),
    (
        '[2, "t4", "DataTransfer", {"vendorId": "v", "data": "\\ud800"}]',
        "t4",
        "RpcFrameworkError",
        "bad_shape",
    ),
    (
        '[2, "' + "i" * 37 + '", "Heartbeat", {}]',
        "i" * 37,
        "RpcFrameworkError",
        "unique_id_too_long",
    ),
    ('[9, "m2", "Heartbeat", {}]', "m2", "MessageTypeNotSupported", "unknown_message_type"),
    ('[2, "m3", "MakeCoffee", {}]', "m3", "NotImplemented", "unknown_action"),
    # The hub's own action, sent by a station.
    ('[2, "m4", "Reset", {"type": "Immediate"}]', "m4", "NotImplemented", "unknown_action"),
    ('[2, "m5", "' + "A" * 4100 + '", {}]', "m5", "NotImplemented", "unknown_action"),
]


@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp2.1"])
@pytest.mark.parametrize(("frame", "unique_id", "code", "reason"), TABLE_2X)
async def test_a_bad_2x_frame_gets_its_versions_callerror_and_is_recorded(
    gateway: Gateway,
    nats_server: EmbeddedNats,
    subprotocol: str,
    frame: str,
    unique_id: str,
    code: str,
    reason: str,
) -> None:
    async with speaking(gateway.port, "CP-BAD2", subprotocol) as ws:
        await ws.send(frame)
        async with asyncio.timeout(10):
            answer = json.loads(await ws.recv())
        assert answer[:3] == [4, unique_id, code]
        assert isinstance(answer[3], str) and answer[3] and len(answer[3]) < 1024
        # The connection survives: the next frame is read and answered.
        await ws.send('[2, "after", "Heartbeat", {}]')
        async with asyncio.timeout(10):
            assert json.loads(await ws.recv())[:2] == [3, "after"]
    events = await charger_events(nats_server.url, "CP-BAD2")
    rejected = [e for e in events if isinstance(e, FrameRejected)]
    assert [(e.reason, e.error_code, e.ocpp_version) for e in rejected][:1] == [
        (reason, code, subprotocol.removeprefix("ocpp"))
    ]
    assert rejected[0].raw == frame
    errors = [e for e in events if isinstance(e, OcppFrame) and e.message_type == "CALLERROR"]
    assert (errors[0].direction, errors[0].unique_id, errors[0].error_code) == (
        "out",
        unique_id,
        code,
    )


@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_2x_second_call_oversized_frame_and_binary_frame(
    nats_server: EmbeddedNats, settings: Settings, subprotocol: str
) -> None:
    small = with_gateway(settings, ocpp_versions=EVERY, max_frame_bytes=200)
    async with running_gateway(small, nats_server.url) as gateway:
        async with speaking(gateway.port, "CP-EDGE", subprotocol) as ws:
            await ws.send('[2, "big", "DataTransfer", {"vendorId": "' + "x" * 300 + '"}]')
            async with asyncio.timeout(10):
                assert json.loads(await ws.recv())[:3] == [4, "big", "FormatViolation"]
            # Both go out before any answer comes back: the second is refused.
            await ws.send('[2, "first", "Heartbeat", {}]')
            await ws.send('[2, "second", "Heartbeat", {}]')
            async with asyncio.timeout(10):
                answers = [json.loads(await ws.recv()) for _ in range(2)]
            assert sorted(a[:2] for a in answers) == [[3, "first"], [4, "second"]]
            assert [a[2] for a in answers if a[0] == 4] == ["ProtocolError"]
            # A result nobody asked for is recorded, never answered.
            await ws.send('[3, "nobody-asked", {}]')
            await ws.send(b'[2, "bin", "Heartbeat", {}]')
            async with asyncio.timeout(10):
                await ws.wait_closed()
            assert ws.close_code == 1003
    events = await charger_events(nats_server.url, "CP-EDGE")
    assert [(e.reason, e.error_code) for e in events if isinstance(e, FrameRejected)] == [
        ("oversized", "FormatViolation"),
        ("call_outstanding", "ProtocolError"),
        ("unexpected_result", "ProtocolError"),
        ("binary_frame", "RpcFrameworkError"),
    ]


async def test_2_1_callresulterror_and_send_are_recorded_and_never_answered(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    async with speaking(gateway.port, "CP-21", "ocpp2.1") as ws:
        await ws.send('[5, "r1", "FormatViolation", "could not read your result", {}]')
        await ws.send(
            '[6, "s1", "NotifyPeriodicEventStream", {"id": 1, "pending": 0, '
            '"basetime": "2026-12-02T10:00:00Z", "data": [{"t": 0.5, "v": "230.1"}]}]'
        )
        await ws.send('[6, "s2", "NotifyPeriodicEventStream"]')  # broken: still unanswered
        await ws.send('[7, "u1", "Heartbeat", {}]')
        async with asyncio.timeout(10):
            # The first answer is the type 7's: nothing answered the 5 and the 6s.
            assert json.loads(await ws.recv())[:3] == [4, "u1", "MessageTypeNotSupported"]
    events = await charger_events(nats_server.url, "CP-21")
    frames = [
        (e.message_type, e.direction, e.unique_id, e.action, e.error_code)
        for e in events
        if isinstance(e, OcppFrame)
    ]
    assert frames == [
        ("CALLRESULTERROR", "in", "r1", "", "FormatViolation"),
        ("SEND", "in", "s1", "NotifyPeriodicEventStream", ""),
        ("CALLERROR", "out", "u1", "", "MessageTypeNotSupported"),
    ]
    assert [(e.unique_id, e.reason) for e in events if isinstance(e, FrameRejected)] == [
        ("s2", "bad_shape"),
        ("u1", "unknown_message_type"),
    ]


async def test_2_0_1_has_no_types_5_and_6(gateway: Gateway, nats_server: EmbeddedNats) -> None:
    async with speaking(gateway.port, "CP-201", "ocpp2.0.1") as ws:
        await ws.send('[6, "s1", "NotifyPeriodicEventStream", {}]')
        async with asyncio.timeout(10):
            assert json.loads(await ws.recv())[:3] == [4, "s1", "MessageTypeNotSupported"]


@pytest.mark.parametrize(
    ("version", "charger_class", "calls"),
    [("2.0.1", ChargePoint201, call201), ("2.1", ChargePoint21, call21)],
    ids=["2.0.1", "2.1"],
)
async def test_an_ocpp_library_2x_charger_runs_a_session_and_gets_schema_valid_answers(
    gateway: Gateway, nats_server: EmbeddedNats, version: str, charger_class: Any, calls: Any
) -> None:
    """The ocpp library's v201 and v21 ChargePoints validate every answer against the
    official schemas: boot, heartbeat, status, authorize, TransactionEvent Started, Updated
    (twice), Ended."""
    cp = f"CP-V{version.replace('.', '')}"
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{cp}",
        subprotocols=[Subprotocol(f"ocpp{version}")],
    ) as websocket:
        assert websocket.subprotocol == f"ocpp{version}"
        charger = charger_class(cp, websocket)
        runner = asyncio.create_task(charger.start())
        token = {"id_token": "TAG-1", "type": "ISO14443"}
        meter = [
            {
                "timestamp": "2026-12-02T10:05:00Z",
                "sampled_value": [{"value": 1500.0, "measurand": "Energy.Active.Import.Register"}],
            }
        ]
        try:
            boot = await charger.call(
                calls.BootNotification(
                    charging_station={"model": "M", "vendor_name": "Acme"}, reason="PowerUp"
                ),
                suppress=False,
            )
            assert boot.status == "Accepted" and boot.interval > 0
            await charger.call(calls.Heartbeat(), suppress=False)
            await charger.call(
                calls.StatusNotification(
                    timestamp="2026-12-02T10:00:00Z",
                    connector_status="Occupied",
                    evse_id=1,
                    connector_id=1,
                ),
                suppress=False,
            )
            authorized = await charger.call(calls.Authorize(id_token=token), suppress=False)
            assert authorized.id_token_info["status"] == "Accepted"
            transaction = {"transaction_id": "tx-201-1"}
            started = await charger.call(
                calls.TransactionEvent(
                    event_type="Started",
                    timestamp="2026-12-02T10:00:00Z",
                    trigger_reason="Authorized",
                    seq_no=0,
                    transaction_info=transaction,
                    id_token=token,
                    evse={"id": 1, "connector_id": 1},
                ),
                suppress=False,
            )
            assert started.id_token_info["status"] == "Accepted"
            for seq_no, event_type in ((1, "Updated"), (2, "Updated"), (3, "Ended")):
                await charger.call(
                    calls.TransactionEvent(
                        event_type=event_type,
                        timestamp="2026-12-02T10:05:00Z",
                        trigger_reason="EVDeparted" if seq_no == 3 else "MeterValuePeriodic",
                        seq_no=seq_no,
                        transaction_info=transaction,
                        meter_value=meter,
                    ),
                    suppress=False,
                )
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
    events = await charger_events(nats_server.url, cp)
    assert [e.ocpp_version for e in events if isinstance(e, ChargerConnected)] == [version]
    exchanges = [
        (e.message_type, e.direction, e.action) for e in events if isinstance(e, OcppFrame)
    ]
    actions = ["BootNotification", "Heartbeat", "StatusNotification", "Authorize"]
    actions += ["TransactionEvent"] * 4
    assert exchanges == [
        pair
        for action in actions
        for pair in (("CALL", "in", action), ("CALLRESULT", "out", action))
    ]
    assert not [e for e in events if isinstance(e, FrameRejected)]


@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_a_2x_data_transfer_is_answered_under_the_vendor_policy(
    nats_server: EmbeddedNats, settings: Settings, subprotocol: str
) -> None:
    policy = with_gateway(settings, ocpp_versions=EVERY, data_transfer_vendors={"acme": ["Tariff"]})
    async with (
        running_gateway(policy, nats_server.url) as gateway,
        speaking(gateway.port, "CP-DT2", subprotocol) as ws,
    ):
        answers = []
        for unique_id, body in (
            ("d1", '{"vendorId": "ACME", "messageId": "tariff", "data": {"x": 1}}'),
            ("d2", '{"vendorId": "ACME", "messageId": "Other"}'),
            ("d3", '{"vendorId": "Nobody"}'),
        ):
            await ws.send(f'[2, "{unique_id}", "DataTransfer", {body}]')
            async with asyncio.timeout(10):
                answers.append(json.loads(await ws.recv()))
    assert answers == [
        [3, "d1", {"status": "Accepted"}],
        [3, "d2", {"status": "UnknownMessageId"}],
        [3, "d3", {"status": "UnknownVendorId"}],
    ]
