"""A complete, plausible charging session scripted on top of SimulatedCharger, and what a
session of any OCPP version shares: the car's charging curve and the pacing of messages."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

from tools.simulator.charger import (
    OFFLINE_TRANSACTION_ID,
    ChargerDisconnected,
    ChargerLink,
    SimulatedCharger,
)

__all__ = [
    "PRE_CHARGE_MESSAGE_ID",
    "Pace",
    "Sample",
    "SaturationLoad",
    "SessionPlan",
    "SessionResult",
    "Steps",
    "pre_charge_data",
    "run_session",
    "saturation_load",
]

Pace = Callable[[], Awaitable[None]]
SaturationLoad = Callable[[str], Awaitable[object]]
"""Sends the message of one action of the fleet's saturation mix."""
T = TypeVar("T")
P = ParamSpec("P")

PRE_CHARGE_MESSAGE_ID = "PreChargeData"
DEFAULT_VENDOR_ID = "com.hubsim"


@dataclass(frozen=True, slots=True)
class SessionResult:
    transaction_id: int | str
    """1.6: the hub's id, or OFFLINE_TRANSACTION_ID if the session started offline;
    2.x: the id the station made."""
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


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the meter while a car charges."""

    at: datetime
    energy_wh: float
    """The connector's register, which only ever grows."""
    power_w: float
    current_a: float
    """Per phase."""
    voltage_v: float
    soc: float


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One session, whatever the OCPP version: the car on the cable, how long it charges and
    how often the meter is read, and whether it hands its data over first."""

    meter_values: int = 5
    """Periodic samples while it charges."""
    power_w: float = 11_000.0
    voltage_v: float = 230.0
    start_soc: float = 25.0
    capacity_wh: float = 60_000.0
    sample_interval_s: float = 60.0
    """Session time between samples: the charger's clock, not the pace of the messages."""
    data_transfer: bool = True
    """DataTransfer PreChargeData once the cable is in, before authorization."""
    vendor_id: str = DEFAULT_VENDOR_ID

    def curve(
        self, started: datetime, energy_wh: float, phases: int, rng: random.Random
    ) -> Iterator[Sample]:
        """What the meter reads every sample_interval_s after `started`: constant current
        up to 80 % SoC, then the usual linear taper.

        The charger's clock runs in session time, whatever the pace of the messages, so the
        power the readings imply is the power the car charges at (the hub's power detector
        would flag anything else).
        """
        soc = self.start_soc
        phases = max(1, min(phases, 3))
        for sample in range(1, self.meter_values + 1):
            taper = 1.0 if soc < 80.0 else max(0.1, (100.0 - soc) / 20.0)
            power = self.power_w * taper * rng.uniform(0.97, 1.0)
            volts = self.voltage_v * rng.uniform(0.98, 1.02)
            added_wh = power * self.sample_interval_s / 3600.0
            energy_wh += added_wh
            soc = min(100.0, soc + added_wh / self.capacity_wh * 100.0)
            yield Sample(
                at=started + timedelta(seconds=sample * self.sample_interval_s),
                energy_wh=energy_wh,
                power_w=power,
                current_a=power / (volts * phases),
                voltage_v=volts,
                soc=soc,
            )

    def charging_seconds(self) -> float:
        """From the start to the last sample, and the few seconds to unplug."""
        return self.meter_values * self.sample_interval_s + 5


