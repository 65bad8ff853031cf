"""Transactions as UIs see them, when chargers do what real ones do: queue readings and Stops
offline under an id the hub never issued, restart and lose a Stop, retry a Stop under a new
message id. A real gateway, nats-server and fan-out; ocpp-library chargers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from ocpp.v16 import ChargePoint, call

from hub.config import Settings
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from tests.integration.fanout_helpers import messages_until, next_message, token, ui_socket
from tests.integration.fanout_helpers import with_fanout as fanout_settings
from tests.integration.helpers import ocpp_charger

CP = "CP-TX"


@pytest.fixture
async def fanout(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[int]:
    async with running_fanout(fanout_settings(settings), nats_server.url) as port:
        yield port


async def start(cp: ChargePoint, at: str, meter_start: int = 1000) -> int:
    answer = await cp.call(
        call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=meter_start, timestamp=at)
    )
    return int(answer.transaction_id)


async def reading(cp: ChargePoint, transaction_id: int, wh: int, at: str) -> None:
    await cp.call(
        call.MeterValues(
            connector_id=1,
            transaction_id=transaction_id,
            meter_value=[
                {
                    "timestamp": at,
                    "sampledValue": [
                        {"value": str(wh), "measurand": "Energy.Active.Import.Register"},
                        {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
                    ],
                }
            ],
        )
    )


async def stop(cp: ChargePoint, transaction_id: int, meter_stop: int, at: str) -> None:
    await cp.call(
        call.StopTransaction(
            transaction_id=transaction_id,
            meter_stop=meter_stop,
            timestamp=at,
            reason="EVDisconnected",
        )
    )


async def rest_snapshot(port: int) -> Any:
    async with aiohttp.ClientSession() as http:
        response = await http.get(
            f"http://127.0.0.1:{port}/api/v1/chargers/{CP}",
            headers={"Authorization": f"Bearer {token()}"},
        )
        assert response.status == 200
        return await response.json()


async def until_status(ws: aiohttp.ClientWebSocketResponse, status: str) -> list[dict[str, Any]]:
    """Every message up to the charger's StatusNotification ``status``: sent last, it marks
    the end of what the frames before it produced."""
    return await messages_until(ws, lambda m: m["type"] == "status" and m["status"] == status)


def of(kind: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == kind]


async def test_readings_and_a_stop_an_offline_charger_stamped_minus_one_end_its_transaction(
    gateway: Gateway, fanout: int, nats_server: EmbeddedNats, settings: Settings
) -> None:
    """EVerest and open-ocpp queue MeterValues and StopTransaction while offline and send them
    with transactionId -1 once back, though the hub had answered the start with an id."""
    async with ui_socket(fanout, f"/ws/chargers/{CP}", token_value=token()) as ws:
        await next_message(ws)  # snapshot
        async with ocpp_charger(gateway.port, CP) as cp:
            transaction_id = await start(cp, "2026-11-22T10:00:00Z")
            await reading(cp, -1, 2500, "2026-11-22T10:10:00Z")
            await stop(cp, -1, 4000, "2026-11-22T10:30:00Z")
            await cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
            )
            received = await until_status(ws, "Available")
        [updated] = of("transaction.updated", received)
        assert updated["transactionId"] == transaction_id and updated["energyWh"] == 1500
        [stopped] = of("transaction.stopped", received)
        assert stopped["transactionId"] == transaction_id
        assert stopped["energyWh"] == 3000 and stopped["durationS"] == 1800
        assert stopped["reason"] == "EVDisconnected" and stopped["endedBy"] == "stopped"
        assert (await rest_snapshot(fanout))["transactions"] == []
    # A fan-out started afterwards rebuilds the same from the stream.
    async with running_fanout(fanout_settings(settings), nats_server.url) as port:
        assert (await rest_snapshot(port))["transactions"] == []


async def test_a_start_on_a_busy_connector_ends_the_transaction_the_charger_never_stopped(
    gateway: Gateway, fanout: int, nats_server: EmbeddedNats, settings: Settings
) -> None:
    """A charger restarted without sending StopTransaction, then started a new session on the
    same connector: the old session is over, its power and energy frozen no more."""
    async with ui_socket(fanout, f"/ws/chargers/{CP}", token_value=token()) as ws:
        await next_message(ws)  # snapshot
        async with ocpp_charger(gateway.port, CP) as cp:
            old = await start(cp, "2026-11-22T10:00:00Z")
            await reading(cp, old, 2500, "2026-11-22T10:10:00Z")
        async with ocpp_charger(gateway.port, CP) as cp:  # after the restart
            await cp.call(call.BootNotification(charge_point_model="M1", charge_point_vendor="A"))
            new = await start(cp, "2026-11-22T11:00:00Z", meter_start=2600)
            await cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status="Charging")
            )
            received = await until_status(ws, "Charging")
            [stopped] = of("transaction.stopped", received)
            assert stopped["transactionId"] == old and stopped["energyWh"] == 1500
            assert stopped["reason"] == "superseded" and stopped["endedBy"] == "superseded"
            assert [m["transactionId"] for m in of("transaction.started", received)] == [old, new]
            [active] = (await rest_snapshot(fanout))["transactions"]
            assert active["transactionId"] == new and active["powerW"] is None
            async with running_fanout(fanout_settings(settings), nats_server.url) as port:
                [rebuilt] = (await rest_snapshot(port))["transactions"]
            assert rebuilt == active


async def test_a_stop_retried_under_a_new_message_id_is_reported_once_with_its_energy(
    gateway: Gateway, fanout: int
) -> None:
    """A charger that saw no answer sends its StopTransaction again, under a new unique id."""
    async with ui_socket(fanout, f"/ws/chargers/{CP}", token_value=token()) as ws:
        await next_message(ws)  # snapshot
        async with ocpp_charger(gateway.port, CP) as cp:
            transaction_id = await start(cp, "2026-11-22T10:00:00Z")
            await reading(cp, transaction_id, 2500, "2026-11-22T10:10:00Z")
            await stop(cp, transaction_id, 4000, "2026-11-22T10:30:00Z")
            await stop(cp, transaction_id, 4000, "2026-11-22T10:30:00Z")  # the retry
            await cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
            )
            received = await until_status(ws, "Available")
    [stopped] = of("transaction.stopped", received)
    assert stopped["transactionId"] == transaction_id and stopped["energyWh"] == 3000
    assert (await rest_snapshot(fanout))["transactions"] == []
