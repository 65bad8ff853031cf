"""`hub up` starts the fan-out and prints a token that works; `hub token` mints scoped ones."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from hub.tokens import Verifier, ensure_secret
from tests.integration.helpers import hub_up, start_hub_up

HUB = [sys.executable, "-m", "hub.cli"]


async def test_hub_up_serves_the_ui_with_the_admin_token_it_prints(tmp_path: Path) -> None:
    async with hub_up(tmp_path) as process:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            ready = (await process.stdout.readline()).decode()
            ui = (await process.stdout.readline()).decode()
            admin = (await process.stdout.readline()).decode()
        assert ready.startswith("hub ready")
        match = re.search(r"(http://127\.0\.0\.1:\d+)/#token=(\S+)", ui)
        assert match, ui
        base, token = match.groups()
        assert admin.rstrip().endswith(token)
        async with aiohttp.ClientSession() as http:
            page = await http.get(base + "/")
            assert page.status == 200 and "<html" in (await page.text()).lower()
            listing = await http.get(
                base + "/api/v1/chargers", headers={"Authorization": f"Bearer {token}"}
            )
            assert listing.status == 200
            assert (await http.get(base + "/api/v1/chargers")).status == 401


def test_hub_token_mints_a_scoped_expiring_token(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *HUB,
            "token",
            "--data-dir",
            str(tmp_path),
            "--chargers",
            "CP-1,CP-2",
            "--ttl",
            "60",
            "--role",
            "operator",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    scope = Verifier("HS256", ensure_secret(tmp_path)).verify(done.stdout.strip())
    assert scope.chargers == {"CP-1", "CP-2"} and not scope.everything
    assert scope.role == "operator" and scope.allows("CP-1") and not scope.allows("CP-3")
    refused = subprocess.run(
        [*HUB, "token", "--data-dir", str(tmp_path), "--ttl", "-5"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert refused.returncode != 0 and "--ttl" in refused.stderr


def fanout_children(pid: int) -> list[int]:
    """The ``hub fanout`` processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"fanout" in command:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def eventually(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    """Processes and ports have no event to wait for: poll them."""
    for _ in range(int(within / 0.2)):
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {within} s")


async def ui_answers(base: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(base + "/") as page:
            return page.status == 200
    except aiohttp.ClientError:
        return False


async def test_hub_up_runs_the_fan_out_as_a_child_it_restarts_and_stops(tmp_path: Path) -> None:
    async with hub_up(tmp_path) as process:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            lines = [(await process.stdout.readline()).decode() for _ in range(3)]
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", lines[1])
        assert match, lines
        base = match.group(1)
        [child] = fanout_children(process.pid)
        os.kill(child, signal.SIGKILL)  # a crash: hub up starts it again, on the same port

        async def restarted_one() -> bool:
            return fanout_children(process.pid) not in ([], [child])

        await eventually(restarted_one, within=20)
        [restarted] = fanout_children(process.pid)
        await eventually(lambda: ui_answers(base), within=30)
    # hub_up has stopped hub up with SIGINT and checked it exited with 0.
    assert not alive(restarted)


async def test_the_fan_out_does_not_outlive_a_killed_hub_up(tmp_path: Path) -> None:
    process = await start_hub_up(tmp_path)
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert (await process.stdout.readline()).startswith(b"hub ready")
        [child] = fanout_children(process.pid)
    finally:
        process.kill()
        await process.wait()

    async def gone() -> bool:
        return not alive(child)

    await eventually(gone, within=30)
