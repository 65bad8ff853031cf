"""Composition root: wires NATS, the event store, the registry and the gateway together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import structlog

from hub.bus import Connection, EventStore, event_backbone
from hub.config import Settings
from hub.follower import Follower
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.registry import REGISTRY_SUBJECTS, Registry
from hub.txids import TransactionIds

log = structlog.get_logger("hub")


def nats_url_file(data_dir: Path) -> Path:
    """Where a running hub tells the CLI which port its embedded nats-server took."""
    return data_dir / "nats.url"


@contextlib.asynccontextmanager
async def nats_server_for(settings: Settings) -> AsyncIterator[str]:
    """The configured NATS, or an embedded nats-server on the data directory."""
    if settings.nats_url:
        yield settings.nats_url
        return
    url_file = nats_url_file(settings.data_dir)
    async with EmbeddedNats(settings.data_dir / "nats", port=settings.nats_port) as server:
        url_file.write_text(server.url + "\n")
        try:
            yield server.url
        finally:
            url_file.unlink(missing_ok=True)


def registry_follower(connection: Connection, settings: Settings, registry: Registry) -> Follower:
    """The registry's follower: ``async with`` it, and the registry is up to date within."""
    return Follower(
        connection, settings.stream.name, REGISTRY_SUBJECTS, registry.apply, name="registry"
    )


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, url: str) -> AsyncIterator[Gateway]:
    gateway_settings = settings.gateway
    async with event_backbone(settings, url, name=f"hub-gateway-{gateway_settings.gateway_id}") as (
        connection,
        store,
    ):
        txids = await TransactionIds.open(
            connection,
            ttl_s=gateway_settings.txid_ttl_s,
            replicas=settings.stream.replicas,
            file_storage=settings.stream.storage == "file",
            request_timeout=gateway_settings.publish_timeout_s,
        )
        registry = Registry()
        async with registry_follower(connection, settings, registry):
            gateway = Gateway(gateway_settings, connection, store, txids, registry)
            await gateway.start(host=gateway_settings.host, port=gateway_settings.port)
            log.info(
                "gateway.listening",
                url=f"ws://{gateway_settings.host}:{gateway.port}/ocpp/",
                gateway_id=gateway.gateway_id,
            )
            try:
                yield gateway
            finally:
                await gateway.close()


async def reachable(url: str) -> bool:
    try:
        client = await nats.connect(
            url, connect_timeout=1, max_reconnect_attempts=0, allow_reconnect=False
        )
    except (nats.errors.Error, OSError):
        return False
    await client.close()
    return True


async def running_hub_url(settings: Settings) -> str:
    """The configured NATS, else the one a hub running on this data directory announced,
    else an empty string."""
    if settings.nats_url:
        return settings.nats_url
    url_file = nats_url_file(settings.data_dir)
    if url_file.exists() and await reachable(candidate := url_file.read_text().strip()):
        return candidate
    return ""


@contextlib.asynccontextmanager
async def admin_backbone(settings: Settings) -> AsyncIterator[tuple[Connection, EventStore]]:
    """The running hub's NATS if there is one, else an embedded server just for one command."""
    url = await running_hub_url(settings)
    if url:
        async with event_backbone(settings, url, name="hub-cli") as backbone:
            yield backbone
        return
    async with (
        nats_server_for(settings) as embedded_url,
        event_backbone(settings, embedded_url, name="hub-cli") as backbone,
    ):
        yield backbone
