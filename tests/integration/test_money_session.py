"""Money end to end: gateway, stream, supervisor, projections and fan-out together.

A tariff changes at noon; a prepaid tag charges in the morning and the afternoon. Each
session is billed under its own tariff, the live bill a UI saw equals the ``billing`` row
to the cent, the ledger balances, and a replay reproduces every bill and ledger entry.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hub.bus import event_backbone
from hub.config import Settings
from hub.nats_server import EmbeddedNats
from projections.service import Projections
from schemas.events import Event, TariffBand, TariffSet, WalletConfigured, WalletCredited
from tests.integration.fanout_helpers import messages_until, token, ui_socket
from tests.integration.helpers import stored_events
from tests.projections.helpers import dump, last_seq, replay_in, rows
from tools.simulator import SimulatedCharger

CP = "CP-MONEY"
TAG = "PREPAID-1"


def admin(event_type: type[Event], **fields: Any) -> Event:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return event_type(id=uuid.uuid4().hex, received_at=now, actor="test", **fields)  # type: ignore[call-arg]


async def session(charger: SimulatedCharger, start: datetime, kwh: float) -> int:
    """Charge ``kwh`` over 30 minutes from ``start`` (charger time), idle 10 more, unplug."""
    meter = int(charger.meter_wh[1])
    tx = await charger.start_transaction(1, TAG, meter, timestamp=start)
    assert tx is not None
    await charger.status(1, "Charging")
    for step in range(1, 4):
        wh = meter + kwh * 1000 * step / 3
        at = start + timedelta(minutes=10 * step)
        await charger.meter_values(1, tx, wh, 7_000, 10, 230, None, timestamp=at)
    charger.meter_wh[1] = meter + kwh * 1000
    await charger.stop_transaction(
        tx, int(charger.meter_wh[1]), "EVDisconnected", timestamp=start + timedelta(minutes=40)
    )
    await charger.status(1, "Available")
    return tx


async def test_a_tariff_change_at_noon_bills_each_session_under_its_own_tariff(
    hub: tuple[int, int, Projections], money_settings: Settings, nats_server: EmbeddedNats
) -> None:
    port, ui_port, projections = hub
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    noon_ms = int((day + timedelta(hours=12)).timestamp() * 1000)
    async with event_backbone(money_settings, nats_server.url, name="test") as (_, store):
        await store.store(
            [
                admin(
                    TariffSet,
                    tariff_id="morning",
                    per_kwh="0.30",
                    per_minute="0.02",
                    session_fee="0.50",
                    effective_from=int(day.timestamp() * 1000),
                ),
                admin(
                    TariffSet,
                    tariff_id="afternoon",
                    per_kwh="0.45",
                    per_minute="0",
                    idle_per_minute="0.20",
                    idle_grace_minutes=5,
                    bands=(TariffBand(start="14:15", end="14:25", per_kwh="0.10"),),
                    effective_from=noon_ms,
                ),
                admin(WalletConfigured, id_tag=TAG, hold_amount="15"),
                admin(WalletCredited, id_tag=TAG, amount="40"),
            ]
        )
    async with ui_socket(ui_port, f"/ws/chargers/{CP}", token_value=token()) as ws:
        charger = SimulatedCharger(CP, f"ws://127.0.0.1:{port}/ocpp")
        await charger.come_online()
        live_bills: dict[int, dict[str, Any]] = {}
        try:
            for start, kwh in ((day + timedelta(hours=8), 12.0), (day + timedelta(hours=14), 9.0)):
                tx = await session(charger, start, kwh)
                messages = await messages_until(
                    ws,
                    lambda m, tx=tx: (
                        m["type"] == "transaction.stopped" and m["transactionId"] == tx
                    ),
                )
                live_bills[tx] = messages[-1]["bill"]
                assert [m["bill"]["total"] for m in messages if m["type"] == "cost"]
        finally:
            await charger.go_offline()

    settled = await settlements(nats_server.url, 2)
    await projections.runner.wait_for(await last_seq(nats_server.url))
    bills = await rows(
        projections.backend,
        "SELECT transaction_id, tariff_id, toString(energy_cost) AS energy_cost, "
        "toString(time_cost) AS time_cost, toString(idle_cost) AS idle_cost, "
        "toString(session_fee) AS session_fee, toString(total) AS total, "
        "toString(prepaid) AS prepaid, toString(refund) AS refund, "
        "toString(platform_fee) AS platform_fee, toString(operator_share) AS operator_share "
        f"FROM ocpp.billing WHERE charge_point_id = '{CP}' ORDER BY transaction_id",
    )
    assert [b["tariff_id"] for b in bills] == ["morning", "afternoon"]
    morning, afternoon = bills
    # 12 kWh x 0.30, 30 charging minutes x 0.02, the fee; the 10 idle minutes are free.
    assert Decimal(morning["total"]) == Decimal("3.6") + Decimal("0.6") + Decimal("0.5")
    # 9 kWh at 18 kW: the 3 kWh of 14:15-14:25 in the band at 0.10, 6 at 0.45; 5 of the
    # 10 idle minutes at 0.20.
    assert Decimal(afternoon["energy_cost"]) == Decimal("3.0")
    assert Decimal(afternoon["idle_cost"]) == Decimal("1.0")
    for bill in bills:
        live = live_bills[bill["transaction_id"]]
        assert Decimal(live["total"]) == Decimal(bill["total"])  # to the cent, and beyond
        assert Decimal(live["idleCost"]) == Decimal(bill["idle_cost"])
        settlement = settled[bill["transaction_id"]]
        assert Decimal(bill["prepaid"]) == Decimal("15")
        assert Decimal(bill["refund"]) == Decimal(settlement.refund) == 15 - Decimal(bill["total"])
        assert Decimal(bill["platform_fee"]) + Decimal(bill["operator_share"]) == Decimal(
            bill["total"]
        )

    ledger = await rows(
        projections.backend,
        f"SELECT kind, toString(amount) AS amount, toString(balance) AS balance "
        f"FROM ocpp.wallet_ledger WHERE id_tag = '{TAG}' ORDER BY seq",
    )
    assert [entry["kind"] for entry in ledger] == ["topup", "hold", "refund", "hold", "refund"]
    running = Decimal(0)
    for entry in ledger:
        running += Decimal(entry["amount"])
        assert Decimal(entry["balance"]) == running
    assert running == 40 - sum(Decimal(b["total"]) for b in bills)

    # The clock keeps ticking into the stream: compare what was there before the replay.
    before = await dump(projections.backend)
    cutoff = max(row["seq"] for row in before["events"])
    await replay_in(projections)
    after = await dump(projections.backend)
    assert until(after, cutoff) == until(before, cutoff)
    assert until(after, cutoff)["wallet_ledger"] and until(after, cutoff)["billing_versions"]


def until(tables: dict[str, list[dict[str, Any]]], seq: int) -> dict[str, list[dict[str, Any]]]:
    return {name: [row for row in rows if row["seq"] <= seq] for name, rows in tables.items()}


async def settlements(url: str, count: int) -> dict[int, Any]:
    async with asyncio.timeout(20):
        while True:
            found = {
                e.transaction_id: e  # type: ignore[union-attr]
                for _, e in await stored_events(url, "ev.wallet.settled")
            }
            if len(found) >= count:
                return found
            await asyncio.sleep(0.2)
