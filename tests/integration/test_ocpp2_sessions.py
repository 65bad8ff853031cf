"""OCPP 2.0.1 and 2.1 sessions mean what 1.6 sessions mean (issue #12 item 4), end to end:
gateway, stream, supervisor, projections (chDB) and fan-out as `hub up` runs them.

An ocpp-library v16 charger and a v201 (or v21) charger charge the same energy at the same
times under the same prepaid wallet terms; their ``sessions``, ``meter_values``,
``energy_hourly``, ``billing`` and ``wallet_ledger`` rows and their UI messages are equal,
column by column, but for the names (charger, ids, tags) and the hub's own clock."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from ocpp.charge_point import ChargePoint as AnyChargePoint
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from hub.bus import event_backbone
from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from projections.service import Projections
from schemas.events import (
    SessionLimits,
    TariffSet,
    WalletConfigured,
    WalletCredited,
    WalletSettled,
)
from tests.conftest import with_gateway
from tests.integration.fanout_helpers import messages_until, token, ui_socket
from tests.integration.helpers import limit_stop, ocpp_charger, wait_for_event
from tests.integration.test_money_session import admin
from tests.projections.helpers import last_seq, rows

DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
# 08:40 to 09:20: the energy straddles an hour.
T0 = DAY + timedelta(hours=8, minutes=40)
# (minutes after T0, register Wh): the start, three periodic readings, the end.
READINGS = [(0, 1000), (10, 4000), (20, 7000), (30, 10000), (40, 13000)]
# What tells one session from the other, and the hub's clock: not compared.
NAMES = {
    "charge_point_id",
    "session_id",
    "transaction_id",
    "transaction_ref",
    "id_tag",
    "seq",
    "version",
    "updated_at",
    "event_id",
    "received_at",
}
UI_NAMES = {"chargePointId", "transactionId", "idTag", "seq", "receivedAt"}
UI_TRANSACTION = {"transaction.started", "transaction.updated", "transaction.stopped", "meter"}


@pytest.fixture
async def gateway(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway that speaks every version (the hub fixture runs the rest beside it)."""
    async with running_gateway(
        with_gateway(settings, ocpp_versions="2.1,2.0.1,1.6"), nats_server.url
    ) as running:
        yield running


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def prepare(settings: Settings, url: str, *tags: str) -> None:
    """A tariff in force all day, and a prepaid wallet per tag."""
    events = [
        admin(
            TariffSet,
            tariff_id="std",
            per_kwh="0.30",
            per_minute="0.02",
            session_fee="0.50",
            effective_from=int(DAY.timestamp() * 1000),
        )
    ]
    for tag in tags:
        events += [
            admin(WalletConfigured, id_tag=tag, hold_amount="15"),
            admin(WalletCredited, id_tag=tag, amount="40"),
        ]
    async with event_backbone(settings, url, name="test") as (_, store):
        await store.store(events)


def readings_16(minutes: int, wh: int, context: str) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": at(minutes),
            "sampled_value": [
                {
                    "value": str(wh),
                    "measurand": "Energy.Active.Import.Register",
                    "unit": "Wh",
                    "context": context,
                },
                {
                    "value": "7.2",
                    "measurand": "Power.Active.Import",
                    "unit": "kW",
                    "context": context,
                },
            ],
        }
    ]


def readings_2x(minutes: int, wh: int, context: str) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": at(minutes),
            "sampled_value": [
                {
                    "value": wh,
                    "measurand": "Energy.Active.Import.Register",
                    "unit_of_measure": {"unit": "Wh"},
                    "context": context,
                },
                {
                    "value": 7.2,
                    "measurand": "Power.Active.Import",
                    "unit_of_measure": {"unit": "kW"},
                    "context": context,
                },
            ],
        }
    ]


def context_of(index: int) -> str:
    if index == 0:
        return "Transaction.Begin"
    return "Transaction.End" if index == len(READINGS) - 1 else "Sample.Periodic"


