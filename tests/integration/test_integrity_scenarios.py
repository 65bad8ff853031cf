"""Each integrity detector fires on its scenario, through the real gateway, stream,
supervisor and fan-out, and reaches a UI as an ``alert``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from hub.config import Settings, SupervisorSettings
from hub.fanout.app import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import event_backbone
from hub.simulator import SimulatedCharger
from hub.simulator.anomalies import SCENARIOS
from hub.supervisor.service import running_supervisor
from tests.integration.fanout_helpers import messages_until, token, ui_socket, with_fanout


@pytest.fixture
def quick(settings: Settings) -> Settings:
    supervisor = SupervisorSettings(
        tick_s=0.2,
        orphaned_after_s=1.0,
        ghost_after_s=1.0,
        stale_after_s=1.0,
        actions="",
    )
    return with_fanout(msgspec.structs.replace(settings, supervisor=supervisor))


@pytest.fixture
async def hub(
    nats_server: EmbeddedNats, quick: Settings, gateway: Gateway
) -> AsyncIterator[tuple[int, int]]:
    async with (
        event_backbone(quick, nats_server.url, name="test-supervisor") as (connection, store),
        running_supervisor(connection, store, quick),
        running_fanout(quick, nats_server.url) as ui_port,
    ):
        yield gateway.port, ui_port


@pytest.mark.parametrize("kind", sorted(SCENARIOS))
async def test_the_detector_fires_on_its_scenario_and_alerts_the_ui(
    hub: tuple[int, int], kind: str
) -> None:
    port, ui_port = hub
    charge_point_id = f"ANOMALY-{kind}"
    async with ui_socket(ui_port, f"/ws/chargers/{charge_point_id}", token_value=token()) as ws:
        charger = SimulatedCharger(charge_point_id, f"ws://127.0.0.1:{port}/ocpp")
        await charger.come_online()
        try:
            await SCENARIOS[kind](charger)
            messages = await messages_until(
                ws, lambda m: m["type"] == "alert" and m["state"] == "detected"
            )
        finally:
            await charger.go_offline()
    alert = messages[-1]
    assert alert["kind"] == kind
    assert alert["chargePointId"] == charge_point_id
    assert alert["connectorId"] == 1
    assert alert["detail"]
    # No other detector fired on the way: each scenario is one anomaly.
    assert [m["kind"] for m in messages if m["type"] == "alert"] == [kind]
