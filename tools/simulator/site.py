"""Chargers whose cars obey charging profiles, with cars that come and go: the load-management
benchmark's fleet (``bench/load_management.py``) and its integration test.

Each charger (OCPP 1.6J, one connector) answers SetChargingProfile, ClearChargingProfile and
GetCompositeSchedule with :class:`~tools.simulator.obey.ChargerControl`. Cars arrive at
random (exponential gaps: Poisson arrivals), each with its maximum rate (16 or 32 A), its
phases (1 or 3), its battery and what it wants in it; every second the car draws what the
applied profiles allow, which is recorded in a :class:`DrawLog` (the benchmark's ground
truth), and every ``meter_interval_s`` the charger reports the draw in MeterValues
(Current.Import on the phases the car uses, Power, the Energy register). A car leaves when
its energy is in or its time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from tools.simulator.charger import CallError, ChargerDisconnected, Payload, SimulatedCharger
from tools.simulator.obey import DEFAULT_REACTION_S, Car, ChargerControl, Draw, now_ms

__all__ = [
    "DrawLog",
    "DrawRecord",
    "ObedientCharger",
    "SiteFleetOptions",
    "random_car",
    "run_site_fleet",
]

log = logging.getLogger(__name__)

VOLTAGE: Final = 230.0
# 50 cars for an hour, one record a second each, with room to spare.
DEFAULT_MAX_RECORDS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class DrawRecord:
    """A car's second: ``at_s`` (Unix seconds), its charger, what it wanted and drew per
    phase, on how many phases, and the limit its charger applied (None: none)."""

    at_s: int
    charge_point_id: str
    wanted_a: float
    drawn_a: float
    phases: int
    limit_a: float | None


@dataclass(slots=True)
class DrawLog:
    """Every car's seconds, bounded: past ``max_records`` new ones are counted, not kept."""

    max_records: int = DEFAULT_MAX_RECORDS
    records: list[DrawRecord] = field(default_factory=list)
    dropped: int = 0
    sessions: int = 0
    plugged_s: float = 0.0

    def add(self, at_s: int, charge_point_id: str, draw: Draw) -> None:
        if len(self.records) >= self.max_records:
            self.dropped += 1
            if self.dropped == 1:
                log.warning(
                    "draw log full at %d records; later seconds are not kept", self.max_records
                )
            return
        self.records.append(
            DrawRecord(
                at_s, charge_point_id, draw.wanted_a, draw.drawn_a, draw.phases, draw.limit_a
            )
        )


def random_car(rng: random.Random, stay_s: tuple[float, float] = (120.0, 480.0)) -> Car:
    """A car as they come: most on three phases, half of them limited to 16 A."""
    capacity = rng.uniform(40_000.0, 90_000.0)
    start_soc = rng.uniform(10.0, 70.0)
    target_soc = min(100.0, start_soc + rng.uniform(10.0, 60.0))
    return Car(
        max_a=rng.choice((16.0, 32.0)),
        phases=3 if rng.random() < 0.7 else 1,
        capacity_wh=capacity,
        start_soc=start_soc,
        target_wh=capacity * (target_soc - start_soc) / 100.0,
        stay_s=rng.uniform(*stay_s),
    )


