"""The dashboard in a real headless Chromium (Debian's), driven by Playwright.

A simulated charger starts a session; the page must show its live power and the session.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.config import Settings
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from tests.integration.fanout_helpers import token, with_fanout
from tools.simulator import SimulatedCharger

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists() and os.environ.get("CI") != "true":
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium); .ci/run installs it",
        allow_module_level=True,
    )


@pytest.fixture
async def fanout_port(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[int]:
    async with running_fanout(with_fanout(settings), nats_server.url) as port:
        yield port


@pytest.fixture
async def gateway(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[Gateway]:
    from hub.runtime import running_gateway

    async with running_gateway(settings, nats_server.url) as gateway:
        yield gateway


async def test_dashboard_shows_live_power_and_the_session(
    gateway: Gateway, fanout_port: int
) -> None:
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{fanout_port}/#token={token()}")
            await expect(page.locator("#link")).to_have_attribute("data-state", "live")
            url = f"ws://127.0.0.1:{gateway.port}/ocpp"
            async with SimulatedCharger("SIM-UI-1", url) as charger:
                await charger.boot()
                await charger.status(1, "Charging")
                transaction_id = await charger.start_transaction(1, "TAG-UI", 10_000)
                assert transaction_id is not None
                await charger.meter_values(1, transaction_id, 12_500, 7400.0, 10.7, 230.0, 48)
                card = page.locator('[data-charger="SIM-UI-1"]')
                await expect(card.locator(".power")).to_have_text("7.40 kW")
                await expect(card.locator(".conn")).to_have_text("online")
                row = page.locator(f'#sessions tr[data-transaction="{transaction_id}"]')
                await expect(row).to_contain_text("SIM-UI-1")
                await expect(row).to_contain_text("2.50 kWh")
                await expect(page.locator("#log")).to_contain_text("started")
        finally:
            await browser.close()
