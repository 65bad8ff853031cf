"""``hub up``'s fan-out, run as a process of its own: ``hub fanout``, started and stopped by it.

The fan-out shares no memory with the gateway and the projections (it follows the stream), but
in their process it shared their CPU and their GIL: the projections' fold and chDB threads and
the gateway's work on the same event loop put its p50 at 30-60 ms and its p99 at 200-300 ms
with 1,000 chargers and 10,000 subscribers, against ~10 and ~90 ms in a process of its own
(docs/ui-messages.md, "Latency under load"). So ``hub up`` runs it as a child:

- with the same data directory (so the same JWT secret, which ``hub up`` makes before it starts
  the child), the UI host and port and the log settings as flags, the NATS URL (credentials
  included) in ``HUB_NATS_URL``; every other setting comes from the environment it inherits.
  Its logs go where ``hub up``'s go.
- ready once it prints its ``fanout ready:`` line, which also names the port it took.
- its stdin is a pipe from ``hub up``: when ``hub up`` ends in any way, SIGKILL included, the
  child reads end-of-file and stops (``HUB_FANOUT_LIFELINE=stdin``, see ``lifeline``).
- if it exits while ``hub up`` runs, it is started again on the same port, with backoff.
- ``hub up`` stops it with SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Final

import structlog

from hub.config import Settings
from hub.fanout.app import signing_key

log = structlog.get_logger("hub.fanout")

LIFELINE: Final = "HUB_FANOUT_LIFELINE"
READY: Final = "fanout ready: "
STOP_TIMEOUT_S: Final = 20.0
FIRST_BACKOFF_S: Final = 1.0
MAX_BACKOFF_S: Final = 30.0


def child_command(settings: Settings, port: int) -> list[str]:
    """The NATS URL is not among the flags: it may carry a password, and any local user can
    read a command line. The child gets it in ``HUB_NATS_URL``, which only its owner can."""
    return [
        sys.executable,
        "-m",
        "hub.cli",
        "fanout",
        "--data-dir",
        str(settings.data_dir),
        "--ui-host",
        settings.fanout.host,
        "--ui-port",
        str(port),
        "--log-level",
        settings.log_level,
        "--log-format",
        settings.log_format,
    ]


def port_of(line: str) -> int | None:
    """The port in ``hub fanout``'s ready line (``fanout ready: http://HOST:PORT/ nats URL``)."""
    if not line.startswith(READY):
        return None
    url = line.removeprefix(READY).split()[0]
    return int(url.rstrip("/").rsplit(":", 1)[1])


class FanoutProcess:
    def __init__(self, settings: Settings, nats_url: str) -> None:
        self._settings = settings
        self._nats_url = nats_url
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self, port: int) -> int:
        """Starts the child and waits until it serves; returns its port."""
        process = await asyncio.create_subprocess_exec(
            *child_command(self._settings, port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, LIFELINE: "stdin", "HUB_NATS_URL": self._nats_url},
            # A terminal's Ctrl-C reaches only `hub up`, which stops the child in its turn.
            start_new_session=True,
        )
        self._process = process
        assert process.stdout is not None
        while line := (await process.stdout.readline()).decode():
            served = port_of(line)
            if served is not None:
                self._drain = asyncio.create_task(_forward(process.stdout))
                log.info("fanout.started", pid=process.pid, port=served)
                return served
            sys.stderr.write(line)
        code = await process.wait()
        raise RuntimeError(f"hub fanout exited with code {code} before it was ready")

    async def supervise(self, port: int) -> None:
        """Starts the child again, on the same port, whenever it exits by itself."""
        backoff = FIRST_BACKOFF_S
        while True:
            assert self._process is not None
            code = await self._process.wait()
            log.error("fanout.exited", pid=self._process.pid, code=code)
            if self._process.stdin is not None:
                self._process.stdin.close()
            while True:
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                try:
                    await self.start(port)
                    break
                except (RuntimeError, OSError) as error:
                    log.error("fanout.restart_failed", error=str(error))
            backoff = FIRST_BACKOFF_S

    async def stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await process.wait()
            except TimeoutError:
                log.error("fanout.stop_timed_out", pid=process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.stdin is not None:
            process.stdin.close()
        if self._drain is not None:
            await self._drain


async def _forward(stdout: asyncio.StreamReader) -> None:
    # The child prints nothing after its ready line; whatever it does goes to the logs, not
    # into the lines `hub up` prints for its operator.
    while line := await stdout.readline():
        sys.stderr.write(line.decode())


@contextlib.asynccontextmanager
async def fanout_process(settings: Settings, nats_url: str) -> AsyncIterator[int]:
    """``hub fanout`` as a supervised child until the block ends; yields its port."""
    signing_key(settings)  # the child must find the secret, not race to make its own
    child = FanoutProcess(settings, nats_url)
    try:
        port = await child.start(settings.fanout.port)
        supervisor = asyncio.create_task(child.supervise(port), name="fanout.supervise")
        try:
            yield port
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
    finally:
        await child.stop()


async def lifeline(stop: asyncio.Event) -> None:
    """In the child: sets ``stop`` once ``hub up``, holding the other end of stdin, is gone."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    stop.set()
