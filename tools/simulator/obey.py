"""A simulated charger that obeys charging profiles, and the car on its cable: pure, no I/O.

The charger keeps the profiles the CSMS set with the hub's own model of them
(:mod:`hub.domain.profiles`: ``install``, ``split``, ``transaction_over``) and computes its
composite schedule with the hub's pure function (:mod:`hub.domain.schedules`), so a charger
and the hub can only disagree where the benchmark wants them to: in time. It speaks OCPP 1.6
or, as a 2.0.1 or 2.1 station, 2.x (``evseId``, ``chargingProfile``, K01's rules, and
GetCompositeSchedule answered with a ``schedule``). A change of
profiles reaches the car after a reaction delay (a real charger's control loop, the pilot
signal's PWM, the car's own ramp: seconds), and the car then draws the smaller of what it
wants (its maximum rate on its phases, tapering above 80 % SoC) and what the schedule allows.
A limit below the least a car can charge at (6 A, IEC 61851) pauses it.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from hub.domain.profiles import (
    ChargerProfiles,
    Clear,
    Installed,
    Unit,
    Unreadable,
    check_profile,
    clear_of,
    install,
    profile_of,
    split,
    transaction_over,
)
from hub.domain.schedules import Composite, composite
from schemas.ocpp import v16, v21, v201

__all__ = [
    "MIN_CHARGING_A",
    "Car",
    "ChargerControl",
    "Draw",
    "car_draw",
    "now_ms",
    "wanted_a",
]

# IEC 61851-1: a pilot duty cycle below 6 A tells the car not to charge.
MIN_CHARGING_A: Final = 6.0
DEFAULT_REACTION_S: Final = 2.0
# Above this SoC a battery takes less and less current (constant-voltage phase).
TAPER_FROM_SOC: Final = 80.0
# The least a tapering car still takes, as a share of its maximum.
TAPER_FLOOR: Final = 0.1


@dataclass(frozen=True, slots=True)
class Car:
    """A car that plugs in: at most ``max_a`` per phase on ``phases`` phases; it leaves when
    ``target_wh`` is in its battery or after ``stay_s`` seconds, whichever comes first."""

    max_a: float
    phases: int
    capacity_wh: float
    start_soc: float
    target_wh: float
    stay_s: float


def wanted_a(car: Car, soc: float) -> float:
    """What the car takes per phase at ``soc`` when nothing limits it."""
    if soc < TAPER_FROM_SOC:
        return car.max_a
    share = max(TAPER_FLOOR, (100.0 - soc) / (100.0 - TAPER_FROM_SOC))
    return car.max_a * share


def car_draw(wanted: float, limit_a: float | None) -> float:
    """What a car wanting ``wanted`` A draws under ``limit_a`` (None: nothing limits it)."""
    if limit_a is None:
        return wanted
    if limit_a < MIN_CHARGING_A:
        return 0.0
    return min(wanted, limit_a)


@dataclass(frozen=True, slots=True)
class Draw:
    """One second of a car: what it wants and draws per phase, on how many phases."""

    wanted_a: float
    drawn_a: float
    phases: int
    limit_a: float | None


def _tenths_down(amps: float) -> float:
    return math.floor(amps * 10 + 1e-6) / 10


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class _Running:
    transaction_id: int | str  # 2.x: the station's own string
    started_ms: int
    phases: int


# Each version's requests, as msgspec decodes a CALL's payload.
_REQUESTS: Final[dict[str, tuple[type[Any], type[Any], type[Any]]]] = {
    "1.6": (
        v16.SetChargingProfileRequest,
        v16.ClearChargingProfileRequest,
        v16.GetCompositeScheduleRequest,
    ),
    "2.0.1": (
        v201.SetChargingProfileRequest,
        v201.ClearChargingProfileRequest,
        v201.GetCompositeScheduleRequest,
    ),
    "2.1": (
        v21.SetChargingProfileRequest,
        v21.ClearChargingProfileRequest,
        v21.GetCompositeScheduleRequest,
    ),
}


@dataclass(slots=True)
class ChargerControl:
    """The smart-charging part of one charger's firmware.

    ``installed`` is what the charger holds (what GetCompositeSchedule answers from);
    ``applied`` what its control loop acts on, which follows ``installed`` after the
    reaction delay (``reaction_s``, jittered by ±``jitter`` of itself). ``ocpp_version``:
    the messages it speaks (2.x: its connectors are EVSEs)."""

    rated_a: float = 32.0
    ocpp_version: str = "1.6"
    phases: int = 3
    reaction_s: float = DEFAULT_REACTION_S
    jitter: float = 0.25
    rng: random.Random = field(default_factory=random.Random)
    installed: list[Installed] = field(default_factory=list)
    applied: list[Installed] = field(default_factory=list)
    pending: list[tuple[int, list[Installed]]] = field(default_factory=list)
    running: dict[int, _Running] = field(default_factory=dict)
    profile_messages: int = 0

    # ---------------------------------------------------------------- changes

    def _changed(self, now_ms: int) -> None:
        delay_s = self.reaction_s * (1.0 + self.jitter * (2.0 * self.rng.random() - 1.0))
        effective = now_ms + max(0, round(delay_s * 1000))
        if self.pending:
            # A later change never takes effect before an earlier one.
            effective = max(effective, self.pending[-1][0])
        self.pending.append((effective, list(self.installed)))

    def _settle(self, now_ms: int) -> None:
        while self.pending and self.pending[0][0] <= now_ms:
            self.applied = self.pending.pop(0)[1]

    def transaction_started(
        self, connector_id: int, transaction_id: int | str, now_ms: int, phases: int
    ) -> None:
        self.running[connector_id] = _Running(transaction_id, now_ms, phases)

    def transaction_ended(self, connector_id: int, now_ms: int) -> None:
        running = self.running.pop(connector_id, None)
        if running is None:
            return
        kept, ended = transaction_over(self.installed, connector_id, str(running.transaction_id))
        if ended:
            self.installed = kept
            # The transaction is over at once, whatever the control loop thinks.
            self.applied = [one for one in self.applied if one not in ended]
            self.pending = [
                (at, [one for one in snapshot if one not in ended]) for at, snapshot in self.pending
            ]

    # ------------------------------------------------------- the CSMS's CALLs

    def set_charging_profile(self, payload: dict[str, Any], now_ms: int) -> dict[str, Any]:
        self.profile_messages += 1
        kind = _REQUESTS[self.ocpp_version][0]
        try:
            request = msgspec.convert(payload, kind)
            if isinstance(request, v16.SetChargingProfileRequest):
                connector_id, given = request.connector_id, request.cs_charging_profiles
            else:
                connector_id, given = request.evse_id, request.charging_profile
            profile = profile_of(given)
        except (msgspec.ValidationError, Unreadable):
            return {"status": "Rejected"}
        running = self.running.get(connector_id)
        model = ChargerProfiles(installed=list(self.installed))
        transaction_id = running.transaction_id if running is not None else None
        if check_profile(
            model,
            connector_id,
            profile,
            transaction_id=transaction_id,
            ocpp_version=self.ocpp_version,
        ):
            return {"status": "Rejected"}
        session = ""
        if profile.purpose == "TxProfile" and running is not None:
            session = str(running.transaction_id)
        new = Installed(
            connector_id=connector_id, profile=profile, session=session, installed_at=now_ms
        )
        self.installed, _ = install(self.installed, new)
        self._changed(now_ms)
        return {"status": "Accepted"}

    def clear_charging_profile(self, payload: dict[str, Any], now_ms: int) -> dict[str, Any]:
        self.profile_messages += 1
        try:
            clear: Clear = clear_of(msgspec.convert(payload, _REQUESTS[self.ocpp_version][1]))
        except msgspec.ValidationError:
            return {"status": "Unknown"}
        kept, removed = split(self.installed, clear)
        if not removed:
            return {"status": "Unknown"}
        self.installed = kept
        self._changed(now_ms)
        return {"status": "Accepted"}

    def composite_schedule(self, payload: dict[str, Any], now_ms: int) -> dict[str, Any]:
        try:
            request = msgspec.convert(payload, _REQUESTS[self.ocpp_version][2])
        except msgspec.ValidationError:
            return {"status": "Rejected"}
        unit: Unit = "W" if request.charging_rate_unit == "W" else "A"
        if isinstance(request, v16.GetCompositeScheduleRequest):
            connector_id = request.connector_id
        else:
            connector_id = request.evse_id
        schedule, phases = self._composite(
            self.installed, connector_id, now_ms, request.duration, unit
        )
        rated = self.rated_a if unit == "A" else self.rated_a * phases * 230.0
        periods = [
            {
                "startPeriod": period.start_s,
                # Where no profile says anything the charger's own rating limits it.
                "limit": _tenths_down(period.limit if period.limit is not None else rated),
                "numberPhases": period.phases,
            }
            for period in schedule.periods
        ]
        if self.ocpp_version != "1.6":
            return {
                "status": "Accepted",
                "schedule": {
                    "evseId": connector_id,
                    "duration": schedule.duration_s,
                    "scheduleStart": _iso(schedule.start_ms),
                    "chargingRateUnit": unit,
                    "chargingSchedulePeriod": periods,
                },
            }
        return {
            "status": "Accepted",
            "connectorId": connector_id,
            "scheduleStart": _iso(schedule.start_ms),
            "chargingSchedule": {
                "chargingRateUnit": unit,
                "duration": schedule.duration_s,
                "startSchedule": _iso(schedule.start_ms),
                "chargingSchedulePeriod": periods,
            },
        }

    def _composite(
        self,
        profiles: list[Installed],
        connector_id: int,
        now_ms: int,
        duration_s: int,
        unit: Unit,
    ) -> tuple[Composite, int]:
        """The composite of ``profiles`` on the connector, on the phases of the car charging
        there (else the charger's), and those phases."""
        running = self.running.get(connector_id)
        phases = running.phases if running is not None else self.phases
        schedule = composite(
            profiles,
            connector_id,
            now_ms,
            duration_s,
            unit,
            transaction_start_ms=running.started_ms if running is not None else None,
            phases=phases,
        )
        return schedule, phases

    def answer(self, action: str, payload: dict[str, Any], now_ms: int) -> dict[str, Any] | None:
        """The answer to a CSMS CALL this part of the firmware handles, None for others."""
        if action == "SetChargingProfile":
            return self.set_charging_profile(payload, now_ms)
        if action == "ClearChargingProfile":
            return self.clear_charging_profile(payload, now_ms)
        if action == "GetCompositeSchedule":
            return self.composite_schedule(payload, now_ms)
        return None

    # ------------------------------------------------------------ the car

    def limit_a(self, connector_id: int, now_ms: int) -> tuple[float | None, int]:
        """The limit per phase the control loop applies on the connector now, and on how many
        phases (None: no profile limits it, the charger's rating does)."""
        self._settle(now_ms)
        schedule, _ = self._composite(self.applied, connector_id, now_ms, 1, "A")
        period = schedule.periods[0]
        return period.limit, period.phases

    def draw(self, connector_id: int, car: Car, soc: float, now_ms: int) -> Draw:
        """What the car on ``connector_id`` draws now."""
        limit, phases = self.limit_a(connector_id, now_ms)
        wanted = min(wanted_a(car, soc), self.rated_a)
        rated_limit = self.rated_a if limit is None else min(limit, self.rated_a)
        return Draw(
            wanted_a=wanted,
            drawn_a=car_draw(wanted, rated_limit),
            phases=min(car.phases, phases),
            limit_a=limit,
        )
