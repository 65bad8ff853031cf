"""Real ocpp-library chargers through the real gateway: every table gets its rows, and
integers OCPP 1.6 allows anywhere are stored as sent or recorded, never stopping the
projections for other chargers."""

from __future__ import annotations

import asyncio
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
from tests.projections.helpers import dump, last_seq, replay_in, rows
from tests.projections.scenario import BEYOND_INT64


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


def _sample(at: str, wh: int) -> list[dict[str, object]]:
    return [{"timestamp": at, "sampledValue": [{"value": str(wh), "unit": "Wh"}]}]


async def _session(cp_id: str, port: int, connector: int, meter: int) -> int:
    """A whole session; returns the hub's transaction id."""
    async with ocpp_charger(port, cp_id) as cp:
        await cp.call(
            call.StatusNotification(connector_id=connector, error_code="NoError", status="Charging")
        )
        start = await cp.call(
            call.StartTransaction(
                connector_id=connector,
                id_tag="TAG1",
                meter_start=meter,
                timestamp="2026-11-22T10:00:00Z",
            )
        )
        txid: int = start.transaction_id
        await cp.call(
            call.MeterValues(
                connector_id=connector,
                transaction_id=txid,
                meter_value=_sample("2026-11-22T10:30:00Z", meter + 1_000),
            )
        )
        await cp.call(
            call.StopTransaction(
                meter_stop=meter + 2_000, timestamp="2026-11-22T11:00:00Z", transaction_id=txid
            )
        )
    return txid


async def test_out_of_range_integers_from_chargers_never_stop_the_projections(
    gateway: Gateway, nats_server: EmbeddedNats, projections: Projections
) -> None:
    async with ocpp_charger(gateway.port, "CP-ODD") as odd:
        for connector in (-1, 1 << 32, BEYOND_INT64):
            # The gateway answers each normally: the schema bounds no integer.
            await odd.call(
                call.StatusNotification(
                    connector_id=connector, error_code="NoError", status="Available"
                )
            )
        await odd.call(
            call.MeterValues(
                connector_id=1 << 32,
                transaction_id=-1,
                meter_value=_sample("2026-11-22T09:00:00Z", 500),
            )
        )
    odd_tx = await _session("CP-ODD", gateway.port, -1, 1 << 40)
    ok_tx = await _session("CP-OK", gateway.port, 1, 10_000)
    await asyncio.wait_for(projections.runner.wait_for(await last_seq(nats_server.url)), 30)
    backend = projections.backend

    statuses = await rows(
        backend,
        "SELECT charge_point_id, connector_id FROM ocpp.connector_status ORDER BY seq",
    )
    assert [(s["charge_point_id"], s["connector_id"]) for s in statuses] == [
        ("CP-ODD", -1),
        ("CP-ODD", 1 << 32),
        ("CP-ODD", -1),
        ("CP-OK", 1),
    ]
    sessions = await rows(
        backend,
        "SELECT charge_point_id, connector_id, transaction_id, energy_wh, state "
        "FROM ocpp.sessions ORDER BY charge_point_id, connector_id",
    )
    assert sessions == [
        {
            "charge_point_id": "CP-ODD",
            "connector_id": -1,
            "transaction_id": odd_tx,
            "energy_wh": 2_000.0,
            "state": "completed",
        },
        {
            "charge_point_id": "CP-ODD",
            "connector_id": 1 << 32,
            "transaction_id": -1,
            "energy_wh": 0.0,
            "state": "ongoing",
        },
        {
            "charge_point_id": "CP-OK",
            "connector_id": 1,
            "transaction_id": ok_tx,
            "energy_wh": 2_000.0,
            "state": "completed",
        },
    ]
    meters = await rows(
        backend,
        "SELECT charge_point_id, connector_id, value FROM ocpp.meter_values ORDER BY seq",
    )
    assert [(m["charge_point_id"], m["connector_id"]) for m in meters] == [
        ("CP-ODD", 1 << 32),
        ("CP-ODD", -1),
        ("CP-OK", 1),
    ]
    hourly = await rows(
        backend,
        "SELECT charge_point_id, sum(energy_wh) AS wh FROM ocpp.energy_hourly GROUP BY 1 "
        "ORDER BY 1",
    )
    assert hourly == [
        {"charge_point_id": "CP-ODD", "wh": 2_000.0},
        {"charge_point_id": "CP-OK", "wh": 2_000.0},
    ]
    bills = await rows(backend, "SELECT charge_point_id, state FROM ocpp.billing ORDER BY 1, 2")
    assert [b["charge_point_id"] for b in bills] == ["CP-ODD", "CP-ODD", "CP-OK"]
    errors = await rows(backend, "SELECT charge_point_id, reason FROM ocpp.projection_errors")
    assert len(errors) == 1 and errors[0]["charge_point_id"] == "CP-ODD"
    assert errors[0]["reason"].startswith(f"connector.status: connector_id {BEYOND_INT64} is")

    incremental = await dump(backend)
    await asyncio.wait_for(replay_in(projections), 60)
    assert await dump(backend) == incremental
