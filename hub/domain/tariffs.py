"""The one cost function: a tariff applied to a session's energy curve.

Billing uses it on replay and live alike, and the live cost shown to UIs will call it on the
curve so far, so a price shown while charging is the price billed. It is pure: no clock, no
I/O; money is ``Decimal`` end to end and rounded once per component, half-even, to 4 places.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

import msgspec

from schemas.events import SessionLimits, TariffBand, TariffSet

_PLACES: Final = Decimal("0.0001")
_DAY_MS: Final = 86_400_000
_MINUTE_MS: Final = 60_000
_ZERO: Final = Decimal(0)


class Tariff(msgspec.Struct, frozen=True, kw_only=True):
    tariff_id: str = ""
    currency: str = ""
    per_kwh: str = "0"
    per_minute: str = "0"
    session_fee: str = "0"
    bands: tuple[TariffBand, ...] = ()
    idle_per_minute: str = "0"
    idle_grace_minutes: int = 0
    limits: SessionLimits | None = None

    @classmethod
    def from_event(cls, event: TariffSet) -> Tariff:
        return cls(
            tariff_id=event.tariff_id,
            currency=event.currency,
            per_kwh=event.per_kwh,
            per_minute=event.per_minute,
            session_fee=event.session_fee,
            bands=event.bands,
            idle_per_minute=event.idle_per_minute,
            idle_grace_minutes=event.idle_grace_minutes,
            limits=event.limits,
        )


class Cost(msgspec.Struct, frozen=True, kw_only=True):
    energy_cost: Decimal
    time_cost: Decimal
    idle_cost: Decimal
    session_fee: Decimal
    total: Decimal


# A point of a session's energy curve: (charger time in Unix ms, meter register in Wh).
Point = tuple[int, float]


def parse_hhmm(text: str) -> int:
    """``HH:MM`` to minutes after midnight; ``24:00`` is the end of the day."""
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"{text!r} is not HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise ValueError(f"{text!r} is not a time of day")
    return value


def validate(tariff: Tariff) -> None:
    """Raise ``ValueError`` naming the field that is not a usable price or band."""
    for name in ("per_kwh", "per_minute", "session_fee", "idle_per_minute"):
        _price(getattr(tariff, name), name)
    if tariff.idle_grace_minutes < 0:
        raise ValueError(f"idle_grace_minutes: {tariff.idle_grace_minutes} must not be negative")
    limits = tariff.limits
    if limits is not None:
        validate_limits(limits, "limits")
    for index, band in enumerate(tariff.bands):
        parse_hhmm(band.start)
        parse_hhmm(band.end)
        _price(band.per_kwh, f"bands[{index}].per_kwh")
        _price(band.per_minute, f"bands[{index}].per_minute")


def validate_limits(limits: SessionLimits, where: str) -> None:
    if limits.max_energy_wh is not None and not limits.max_energy_wh > 0:
        raise ValueError(f"{where}.max_energy_wh: {limits.max_energy_wh} must be above 0")
    if limits.max_duration_s is not None and limits.max_duration_s <= 0:
        raise ValueError(f"{where}.max_duration_s: {limits.max_duration_s} must be above 0")
    if limits.max_cost is not None:
        _price(limits.max_cost, f"{where}.max_cost")


def _price(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise ValueError(f"{name}: {text!r} is not a decimal number") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name}: {text!r} must be a finite, non-negative number")
    return value


@functools.lru_cache(maxsize=1024)
def _rate(text: str) -> Decimal:
    """A price of a tariff's, parsed once: a bill is worked out on every session version."""
    return Decimal(text)


def _rates_at(tariff: Tariff, minute_of_day: int) -> tuple[Decimal, Decimal]:
    for band in tariff.bands:
        start, end = parse_hhmm(band.start), parse_hhmm(band.end)
        inside = start <= minute_of_day < end if start <= end else not end <= minute_of_day < start
        if inside:
            return _rate(band.per_kwh), _rate(band.per_minute)
    return _rate(tariff.per_kwh), _rate(tariff.per_minute)


def _cuts(tariff: Tariff, start: int, end: int) -> list[int]:
    """Instants in (start, end) where a band may begin or end: pieces between are uniform."""
    if not tariff.bands:
        return []
    offsets = sorted(
        {0}
        | {parse_hhmm(b.start) * _MINUTE_MS for b in tariff.bands}
        | {parse_hhmm(b.end) * _MINUTE_MS for b in tariff.bands}
    )
    cuts: list[int] = []
    day = start - start % _DAY_MS
    while day < end:
        cuts.extend(day + offset for offset in offsets if start < day + offset < end)
        day += _DAY_MS
    return cuts


def charging_until(curve: Sequence[Point]) -> int:
    """When the energy last went up: the session is idle from there to its last point."""
    # Looked for from the end: a curve that grows rose last at or near its end, and a bill
    # is worked out on every session version, so walking it all each time was a cost.
    for index in range(len(curve) - 1, 0, -1):
        if curve[index][1] > curve[index - 1][1]:
            return curve[index][0]
    return curve[0][0] if curve else 0


