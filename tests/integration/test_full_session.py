"""A real ocpp-library charger runs a whole session through the gateway; the stream then holds
exactly one event per frame, in order."""

from __future__ import annotations

import msgspec
from ocpp.v16 import call

from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from schemas.events import ChargerConnected, ChargerDisconnected, OcppFrame
from tests.integration.helpers import charger_events, ocpp_charger


async def test_full_session_is_answered_and_recorded_frame_by_frame(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    async with ocpp_charger(gateway.port, "CP-1") as cp:
        boot = await cp.call(
            call.BootNotification(charge_point_model="M1", charge_point_vendor="Acme")
        )
        assert boot.status == "Accepted" and boot.interval == 300
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing")
        )
        auth = await cp.call(call.Authorize(id_tag="TAG1"))
        assert auth.id_tag_info["status"] == "Accepted"
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="TAG1", meter_start=1000, timestamp="2026-11-22T10:00:00Z"
            )
        )
        assert 0 < start.transaction_id < 2**31
        for step in range(3):
            await cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=start.transaction_id,
                    meter_value=[
                        {
                            "timestamp": f"2026-11-22T10:0{step + 1}:00Z",
                            "sampledValue": [
                                {
                                    "value": str(1000 + 500 * (step + 1)),
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "Wh",
                                }
                            ],
                        }
                    ],
                )
            )
        stop = await cp.call(
            call.StopTransaction(
                meter_stop=2500,
                timestamp="2026-11-22T10:04:00Z",
                transaction_id=start.transaction_id,
                id_tag="TAG1",
            )
        )
        assert stop.id_tag_info["status"] == "Accepted"
        await cp.call(call.Heartbeat())
        transfer = await cp.call(
            call.DataTransfer(vendor_id="flash", message_id="PreChargeData", data='{"soc": 42}')
        )
        assert transfer.status == "Accepted"

    events = await charger_events(nats_server.url, "CP-1")
    assert isinstance(events[0], ChargerConnected)
    assert isinstance(events[-1], ChargerDisconnected)
    frames = [event for event in events if isinstance(event, OcppFrame)]
    actions = [
        "BootNotification",
        "StatusNotification",
        "Authorize",
        "StartTransaction",
        "MeterValues",
        "MeterValues",
        "MeterValues",
        "StopTransaction",
        "Heartbeat",
        "DataTransfer",
    ]
    assert [(f.direction, f.message_type, f.action) for f in frames] == [
        pair
        for action in actions
        for pair in (("in", "CALL", action), ("out", "CALLRESULT", action))
    ]
    assert len(events) == len(frames) + 2
    for request, response in zip(frames[::2], frames[1::2], strict=True):
        assert request.unique_id == response.unique_id
        assert request.charge_point_id == "CP-1" and request.gateway_id == "gw-test"
        assert request.ocpp_version == "1.6"
        assert request.received_at > 0
    start_result = msgspec.json.decode(frames[7].payload)
    assert start_result["transactionId"] == start.transaction_id
    transfer_call = msgspec.json.decode(frames[-2].payload)
    assert transfer_call == {
        "vendorId": "flash",
        "messageId": "PreChargeData",
        "data": '{"soc": 42}',
    }
