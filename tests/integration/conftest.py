from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway


@pytest.fixture
async def gateway(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[Gateway]:
    async with running_gateway(settings, nats_server.url) as gateway:
        yield gateway
