"""Processes ``hub up`` runs beside its own: started, kept alive, and stopped by it.

``hub up`` answers chargers from its event loop; whatever else folds the stream there shares
its CPU and its GIL. So the parts that only follow the stream run as children (``hub
fanout``, ``hub project``, ``hub supervise``), each a ``ChildProcess``:

- the NATS URL, credentials included, goes in ``HUB_NATS_URL``, never on the command line,
  which any local user can read; every other setting comes from the environment it inherits
  or its flags. Its logs go where ``hub up``'s go.
- it is ready once it prints its ready line (which may say more, e.g. the port it took).
- its stdin is a pipe from ``hub up``: when ``hub up`` ends in any way, SIGKILL included, the
  child reads end-of-file and stops (``LIFELINE=stdin``, see ``lifeline``).
- if it exits while ``hub up`` runs, it is started again, with backoff.
- ``hub up`` stops it with SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``.
- it may run at a lower CPU priority (``nice``): ``hub project``, whose work can wait
  behind the answers to chargers when the CPU is short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

import structlog

from hub.config import Settings
from hub.metrics import Role
from hub.ops import role_port

log = structlog.get_logger("hub.children")

LIFELINE: Final = "HUB_LIFELINE"
STOP_TIMEOUT_S: Final = 20.0
FIRST_BACKOFF_S: Final = 1.0
MAX_BACKOFF_S: Final = 30.0

# The command to (re)start the child with, given the ready line of its previous run
# (empty at first): a restarted fan-out asks for the port the first one took.
Command = Callable[[str], Sequence[str]]


class ChildProcess:
    def __init__(
        self, name: str, command: Command, ready: str, nats_url: str, *, nice: int = 0
    ) -> None:
        self.name = name
        self._nice = nice
        self._command = command
        self._ready = ready
        self._nats_url = nats_url
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.ready_line = ""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> str:
        """Starts the child and waits until it is ready; returns its ready line."""
        process = await asyncio.create_subprocess_exec(
            *self._command(self.ready_line),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, LIFELINE: "stdin", "HUB_NATS_URL": self._nats_url},
            # A terminal's Ctrl-C reaches only `hub up`, which stops the child in its turn.
            start_new_session=True,
        )
        self._process = process
        if self._nice:
            nice = min(os.getpriority(os.PRIO_PROCESS, 0) + self._nice, 19)
            with contextlib.suppress(OSError):  # gone already: the wait below says so
                os.setpriority(os.PRIO_PROCESS, process.pid, nice)
        assert process.stdout is not None
        while line := (await process.stdout.readline()).decode():
            if line.startswith(self._ready):
                self._drain = asyncio.create_task(_forward(process.stdout))
                self.ready_line = line.strip()
                log.info("child.started", child=self.name, pid=process.pid)
                return self.ready_line
            sys.stderr.write(line)
        code = await process.wait()
        raise RuntimeError(f"hub {self.name} exited with code {code} before it was ready")

    async def supervise(self) -> None:
        """Starts the child again whenever it exits by itself."""
        backoff = FIRST_BACKOFF_S
        while True:
            assert self._process is not None
            code = await self._process.wait()
            log.error("child.exited", child=self.name, pid=self._process.pid, code=code)
            if self._process.stdin is not None:
                self._process.stdin.close()
            while True:
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                try:
                    await self.start()
                    break
                except (RuntimeError, OSError) as error:
                    log.error("child.restart_failed", child=self.name, error=str(error))
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
                log.error("child.stop_timed_out", child=self.name, pid=process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.stdin is not None:
            process.stdin.close()
        if self._drain is not None:
            await self._drain


async def _forward(stdout: asyncio.StreamReader) -> None:
    # A child prints nothing after its ready line; whatever it does goes to the logs, not
    # into the lines `hub up` prints for its operator.
    while line := await stdout.readline():
        sys.stderr.write(line.decode())


@contextlib.asynccontextmanager
async def supervised(*children: ChildProcess) -> AsyncIterator[None]:
    """``children``, started side by side, each restarted if it exits, until the block
    ends; each one's ``ready_line`` is set within."""
    keepers: list[asyncio.Task[None]] = []
    try:
        async with asyncio.TaskGroup() as starting:
            for child in children:
                starting.create_task(child.start())
        keepers = [
            asyncio.create_task(child.supervise(), name=f"{child.name}.supervise")
            for child in children
        ]
        yield
    finally:
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        await asyncio.gather(*(child.stop() for child in children))


def hub_command(role: Role, settings: Settings, *flags: str) -> list[str]:
    """``hub ROLE`` on ``settings``' data directory, log settings and ops address (a fixed
    port offset by role), plus ``flags``."""
    return [
        sys.executable,
        "-m",
        "hub.cli",
        role,
        "--data-dir",
        str(settings.data_dir),
        "--log-level",
        settings.log_level,
        "--log-format",
        settings.log_format,
        "--metrics-host",
        settings.ops.host,
        "--metrics-port",
        str(role_port(role, settings.ops.port)),
        *flags,
    ]


async def lifeline(stop: asyncio.Event) -> None:
    """In a child: sets ``stop`` once ``hub up``, holding the other end of stdin, is gone."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    stop.set()


@contextlib.asynccontextmanager
async def until_stopped() -> AsyncIterator[asyncio.Event]:
    """In a child: an event set by SIGINT, SIGTERM or, if ``hub up`` started it, the end of
    ``hub up``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watching = None
    if os.environ.get(LIFELINE) == "stdin":
        watching = asyncio.create_task(lifeline(stop), name="child.lifeline")
    try:
        yield stop
    finally:
        if watching is not None:
            watching.cancel()
