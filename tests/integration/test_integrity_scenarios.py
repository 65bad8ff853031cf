"""Each integrity detector fires on its scenario, through the real gateway, stream,
supervisor and fan-out, and reaches a UI as an ``alert``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from hub.bus import event_backbone
from hub.config import Settings, SupervisorSettings
from hub.fanout.app import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.supervisor.service import running_supervisor
from projections.service import running_projections
from tests.integration.fanout_helpers import messages_until, token, ui_socket, with_fanout
from tests.integration.helpers import wait_for_event
from tests.projections.helpers import last_seq, rows
from tools.simulator import SimulatedCharger
from tools.simulator.anomalies import SCENARIOS


@pytest.fixture
def quick(settings: Settings) -> Settings:
    supervisor = SupervisorSettings(
        tick_s=0.2,
        orphaned_after_s=1.0,
        ghost_after_s=1.0,
        stale_after_s=2.0,  # after ghost_after_s: a ghost has no meter values either
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


async def test_a_ghost_closed_by_policy_is_a_terminated_session_and_a_resolved_anomaly(
    nats_server: EmbeddedNats, quick: Settings, gateway: Gateway
) -> None:
    closing = msgspec.structs.replace(
        quick,
        supervisor=msgspec.structs.replace(
            quick.supervisor, stale_after_s=600.0, actions="ghost=close_session"
        ),
    )
    async with (
        event_backbone(closing, nats_server.url, name="test-supervisor") as (connection, store),
        running_supervisor(connection, store, closing),
        running_projections(closing, nats_server.url) as projections,
    ):
        charger = SimulatedCharger("GHOST-1", f"ws://127.0.0.1:{gateway.port}/ocpp")
        await charger.come_online()
        try:
            await SCENARIOS["ghost"](charger)
            await wait_for_event(
                nats_server.url, "ev.integrity.resolved", lambda e: True, within=15
            )
        finally:
            await charger.go_offline()
        await projections.runner.wait_for(await last_seq(nats_server.url))
        anomalies = await rows(
            projections.backend,
            "SELECT kind, actions, resolution, resolved_at IS NOT NULL AS resolved "
            "FROM ocpp.session_anomalies WHERE charge_point_id = 'GHOST-1'",
        )
        sessions = await rows(
            projections.backend,
            "SELECT state, stop_reason FROM ocpp.sessions WHERE charge_point_id = 'GHOST-1'",
        )
    assert anomalies == [
        {
            "kind": "ghost",
            "actions": ["close_session"],
            "resolution": "closed by the integrity policy",
            "resolved": True,
        }
    ]
    assert [s["state"] for s in sessions] == ["terminated"]
    assert sessions[0]["stop_reason"].startswith("integrity:ghost:GHOST-1:1:")
