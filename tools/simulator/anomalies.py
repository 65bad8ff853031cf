"""Sessions gone wrong, one script per integrity detector (docs/integrity.md).

Each script drives a connected :class:`SimulatedCharger` into its anomaly and returns the
``time.monotonic()`` at which it sent the frame that triggers it, so a caller can measure how
long the hub takes from there to the ``alert`` UI message. Timed detectors fire their
threshold after that frame.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from tools.simulator.charger import SimulatedCharger

Scenario = Callable[[SimulatedCharger], Awaitable[float]]


async def _started(charger: SimulatedCharger, at: datetime, meter_wh: int = 0) -> int:
    await charger.status(1, "Preparing")
    tx = await charger.start_transaction(1, "ANOMALY", meter_wh, timestamp=at)
    assert tx is not None
    await charger.status(1, "Charging")
    return tx


async def _meter(charger: SimulatedCharger, tx: int, wh: float, at: datetime) -> float:
    sent = time.monotonic()
    await charger.meter_values(1, tx, wh, 7_000, 10, 230, None, timestamp=at)
    return sent


async def orphaned(charger: SimulatedCharger) -> float:
    """The connector says Charging, and no StartTransaction ever comes."""
    sent = time.monotonic()
    await charger.status(1, "Charging")
    return sent


async def ghost(charger: SimulatedCharger) -> float:
    """The car left (Available) but the transaction is never stopped."""
    await _started(charger, datetime.now(UTC))
    sent = time.monotonic()
    await charger.status(1, "Available")
    return sent


async def duplicate_start(charger: SimulatedCharger) -> float:
    """A second StartTransaction on a connector whose first one never stopped."""
    now = datetime.now(UTC)
    await _started(charger, now)
    sent = time.monotonic()
    await charger.start_transaction(1, "ANOMALY", 0, timestamp=now + timedelta(seconds=1))
    return sent


async def stale(charger: SimulatedCharger) -> float:
    """A transaction that goes quiet: no meter values after the first one."""
    now = datetime.now(UTC)
    tx = await _started(charger, now)
    return await _meter(charger, tx, 100, now + timedelta(seconds=1))


async def meter_backwards(charger: SimulatedCharger) -> float:
    now = datetime.now(UTC)
    tx = await _started(charger, now)
    await _meter(charger, tx, 1_000, now + timedelta(seconds=60))
    return await _meter(charger, tx, 900, now + timedelta(seconds=120))


async def power_exceeded(charger: SimulatedCharger) -> float:
    """50 kWh in one second: 180 MW, beyond any connector."""
    now = datetime.now(UTC)
    tx = await _started(charger, now)
    await _meter(charger, tx, 1_000, now + timedelta(seconds=60))
    return await _meter(charger, tx, 51_000, now + timedelta(seconds=61))


SCENARIOS: Final[dict[str, Scenario]] = {
    "orphaned": orphaned,
    "ghost": ghost,
    "duplicate_start": duplicate_start,
    "stale": stale,
    "meter_backwards": meter_backwards,
    "power_exceeded": power_exceeded,
}
