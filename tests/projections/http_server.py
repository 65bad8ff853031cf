"""Runs the ClickHouse-HTTP test fixture (tests/fixtures/chdb_http.py) as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

_READY = b"chdb-http listening on "
_REPO = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def chdb_http(path: Path, port: int = 0) -> AsyncIterator[int]:
    """Start the fixture on ``port`` (0: any); yields the port once it accepts connections."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fixtures.chdb_http",
        "--path",
        str(path),
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        cwd=_REPO,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = await process.stdout.readline()
        if not line.startswith(_READY):
            raise RuntimeError(f"chdb_http fixture did not start: {line!r}")
        yield int(line[len(_READY) :])
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
