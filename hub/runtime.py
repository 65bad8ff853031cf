"""Composition root: wires NATS, the event store, the registry and the gateway together."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import nats.errors
import structlog

from hub.bus import Connection, EventStore, event_backbone
from hub.ca import certificate_authority
from hub.config import Settings
from hub.follower import Follower
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats, ensure_password, redacted, servers, with_credentials
from hub.registry import REGISTRY_SUBJECTS, Registry
from hub.txids import TransactionIds

log = structlog.get_logger("hub")


# How long an admin command waits for the NATS of a hub that holds the data directory.
HUB_ANSWER_WITHIN_S: Final = 2.0


def nats_url_file(data_dir: Path) -> Path:
    """Where a running hub tells the CLI which port its embedded nats-server took (no
    credentials: those are in ``nats_password_file``)."""
    return data_dir / "nats.url"


def nats_password_file(data_dir: Path) -> Path:
    """The embedded server's password, made once, readable by its owner only."""
    return data_dir / "nats.password"


def lock_file(data_dir: Path) -> Path:
    return data_dir / "hub.lock"


class DataDirInUse(Exception):
    """Another process runs a hub (or an embedded server for a command) on the directory."""


class HubUnreachable(Exception):
    """A hub holds the data directory, but its NATS does not answer, or not to us."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[int]:
    """Holds the data directory's exclusive lock until the block ends; yields its descriptor.

    The kernel drops the lock when every holder of the descriptor is gone, so a crashed hub
    leaves nothing to clean up. Raises ``DataDirInUse``, naming the holder, having changed
    nothing, if it is taken.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file(data_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not _try_lock(fd):
            raise DataDirInUse(
                f"{data_dir} is in use by {lock_holder(data_dir)}: one hub per data directory"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({_command()})\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _command() -> str:
    words = [word for word in sys.argv[1:3] if not word.startswith("-")]
    return " ".join(["hub", *words])


def data_dir_locked(data_dir: Path) -> bool:
    """Whether a hub (or a command's embedded server) holds the data directory now."""
    try:
        fd = os.open(lock_file(data_dir), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)


def lock_holder(data_dir: Path) -> str:
    try:
        return lock_file(data_dir).read_text().strip() or "another process"
    except FileNotFoundError:
        return "another process"


@contextlib.asynccontextmanager
async def nats_server_for(
    settings: Settings, *, lock_fd: int | None = None, shutdown_grace: float = 10.0
) -> AsyncIterator[str]:
    """The configured NATS, or an embedded nats-server on the data directory, which requires
    the credentials kept there, and is restarted if it dies.

    ``lock_fd`` (the data directory's lock) is inherited by the server, so its store stays
    locked for as long as it runs, even past a killed hub. Yields the URL clients use, with
    the credentials: never print it as is (``redacted``).
    """
    if settings.nats_url:
        yield settings.nats_url
        return
    url_file = nats_url_file(settings.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedNats(
        settings.data_dir / "nats",
        port=settings.nats_port,
        password=ensure_password(nats_password_file(settings.data_dir)),
        restart=True,
        keep_fds=() if lock_fd is None else (lock_fd,),
    )
    await server.start()
    try:
        url_file.write_text(server.url + "\n")
        try:
            yield server.client_url
        finally:
            url_file.unlink(missing_ok=True)
    finally:
        await server.stop(grace=shutdown_grace)


def registry_follower(connection: Connection, settings: Settings, registry: Registry) -> Follower:
    """The registry's follower: ``async with`` it, and the registry is up to date within."""
    return Follower(
        connection, settings.stream.name, REGISTRY_SUBJECTS, registry.apply, name="registry"
    )


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, url: str, *, close_grace: float = 10.0
) -> AsyncIterator[Gateway]:
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
            gateway = Gateway(
                gateway_settings,
                connection,
                store,
                txids,
                registry,
                ca=certificate_authority(settings),
            )
            await gateway.start(host=gateway_settings.host, port=gateway_settings.port)
            log.info(
                "gateway.listening",
                url=f"ws://{gateway_settings.host}:{gateway.port}/ocpp/",
                gateway_id=gateway.gateway_id,
            )
            try:
                yield gateway
            finally:
                await gateway.close(grace=close_grace)


async def reachable(url: str, *, within: float = 1.0) -> bool:
    async def quiet(error: Exception) -> None:
        del error  # nats-py prints a traceback per failed attempt otherwise

    try:
        # nats-py retries a refused connection forever even when told not to reconnect.
        async with asyncio.timeout(within):
            client = await nats.connect(
                servers(url),
                connect_timeout=within,
                max_reconnect_attempts=0,
                allow_reconnect=False,
                error_cb=quiet,
            )
    except (nats.errors.Error, OSError):
        return False
    await client.close()
    return True


def announced_url(data_dir: Path) -> str:
    """The URL, with credentials, of the embedded server a hub on ``data_dir`` announced;
    empty if there is none."""
    try:
        url = nats_url_file(data_dir).read_text().strip()
    except FileNotFoundError:
        return ""
    password_file = nats_password_file(data_dir)
    if not url or not password_file.exists():
        return url
    try:
        password = password_file.read_text().strip()
    except PermissionError:
        raise HubUnreachable(
            f"cannot read {password_file}: run the command as the user the hub runs as"
        ) from None
    return with_credentials(url, password)


async def running_hub_url(settings: Settings) -> str:
    """The configured NATS, else the one a hub running on this data directory announced,
    else an empty string (no hub holds the directory: whatever ``nats.url`` says is stale).

    Raises ``HubUnreachable`` within ``HUB_ANSWER_WITHIN_S`` if a hub holds the directory
    but its NATS does not answer.
    """
    if settings.nats_url:
        return settings.nats_url
    if not data_dir_locked(settings.data_dir):
        return ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HUB_ANSWER_WITHIN_S
    # A hub that is starting, or restarting its nats-server, answers within a moment.
    while (left := deadline - loop.time()) > 0:
        url = announced_url(settings.data_dir)
        if url and await reachable(url, within=min(1.0, left)):
            return url
        if not data_dir_locked(settings.data_dir):
            return ""
        await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
    holder = f"{settings.data_dir} is held by {lock_holder(settings.data_dir)}"
    if url := announced_url(settings.data_dir):
        raise HubUnreachable(f"{holder}, but its NATS {redacted(url)} does not answer")
    raise HubUnreachable(
        f"{holder}, which announced no embedded NATS: give its NATS with --nats-url"
    )


@contextlib.asynccontextmanager
async def admin_backbone(settings: Settings) -> AsyncIterator[tuple[Connection, EventStore]]:
    """The running hub's NATS if there is one, else an embedded server just for one command,
    holding the data directory meanwhile."""
    url = await running_hub_url(settings)
    if url:
        async with event_backbone(settings, url, name="hub-cli") as backbone:
            yield backbone
        return
    with data_dir_lock(settings.data_dir) as lock_fd:
        async with (
            nats_server_for(settings, lock_fd=lock_fd) as embedded_url,
            event_backbone(settings, embedded_url, name="hub-cli") as backbone,
        ):
            yield backbone
