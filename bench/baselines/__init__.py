"""Reference OCPP servers the hub is measured against (see bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from tools.simulator import raise_nofile_limit

__all__ = ["READY_MARKER", "serve_until_signalled"]

# The orchestrator waits for this on stdout before it starts loading a server.
READY_MARKER = "bench server ready"


def serve_until_signalled(
    handler: Callable[[ServerConnection], Awaitable[None]],
    description: str,
    subprotocol: str = "ocpp1.6",
) -> int:
    """Parse --host/--port, serve `handler` on `subprotocol` until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    raise_nofile_limit()
    return asyncio.run(_serve(handler, args.host, args.port, Subprotocol(subprotocol)))


async def _serve(
    handler: Callable[[ServerConnection], Awaitable[None]],
    host: str,
    port: int,
    subprotocol: Subprotocol,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        handler,
        host,
        port,
        subprotocols=[subprotocol],
        # Same as the simulator's: measure OCPP handling, not zlib.
        compression=None,
        # Thousands of connections arrive at once during the ramp.
        backlog=4096,
    ) as server:
        bound = server.sockets[0].getsockname()
        print(f"{READY_MARKER} on {bound[0]}:{bound[1]}", flush=True)
        await stop.wait()
    return 0
