"""A prepaid bill that moves after its settlement: the wallet follows the bill.

The policy closes a prepaid transaction that sent no readings (stale) and settles it; then
the charger's readings and its Stop arrive. Through a real gateway, nats-server, supervisor
and projections (chDB), the wallet ends up paying what the billing table says, to the cent.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec
import pytest

from hub.config import Settings
from hub.nats_server import EmbeddedNats
from projections.service import Projections
from schemas.events import Event, WalletAdjusted, WalletSettled
from tests.integration.helpers import raw_socket, stored_events, wait_for_event
from tests.integration.test_domain_scenarios import boot, call, prepaid, projected, start, stop

TAG = "PREPAID"


@pytest.fixture
def money_settings(money_settings: Settings) -> Settings:
    """The hub closes a transaction without readings for a second as stale."""
    supervisor = msgspec.structs.replace(
        money_settings.supervisor, stale_after_s=1.0, actions="stale=close_session"
    )
    return msgspec.structs.replace(money_settings, supervisor=supervisor)


def adjusted_to(cost: str) -> Callable[[Event], bool]:
    def matches(event: Event) -> bool:
        return isinstance(event, WalletAdjusted) and event.cost == cost

    return matches


async def test_late_readings_after_a_stale_close_are_paid_from_the_wallet(
    hub: tuple[int, int, Projections], money_settings: Settings, nats_server: EmbeddedNats
) -> None:
    port, _, projections = hub
    await prepaid(money_settings, nats_server.url, TAG)  # 0.50 per kWh; holds 10 of 20
    async with raw_socket(port, "CP-LATE") as ws:
        await boot(ws)
        tx = await start(ws, "2026-11-22T10:00:00Z", 1_000, tag=TAG)
        # Nothing metered for a second: closed as stale, settled at nothing.
        settled = await wait_for_event(
            nats_server.url, "ev.wallet.settled", lambda e: isinstance(e, WalletSettled)
        )
        assert isinstance(settled, WalletSettled) and settled.transaction_id == tx
        assert (Decimal(settled.cost), Decimal(settled.refund)) == (0, 10)
        # It was charging all along: its queued readings come late, in one frame (so no
        # tick falls between them), then its Stop.
        readings = [
            {"timestamp": at, "sampledValue": [{"value": str(wh), "unit": "Wh"}]}
            for at, wh in (("2026-11-22T10:20:00Z", 2_000), ("2026-11-22T10:40:00Z", 3_000))
        ]
        payload = {"connectorId": 1, "transactionId": tx, "meterValue": readings}
        await call(ws, "MeterValues", payload)
        # The next tick makes the wallet pay the 2 kWh.
        await wait_for_event(nats_server.url, "ev.wallet.adjusted", adjusted_to("1.0000"))
        await stop(ws, tx, "2026-11-22T11:00:00Z", 5_000)
        await wait_for_event(nats_server.url, "ev.wallet.adjusted", adjusted_to("2.0000"))

    bills = await projected(
        projections,
        nats_server.url,
        "SELECT state, toString(total) AS total, toString(refund) AS refund FROM ocpp.billing "
        "WHERE charge_point_id = 'CP-LATE'",
    )
    assert [(b["state"], Decimal(b["total"]), Decimal(b["refund"])) for b in bills] == [
        ("completed", Decimal(2), Decimal(8))
    ]
    ledger = await projected(
        projections,
        nats_server.url,
        "SELECT kind, toString(amount) AS amount, toString(balance) AS balance "
        f"FROM ocpp.wallet_ledger WHERE id_tag = '{TAG}' ORDER BY seq",
    )
    assert [(line["kind"], Decimal(line["amount"])) for line in ledger] == [
        ("topup", 20),
        ("hold", -10),
        ("refund", 10),
        ("settlement_adjustment", -1),
        ("settlement_adjustment", -1),
    ]
    # What the wallet has left is what it had, less the bill.
    assert Decimal(ledger[-1]["balance"]) == 20 - Decimal(bills[0]["total"])
    assert len(await stored_events(nats_server.url, "ev.wallet.settled")) == 1
    assert len(await stored_events(nats_server.url, "ev.wallet.adjusted")) == 2
