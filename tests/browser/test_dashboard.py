"""The dashboard in a real headless Chromium (Debian's), driven by Playwright.

A simulated charger starts a session; the page must show its live power and the session. A
site's chargers share its limit; the page must show the limit against the load.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.config import Settings
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from tests.integration.api_helpers import api_client
from tests.integration.fanout_helpers import token, with_fanout
from tests.integration.test_site_load import all_until, amps, site_of_three
from tests.integration.test_supervisor import fast, supervised
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_dashboard_starts_over_when_the_stream_was_recreated(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings, tmp_path: Path
) -> None:
    """The hub comes back on the same address with a new data directory: the page resumes
    with a seq of the old stream, beyond the new one's end; it must show the new stream, not
    freeze on the old one."""
    from playwright.async_api import async_playwright, expect

    on_port = with_fanout(settings, port=free_port())
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        try:
            page = await browser.new_page()
            async with running_fanout(on_port, nats_server.url) as port:
                await page.goto(f"http://127.0.0.1:{port}/#token={token()}")
                await expect(page.locator("#link")).to_have_attribute("data-state", "live")
                url = f"ws://127.0.0.1:{gateway.port}/ocpp"
                async with SimulatedCharger("OLD-1", url) as old:
                    await old.boot()
                    for status in ["Preparing", "Charging", "SuspendedEV", "Finishing"]:
                        await old.status(1, status)
                    old_card = page.locator('[data-charger="OLD-1"]')
                    await expect(old_card.locator(".connectors")).to_have_text("#1 Finishing")
            async with (
                EmbeddedNats(tmp_path / "recreated") as recreated,
                running_gateway(settings, recreated.url) as new_gateway,
                running_fanout(on_port, recreated.url),
            ):
                url = f"ws://127.0.0.1:{new_gateway.port}/ocpp"
                async with SimulatedCharger("NEW-1", url) as new:
                    await new.boot()
                    new_card = page.locator('[data-charger="NEW-1"]')
                    await expect(new_card).to_be_visible(timeout=30_000)
                    await expect(old_card).to_have_count(0)
                    await expect(page.locator("#log")).to_contain_text("resume_beyond_end")
                    await new.status(1, "Charging")  # live messages flow again
                    await expect(new_card.locator(".connectors")).to_have_text("#1 Charging")
        finally:
            await browser.close()


async def test_dashboard_shows_each_site_limit_against_its_load(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway, fanout_port: int
) -> None:
    """Three chargers below a 40 A site: the page shows the site's limit, what the
    allocator gave the cars and what they draw, and each connector's limit on its card."""
    from playwright.async_api import async_playwright, expect

    quick = fast(settings, load_min_interval_s=0.5)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{fanout_port}/#token={token()}")
            await expect(page.locator("#link")).to_have_attribute("data-state", "live")
            async with (
                supervised(quick, nats_server.url),
                api_client(fanout_port) as api,
                site_of_three(gateway, fanout_port, api) as (chargers, transactions),
            ):
                await all_until(chargers, lambda c: c.limit() == 13.3)
                for charger, transaction_id in zip(chargers, transactions, strict=True):
                    await amps(charger, transaction_id, 13.0)
                row = page.locator('#sites tr[data-node="site"]')
                await expect(row).to_contain_text("40.0 A (static)")
                await expect(row).to_contain_text("39.9 A")
                await expect(row).to_contain_text("39.0 A")
                card = page.locator('[data-charger="CP-L1"]')
                await expect(card.locator(".connectors")).to_contain_text("≤13.3 A")
        finally:
            await browser.close()
