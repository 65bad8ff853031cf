"""One hub per module, as the OCTT meets a CSMS: a real nats-server, the gateway (unknown
chargers let in, Authorize answered from the id-tag list, DataTransfer for one vendor only)
and the UI fan-out with the command API. Every case uses its own charger id, so the cases of a
module share the hub."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from hub.bus import event_backbone
from hub.clock import now_ms
from hub.config import GatewaySettings, Settings, StreamSettings
from hub.fanout import running_fanout
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from schemas.events import Event, IdTagUpserted
from tests.conformance.octt import BLOCKED, EXPIRED, GROUP, MEMBER, VALID, VALID_2, Octt
from tests.integration.api_helpers import api_client
from tests.integration.fanout_helpers import with_fanout
from tests.integration.helpers import register_charger

# Chargers registered with a password before the hub starts: (id, password).
REGISTERED: dict[str, str] = {
    "CP-TC073": "tc073-old-password",
    "CP-TC085": "tc085-basic-password",
    "CP-TC086": "tc086-basic-password",
    "CP-TC083": "tc083-basic-password",
}
# Chargers registered for security profile 3: a client certificate, no password (the hub
# signs CSRs for registered chargers only).
PROFILE_3: tuple[str, ...] = ("CP-TC074", "CP-TC077", "CP-TC087")


def _tag(id_tag: str, **fields: str) -> Event:
    return IdTagUpserted(
        id=uuid.uuid4().hex, received_at=now_ms(), actor="octt", id_tag=id_tag, **fields
    )


ID_TAGS: list[Event] = [
    _tag(VALID),
    _tag(VALID_2),
    _tag(BLOCKED, status="Blocked"),
    _tag(EXPIRED, expiry_date="2020-01-01T00:00:00Z"),
    _tag(GROUP),
    _tag(MEMBER, parent_id_tag=GROUP),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def octt(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Octt]:
    data_dir: Path = tmp_path_factory.mktemp("octt")
    settings = with_fanout(
        Settings(
            data_dir=data_dir,
            stream=StreamSettings(duplicate_window_s=120.0),
            gateway=GatewaySettings(
                port=0,
                gateway_id="gw-octt",
                allow_unknown_chargers=True,
                authorize_policy="list",
                data_transfer_vendors={"tzi.app": ["*"]},
                publish_timeout_s=2.0,
            ),
        )
    )
    async with EmbeddedNats(data_dir / "nats") as nats:
        async with event_backbone(settings, nats.url, name="octt-setup") as (_, store):
            await store.store(ID_TAGS)
        for charge_point_id, password in REGISTERED.items():
            await register_charger(nats.url, settings, charge_point_id, password)
        for charge_point_id in PROFILE_3:
            await register_charger(nats.url, settings, charge_point_id, security_profile=3)
        # The gateway folds every stored admin event before it listens.
        async with (
            running_gateway(settings, nats.url) as gateway,
            running_fanout(settings, nats.url) as ui_port,
            api_client(ui_port) as api,
        ):
            yield Octt(nats.url, gateway.port, ui_port, settings, api)


def settings_with(octt: Octt, **gateway: object) -> Settings:
    """The module hub's settings with some of its gateway's changed (a second gateway)."""
    return msgspec.structs.replace(
        octt.settings, gateway=msgspec.structs.replace(octt.settings.gateway, **gateway)
    )
