"""Money and session integrity through the real gateway, JetStream and supervisor, with
ocpp-library chargers."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import nats
import pytest
from ocpp.v16 import call

from hub.bus import EventStore, event_backbone
from hub.config import Settings, SupervisorSettings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.supervisor.service import SupervisorService, running_supervisor
from schemas.events import (
    AnomalyDetected,
    AnomalyResolved,
    Event,
    LimitReached,
    SessionLimits,
    TariffSet,
    WalletConfigured,
    WalletCredited,
    WalletSettled,
)
from tests.integration.api_helpers import AnsweringCharger
from tests.integration.helpers import limit_stop, ocpp_charger, stored_events, wait_for_event
from tools.simulator import SimulatedCharger


def fast(settings: Settings, **changes: object) -> Settings:
    supervisor = SupervisorSettings(tick_s=0.2, **changes)  # type: ignore[arg-type]
    return msgspec.structs.replace(settings, supervisor=supervisor)


@contextlib.asynccontextmanager
async def supervised(
    settings: Settings, url: str
) -> AsyncIterator[tuple[SupervisorService, EventStore]]:
    async with (
        event_backbone(settings, url, name="test-supervisor") as (connection, store),
        running_supervisor(connection, store, settings) as service,
    ):
        yield service, store


async def caught_up(service: SupervisorService, url: str, within: float = 60.0) -> None:
    """Until the supervisor folded every event stored so far and stored what it derived."""
    async with asyncio.timeout(within):
        while True:
            client = await nats.connect(url)
            info = await client.jetstream().stream_info("OCPP_EVENTS")
            await client.close()
            if service.core.last_seq >= info.state.last_seq and not service.core.unconfirmed:
                return
            await asyncio.sleep(0.2)


def admin(event_type: type[Event], **fields: object) -> Event:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return event_type(id=uuid.uuid4().hex, received_at=now, actor="test", **fields)  # type: ignore[call-arg]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def charge(
    cp: AnsweringCharger, connector: int, id_tag: str, wh: list[int], start: datetime
) -> int:
    answer = await cp.call(
        call.StartTransaction(
            connector_id=connector, id_tag=id_tag, meter_start=0, timestamp=iso(start)
        )
    )
    tx: int = answer.transaction_id
    for minute, value in enumerate(wh, 1):
        await cp.call(
            call.MeterValues(
                connector_id=connector,
                transaction_id=tx,
                meter_value=[
                    {
                        "timestamp": iso(start + timedelta(minutes=minute)),
                        "sampledValue": [{"value": str(value)}],
                    }
                ],
            )
        )
    return tx


@pytest.fixture
def supervised_settings(settings: Settings) -> Settings:
    return fast(settings)


async def test_prepaid_session_refunds_the_unused_amount_with_the_configured_split(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway
) -> None:
    settings = fast(settings, platform_fee_rate="0.15")
    async with supervised(settings, nats_server.url) as (_, store):
        await store.store(
            [
                admin(TariffSet, tariff_id="kwh", per_kwh="0.50"),
                admin(WalletConfigured, id_tag="PREPAID", hold_amount="20"),
                admin(WalletCredited, id_tag="PREPAID", amount="30"),
            ]
        )
        async with ocpp_charger(gateway.port, "CP-PRE", charger_class=AnsweringCharger) as cp:
            start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
            tx = await charge(cp, 1, "PREPAID", [4_000, 8_000], start)
            await cp.call(
                call.StopTransaction(
                    transaction_id=tx, meter_stop=9_000, timestamp=iso(start + timedelta(minutes=3))
                )
            )
        settled = await wait_for_event(
            nats_server.url, "ev.wallet.settled", lambda e: isinstance(e, WalletSettled)
        )
    assert isinstance(settled, WalletSettled)
    assert (settled.held, settled.cost, settled.refund) == ("20.0000", "4.5000", "15.5000")
    assert (settled.platform_fee, settled.operator_share) == ("0.6750", "3.8250")


async def test_a_wallet_with_too_little_balance_is_refused(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway
) -> None:
    async with event_backbone(settings, nats_server.url, name="test") as (_, store):
        await store.store(
            [
                admin(WalletConfigured, id_tag="POOR", min_balance="5"),
                admin(WalletCredited, id_tag="POOR", amount="4.99"),
                admin(WalletConfigured, id_tag="RICH", min_balance="5"),
                admin(WalletCredited, id_tag="RICH", amount="25"),
            ]
        )
    async with ocpp_charger(gateway.port, "CP-W") as cp:
        for _ in range(50):  # the gateway's registry follows the stream: wait for it
            if gateway.registry.wallets.prepaid("RICH") is not None:
                break
            await asyncio.sleep(0.05)
        poor = await cp.call(call.Authorize(id_tag="POOR"))
        rich = await cp.call(call.Authorize(id_tag="RICH"))
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="POOR", meter_start=0, timestamp=iso(datetime.now(UTC))
            )
        )
    assert poor.id_tag_info["status"] == "Blocked"
    assert rich.id_tag_info["status"] == "Accepted"
    assert start.id_tag_info["status"] == "Blocked"


async def test_an_energy_limit_sends_remote_stop(
    nats_server: EmbeddedNats, supervised_settings: Settings, gateway: Gateway
) -> None:
    async with supervised(supervised_settings, nats_server.url) as (_, store):
        await store.store(
            [admin(TariffSet, tariff_id="capped", limits=SessionLimits(max_energy_wh=5_000))]
        )
        async with ocpp_charger(gateway.port, "CP-LIM", charger_class=AnsweringCharger) as cp:
            tx = await charge(cp, 1, "ANY", [3_000, 6_000], datetime.now(UTC))
            reached, finished = await limit_stop(nats_server.url)
        assert ("RemoteStopTransaction", {"transaction_id": tx}) in cp.received
    assert (reached.limit, reached.source, reached.value) == ("energy", "tariff", "6000.0000")
    assert finished.status == "answered"


async def test_a_ghost_session_is_detected_and_resolved(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway
) -> None:
    settings = fast(settings, ghost_after_s=1.0, actions="")
    async with supervised(settings, nats_server.url):
        async with ocpp_charger(gateway.port, "CP-GHOST") as cp:
            tx = await charge(cp, 1, "ANY", [1_000], datetime.now(UTC))
            await cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
            )
            detected = await wait_for_event(
                nats_server.url, "ev.integrity.detected", lambda e: True, within=10
            )
            await cp.call(
                call.StopTransaction(
                    transaction_id=tx, meter_stop=1_000, timestamp=iso(datetime.now(UTC))
                )
            )
            resolved = await wait_for_event(
                nats_server.url, "ev.integrity.resolved", lambda e: True, within=10
            )
    assert isinstance(detected, AnomalyDetected) and detected.kind == "ghost"
    assert detected.transaction_id == tx
    assert isinstance(resolved, AnomalyResolved) and resolved.anomaly_id == detected.anomaly_id


async def day_of_sessions(
    charger: SimulatedCharger, day: datetime, sessions: int, id_tag: str
) -> None:
    """``sessions`` clean sessions, 70 charger-minutes apart, with plausible readings."""
    register = 0.0
    for number in range(sessions):
        start = day + timedelta(minutes=70 * number)
        await charger.status(1, "Preparing")
        tx = await charger.start_transaction(1, id_tag, int(register), timestamp=start)
        assert tx is not None
        await charger.status(1, "Charging")
        for minute in (2, 4):
            register += 11_000 / 30
            await charger.meter_values(
                1, tx, register, 11_000, 16, 230, None, timestamp=start + timedelta(minutes=minute)
            )
        await charger.stop_transaction(
            tx, int(register), "EVDisconnected", timestamp=start + timedelta(minutes=5, seconds=5)
        )
        await charger.status(1, "Available")


@pytest.mark.timeout(300)  # 7,000 frames; minutes on a loaded machine
async def test_a_clean_day_of_1000_prepaid_sessions_raises_no_alert_and_settles_each(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway
) -> None:
    # Thresholds far tighter than the defaults, so a false positive would show.
    settings = fast(settings, orphaned_after_s=1.0, ghost_after_s=1.0, stale_after_s=3.0)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    async with supervised(settings, nats_server.url) as (service, store):
        await store.store(
            [
                admin(
                    TariffSet,
                    tariff_id="day",
                    per_kwh="0.30",
                    per_minute="0.01",
                    session_fee="0.50",
                    effective_from=int(day.timestamp() * 1000) - 1,
                ),
                admin(WalletConfigured, id_tag="FLEET", hold_amount="10"),
                admin(WalletCredited, id_tag="FLEET", amount="100000"),
            ]
        )
        chargers = [
            SimulatedCharger(f"DAY-{n:02d}", f"ws://127.0.0.1:{gateway.port}/ocpp")
            for n in range(50)
        ]
        for charger in chargers:
            await charger.come_online()
        await asyncio.gather(*(day_of_sessions(c, day, 20, "FLEET") for c in chargers))
        for charger in chargers:
            await charger.go_offline()
        # Every detector threshold passes on a ticking clock while the fold catches up.
        await asyncio.sleep(2.0)
        await caught_up(service, nats_server.url)
        stored = [event for _, event in await stored_events(nats_server.url, "ev.>")]
    detected = [e for e in stored if isinstance(e, AnomalyDetected)]
    # Disconnected chargers with no open transaction are not anomalies.
    assert detected == []
    settled = [e for e in stored if isinstance(e, WalletSettled)]
    assert len(settled) == 1000
    # About 733.33 Wh x 0.30 + 4 charging minutes x 0.01 + 0.50 each, within the 10.00 held.
    for settlement in settled:
        cost = Decimal(settlement.cost)
        assert Decimal("0.75") <= cost <= Decimal("0.77")
        assert Decimal(settlement.held) - Decimal(settlement.refund) == cost
        assert Decimal(settlement.platform_fee) + Decimal(settlement.operator_share) == cost
    assert not [e for e in stored if isinstance(e, LimitReached)]


async def test_a_restarted_supervisor_goes_on_from_its_snapshot_without_doubling(
    nats_server: EmbeddedNats, supervised_settings: Settings, gateway: Gateway
) -> None:
    async with event_backbone(supervised_settings, nats_server.url, name="test") as (_, store):
        await store.store(
            [
                admin(TariffSet, tariff_id="kwh", per_kwh="0.50"),
                admin(WalletConfigured, id_tag="SNAP", hold_amount="10"),
                admin(WalletCredited, id_tag="SNAP", amount="30"),
            ]
        )
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    async with ocpp_charger(gateway.port, "CP-SNAP", charger_class=AnsweringCharger) as cp:
        async with supervised(supervised_settings, nats_server.url) as (first, _):
            tx = await charge(cp, 1, "SNAP", [2_000], start)
            await caught_up(first, nats_server.url)
        snapshot_path = first.snapshot_path
        assert snapshot_path.exists()
        async with supervised(supervised_settings, nats_server.url) as (second, _):
            assert second.core.last_seq >= first.core.last_seq  # resumed, not refolded
            assert second.core.transactions  # the open transaction came back with it
            await cp.call(
                call.StopTransaction(
                    transaction_id=tx, meter_stop=4_000, timestamp=iso(start + timedelta(minutes=2))
                )
            )
            await wait_for_event(nats_server.url, "ev.wallet.settled", lambda e: True)
            await caught_up(second, nats_server.url)
    stored = [event for _, event in await stored_events(nats_server.url, "ev.wallet.>")]
    assert [type(e).__name__ for e in stored] == ["WalletHeld", "WalletSettled"]
    settled = stored[1]
    assert isinstance(settled, WalletSettled)
    assert (settled.cost, settled.refund) == ("2.0000", "8.0000")
