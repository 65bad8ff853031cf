"""The embedded nats-server under ``hub up``: restarted when it dies, credentials required,
one hub per data directory, and Ctrl-C bounded even while NATS is gone."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import re
import signal
import socket
import time
from pathlib import Path

import nats
import nats.errors
import pytest
from ocpp.v16 import call

from hub.nats_server import EmbeddedNats
from schemas.events import OcppFrame
from tests.integration.helpers import HUB_CLI, hub_up, ocpp_charger, start_hub_up, stored_events

CHARGERS = 3


def hub_nats_url(data_dir: Path) -> str:
    """The running hub's NATS as an operator's script would reach it: ``nats.url``, with the
    user and password from ``nats.password`` (both in the data directory)."""
    url = (data_dir / "nats.url").read_text().strip()
    password = data_dir / "nats.password"
    if not password.exists():
        return url
    return url.replace("nats://", f"nats://hub:{password.read_text().strip()}@", 1)


async def hub(*args: str, data_dir: Path) -> tuple[int, str, str, float]:
    """A ``hub`` command: exit code, stdout, stderr and the seconds it took."""
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *HUB_CLI,
        *args,
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode(), time.monotonic() - began


def basic(charge_point_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{charge_point_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def boots(port: int, charge_point_id: str, password: str) -> str:
    headers = basic(charge_point_id, password)
    async with ocpp_charger(port, charge_point_id, additional_headers=headers) as cp:
        boot = call.BootNotification(charge_point_model="M", charge_point_vendor="V")
        return str((await cp.call(boot)).status)


def children(pid: int, name: bytes) -> list[int]:
    """The processes whose parent is ``pid`` and whose command line mentions ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and name in command and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def snapshot(directory: Path) -> dict[str, bytes]:
    """The files directly in ``directory`` and what they hold."""
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


async def gateway_port(process: asyncio.subprocess.Process) -> int:
    assert process.stdout is not None
    async with asyncio.timeout(60):
        ready = (await process.stdout.readline()).decode()
    match = re.search(r"ws://127\.0\.0\.1:(\d+)/ocpp/", ready)
    assert match, ready
    return int(match.group(1))


