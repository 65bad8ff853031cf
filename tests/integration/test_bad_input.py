"""Every kind of bad frame gets the CALLERROR OCPP-J 1.6 names, is recorded verbatim, and the
connection stays up."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from schemas.events import ConnectionRefused, FrameRejected, OcppFrame
from tests.integration.helpers import charger_events, raw_socket, stored_events

BOOT = '{"chargePointVendor": "Acme", "chargePointModel": "M1"}'

CASES = [
    # (frame, expected unique id in the CALLERROR, code, rejection reason)
    ("this is not json", "-1", "FormationViolation", "not_json"),
    ('{"a": 1}', "-1", "FormationViolation", "bad_shape"),
    ("[]", "-1", "FormationViolation", "bad_shape"),
    ('[2, 17, "Heartbeat", {}]', "-1", "FormationViolation", "bad_shape"),
    ('[2, "m1", "Heartbeat"]', "m1", "FormationViolation", "bad_shape"),
    ('[9, "m2", "Heartbeat", {}]', "m2", "FormationViolation", "unknown_message_type"),
    ('[2, "m3", "MakeCoffee", {}]', "m3", "NotImplemented", "unknown_action"),
    ('[2, "m4", "Reset", {"type": "Hard"}]', "m4", "NotSupported", "unknown_action"),
    (
        '[2, "m5", "BootNotification", {"chargePointVendor": "Acme"}]',
        "m5",
        "OccurenceConstraintViolation",
        "schema_violation",
    ),
    (
        '[2, "m6", "BootNotification", {"chargePointVendor": 5, "chargePointModel": "M"}]',
        "m6",
        "TypeConstraintViolation",
        "schema_violation",
    ),
    (
        '[2, "m7", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", '
        '"status": "Dancing"}]',
        "m7",
        "PropertyConstraintViolation",
        "schema_violation",
    ),
    (
        '[2, "m8", "BootNotification", {"chargePointVendor": "'
        + "x" * 21
        + '", "chargePointModel": "M"}]',
        "m8",
        "PropertyConstraintViolation",
        "schema_violation",
    ),
    (
        '[2, "m9", "BootNotification", ' + BOOT[:-1] + ', "extra": 1}]',
        "m9",
        "FormationViolation",
        "schema_violation",
    ),
    (
        '[2, "' + "i" * 37 + '", "Heartbeat", {}]',
        "i" * 37,
        "FormationViolation",
        "unique_id_too_long",
    ),
]


@pytest.mark.parametrize(("frame", "unique_id", "code", "reason"), CASES)
async def test_bad_frame_gets_the_spec_callerror_and_is_recorded(
    gateway: Gateway, nats_server: EmbeddedNats, frame: str, unique_id: str, code: str, reason: str
) -> None:
    async with raw_socket(gateway.port, "CP-BAD") as ws:
        await ws.send(frame)
        answer = json.loads(await ws.recv())
        assert answer[:3] == [4, unique_id, code]
        assert isinstance(answer[3], str) and answer[3]
        # The connection survives: a valid CALL on it is still answered.
        await ws.send('[2, "after", "Heartbeat", {}]')
        assert json.loads(await ws.recv())[:2] == [3, "after"]

    events = await charger_events(nats_server.url, "CP-BAD")
    rejected = [e for e in events if isinstance(e, FrameRejected)]
    assert len(rejected) == 1
    assert rejected[0].raw == frame
    assert rejected[0].reason == reason and rejected[0].error_code == code
    errors = [e for e in events if isinstance(e, OcppFrame) and e.message_type == "CALLERROR"]
    assert [(e.direction, e.unique_id, e.error_code) for e in errors] == [("out", unique_id, code)]


async def test_oversized_frame_is_refused_with_callerror(
    nats_server: EmbeddedNats, settings: object
) -> None:
    from hub.runtime import running_gateway
    from tests.conftest import with_gateway

    small = with_gateway(settings, max_frame_bytes=200)  # type: ignore[arg-type]
    async with (
        running_gateway(small, nats_server.url) as gateway,
        raw_socket(gateway.port, "CP-BIG") as ws,
    ):
        frame = '[2, "big1", "DataTransfer", {"vendorId": "v", "data": "' + "x" * 500 + '"}]'
        await ws.send(frame)
        assert json.loads(await ws.recv())[:3] == [4, "big1", "FormationViolation"]
        await ws.send('[2, "after", "Heartbeat", {}]')
        assert json.loads(await ws.recv())[:2] == [3, "after"]
    events = await charger_events(nats_server.url, "CP-BIG")
    rejected = [e for e in events if isinstance(e, FrameRejected)]
    assert [(e.reason, e.raw) for e in rejected] == [("oversized", frame)]


async def test_second_call_while_one_is_outstanding_is_refused(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    async with raw_socket(gateway.port, "CP-EAGER") as ws:
        # Both frames go out before any answer can come back.
        await ws.send('[2, "first", "Heartbeat", {}]')
        await ws.send('[2, "second", "Heartbeat", {}]')
        answers = [json.loads(await ws.recv()) for _ in range(2)]
    assert sorted((a[0], a[1]) for a in answers) == [(3, "first"), (4, "second")]
    assert [a[2] for a in answers if a[0] == 4] == ["ProtocolError"]
    events = await charger_events(nats_server.url, "CP-EAGER")
    assert [e.reason for e in events if isinstance(e, FrameRejected)] == ["call_outstanding"]


async def test_unexpected_result_is_recorded_without_an_answer(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    async with raw_socket(gateway.port, "CP-ODD") as ws:
        await ws.send('[3, "nobody-asked", {}]')
        await ws.send('[2, "hb", "Heartbeat", {}]')
        # The first answer the charger sees is the Heartbeat's: nothing answered the result.
        assert json.loads(await ws.recv())[:2] == [3, "hb"]
    events = await charger_events(nats_server.url, "CP-ODD")
    rejected = [e for e in events if isinstance(e, FrameRejected)]
    assert [(e.reason, e.unique_id) for e in rejected] == [("unexpected_result", "nobody-asked")]


@pytest.mark.parametrize("path", ["/ocpp/", "/ocpp/" + "x" * 49, "/ocpp/a%3Ab", "/ocpp/%FF"])
async def test_invalid_charge_point_id_is_refused_and_recorded(
    gateway: Gateway, nats_server: EmbeddedNats, path: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{gateway.port}{path}", subprotocols=["ocpp1.6"]):
            pass
    assert refused.value.response.status_code == 400
    refusals = [e for _, e in await stored_events(nats_server.url, "ev.gw.refused")]
    assert [(e.reason, e.path) for e in refusals if isinstance(e, ConnectionRefused)] == [
        ("invalid_charge_point_id", path)
    ]


@pytest.mark.parametrize(
    ("subprotocols", "reason"),
    [(None, "missing_subprotocol"), (["ocpp0.1"], "unsupported_subprotocol")],
)
async def test_missing_or_unsupported_subprotocol_is_closed_per_spec(
    gateway: Gateway, nats_server: EmbeddedNats, subprotocols: list[str] | None, reason: str
) -> None:
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/CP-PROTO", subprotocols=subprotocols
    ) as ws:  # type: ignore[arg-type]
        # OCPP-J §3.1.2: the handshake completes without a subprotocol, then the server closes.
        assert ws.subprotocol is None
        async with asyncio.timeout(5):
            await ws.wait_closed()
        assert ws.close_code == 1002
    refusals = [e for _, e in await stored_events(nats_server.url, "ev.gw.refused")]
    assert [
        (e.charge_point_id, e.reason) for e in refusals if isinstance(e, ConnectionRefused)
    ] == [("CP-PROTO", reason)]
