"""A complete, plausible charging session scripted on top of SimulatedCharger."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

from tools.simulator.charger import (
    OFFLINE_TRANSACTION_ID,
    ChargerDisconnected,
    SimulatedCharger,
)

__all__ = ["PRE_CHARGE_MESSAGE_ID", "Pace", "SessionResult", "pre_charge_data", "run_session"]

Pace = Callable[[], Awaitable[None]]
T = TypeVar("T")
P = ParamSpec("P")

PRE_CHARGE_MESSAGE_ID = "PreChargeData"
DEFAULT_VENDOR_ID = "com.hubsim"


@dataclass(frozen=True, slots=True)
class SessionResult:
    transaction_id: int
    """The hub's id, or OFFLINE_TRANSACTION_ID if the session started offline."""
    meter_start: int
    meter_stop: int
    final_soc: float
    messages: int
    """CALLs sent or queued; skipped best-effort messages are not counted."""


def pre_charge_data(
    soc: float, *, capacity_wh: float = 60_000.0, max_power_w: float = 11_000.0
) -> dict[str, float | int | str]:
    """What an EV hands the charger before energy flows (ISO 15118-style)."""
    return {
        "soc": round(soc, 1),
        "batteryCapacityWh": int(capacity_wh),
        "maxChargePowerW": int(max_power_w),
        "targetSoc": 80,
        "chemistry": "NMC",
    }


async def run_session(
    charger: SimulatedCharger,
    *,
    connector_id: int = 1,
    id_tag: str = "SIMTAG0001",
    meter_values: int = 5,
    boot: bool = True,
    power_w: float = 11_000.0,
    voltage_v: float = 230.0,
    start_soc: float = 25.0,
    capacity_wh: float = 60_000.0,
    sample_interval_s: float = 60.0,
    data_transfer: bool = True,
    vendor_id: str = DEFAULT_VENDOR_ID,
    pace: Pace | None = None,
    rng: random.Random | None = None,
) -> SessionResult:
    """Plug in, authorize, charge, unplug.

    Sequence: [Boot,] Status Available → Preparing, DataTransfer PreChargeData
    (the EV's data arrives once the cable is in, before authorization),
    Authorize, StartTransaction, Status Charging, `meter_values` times MeterValues
    with rising energy and SoC, StopTransaction, Status Finishing → Available,
    Heartbeat. `pace` is awaited before every message after boot.

    While the charger is deliberately offline (go_offline), messages that are
    not queued are skipped, so the session runs to completion offline with
    transaction id -1, as real firmware does. An unexpected disconnect raises
    ChargerDisconnected so the caller can reconnect.
    """
    rng = rng or random.Random()
    messages = 0

    async def step(
        send: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T | None:
        nonlocal messages
        if pace is not None:
            await pace()
        try:
            result = await send(*args, **kwargs)
        except ChargerDisconnected:
            if charger.wants_online:
                raise
            return None
        messages += 1
        return result

    if boot:
        await charger.boot()
        messages += 1
    await step(charger.status, connector_id, "Available")
    await step(charger.status, connector_id, "Preparing")
    soc = start_soc
    if data_transfer:
        data = pre_charge_data(soc, capacity_wh=capacity_wh, max_power_w=power_w)
        await step(charger.data_transfer, vendor_id, PRE_CHARGE_MESSAGE_ID, data)
    await step(charger.authorize, id_tag)

    register = charger.meter_wh[connector_id]
    meter_start = int(register)
    # The charger's clock runs in session time: each sample is sample_interval_s after the
    # last whatever the pace, so the power its readings imply is the power it charges at
    # (the hub's power detector would flag anything else).
    started = datetime.now(UTC)
    # None means the Start was queued offline (transaction messages are never
    # skipped), so the rest of the session must use the local id.
    answered = await step(
        charger.start_transaction, connector_id, id_tag, meter_start, timestamp=started
    )
    tx = answered if answered is not None else OFFLINE_TRANSACTION_ID
    await step(charger.status, connector_id, "Charging")

    phases = max(1, min(charger.phases, 3))
    for sample in range(1, meter_values + 1):
        # Constant-current phase up to 80 %, then the usual linear taper.
        taper = 1.0 if soc < 80.0 else max(0.1, (100.0 - soc) / 20.0)
        power = power_w * taper * rng.uniform(0.97, 1.0)
        volts = voltage_v * rng.uniform(0.98, 1.02)
        added_wh = power * sample_interval_s / 3600.0
        register += added_wh
        soc = min(100.0, soc + added_wh / capacity_wh * 100.0)
        amps = power / (volts * phases)
        at = started + timedelta(seconds=sample * sample_interval_s)
        await step(
            charger.meter_values, connector_id, tx, register, power, amps, volts, soc, timestamp=at
        )
    charger.meter_wh[connector_id] = register
    meter_stop = int(register)

    stopped = started + timedelta(seconds=meter_values * sample_interval_s + 5)
    await step(charger.stop_transaction, tx, meter_stop, "EVDisconnected", stopped, id_tag=id_tag)
    await step(charger.status, connector_id, "Finishing")
    await step(charger.status, connector_id, "Available")
    await step(charger.heartbeat)
    return SessionResult(
        transaction_id=tx,
        meter_start=meter_start,
        meter_stop=meter_stop,
        final_soc=soc,
        messages=messages,
    )