class Steps:
    """Sends a session's messages one by one, paced, and counts them.

    While the charger is deliberately offline (go_offline), a message that is not queued
    is skipped, so a session runs to completion offline as real firmware does. An
    unexpected disconnect raises ChargerDisconnected so the caller can reconnect.
    """

    def __init__(self, charger: ChargerLink, pace: Pace | None) -> None:
        self.charger = charger
        self.pace = pace
        self.messages = 0
        """CALLs sent or queued; skipped best-effort messages are not counted."""

    async def __call__(
        self, send: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T | None:
        if self.pace is not None:
            await self.pace()
        try:
            result = await send(*args, **kwargs)
        except ChargerDisconnected:
            if self.charger.wants_online:
                raise
            return None
        self.messages += 1
        return result

    async def boot(self) -> None:
        """BootNotification, unpaced: a session on a charger that just powered up."""
        await self.charger.boot()
        self.messages += 1

    async def pre_charge(self, plan: SessionPlan) -> None:
        """The EV's data, if the plan has it handed over."""
        if plan.data_transfer:
            data = pre_charge_data(
                plan.start_soc, capacity_wh=plan.capacity_wh, max_power_w=plan.power_w
            )
            await self(self.charger.data_transfer, plan.vendor_id, PRE_CHARGE_MESSAGE_ID, data)


async def run_session(
    charger: SimulatedCharger,
    plan: SessionPlan | None = None,
    *,
    connector_id: int = 1,
    id_tag: str = "SIMTAG0001",
    boot: bool = True,
    pace: Pace | None = None,
    rng: random.Random | None = None,
) -> SessionResult:
    """Plug in, authorize, charge, unplug, as a 1.6 charger reports it.

    Sequence: [Boot,] Status Available → Preparing, DataTransfer PreChargeData
    (the EV's data arrives once the cable is in, before authorization),
    Authorize, StartTransaction, Status Charging, `plan.meter_values` times MeterValues
    with rising energy and SoC, StopTransaction, Status Finishing → Available,
    Heartbeat. `pace` is awaited before every message after boot.

    While the charger is deliberately offline (go_offline), messages that are
    not queued are skipped, so the session runs to completion offline with
    transaction id -1, as real firmware does. An unexpected disconnect raises
    ChargerDisconnected so the caller can reconnect.
    """
    plan = plan or SessionPlan()
    rng = rng or random.Random()
    step = Steps(charger, pace)

    if boot:
        await step.boot()
    await step(charger.status, connector_id, "Available")
    await step(charger.status, connector_id, "Preparing")
    await step.pre_charge(plan)
    await step(charger.authorize, id_tag)

    register = charger.meter_wh[connector_id]
    meter_start = int(register)
    soc = plan.start_soc
    started = datetime.now(UTC)
    # None means the Start was queued offline (transaction messages are never
    # skipped), so the rest of the session must use the local id.
    answered = await step(
        charger.start_transaction, connector_id, id_tag, meter_start, timestamp=started
    )
    tx = answered if answered is not None else OFFLINE_TRANSACTION_ID
    await step(charger.status, connector_id, "Charging")

    for s in plan.curve(started, register, charger.phases, rng):
        register, soc = s.energy_wh, s.soc
        await step(
            charger.meter_values,
            connector_id,
            tx,
            s.energy_wh,
            s.power_w,
            s.current_a,
            s.voltage_v,
            s.soc,
            timestamp=s.at,
        )
    charger.meter_wh[connector_id] = register
    meter_stop = int(register)

    stopped = started + timedelta(seconds=plan.charging_seconds())
    await step(charger.stop_transaction, tx, meter_stop, "EVDisconnected", stopped, id_tag=id_tag)
    await step(charger.status, connector_id, "Finishing")
    await step(charger.status, connector_id, "Available")
    await step(charger.heartbeat)
    return SessionResult(
        transaction_id=tx,
        meter_start=meter_start,
        meter_stop=meter_stop,
        final_soc=soc,
        messages=step.messages,
    )


class SaturationMeter:
    """The meter of a charger in the saturation mix: each reading adds 50 to 400 Wh, and the
    charger's clock runs on by the time ``POWER_W`` takes to deliver that, whatever the pace
    of the messages (session time, as in ``SessionPlan.curve``). On the wall clock, readings
    as fast as a server answers would imply megawatts, which the hub's power detector flags:
    an anomaly detected and resolved per transaction, work no real charger's data causes."""

    POWER_W = 11_000.0

    def __init__(self, register_wh: float) -> None:
        self.register_wh = register_wh
        self.at = datetime.now(UTC)

    def advance(self, rng: random.Random) -> None:
        added_wh = rng.uniform(50.0, 400.0)
        self.register_wh += added_wh
        self.at += timedelta(hours=added_wh / self.POWER_W)


def saturation_load(charger: SimulatedCharger, id_tag: str, rng: random.Random) -> SaturationLoad:
    """The 1.6 message of each action of the fleet's saturation mix, a StartStop action
    starting a transaction or stopping the open one; the transaction's messages carry the
    meter's clock (``SaturationMeter``)."""
    transaction: int | None = None
    meter = SaturationMeter(charger.meter_wh[1])

    async def send(action: str) -> object:
        nonlocal transaction
        register = meter.register_wh
        if action == "MeterValues":
            meter.advance(rng)
            return await charger.meter_values(
                1,
                transaction,
                meter.register_wh,
                meter.POWER_W,
                16.0,
                230.0,
                rng.uniform(10, 90),
                timestamp=meter.at,
            )
        if action == "StatusNotification":
            return await charger.status(1, rng.choice(("Charging", "SuspendedEV", "Available")))
        if action == "Heartbeat":
            return await charger.heartbeat()
        if action == "Authorize":
            return await charger.authorize(id_tag)
        if action == "DataTransfer":
            soc = rng.uniform(10.0, 90.0)
            return await charger.data_transfer(
                DEFAULT_VENDOR_ID, PRE_CHARGE_MESSAGE_ID, pre_charge_data(soc)
            )
        if transaction is None:
            transaction = await charger.start_transaction(
                1, id_tag, int(register), timestamp=meter.at
            )
            return transaction
        stopped = await charger.stop_transaction(
            transaction, int(register), id_tag=id_tag, timestamp=meter.at
        )
        transaction = None
        return stopped

    return send
