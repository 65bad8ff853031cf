"""What chargers really do, through the whole hub: one meaning in the stream, everywhere.

Each test drives raw OCPP-J frames through a real gateway into a real nats-server, with the
supervisor, the projections (chDB) and the fan-out running, and checks what a user sees:
the tables, the derived money events, the UI. These are the cases issue #11 found the
hub's parts telling different stories about.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import ClientConnection

from hub.bus import event_backbone
from hub.config import Settings
from hub.nats_server import EmbeddedNats
from projections.service import Projections
from schemas.events import (
    AnomalyDetected,
    Event,
    OcppFrame,
    TariffSet,
    WalletConfigured,
    WalletCredited,
    WalletSettled,
)
from tests.integration.helpers import raw_socket, stored_events, wait_for_event
from tests.projections.helpers import last_seq, rows

_ids = itertools.count(1)


def admin(event_type: type[Event], **fields: Any) -> Event:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return event_type(id=uuid.uuid4().hex, received_at=now, actor="test", **fields)  # type: ignore[call-arg]


async def call(
    ws: ClientConnection, action: str, payload: dict[str, Any], unique_id: str = ""
) -> Any:
    """Send a CALL and return the answer's payload (a CALLERROR fails the test)."""
    unique_id = unique_id or f"m{next(_ids)}"
    await ws.send(json.dumps([2, unique_id, action, payload]))
    answer = json.loads(await ws.recv())
    assert answer[:2] == [3, unique_id], answer
    return answer[2]


async def boot(ws: ClientConnection, unique_id: str = "") -> None:
    payload = {"chargePointVendor": "Acme", "chargePointModel": "X1"}
    assert (await call(ws, "BootNotification", payload, unique_id))["status"] == "Accepted"


async def start(ws: ClientConnection, at: str, meter: int, tag: str = "TAG") -> int:
    payload = {"connectorId": 1, "idTag": tag, "meterStart": meter, "timestamp": at}
    return int((await call(ws, "StartTransaction", payload))["transactionId"])


async def meter(ws: ClientConnection, tx: int, at: str, wh: int) -> None:
    sampled = [{"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    payload = {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [{"timestamp": at, "sampledValue": sampled}],
    }
    await call(ws, "MeterValues", payload)


async def stop(ws: ClientConnection, tx: int, at: str, wh: int, unique_id: str = "") -> None:
    payload = {"transactionId": tx, "timestamp": at, "meterStop": wh, "reason": "EVDisconnected"}
    await call(ws, "StopTransaction", payload, unique_id)


async def prepaid(settings: Settings, url: str, tag: str) -> None:
    """A tariff of 0.50 per kWh, and a wallet for ``tag`` that holds 10 of its 20."""
    async with event_backbone(settings, url, name="test") as (_, store):
        await store.store(
            [
                admin(
                    TariffSet,
                    tariff_id="std",
                    per_kwh="0.50",
                    per_minute="0",
                    session_fee="0",
                    effective_from=int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000),
                ),
                admin(WalletConfigured, id_tag=tag, hold_amount="10"),
                admin(WalletCredited, id_tag=tag, amount="20"),
            ]
        )


async def projected(projections: Projections, url: str, sql: str) -> list[dict[str, Any]]:
    await projections.runner.wait_for(await last_seq(url))
    return await rows(projections.backend, sql)


async def test_offline_ids_end_the_transaction_the_hub_issued_and_settle_its_hold(
    hub: tuple[int, int, Projections], money_settings: Settings, nats_server: EmbeddedNats
) -> None:
    """Answered transaction 7, the charger flushes its queued readings and Stop stamped -1
    (EVerest, open-ocpp): transaction 7 is completed and billed, and its prepaid hold is
    settled, not left held forever."""
    port, _, projections = hub
    await prepaid(money_settings, nats_server.url, "PREPAID")
    async with raw_socket(port, "CP-OFF") as ws:
        await boot(ws)
        tx = await start(ws, "2026-11-22T10:00:00Z", 1_000, tag="PREPAID")
        await meter(ws, -1, "2026-11-22T10:30:00Z", 3_000)
        await stop(ws, -1, "2026-11-22T11:00:00Z", 5_000)

    settled = await wait_for_event(
        nats_server.url, "ev.wallet.settled", lambda e: isinstance(e, WalletSettled)
    )
    assert isinstance(settled, WalletSettled) and settled.transaction_id == tx
    assert Decimal(settled.cost) == Decimal("2")  # 4 kWh at 0.50
    sessions = await projected(
        projections,
        nats_server.url,
        "SELECT transaction_id, state, energy_wh, flags FROM ocpp.sessions "
        "WHERE charge_point_id = 'CP-OFF'",
    )
    assert sessions == [
        {"transaction_id": tx, "state": "completed", "energy_wh": 4000.0,
         "flags": ["unknown_transaction_id"]}
    ]  # fmt: skip
    bills = await rows(
        projections.backend,
        "SELECT toString(total) AS total, toString(refund) AS refund FROM ocpp.billing "
        "WHERE charge_point_id = 'CP-OFF'",
    )
    assert [(Decimal(b["total"]), Decimal(b["refund"])) for b in bills] == [
        (Decimal("2"), Decimal("8"))
    ]
    assert len(await stored_events(nats_server.url, "ev.wallet.settled")) == 1


