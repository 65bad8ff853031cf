from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from hub.bus import event_backbone
from hub.config import Settings, SupervisorSettings
from hub.fanout.app import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from hub.supervisor.service import running_supervisor
from projections.service import Projections, running_projections
from tests.integration.fanout_helpers import with_fanout


@pytest.fixture
async def gateway(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[Gateway]:
    async with running_gateway(settings, nats_server.url) as gateway:
        yield gateway


@pytest.fixture
def money_settings(settings: Settings) -> Settings:
    supervisor = SupervisorSettings(tick_s=0.5, platform_fee_rate="0.10")
    return with_fanout(msgspec.structs.replace(settings, supervisor=supervisor))


@pytest.fixture
async def hub(
    nats_server: EmbeddedNats, money_settings: Settings, gateway: Gateway
) -> AsyncIterator[tuple[int, int, Projections]]:
    """The whole hub as `hub up` runs it: gateway, supervisor, projections (chDB), fan-out;
    yields the gateway's port, the fan-out's port and the projections."""
    async with (
        event_backbone(money_settings, nats_server.url, name="test-sup") as (connection, store),
        running_supervisor(connection, store, money_settings),
        running_projections(money_settings, nats_server.url) as projections,
        running_fanout(money_settings, nats_server.url) as ui_port,
    ):
        yield gateway.port, ui_port, projections