async def session_16(port: int, cp: str, tag: str) -> int:
    """StartTransaction, the start's reading, periodic MeterValues, a Stop with the end's."""
    async with ocpp_charger(port, cp) as charger:
        await charger.call(
            call16.BootNotification(charge_point_vendor="Acme", charge_point_model="X1"),
            suppress=False,
        )
        started = await charger.call(
            call16.StartTransaction(
                connector_id=1, id_tag=tag, meter_start=READINGS[0][1], timestamp=at(0)
            ),
            suppress=False,
        )
        tx: int = started.transaction_id
        for index, (minutes, wh) in enumerate(READINGS[:-1]):
            await charger.call(
                call16.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=readings_16(minutes, wh, context_of(index)),
                ),
                suppress=False,
            )
        minutes, wh = READINGS[-1]
        await charger.call(
            call16.StopTransaction(
                meter_stop=wh,
                timestamp=at(minutes),
                transaction_id=tx,
                reason="EVDisconnected",
                transaction_data=readings_16(minutes, wh, context_of(len(READINGS) - 1)),
            ),
            suppress=False,
        )
    return tx


VERSIONS: dict[str, tuple[str, type[AnyChargePoint], Any]] = {
    "2.0.1": ("ocpp2.0.1", ChargePoint201, call201),
    "2.1": ("ocpp2.1", ChargePoint21, call21),
}


@contextlib.asynccontextmanager
async def charger_2x(
    port: int, cp: str, version: str, charger_class: type[AnyChargePoint] | None = None
) -> AsyncIterator[tuple[Any, Any]]:
    """An ocpp-library 2.x charging station (it validates every answer), booted; yields it
    and its version's call module."""
    subprotocol, default_class, calls = VERSIONS[version]
    charger_class = charger_class or default_class
    async with connect(
        f"ws://127.0.0.1:{port}/ocpp/{cp}", subprotocols=[Subprotocol(subprotocol)]
    ) as websocket:
        assert websocket.subprotocol == subprotocol
        charger = charger_class(cp, websocket)
        runner = asyncio.create_task(charger.start())
        try:
            boot = await charger.call(
                calls.BootNotification(
                    charging_station={"model": "X1", "vendor_name": "Acme"}, reason="PowerUp"
                ),
                suppress=False,
            )
            assert boot.status == "Accepted"
            yield charger, calls
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner


def event_2x(
    calls: Any, index: int, tx: str, tag: str, *, seq_no: int | None = None, offline: bool = False
) -> Any:
    """The TransactionEvent that carries reading ``index``: Started, Updated, Ended."""
    minutes, wh = READINGS[index]
    kind = "Started" if index == 0 else "Ended" if index == len(READINGS) - 1 else "Updated"
    trigger = {"Started": "Authorized", "Updated": "MeterValuePeriodic", "Ended": "EVDeparted"}
    info: dict[str, Any] = {"transaction_id": tx}
    if kind == "Ended":
        info["stopped_reason"] = "EVDisconnected"
    extra: dict[str, Any] = {}
    if kind == "Started":
        extra = {"id_token": {"id_token": tag, "type": "ISO14443"}}
    return calls.TransactionEvent(
        event_type=kind,
        timestamp=at(minutes),
        trigger_reason=trigger[kind],
        seq_no=index if seq_no is None else seq_no,
        transaction_info=info,
        evse={"id": 1, "connector_id": 1},
        meter_value=readings_2x(minutes, wh, context_of(index)),
        offline=offline,
        **extra,
    )


async def session_2x(port: int, cp: str, tag: str, version: str) -> str:
    tx = str(uuid.uuid4())  # 36 characters, the most 2.x allows
    async with charger_2x(port, cp, version) as (charger, calls):
        for index in range(len(READINGS)):
            answer = await charger.call(event_2x(calls, index, tx, tag), suppress=False)
            if index == 0:
                assert answer.id_token_info["status"] == "Accepted"
    return tx


