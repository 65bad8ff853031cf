"""Sampled values: one row each, in the measurand's base unit (Wh, W, varh, var, VA).

OCPP 1.6 sends a value as text with its unit; 2.0.1 and 2.1 send a number with a unit of
measure (unit and power-of-ten multiplier). Both come to the same ``Kind`` and base unit, so a
reading means the same whichever version sent it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, cast

import msgspec
from msgspec import UNSET as _UNSET
from msgspec.structs import replace

from hub.domain.facts import Sample
from schemas.ocpp import v21, v201
from schemas.ocpp.v16 import (
    SampledValue,
    TransactionDataSampledValue,
)

ENERGY_REGISTER: Final = "Energy.Active.Import.Register"

# OCPP 1.6 §7.45: kilo units scale to their base; every other unit passes through.
_SCALE: Final = {"kWh": ("Wh", 1000.0), "kW": ("W", 1000.0), "kvarh": ("varh", 1000.0)}
_SCALE_MORE: Final = {"kvar": ("var", 1000.0), "kVA": ("VA", 1000.0)}

Sampled16 = SampledValue | TransactionDataSampledValue
Sampled2 = v201.SampledValue | v21.SampledValue
Sampled = Sampled16 | Sampled2
# By exact type: ``isinstance`` against a msgspec Struct class that does not match goes
# through the metaclass (0.2 µs a class), and a 1.6 sample missed both, twice a reading.
_SAMPLED_2X: Final = frozenset({v201.SampledValue, v21.SampledValue})
_SAMPLED_16: Final = frozenset({SampledValue, TransactionDataSampledValue})


# No meter reads a petawatt-hour (or a petawatt, ...): past this a value is a charger's
# garbage, and pricing it would outrun Decimal's precision.
PLAUSIBLE_LIMIT: Final = 1e15


class Kind(msgspec.Struct, frozen=True, gc=False):
    """What a sampled value measures, with the defaults OCPP 1.6 gives to omitted fields."""

    # A Struct, not a NamedTuple: its fields are read for every sample, and a Struct's
    # attribute is a slot the interpreter reads directly, a NamedTuple's a descriptor call.

    measurand: str
    phase: str
    location: str
    context: str
    unit: str
    factor: float
    signed: bool
    # The session's total import register: no phase, so not one leg of it.
    is_energy_register: bool
    # A sample of this kind (at time 0, value 0): a reading's sample is a copy with its own
    # time and value, half the cost of building one field by field.
    template: Sample


# Every field of a sampled value but its number is an enum in the schema, so there are few
# kinds and a charger repeats its own in every message: each is worked out once.
_kinds: dict[tuple[object, ...], Kind] = {}


def readings(
    values: Sequence[Sampled16] | Sequence[Sampled2],
    at_ms: int,
    samples: list[Sample],
    problems: list[str],
) -> float | None:
    """Add the samples of one sample set, taken at ``at_ms``, to ``samples``, and why each
    that is no number is none to ``problems``; return its energy register reading (the
    first), if it has one.

    kind_of and value_of are inline for the usual sample, a 1.6 one of a kind seen before
    with a plausible number (two calls less for each of a MeterValues' half dozen), and
    called for any other, as they say why a value is none."""
    # A set's samples are of one type, its schema's: checked once, not a lookup a sample.
    sixteen = bool(values) and type(values[0]) in _SAMPLED_16
    register: float | None = None
    for sampled in values:
        kind = None
        if sixteen:
            # kind_of's key, inline: a tuple of slots read in place costs a third of astuple's.
            fields = (
                sampled.context,
                sampled.format,  # type: ignore[union-attr]
                sampled.measurand,
                sampled.phase,
                sampled.location,
                sampled.unit,  # type: ignore[union-attr]
            )
            kind = _kinds.get(fields)
        if kind is None:
            kind = kind_of(sampled)
        try:
            value = float(sampled.value) * kind.factor
        except (ValueError, OverflowError):
            value = math.nan  # value_of says what it is instead
        if kind.signed or not -PLAUSIBLE_LIMIT <= value <= PLAUSIBLE_LIMIT:
            try:
                value = value_of(sampled, kind)
            except ValueError as error:
                problems.append(str(error))
                continue
        samples.append(replace(kind.template, at_ms=at_ms, value=value))
        if register is None and kind.is_energy_register:
            register = value
    return register


def kind_of(sampled: Sampled) -> Kind:
    if type(sampled) in _SAMPLED_2X:
        return _kind_2x(cast(Sampled2, sampled))
    s = cast(Sampled16, sampled)
    # Every field but the number: what its kind depends on (readings reads the same).
    fields = (s.context, s.format, s.measurand, s.phase, s.location, s.unit)
    kind = _kinds.get(fields)
    if kind is None:
        kind = _kinds[fields] = _kind_16(s)
    return kind


def _kind_16(sampled: Sampled16) -> Kind:
    unit = "Wh" if sampled.unit is _UNSET else str(sampled.unit)
    return _kind(sampled, unit, 0, signed=sampled.format == "SignedData")


def _kind_2x(sampled: Sampled2) -> Kind:
    measure = sampled.unit_of_measure
    unit, multiplier = "Wh", 0
    if not isinstance(measure, msgspec.UnsetType):
        unit = "Wh" if isinstance(measure.unit, msgspec.UnsetType) else measure.unit
        multiplier = 0 if isinstance(measure.multiplier, msgspec.UnsetType) else measure.multiplier
    # Keyed apart from 1.6's kinds (a tuple of another length).
    fields: tuple[object, ...] = (
        "2.x",
        sampled.measurand,
        sampled.phase,
        sampled.location,
        sampled.context,
        unit,
        multiplier,
    )
    kind = _kinds.get(fields)
    if kind is None:
        # 2.x signs a reading beside its number (signedMeterValue): the number still counts.
        kind = _kinds[fields] = _kind(sampled, unit, multiplier, signed=False)
    return kind


def _kind(sampled: Sampled, unit: str, multiplier: int, *, signed: bool) -> Kind:
    measurand = ENERGY_REGISTER if sampled.measurand is _UNSET else str(sampled.measurand)
    phase = "" if sampled.phase is _UNSET else str(sampled.phase)
    base, factor = _SCALE.get(unit) or _SCALE_MORE.get(unit) or (unit, 1.0)
    # A multiplier far out of any meter's range makes the value implausible, not a crash.
    factor *= 10.0 ** max(-30, min(30, multiplier))
    location = "Outlet" if sampled.location is _UNSET else str(sampled.location)
    context = "Sample.Periodic" if sampled.context is _UNSET else str(sampled.context)
    return Kind(
        measurand=measurand,
        phase=phase,
        location=location,
        context=context,
        unit=base,
        factor=factor,
        signed=signed,
        is_energy_register=measurand == ENERGY_REGISTER and not phase and base == "Wh",
        template=Sample(
            at_ms=0,
            measurand=measurand,
            value=0.0,
            unit=base,
            phase=phase,
            location=location,
            context=context,
        ),
    )


def value_of(sampled: Sampled, kind: Kind) -> float:
    """The number in the base unit; ``ValueError`` saying why it is none."""
    if kind.signed:
        raise ValueError(f"{kind.measurand}: signed data is not a number")
    try:
        number = float(sampled.value)
    except ValueError:
        text = str(sampled.value)[:40]
        raise ValueError(f"{kind.measurand}: value {text!r} is not a number") from None
    value = number * kind.factor
    if -PLAUSIBLE_LIMIT <= value <= PLAUSIBLE_LIMIT:
        return value  # NaN and the infinities fail this too: why, below
    if not math.isfinite(number):
        raise ValueError(f"{kind.measurand}: value {str(sampled.value)[:40]!r} is not finite")
    raise ValueError(f"{kind.measurand}: value {str(sampled.value)[:40]!r} is beyond any meter")
