"""A real ``hub up`` (gateway, embedded nats-server, UI fan-out and API) for the live fuzz tests.

One per test module, as a subprocess, so that "the gateway stays up" means the process does.
Projections and the supervisor are off: they follow the stream and nothing here reads them,
and they would double the start-up time. Hypothesis drives each example synchronously; the
examples run their clients with ``asyncio.run``.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from hub.runtime import announced_url
from hub.tokens import Role, mint

REPO: Final = Path(__file__).resolve().parents[2]
SECRET: Final = "fuzz-secret-" + "s" * 32
READY: Final = re.compile(r"hub ready: gateway ws://127\.0\.0\.1:(\d+)/\S* nats (\S+) ")
UI: Final = re.compile(r"ui: (http://127\.0\.0\.1:\d+)/")


@dataclass(frozen=True)
class RunningHub:
    process: subprocess.Popen[bytes]
    gateway_port: int
    nats_url: str
    ui_url: str
    log: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def gateway_url(self, charge_point_id: str) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}/ocpp/{charge_point_id}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def token(role: Role = "admin", chargers: list[str] | str = "*") -> str:
    return mint(SECRET, "HS256", chargers=chargers, ttl_s=3600, role=role, subject="fuzz")


def _lines(stream: object, into: queue.Queue[str | None]) -> None:
    assert hasattr(stream, "readline")
    for raw in iter(stream.readline, b""):
        into.put(raw.decode(errors="replace"))
    into.put(None)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    work = tmp_path_factory.mktemp("hub")
    log = work / "hub.log"
    env = {
        **os.environ,
        "HUB_PROJECTIONS": "false",
        "HUB_SUPERVISOR": "false",
        "HUB_JWT_SECRET": SECRET,
        "PYTHONPATH": str(REPO),
    }
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "hub.cli", "up", "--data-dir", str(work / "data")),
                *("--port", "0", "--ui-port", "0", "--allow-unknown-chargers"),
                *("--log-level", "warning", "--log-format", "json"),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=REPO,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    try:
        ready = ui = None
        while ready is None or ui is None:
            line = lines.get(timeout=60)
            assert line is not None, f"hub up exited: {log.read_text()[-3000:]}"
            ready = ready or READY.search(line)
            ui = ui or UI.search(line)
        # The ready line names NATS without its password; the data directory has both.
        yield RunningHub(process, int(ready[1]), announced_url(work / "data"), ui[1], log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            reader.join(timeout=10)  # it ends at the pipe's end, when hub up has exited
            assert process.stdout is not None
            process.stdout.close()
    assert code == 0, f"hub up exited with {code}: {log.read_text()[-3000:]}"