class ObedientCharger:
    """One 1.6 charger with one connector whose cars obey the profiles it holds."""

    def __init__(
        self,
        charge_point_id: str,
        url: str,
        *,
        draws: DrawLog,
        reaction_s: float = DEFAULT_REACTION_S,
        meter_interval_s: float = 10.0,
        tick_s: float = 1.0,
        rng: random.Random | None = None,
        call_timeout: float = 30.0,
    ) -> None:
        self.rng = rng or random.Random()
        # The firmware's jitter has its own stream, so that the cars a seed plays are the
        # same whether or not profiles arrive (the baseline without load management).
        jitter = random.Random(self.rng.getrandbits(64))
        self.control = ChargerControl(reaction_s=reaction_s, rng=jitter)
        self.draws = draws
        self.meter_interval_s = meter_interval_s
        self.tick_s = tick_s
        self.link = SimulatedCharger(
            charge_point_id, url, on_call=self._on_call, call_timeout=call_timeout
        )
        self.skipped_samples = 0
        self.car: Car | None = None
        self.last: Draw | None = None

    @property
    def charge_point_id(self) -> str:
        return self.link.charge_point_id

    def _on_call(self, action: str, payload: Payload) -> Payload | None:
        return self.control.answer(action, payload, now_ms())

    async def start(self) -> None:
        await self.link.come_online()
        await self.link.announce()

    async def close(self) -> None:
        await self.link.close()

    async def charge(self, car: Car, stop: asyncio.Event, id_tag: str = "LMTAG") -> None:
        """One car's session, from plugging in to unplugging."""
        link, control = self.link, self.control
        await link.status(1, "Preparing")
        await link.authorize(id_tag)
        register = link.meter_wh[1]
        tx = await link.start_transaction(1, id_tag, int(register))
        if tx is None:
            raise ChargerDisconnected(f"{self.charge_point_id}: offline at the start")
        started = time.monotonic()
        control.transaction_started(1, tx, now_ms(), car.phases)
        self.car = car
        await link.status(1, "Charging")
        energy = 0.0
        soc = car.start_soc
        sending: asyncio.Task[object] | None = None
        next_sample = started + self.meter_interval_s
        last = started
        try:
            while not stop.is_set():
                await _sleep_or_stop(stop, self.tick_s - (time.monotonic() - last))
                now = time.monotonic()
                elapsed, last = now - last, now
                draw = control.draw(1, car, soc, now_ms())
                self.last = draw
                added = draw.drawn_a * draw.phases * VOLTAGE * elapsed / 3600.0
                energy += added
                soc = min(100.0, soc + added / car.capacity_wh * 100.0)
                self.draws.add(int(time.time()), self.charge_point_id, draw)
                if now >= next_sample:
                    next_sample += self.meter_interval_s
                    if sending is not None and not sending.done():
                        # One CALL in flight: a hub this slow loses a sample, visibly.
                        self.skipped_samples += 1
                    else:
                        sending = asyncio.create_task(
                            link.meter_values(
                                1,
                                tx,
                                register + energy,
                                draw.drawn_a * draw.phases * VOLTAGE,
                                draw.drawn_a,
                                VOLTAGE,
                                soc,
                                phases=draw.phases,
                            )
                        )
                if energy >= car.target_wh or now - started >= car.stay_s:
                    break
        finally:
            if sending is not None:
                with contextlib.suppress(CallError, TimeoutError, ChargerDisconnected):
                    await sending
            self.draws.sessions += 1
            self.draws.plugged_s += time.monotonic() - started
            link.meter_wh[1] = register + energy
            control.transaction_ended(1, now_ms())
            self.car = None
        await link.stop_transaction(tx, int(register + energy), "EVDisconnected", id_tag=id_tag)
        await link.status(1, "Finishing")
        await link.status(1, "Available")

    async def run(self, stop: asyncio.Event, mean_gap_s: float, first_gap_s: float = 0.0) -> None:
        """Cars, one after the other, with a random gap between them (the first after
        ``first_gap_s`` at most), until ``stop``."""
        gap = self.rng.uniform(0.0, first_gap_s)
        while not await _sleep_or_stop(stop, gap):
            car = random_car(self.rng)
            with contextlib.suppress(CallError, TimeoutError, ChargerDisconnected):
                await self.charge(car, stop, id_tag=f"T{self.charge_point_id}"[-20:])
            gap = self.rng.expovariate(1.0 / mean_gap_s)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ``stop`` was set first."""
    if stop.is_set():
        return True
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()
    return stop.is_set()


@dataclass(frozen=True, slots=True)
class SiteFleetOptions:
    url: str
    charger_ids: Sequence[str]
    seed: int = 1
    reaction_s: float = DEFAULT_REACTION_S
    meter_interval_s: float = 10.0
    mean_gap_s: float = 30.0
    """Mean seconds a connector stands empty between two cars."""
    first_gap_s: float = 20.0
    """The first cars arrive within this many seconds of the start."""


async def run_site_fleet(
    options: SiteFleetOptions, draws: DrawLog, stop: asyncio.Event
) -> list[ObedientCharger]:
    """Connect every charger, run cars on them until ``stop``, disconnect; the chargers are
    returned for their counters."""
    master = random.Random(options.seed)
    chargers = [
        ObedientCharger(
            charger_id,
            options.url,
            draws=draws,
            reaction_s=options.reaction_s,
            meter_interval_s=options.meter_interval_s,
            # One stream per charger, so the same seed plays the same cars on each.
            rng=random.Random(master.getrandbits(64)),
        )
        for charger_id in options.charger_ids
    ]
    try:
        for charger in chargers:
            await charger.start()
        async with asyncio.TaskGroup() as group:
            for charger in chargers:
                group.create_task(charger.run(stop, options.mean_gap_s, options.first_gap_s))
    finally:
        for charger in chargers:
            with contextlib.suppress(Exception):
                await charger.close()
    return chargers