async def ui_transaction(
    ws: aiohttp.ClientWebSocketResponse, done: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """A charger's UI messages about its transaction, up to its stop, without names."""
    messages = await messages_until(ws, done)
    return [
        {name: value for name, value in message.items() if name not in UI_NAMES}
        for message in messages
        if message["type"] in UI_TRANSACTION or message["type"] == "cost"
    ]


async def table(projections: Projections, name: str, cp: str, order: str) -> list[dict[str, Any]]:
    found = await rows(
        projections.backend,
        f"SELECT * FROM ocpp.{name} WHERE charge_point_id = '{cp}' ORDER BY {order}",
    )
    return [{k: v for k, v in row.items() if k not in NAMES} for row in found]


TABLES = {
    "sessions": "start_time",
    "meter_values": "timestamp, measurand, context",
    "energy_hourly": "hour",
    "billing": "session_id",
    "wallet_ledger": "seq",
}


def stopped(message: dict[str, Any]) -> bool:
    return message["type"] == "transaction.stopped"


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
async def test_a_2x_session_gives_the_rows_ui_messages_and_bill_of_the_same_16_session(
    hub: tuple[int, int, Projections],
    money_settings: Settings,
    nats_server: EmbeddedNats,
    version: str,
) -> None:
    port, ui_port, projections = hub
    cp16, cp2x = f"CP-16-{version}", f"CP-2X-{version}"
    await prepare(money_settings, nats_server.url, "TAG-16", "TAG-2X")
    async with (
        ui_socket(ui_port, f"/ws/chargers/{cp16}", token_value=token()) as ws16,
        ui_socket(ui_port, f"/ws/chargers/{cp2x}", token_value=token()) as ws2x,
    ):
        tx16 = await session_16(port, cp16, "TAG-16")
        ui16 = await ui_transaction(ws16, stopped)
        tx2x = await session_2x(port, cp2x, "TAG-2X", version)
        ui2x = await ui_transaction(ws2x, stopped)

    for cp in (cp16, cp2x):
        await wait_for_event(
            nats_server.url,
            "ev.wallet.settled",
            lambda e, cp=cp: isinstance(e, WalletSettled) and e.charge_point_id == cp,
        )
    await projections.runner.wait_for(await last_seq(nats_server.url))
    for name, order in TABLES.items():
        old = await table(projections, name, cp16, order)
        new = await table(projections, name, cp2x, order)
        assert old, name
        assert new == old, name

    # The names, as each charger gave them: 1.6's integer id, 2.x's string id.
    ids = await rows(
        projections.backend,
        "SELECT charge_point_id, session_id, transaction_id, transaction_ref "
        f"FROM ocpp.sessions WHERE charge_point_id IN ('{cp16}', '{cp2x}') "
        "ORDER BY charge_point_id",
    )
    assert ids == [
        {
            "charge_point_id": cp16,
            "session_id": str(tx16),
            "transaction_id": tx16,
            "transaction_ref": str(tx16),
        },
        {"charge_point_id": cp2x, "session_id": tx2x, "transaction_id": 0, "transaction_ref": tx2x},
    ]
    (bill,) = await rows(
        projections.backend,
        "SELECT toString(total) AS total, toString(prepaid) AS prepaid, "
        f"toString(refund) AS refund FROM ocpp.billing WHERE charge_point_id = '{cp2x}'",
    )
    # 12 kWh x 0.30, 40 minutes x 0.02, the fee; held 15, the rest refunded.
    assert Decimal(bill["total"]) == Decimal("3.6") + Decimal("0.8") + Decimal("0.5")
    assert Decimal(bill["refund"]) == Decimal(bill["prepaid"]) - Decimal(bill["total"])

    assert ui2x == ui16
    assert ui2x[0]["type"] == "transaction.started"
    assert ui2x[-1]["energyWh"] == 12000


async def test_an_offline_2x_transaction_flushed_after_reconnect_is_one_correct_session(
    hub: tuple[int, int, Projections], money_settings: Settings, nats_server: EmbeddedNats
) -> None:
    """Started online; the connection drops; the Updated and Ended events queued offline
    come after the reconnect (seqNo 2 lost, seqNo 3 sent twice): one session, its energy
    and bill those of the readings, each reading once."""
    port, ui_port, projections = hub
    cp, tx = "CP-OFFLINE-2X", "offline-tx-1"
    await prepare(money_settings, nats_server.url)
    async with charger_2x(port, cp, "2.0.1") as (charger, calls):
        await charger.call(event_2x(calls, 0, tx, "TAG-OFF"), suppress=False)
        await charger.call(event_2x(calls, 1, tx, "TAG-OFF"), suppress=False)
    async with (
        ui_socket(ui_port, f"/ws/chargers/{cp}", token_value=token()) as ws,
        charger_2x(port, cp, "2.0.1") as (charger, calls),
    ):
        for index in (3, 3, 4):
            event = event_2x(calls, index, tx, "TAG-OFF", offline=True)
            await charger.call(event, suppress=False)
        last = (await messages_until(ws, stopped))[-1]
    await projections.runner.wait_for(await last_seq(nats_server.url))

    sessions = await rows(
        projections.backend,
        "SELECT session_id, transaction_ref, start_time, stop_time, meter_start, meter_stop, "
        f"energy_wh, state, stop_reason, flags FROM ocpp.sessions WHERE charge_point_id = '{cp}'",
    )
    assert sessions == [
        {
            "session_id": tx,
            "transaction_ref": tx,
            "start_time": T0.strftime("%Y-%m-%d %H:%M:%S.000"),
            "stop_time": (T0 + timedelta(minutes=40)).strftime("%Y-%m-%d %H:%M:%S.000"),
            "meter_start": 1000,
            "meter_stop": 13000,
            "energy_wh": 12000,
            "state": "completed",
            "stop_reason": "EVDisconnected",
            "flags": [],
        }
    ]
    registers = await rows(
        projections.backend,
        "SELECT toString(timestamp) AS at, value FROM ocpp.meter_values "
        f"WHERE charge_point_id = '{cp}' AND measurand = 'Energy.Active.Import.Register' "
        "ORDER BY timestamp",
    )
    assert [r["value"] for r in registers] == [1000, 4000, 10000, 13000]
    hours = await rows(
        projections.backend,
        f"SELECT energy_wh FROM ocpp.energy_hourly WHERE charge_point_id = '{cp}' ORDER BY hour",
    )
    assert sum(h["energy_wh"] for h in hours) == 12000 and len(hours) == 2
    assert (last["type"], last["transactionId"], last["energyWh"]) == (
        "transaction.stopped",
        tx,
        12000,
    )


class StoppableCharger(ChargePoint201):
    """Accepts RequestStopTransaction, and keeps the ids it was asked to stop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stops: list[str] = []

    @on("RequestStopTransaction")
    def on_request_stop(self, transaction_id: str, **_: Any) -> Any:
        self.stops.append(transaction_id)
        return result201.RequestStopTransaction(status="Accepted")


async def test_a_limit_stops_a_2x_transaction_with_request_stop_transaction(
    hub: tuple[int, int, Projections], money_settings: Settings, nats_server: EmbeddedNats
) -> None:
    port, _, _ = hub
    cp, tx = "CP-LIM-2X", "limited-tx"
    capped = admin(
        TariffSet,
        tariff_id="capped",
        charge_point_id=cp,
        per_kwh="0.30",
        limits=SessionLimits(max_energy_wh=5_000),
        effective_from=int(DAY.timestamp() * 1000),
    )
    async with event_backbone(money_settings, nats_server.url, name="test") as (_, store):
        await store.store([capped])
    async with charger_2x(port, cp, "2.0.1", StoppableCharger) as (charger, calls):
        for index in range(3):  # 1000, 4000, 7000 Wh: 6000 Wh past the 5000 Wh limit
            await charger.call(event_2x(calls, index, tx, "ANY"), suppress=False)
        reached, finished = await limit_stop(nats_server.url)
        assert charger.stops == [tx]
    assert (reached.transaction_id, reached.limit, reached.value) == (tx, "energy", "6000.0000")
    assert (finished.action, finished.status) == ("RequestStopTransaction", "answered")
