"""Sampled values: one row each, in the measurand's base unit (Wh, W, varh, var, VA)."""

from __future__ import annotations

import math
from typing import Final, NamedTuple

from msgspec import UNSET as _UNSET
from msgspec.structs import astuple

from schemas.ocpp.v16 import (
    SampledValue,
    TransactionDataSampledValue,
)

ENERGY_REGISTER: Final = "Energy.Active.Import.Register"

# OCPP 1.6 §7.45: kilo units scale to their base; every other unit passes through.
_SCALE: Final = {"kWh": ("Wh", 1000.0), "kW": ("W", 1000.0), "kvarh": ("varh", 1000.0)}
_SCALE_MORE: Final = {"kvar": ("var", 1000.0), "kVA": ("VA", 1000.0)}

Sampled = SampledValue | TransactionDataSampledValue


# No meter reads a petawatt-hour (or a petawatt, ...): past this a value is a charger's
# garbage, and pricing it would outrun Decimal's precision.
PLAUSIBLE_LIMIT: Final = 1e15


class Kind(NamedTuple):
    """What a sampled value measures, with the defaults OCPP 1.6 gives to omitted fields."""

    measurand: str
    phase: str
    location: str
    context: str
    unit: str
    factor: float
    signed: bool
    # The session's total import register: no phase, so not one leg of it.
    is_energy_register: bool


# Every field of a sampled value but its number is an enum in the schema, so there are few
# kinds and a charger repeats its own in every message: each is worked out once.
_kinds: dict[tuple[object, ...], Kind] = {}


def kind_of(sampled: Sampled) -> Kind:
    # Every field but the number (the first), read in one call.
    fields = astuple(sampled)[1:]
    kind = _kinds.get(fields)
    if kind is None:
        kind = _kinds[fields] = _kind(sampled)
    return kind


def _kind(sampled: Sampled) -> Kind:
    measurand = ENERGY_REGISTER if sampled.measurand is _UNSET else str(sampled.measurand)
    phase = "" if sampled.phase is _UNSET else str(sampled.phase)
    unit = "Wh" if sampled.unit is _UNSET else str(sampled.unit)
    base, factor = _SCALE.get(unit) or _SCALE_MORE.get(unit) or (unit, 1.0)
    return Kind(
        measurand=measurand,
        phase=phase,
        location="Outlet" if sampled.location is _UNSET else str(sampled.location),
        context="Sample.Periodic" if sampled.context is _UNSET else str(sampled.context),
        unit=base,
        factor=factor,
        signed=sampled.format == "SignedData",
        is_energy_register=measurand == ENERGY_REGISTER and not phase and base == "Wh",
    )


def value_of(sampled: Sampled, kind: Kind) -> float:
    """The number in the base unit; ``ValueError`` saying why it is none."""
    if kind.signed:
        raise ValueError(f"{kind.measurand}: signed data is not a number")
    try:
        number = float(sampled.value)
    except ValueError:
        text = sampled.value[:40]
        raise ValueError(f"{kind.measurand}: value {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{kind.measurand}: value {sampled.value[:40]!r} is not finite")
    value = number * kind.factor
    if abs(value) > PLAUSIBLE_LIMIT:
        raise ValueError(f"{kind.measurand}: value {sampled.value[:40]!r} is beyond any meter")
    return value
