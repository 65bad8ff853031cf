"""A gateway alone in its own process, logging JSON at INFO to its real stderr, for tests that
read what an operator would see in the log.

    python -m tests.integration.gateway_process <nats url> <data dir>

prints the gateway's port on stdout once it listens, and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from hub import logs
from hub.config import GatewaySettings, Settings
from hub.runtime import running_gateway


async def serve(nats_url: str, data_dir: Path) -> None:
    settings = Settings(
        data_dir=data_dir,
        gateway=GatewaySettings(port=0, gateway_id="gw-process", allow_unknown_chargers=True),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with running_gateway(settings, nats_url) as gateway:
        print(gateway.port, flush=True)
        await stop.wait()


if __name__ == "__main__":
    logs.configure("info", "json")
    asyncio.run(serve(sys.argv[1], Path(sys.argv[2])))
