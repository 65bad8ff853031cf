"""A real NATS JetStream cluster on loopback: three nats-server processes from the wheel,
routed to each other, each with a store of its own, as a deployment runs them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
from nats.js.errors import APIError

from hub.nats_server import EmbeddedNats

CLUSTER = "hub"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for each in sockets:
            each.bind(("127.0.0.1", 0))
        return [each.getsockname()[1] for each in sockets]
    finally:
        for each in sockets:
            each.close()


class NatsCluster:
    """``size`` nodes named n0, n1, ...; ``url`` names them all, as an operator's
    HUB_NATS_URL would."""

    def __init__(self, root: Path, size: int = 3) -> None:
        ports = _free_ports(2 * size)
        client_ports, route_ports = ports[:size], ports[size:]
        routes = [f"nats://127.0.0.1:{port}" for port in route_ports]
        self.nodes = [
            EmbeddedNats(
                root / f"n{index}",
                port=client_ports[index],
                extra_args=(
                    "--server_name",
                    f"n{index}",
                    "--cluster_name",
                    CLUSTER,
                    "--cluster",
                    routes[index],
                    "--routes",
                    ",".join(route for other, route in enumerate(routes) if other != index),
                ),
            )
            for index in range(size)
        ]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    async def start(self) -> None:
        await asyncio.gather(*(node.start() for node in self.nodes))
        await self.jetstream_ready()

    async def jetstream_ready(self, within: float = 30.0) -> None:
        """Until the nodes have elected a JetStream meta leader (streams can be made)."""
        client = await nats.connect(self.url.split(","))
        try:
            async with asyncio.timeout(within):
                while True:
                    with contextlib.suppress(APIError, nats.errors.TimeoutError):
                        await client.jetstream().account_info()
                        return
                    await asyncio.sleep(0.2)
        finally:
            await client.close()

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))

    def kill(self, name: str) -> None:
        """SIGKILL node ``name``: no goodbye to its routes or its clients."""
        pid = self.node(name).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    async def restart(self, name: str) -> None:
        """Start a killed node again on its store and ports."""
        node = self.node(name)
        await node.stop()
        await node.start()

    def node(self, name: str) -> EmbeddedNats:
        return self.nodes[int(name.removeprefix("n"))]

    async def leader_of(self, stream: str) -> tuple[str, list[str]]:
        """The stream's leader and its followers, by server name."""
        client = await nats.connect(self.url.split(","))
        try:
            info = await client.jetstream().stream_info(stream)
        finally:
            await client.close()
        assert info.cluster is not None and info.cluster.leader is not None
        followers = [replica.name for replica in info.cluster.replicas or []]
        return info.cluster.leader, followers


@contextlib.asynccontextmanager
async def nats_cluster(root: Path, size: int = 3) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster(root, size)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