async def test_a_charger_that_restarted_without_a_stop_ends_its_old_transaction(
    hub: tuple[int, int, Projections], nats_server: EmbeddedNats
) -> None:
    """A restart without StopTransaction, then a new start on the same connector: the old
    transaction is over (terminated, superseded), one is ongoing, and the supervisor
    reports the duplicate start once."""
    port, _, projections = hub
    async with raw_socket(port, "CP-RST") as ws:
        await boot(ws)
        old = await start(ws, "2026-11-22T10:00:00Z", 0)
        await meter(ws, old, "2026-11-22T10:20:00Z", 2_000)
    async with raw_socket(port, "CP-RST") as ws:
        await boot(ws)
        new = await start(ws, "2026-11-22T12:00:00Z", 2_500)

    detected = await wait_for_event(
        nats_server.url, "ev.integrity.detected", lambda e: isinstance(e, AnomalyDetected)
    )
    assert isinstance(detected, AnomalyDetected)
    assert (detected.kind, detected.transaction_id) == ("duplicate_start", old)
    sessions = await projected(
        projections,
        nats_server.url,
        "SELECT transaction_id, state, stop_reason, energy_wh FROM ocpp.sessions "
        "WHERE charge_point_id = 'CP-RST' ORDER BY transaction_id",
    )
    assert sessions == [
        {"transaction_id": old, "state": "terminated", "stop_reason": f"superseded by {new}",
         "energy_wh": 2000.0},
        {"transaction_id": new, "state": "ongoing", "stop_reason": "", "energy_wh": 0.0},
    ]  # fmt: skip


async def test_a_stop_retried_under_a_new_message_id_is_one_end(
    hub: tuple[int, int, Projections], nats_server: EmbeddedNats
) -> None:
    """The charger saw no answer in time and retried its Stop under a new id: both frames
    are in the stream, and the transaction ended once, with its energy."""
    port, _, projections = hub
    async with raw_socket(port, "CP-RTY") as ws:
        await boot(ws)
        tx = await start(ws, "2026-11-22T10:00:00Z", 0)
        await stop(ws, tx, "2026-11-22T11:00:00Z", 6_000, unique_id="stop-1")
        await stop(ws, tx, "2026-11-22T11:00:00Z", 6_000, unique_id="stop-2")

    versions = await projected(
        projections,
        nats_server.url,
        "SELECT state, energy_wh FROM ocpp.session_versions WHERE charge_point_id = 'CP-RTY' "
        "ORDER BY seq",
    )
    assert versions == [
        {"state": "ongoing", "energy_wh": 0.0},
        {"state": "completed", "energy_wh": 6000.0},
    ]
    stops = [
        e
        for _, e in await stored_events(nats_server.url, "ev.cp.CP-RTY.in.StopTransaction")
        if isinstance(e, OcppFrame)
    ]
    assert [e.unique_id for e in stops] == ["stop-1", "stop-2"]


async def test_a_reboots_byte_identical_boot_is_recorded_and_seen(
    hub: tuple[int, int, Projections], nats_server: EmbeddedNats
) -> None:
    """MicroOcpp reuses message ids after a reboot, and BootNotification carries no time:
    the second boot's CALL is byte-identical to the first. It is in the stream, and the
    charger's last boot moves to it."""
    port, _, projections = hub
    async with raw_socket(port, "CP-BOOT") as ws:
        await boot(ws, unique_id="1")
    async with raw_socket(port, "CP-BOOT") as ws:
        await boot(ws, unique_id="1")

    boots = [
        e
        for _, e in await stored_events(nats_server.url, "ev.cp.CP-BOOT.*.BootNotification")
        if isinstance(e, OcppFrame)
    ]
    calls = [e for e in boots if e.direction == "in"]
    assert len(calls) == 2 and bytes(calls[0].payload) == bytes(calls[1].payload)
    answered_at = [e.received_at for e in boots if e.direction == "out"]
    versions = await projected(
        projections,
        nats_server.url,
        "SELECT DISTINCT toUnixTimestamp64Milli(last_boot) AS boot "
        "FROM ocpp.charge_point_versions "
        "WHERE charge_point_id = 'CP-BOOT' AND last_boot IS NOT NULL ORDER BY boot",
    )
    assert [v["boot"] for v in versions] == answered_at