async def eventually_one(pid: int, name: bytes, other_than: int, within: float) -> int:
    """Processes have no event to wait for: poll for a new child."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = [child for child in children(pid, name) if child != other_than]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no new {name!r} child within {within} s")


async def test_a_killed_nats_server_is_restarted_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    async with hub_up(tmp_path, "--allow-unknown-chargers", "--no-ui") as process:
        port = await gateway_port(process)
        [server] = children(process.pid, b"nats-server")
        announced = (tmp_path / "nats.url").read_text()
        answered: list[str] = []
        enough = asyncio.Event()
        killed = asyncio.Event()
        back = asyncio.Event()
        restarted = 0

        async def charger(index: int) -> None:
            async with ocpp_charger(port, f"KILL-{index}") as cp:
                boot = call.BootNotification(charge_point_model="M", charge_point_vendor="V")
                await cp.call(boot, unique_id=f"boot-{index}")
                answered.append(f"boot-{index}")
                step = 0
                # Calls in flight while the server dies, and while it starts again.
                while not killed.is_set() or step < 40:
                    unique_id = f"hb-{index}-{step}"
                    await cp.call(call.Heartbeat(), unique_id=unique_id)
                    answered.append(unique_id)
                    if len(answered) >= CHARGERS * 10:
                        enough.set()
                    step += 1
                await back.wait()
                await cp.call(call.Heartbeat(), unique_id=f"after-{index}")
                answered.append(f"after-{index}")

        async def kill_and_see_it_restarted() -> None:
            nonlocal restarted
            await enough.wait()
            os.kill(server, signal.SIGKILL)
            killed.set()
            restarted = await eventually_one(process.pid, b"nats-server", server, within=20)
            back.set()

        async with asyncio.timeout(60):
            await asyncio.gather(kill_and_see_it_restarted(), *map(charger, range(CHARGERS)))
        assert restarted != server
        # Same port: every client's URL, and nats.url, stay valid.
        assert (tmp_path / "nats.url").read_text() == announced
        stored = await stored_events(hub_nats_url(tmp_path), "ev.cp.*.in.>")
        calls = [
            event.unique_id
            for _, event in stored
            if isinstance(event, OcppFrame) and event.direction == "in"
        ]
        assert sorted(calls) == sorted(answered)  # every answer stored, exactly once


GRACE_S = 5.0


async def test_ctrl_c_while_nats_does_not_answer_ends_the_hub_within_its_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_SHUTDOWN_GRACE", str(GRACE_S))
    process = await start_hub_up(tmp_path, "--allow-unknown-chargers")
    server = 0
    try:
        port = await gateway_port(process)
        [server] = children(process.pid, b"nats-server")
        async with ocpp_charger(port, "HANG-1") as cp:
            boot = call.BootNotification(charge_point_model="M", charge_point_vendor="V")
            await cp.call(boot)
            # Hung, not dead: nothing restarts it, and every store waits on it.
            os.kill(server, signal.SIGSTOP)
            pending = asyncio.create_task(cp.call(call.Heartbeat()))
            await asyncio.sleep(0)
            began = time.monotonic()
            process.send_signal(signal.SIGINT)
            async with asyncio.timeout(60):
                await process.wait()
            took = time.monotonic() - began
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        assert took < GRACE_S + 2.0, f"hub up took {took:.1f} s to stop"
        assert server not in children(process.pid, b"nats-server")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signal.SIGKILL)


async def refused(url: str) -> str:
    """Why the server refused a client connecting to ``url``; fails if it did not."""

    async def quiet(error: Exception) -> None:
        del error

    client = nats.NATS()
    try:
        async with asyncio.timeout(10):
            await client.connect(
                url, allow_reconnect=False, max_reconnect_attempts=0, error_cb=quiet
            )
    except nats.errors.Error as error:
        return str(error)
    finally:
        # A refused client keeps its socket otherwise.
        await client.close()
    raise AssertionError(f"{url} let a client in")


async def test_the_embedded_nats_refuses_clients_without_the_hub_credentials(
    tmp_path: Path,
) -> None:
    password = "0123456789abcdef"
    async with hub_up(tmp_path) as process:
        assert process.stdout is not None
        port = await gateway_port(process)
        secret_file = tmp_path / "nats.password"
        assert secret_file.stat().st_mode & 0o777 == 0o600
        secret = secret_file.read_text().strip()
        url = (tmp_path / "nats.url").read_text().strip()
        # Neither reading nor publishing (ev.admin.* included) without the password.
        assert "Authorization Violation" in await refused(url)
        assert "Authorization Violation" in await refused(url.replace("//", "//hub:guess@", 1))
        # The password is in no file but its own, and in no command line anyone can read.
        assert secret not in url
        for child in children(process.pid, b"nats-server") + children(process.pid, b"fanout"):
            assert secret.encode() not in command_line(child)
        # The hub itself, and every command, use it.
        added = await hub("chargers", "add", "CP-AUTH", "--password", password, data_dir=tmp_path)
        assert added[0] == 0, added[2]
        assert await boots(port, "CP-AUTH", password) == "Accepted"
        for command in (
            ("chargers", "list"),
            ("idtags", "add", "TAG-AUTH"),
            ("tariffs", "set", "std", "--per-kwh", "0.30"),
            ("query", "SELECT count() FROM ocpp.charge_points"),
            # Its stream reader logs in on a connection of its own.
            ("replay", "--projection", "sessions"),
        ):
            code, out, err, _ = await hub(*command, data_dir=tmp_path)
            assert code == 0, (command, err)
            assert secret not in out + err
        assert len(await stored_events(hub_nats_url(tmp_path), "ev.admin.>")) == 3


async def test_a_second_hub_up_on_a_data_directory_in_use_refuses_and_changes_nothing(
    tmp_path: Path,
) -> None:
    password = "0123456789abcdef"
    async with hub_up(tmp_path, "--no-ui") as first:
        port = await gateway_port(first)
        files = snapshot(tmp_path)
        code, _, err, _ = await hub("up", "--port", "0", "--no-ui", data_dir=tmp_path)
        assert code != 0
        assert "in use by" in err and "(hub up)" in err and "one hub per data directory" in err
        assert snapshot(tmp_path) == files
        # The first hub is unaffected: a registration reaches it, and it answers the charger.
        added = await hub("chargers", "add", "CP-2ND", "--password", password, data_dir=tmp_path)
        assert added[0] == 0, added[2]
        assert await boots(port, "CP-2ND", password) == "Accepted"


async def test_after_a_crash_the_stale_nats_url_does_not_hang_admin_commands(
    tmp_path: Path,
) -> None:
    process = await start_hub_up(tmp_path, "--no-ui")
    try:
        await gateway_port(process)
    finally:
        process.kill()
        await process.wait()
    assert (tmp_path / "nats.url").exists()  # what a crash leaves behind
    code, _, err, took = await hub("chargers", "list", data_dir=tmp_path)
    assert code == 0, err
    assert took < 5.0, f"hub chargers list took {took:.1f} s"


async def test_a_hub_that_holds_the_data_directory_but_does_not_answer_is_named(
    tmp_path: Path,
) -> None:
    # A hub that hangs: it holds the lock, and its nats.url leads nowhere.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = unused.getsockname()[1]
    (tmp_path / "nats.url").write_text(f"nats://127.0.0.1:{nowhere}\n")
    with (tmp_path / "hub.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("pid 4242 (hub up)\n")
        lock.flush()
        code, _, err, took = await hub("chargers", "list", data_dir=tmp_path)
    assert code == 1
    assert "pid 4242 (hub up)" in err and f"nats://127.0.0.1:{nowhere} does not answer" in err
    assert took < 5.0, f"hub chargers list took {took:.1f} s"


@pytest.mark.parametrize(
    "password",
    [
        "1vQ3kz0_Zx9-WwYy8Tt7Ss6Rr5Qq4Pp3Oo2Nn1Mm0L",  # token_urlsafe begins with a digit 1 in 6
        "-12345678901234567890",
        'with "quotes" and \\ backslashes and $HOME',
    ],
)
async def test_any_password_the_data_directory_holds_starts_the_server(
    tmp_path: Path, password: str
) -> None:
    server = EmbeddedNats(tmp_path / "nats", password=password)
    async with server:
        client = await nats.connect(server.client_url, connect_timeout=5, allow_reconnect=False)
        await client.close()
        wrong = server.url.replace("nats://", "nats://hub:wrong-password@")
        assert "Authorization Violation" in await refused(wrong)
    assert (tmp_path / "nats" / "hub.conf").stat().st_mode & 0o077 == 0
