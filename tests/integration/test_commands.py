"""Server-initiated CALLs, routed over NATS to whichever gateway holds the charger."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats
import pytest
from nats.js.api import DeliverPolicy
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action

from hub.commands import send_command
from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from hub.subjects import encode_token
from schemas.events import FrameRejected, OcppFrame
from tests.conftest import with_gateway
from tests.integration.helpers import charger_events, ocpp_charger


class Charger(ChargePoint):  # type: ignore[misc]  # the ocpp library ships no type hints
    """Accepts resets, refuses configuration changes, never answers RemoteStart, and has no
    handler at all for UnlockConnector (the library answers NotImplemented)."""

    resets: list[str]

    @on(Action.reset)  # type: ignore[untyped-decorator]
    async def on_reset(self, type: str) -> call_result.Reset:
        await asyncio.sleep(0.01)  # long enough for concurrent commands to overlap
        self.resets = [*getattr(self, "resets", []), type]
        return call_result.Reset(status="Accepted")

    @on(Action.change_configuration)  # type: ignore[untyped-decorator]
    def on_change_configuration(self, key: str, value: str) -> call_result.ChangeConfiguration:
        return call_result.ChangeConfiguration(status="Rejected")

    @on(Action.remote_start_transaction)  # type: ignore[untyped-decorator]
    async def on_remote_start(self, **_: Any) -> call_result.RemoteStartTransaction:
        await asyncio.sleep(30)
        return call_result.RemoteStartTransaction(status="Accepted")


async def until_held(client: Any, charge_point_id: str) -> None:
    """Until the charger's gateway listens for its commands: it subscribes before it stores
    connection.opened, and the WebSocket handshake completes before both."""
    opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Any) -> None:
        if not opened.done():
            opened.set_result(None)

    subscription = await client.jetstream().subscribe(
        f"ev.cp.{encode_token(charge_point_id)}.conn.opened",
        cb=on_message,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    async with asyncio.timeout(10):
        await opened
    await subscription.unsubscribe()


@contextlib.asynccontextmanager
async def held(client: Any, port: int, charge_point_id: str) -> AsyncIterator[Charger]:
    async with ocpp_charger(port, charge_point_id, charger_class=Charger) as charger:
        await until_held(client, charge_point_id)
        yield charger


@pytest.fixture
async def nats_client(nats_server: EmbeddedNats) -> Any:
    # Few reconnects: nats-py's default (60, 2 s apart) kept a teardown busy for the whole
    # test timeout once the server was gone before the client closed.
    client = await nats.connect(nats_server.url, max_reconnect_attempts=3, reconnect_time_wait=0.2)
    yield client
    async with asyncio.timeout(10):
        await client.close()


async def test_commands_get_the_chargers_actual_answers(
    gateway: Gateway, nats_server: EmbeddedNats, nats_client: Any
) -> None:
    async with held(nats_client, gateway.port, "CP-CMD"):
        accepted = await send_command(
            nats_client, "CP-CMD", "Reset", b'{"type": "Soft"}', command_id="cmd-reset-1"
        )
        rejected = await send_command(
            nats_client,
            "CP-CMD",
            "ChangeConfiguration",
            b'{"key": "HeartbeatInterval", "value": "60"}',
        )
        callerror = await send_command(
            nats_client, "CP-CMD", "UnlockConnector", b'{"connectorId": 1}'
        )
        timeout = await send_command(
            nats_client, "CP-CMD", "RemoteStartTransaction", b'{"idTag": "T1"}', timeout_s=0.5
        )
    assert (accepted.status, msgspec.json.decode(accepted.payload)) == (
        "answered",
        {"status": "Accepted"},
    )
    assert (rejected.status, msgspec.json.decode(rejected.payload)) == (
        "answered",
        {"status": "Rejected"},
    )
    assert (callerror.status, callerror.error_code) == ("callerror", "NotImplemented")
    assert timeout.status == "timeout"

    frames = [
        e for e in await charger_events(nats_server.url, "CP-CMD") if isinstance(e, OcppFrame)
    ]
    reset = [(f.direction, f.message_type) for f in frames if f.unique_id == "cmd-reset-1"]
    # The CALL was stored before it was sent, the answer when it came back.
    assert reset == [("out", "CALL"), ("in", "CALLRESULT")]
    unlock = [f for f in frames if f.action == "UnlockConnector"]
    assert [(f.direction, f.message_type, f.error_code) for f in unlock] == [
        ("out", "CALL", ""),
        ("in", "CALLERROR", "NotImplemented"),
    ]


async def test_concurrent_commands_to_one_charger_are_serialised_and_all_answered(
    gateway: Gateway, nats_client: Any
) -> None:
    async with held(nats_client, gateway.port, "CP-BUSY") as charger:
        replies = await asyncio.gather(
            *(
                send_command(
                    nats_client,
                    "CP-BUSY",
                    "Reset",
                    b'{"type": "%s"}' % (b"Hard" if i % 2 else b"Soft"),
                    command_id=f"cmd-{i}",
                )
                for i in range(10)
            )
        )
    assert [r.status for r in replies] == ["answered"] * 10
    assert sorted(r.command_id for r in replies) == sorted(f"cmd-{i}" for i in range(10))
    assert len(charger.resets) == 10


async def test_command_to_an_offline_charger(nats_client: Any, gateway: Gateway) -> None:
    reply = await send_command(nats_client, "CP-NOWHERE", "Reset", b'{"type": "Soft"}')
    assert reply.status == "offline"


@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("Reset", b'{"type": "Sideways"}', "PropertyConstraintViolation"),
        ("Reset", b"{}", "OccurenceConstraintViolation"),
        ("BootNotification", b'{"chargePointVendor": "V", "chargePointModel": "M"}', ""),
        ("MakeCoffee", b"{}", ""),
    ],
)
async def test_invalid_commands_never_reach_the_charger(
    gateway: Gateway,
    nats_server: EmbeddedNats,
    nats_client: Any,
    action: str,
    payload: bytes,
    code: str,
) -> None:
    async with held(nats_client, gateway.port, "CP-STRICT"):
        reply = await send_command(nats_client, "CP-STRICT", action, payload)
    assert (reply.status, reply.error_code) == ("invalid", code)
    assert reply.error_description
    outbound = [
        e
        for e in await charger_events(nats_server.url, "CP-STRICT")
        if isinstance(e, OcppFrame) and e.direction == "out"
    ]
    assert outbound == []


async def test_commands_reach_the_gateway_that_holds_each_charger(
    nats_server: EmbeddedNats, settings: Settings, nats_client: Any
) -> None:
    second = with_gateway(settings, gateway_id="gw-second")
    async with (
        running_gateway(settings, nats_server.url) as one,
        running_gateway(second, nats_server.url) as two,
    ):
        async with (
            held(nats_client, one.port, "CP-A"),
            held(nats_client, two.port, "CP-B"),
        ):
            replies = [
                await send_command(nats_client, cp, "Reset", b'{"type": "Soft"}')
                for cp in ("CP-A", "CP-B")
            ]
    assert [r.status for r in replies] == ["answered", "answered"]
    for cp, gateway_id in (("CP-A", "gw-test"), ("CP-B", "gw-second")):
        calls = [
            e
            for e in await charger_events(nats_server.url, cp)
            if isinstance(e, OcppFrame) and e.action == "Reset"
        ]
        assert {e.gateway_id for e in calls} == {gateway_id}


async def test_a_schema_breaking_answer_is_recorded_and_reported(
    gateway: Gateway, nats_server: EmbeddedNats, nats_client: Any
) -> None:
    from tests.integration.helpers import raw_socket

    async with raw_socket(gateway.port, "CP-SLOPPY") as ws:
        await until_held(nats_client, "CP-SLOPPY")
        pending = asyncio.create_task(
            send_command(
                nats_client, "CP-SLOPPY", "Reset", b'{"type": "Soft"}', command_id="sloppy-1"
            )
        )
        call = msgspec.json.decode(await ws.recv())
        assert call[:3] == [2, "sloppy-1", "Reset"]
        await ws.send('[3, "sloppy-1", {"status": "Maybe"}]')
        reply = await pending
    assert (reply.status, reply.error_code) == ("invalid_answer", "PropertyConstraintViolation")
    rejected = [
        e
        for e in await charger_events(nats_server.url, "CP-SLOPPY")
        if isinstance(e, FrameRejected)
    ]
    assert [(e.reason, e.unique_id, e.action) for e in rejected] == [
        ("schema_violation", "sloppy-1", "Reset")
    ]
