from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from hub import logs
from hub.config import GatewaySettings, Settings, StreamSettings
from hub.nats_server import EmbeddedNats

logs.configure("warning")


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    async with EmbeddedNats(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        stream=StreamSettings(duplicate_window_s=120.0),
        gateway=GatewaySettings(
            port=0,
            gateway_id="gw-test",
            allow_unknown_chargers=True,
            publish_timeout_s=1.0,
        ),
    )


def with_gateway(settings: Settings, **changes: object) -> Settings:
    return msgspec.structs.replace(
        settings, gateway=msgspec.structs.replace(settings.gateway, **changes)
    )
