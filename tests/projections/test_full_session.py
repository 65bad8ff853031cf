"""A real ocpp-library charger through the real gateway: every table gets its rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from ocpp.v16 import call

from hub.bus import event_backbone
from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from projections.service import Projections, running_projections
from schemas.events import TariffSet
from tests.integration.helpers import ocpp_charger
from tests.projections.helpers import last_seq, rows


@pytest.fixture
async def projections(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway
) -> AsyncIterator[Projections]:
    async with running_projections(settings, nats_server.url) as running:
        yield running


async def test_a_full_session_lands_in_every_table(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings, projections: Projections
) -> None:
    async with event_backbone(settings, nats_server.url, name="test") as (_, store):
        await store.store(
            [
                TariffSet(
                    id="tariff-1",
                    received_at=1_000,
                    actor="test",
                    tariff_id="std",
                    currency="EUR",
                    per_kwh="0.30",
                    per_minute="0.01",
                    session_fee="1.00",
                )
            ]
        )
    async with ocpp_charger(gateway.port, "CP-1") as cp:
        await cp.call(
            call.BootNotification(
                charge_point_model="M1",
                charge_point_vendor="Acme",
                firmware_version="1.2.3",
                charge_point_serial_number="SN-9",
            )
        )
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing")
        )
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="TAG1", meter_start=1000, timestamp="2026-11-22T10:30:00Z"
            )
        )
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=start.transaction_id,
                meter_value=[
                    {
                        "timestamp": "2026-11-22T11:00:00Z",
                        "sampledValue": [
                            {"value": "1.6", "unit": "kWh"},
                            {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                            {
                                "value": "16",
                                "measurand": "Current.Import",
                                "phase": "L1",
                                "unit": "A",
                            },
                        ],
                    }
                ],
            )
        )
        await cp.call(
            call.StopTransaction(
                meter_stop=2500,
                timestamp="2026-11-22T11:30:00Z",
                transaction_id=start.transaction_id,
                reason="EVDisconnected",
            )
        )
    await projections.runner.wait_for(await last_seq(nats_server.url))
    backend = projections.backend

    charger = await rows(backend, "SELECT * FROM ocpp.charge_points")
    assert len(charger) == 1
    assert charger[0]["vendor"] == "Acme" and charger[0]["model"] == "M1"
    assert charger[0]["serial_number"] == "SN-9" and charger[0]["firmware_version"] == "1.2.3"
    assert charger[0]["connected"] is False and charger[0]["last_boot"] is not None
    assert charger[0]["last_seen"] is not None

    events = await rows(
        backend, "SELECT type, direction, message_type, action FROM ocpp.events ORDER BY seq"
    )
    assert events[0]["type"] == "admin.tariff.set"
    frames = [e for e in events if e["type"] == "ocpp.frame"]
    assert len(frames) == 10
    assert {"direction": "out", "message_type": "CALLRESULT", "action": "StartTransaction"} in [
        {k: e[k] for k in ("direction", "message_type", "action")} for e in frames
    ]

    status = await rows(
        backend, "SELECT connector_id, status, error_code FROM ocpp.connector_status"
    )
    assert status == [{"connector_id": 1, "status": "Preparing", "error_code": "NoError"}]

    meters = await rows(
        backend,
        "SELECT measurand, phase, unit, value, transaction_id FROM ocpp.meter_values "
        "ORDER BY value",
    )
    assert meters == [
        {
            "measurand": "Current.Import",
            "phase": "L1",
            "unit": "A",
            "value": 16.0,
            "transaction_id": start.transaction_id,
        },
        {
            "measurand": "Energy.Active.Import.Register",
            "phase": "",
            "unit": "Wh",
            "value": 1600.0,
            "transaction_id": start.transaction_id,
        },
        {
            "measurand": "Power.Active.Import",
            "phase": "",
            "unit": "W",
            "value": 7400.0,
            "transaction_id": start.transaction_id,
        },
    ]

    sessions = await rows(backend, "SELECT * FROM ocpp.sessions")
    assert len(sessions) == 1
    session = sessions[0]
    assert session["transaction_id"] == start.transaction_id
    assert session["state"] == "completed" and session["stop_reason"] == "EVDisconnected"
    assert session["energy_wh"] == 1500.0 and session["duration_s"] == 3600.0
    assert session["id_tag"] == "TAG1" and session["connector_id"] == 1

    hourly = await rows(
        backend, "SELECT toString(hour) AS hour, energy_wh FROM ocpp.energy_hourly ORDER BY hour"
    )
    # 10:30 -> 11:00 read 600 Wh, 11:00 -> 11:30 900 Wh.
    assert hourly == [
        {"hour": "2026-11-22 10:00:00", "energy_wh": 600.0},
        {"hour": "2026-11-22 11:00:00", "energy_wh": 900.0},
    ]

    bills = await rows(backend, "SELECT * FROM ocpp.billing")
    assert len(bills) == 1
    bill = bills[0]
    assert bill["tariff_id"] == "std" and bill["currency"] == "EUR"
    # 1.5 kWh at 0.30, 60 minutes at 0.01, a 1.00 fee.
    assert Decimal(str(bill["energy_cost"])) == Decimal("0.45")
    assert Decimal(str(bill["time_cost"])) == Decimal("0.6")
    assert Decimal(str(bill["total"])) == Decimal("2.05")

    errors = await rows(backend, "SELECT * FROM ocpp.projection_errors")
    assert errors == []
