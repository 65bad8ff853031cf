"""The one cost function: a tariff applied to a session's energy curve.

Billing uses it on replay and live alike, and the live cost shown to UIs will call it on the
curve so far, so a price shown while charging is the price billed. It is pure: no clock, no
I/O; money is ``Decimal`` end to end and rounded once per component, half-even, to 4 places.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

import msgspec

from schemas.events import TariffBand

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


class Cost(msgspec.Struct, frozen=True, kw_only=True):
    energy_cost: Decimal
    time_cost: Decimal
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
    for name in ("per_kwh", "per_minute", "session_fee"):
        _price(getattr(tariff, name), name)
    for index, band in enumerate(tariff.bands):
        parse_hhmm(band.start)
        parse_hhmm(band.end)
        _price(band.per_kwh, f"bands[{index}].per_kwh")
        _price(band.per_minute, f"bands[{index}].per_minute")


def _price(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise ValueError(f"{name}: {text!r} is not a decimal number") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name}: {text!r} must be a finite, non-negative number")
    return value


def _rates_at(tariff: Tariff, minute_of_day: int) -> tuple[Decimal, Decimal]:
    for band in tariff.bands:
        start, end = parse_hhmm(band.start), parse_hhmm(band.end)
        inside = start <= minute_of_day < end if start <= end else not end <= minute_of_day < start
        if inside:
            return Decimal(band.per_kwh), Decimal(band.per_minute)
    return Decimal(tariff.per_kwh), Decimal(tariff.per_minute)


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


def session_cost(tariff: Tariff, curve: Sequence[Point]) -> Cost:
    """Cost of the energy and time between the first and last point of ``curve`` (sorted).

    Energy between two points is spread evenly over the time between them, so a time-of-day
    band gets its share of a long interval.
    """
    if not tariff.bands:
        return _flat(tariff, curve)
    energy = _ZERO
    minutes = _ZERO
    for (t0, v0), (t1, v1) in itertools.pairwise(curve):
        if t1 <= t0:
            rate, _ = _rates_at(tariff, (t0 % _DAY_MS) // _MINUTE_MS)
            energy += Decimal(repr(v1 - v0)) / 1000 * rate
            continue
        edges = [t0, *_cuts(tariff, t0, t1), t1]
        for a, b in itertools.pairwise(edges):
            per_kwh, per_minute = _rates_at(tariff, ((a + b) // 2 % _DAY_MS) // _MINUTE_MS)
            share = Decimal(repr(v1 - v0)) * (b - a) / (t1 - t0)
            energy += share / 1000 * per_kwh
            minutes_here = Decimal(b - a) / _MINUTE_MS
            minutes += minutes_here * per_minute
    fee = Decimal(tariff.session_fee) if curve else _ZERO
    energy_cost = energy.quantize(_PLACES, ROUND_HALF_EVEN)
    time_cost = minutes.quantize(_PLACES, ROUND_HALF_EVEN)
    fee = fee.quantize(_PLACES, ROUND_HALF_EVEN)
    return Cost(
        energy_cost=energy_cost,
        time_cost=time_cost,
        session_fee=fee,
        total=energy_cost + time_cost + fee,
    )


def _flat(tariff: Tariff, curve: Sequence[Point]) -> Cost:
    """Without bands every reading costs the same: the same sums, in O(1)."""
    if not curve:
        zero = _ZERO.quantize(_PLACES)
        return Cost(energy_cost=zero, time_cost=zero, session_fee=zero, total=zero)
    wh = Decimal(repr(curve[-1][1] - curve[0][1]))
    span_ms = max(0, curve[-1][0] - curve[0][0])
    energy_cost = (wh / 1000 * Decimal(tariff.per_kwh)).quantize(_PLACES, ROUND_HALF_EVEN)
    time_cost = (Decimal(span_ms) / _MINUTE_MS * Decimal(tariff.per_minute)).quantize(
        _PLACES, ROUND_HALF_EVEN
    )
    fee = Decimal(tariff.session_fee).quantize(_PLACES, ROUND_HALF_EVEN)
    return Cost(
        energy_cost=energy_cost,
        time_cost=time_cost,
        session_fee=fee,
        total=energy_cost + time_cost + fee,
    )
