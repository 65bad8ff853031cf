"""`hub up` starts the fan-out and prints a token that works; `hub token` mints scoped ones."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import aiohttp

from hub.fanout.auth import Verifier, ensure_secret
from tests.integration.helpers import hub_up

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
