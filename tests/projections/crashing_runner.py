"""Child process of test_crash.py: the real runner on chDB, SIGKILLed by itself mid-batch.

``--kill-after N`` lets the backend complete N inserts and kills the process with SIGKILL
right after the next one starts: between two tables of one batch, the worst moment.

    python -m tests.projections.crashing_runner --nats-url URL --data-dir DIR --kill-after N
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from hub import logs
from hub.config import ProjectionSettings, Settings
from projections.backends.embedded import ChdbBackend
from projections.reshapes import Reshape
from projections.service import running_projections


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--kill-after", type=int, required=True)
    args = parser.parse_args()
    logs.configure("warning")
    inserts = 0
    real_insert = ChdbBackend.insert

    async def insert(
        self: ChdbBackend, table: str, body: bytes, *, token: str, reshape: Reshape | None = None
    ) -> None:
        nonlocal inserts
        inserts += 1
        if inserts > args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        await real_insert(self, table, body, token=token, reshape=reshape)

    ChdbBackend.insert = insert  # type: ignore[method-assign]
    settings = Settings(
        data_dir=args.data_dir,
        projections=ProjectionSettings(batch_size=40, linger_s=0.01, snapshot_every=100),
    )

    async def run() -> None:
        async with running_projections(settings, args.nats_url):
            await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