def _per_minute(ms: int, rate: Decimal) -> Decimal:
    """``ms`` priced at ``rate`` a minute. Most tariffs price no time: a zero rate costs
    nothing without the division (the same once rounded, as no span is negative)."""
    if not rate and not rate.is_signed():
        return _ZERO
    return Decimal(ms) / _MINUTE_MS * rate


@functools.lru_cache(maxsize=1024)
def _fee(text: str) -> Decimal:
    """A tariff's session fee, rounded once rather than on every session version."""
    return _rate(text).quantize(_PLACES, ROUND_HALF_EVEN)


# What _ZERO rounds to, and the cost of a curve without points.
_ZERO_COST: Final = _ZERO.quantize(_PLACES, ROUND_HALF_EVEN)
_NO_COST: Final = Cost(
    energy_cost=_ZERO_COST,
    time_cost=_ZERO_COST,
    idle_cost=_ZERO_COST,
    session_fee=_ZERO_COST,
    total=_ZERO_COST,
)


def session_cost(tariff: Tariff, curve: Sequence[Point]) -> Cost:
    """Cost of the energy and time between the first and last point of ``curve`` (sorted).

    Energy between two points is spread evenly over the time between them, so a time-of-day
    band gets its share of a long interval. Minutes are charging minutes up to the last rise
    of the register; after it the session is idle, billed per idle minute beyond the grace.
    """
    if not curve:
        return _NO_COST
    until = charging_until(curve)
    energy, minutes = (_flat if not tariff.bands else _banded)(tariff, curve, until)
    idle_ms = max(0, curve[-1][0] - until - tariff.idle_grace_minutes * _MINUTE_MS)
    idle = _per_minute(idle_ms, _rate(tariff.idle_per_minute))
    # Most tariffs price no time and no idling: what a component left at _ZERO rounds to is
    # known (a bill is worked out on every session version).
    energy_cost = _ZERO_COST if energy is _ZERO else energy.quantize(_PLACES, ROUND_HALF_EVEN)
    time_cost = _ZERO_COST if minutes is _ZERO else minutes.quantize(_PLACES, ROUND_HALF_EVEN)
    idle_cost = _ZERO_COST if idle is _ZERO else idle.quantize(_PLACES, ROUND_HALF_EVEN)
    fee = _fee(tariff.session_fee)
    return Cost(
        energy_cost=energy_cost,
        time_cost=time_cost,
        idle_cost=idle_cost,
        session_fee=fee,
        total=energy_cost + time_cost + idle_cost + fee,
    )


def _wh(before: float, after: float) -> Decimal:
    """Energy between two register readings, subtracted in Decimal: a float difference
    rounds, and how a curve was sampled would then move a bill by a ten-thousandth."""
    return Decimal(repr(after)) - Decimal(repr(before))


def _banded(tariff: Tariff, curve: Sequence[Point], until: int) -> tuple[Decimal, Decimal]:
    energy = _ZERO
    minutes = _ZERO
    for (t0, v0), (t1, v1) in itertools.pairwise(curve):
        if t1 <= t0:
            rate, _ = _rates_at(tariff, (t0 % _DAY_MS) // _MINUTE_MS)
            energy += _wh(v0, v1) / 1000 * rate
            continue
        edges = [t0, *_cuts(tariff, t0, t1), t1]
        for a, b in itertools.pairwise(edges):
            per_kwh, per_minute = _rates_at(tariff, ((a + b) // 2 % _DAY_MS) // _MINUTE_MS)
            share = _wh(v0, v1) * (b - a) / (t1 - t0)
            energy += share / 1000 * per_kwh
            if a < until:
                minutes += Decimal(min(b, until) - a) / _MINUTE_MS * per_minute
    return energy, minutes


def _flat(tariff: Tariff, curve: Sequence[Point], until: int) -> tuple[Decimal, Decimal]:
    """Without bands every reading costs the same: the same sums, in O(1)."""
    wh = _wh(curve[0][1], curve[-1][1])
    span_ms = max(0, until - curve[0][0])
    return (
        wh / 1000 * _rate(tariff.per_kwh),
        _per_minute(span_ms, _rate(tariff.per_minute)),
    )


class TariffEntry(msgspec.Struct, frozen=True, kw_only=True):
    charge_point_id: str
    effective_from: int
    tariff: Tariff


def tariff_for(entries: Sequence[TariffEntry], charge_point_id: str, at_ms: int) -> Tariff:
    """The charger's own tariff in force at ``at_ms``, else the default one, else none.

    Among several in force, the latest ``effective_from`` wins, then the latest recorded.
    """
    for target in (charge_point_id, ""):
        best: TariffEntry | None = None
        for entry in entries:
            in_force = entry.charge_point_id == target and entry.effective_from <= at_ms
            if in_force and (best is None or entry.effective_from >= best.effective_from):
                best = entry
        if best is not None:
            return best.tariff
    return Tariff()
