"""Sampled values: one row each, in the measurand's base unit (Wh, W, varh, var, VA)."""

from __future__ import annotations

import math
from typing import Final

from msgspec import UNSET as _UNSET

from schemas.ocpp.v16 import SampledValue, TransactionDataSampledValue

ENERGY_REGISTER: Final = "Energy.Active.Import.Register"

# OCPP 1.6 §7.45: kilo units scale to their base; every other unit passes through.
_SCALE: Final = {"kWh": ("Wh", 1000.0), "kW": ("W", 1000.0), "kvarh": ("varh", 1000.0)}
_SCALE_MORE: Final = {"kvar": ("var", 1000.0), "kVA": ("VA", 1000.0)}

Sampled = SampledValue | TransactionDataSampledValue


class Reading:
    """A sampled value with the defaults OCPP 1.6 gives to the fields a charger left out."""

    __slots__ = ("context", "location", "measurand", "phase", "unit", "value")

    def __init__(self, sampled: Sampled) -> None:
        measurand = sampled.measurand
        self.measurand: str = ENERGY_REGISTER if measurand is _UNSET else str(measurand)
        self.phase: str = "" if sampled.phase is _UNSET else str(sampled.phase)
        self.location: str = "Outlet" if sampled.location is _UNSET else str(sampled.location)
        self.context: str = "Sample.Periodic" if sampled.context is _UNSET else str(sampled.context)
        unit = "Wh" if sampled.unit is _UNSET else str(sampled.unit)
        base, factor = _SCALE.get(unit) or _SCALE_MORE.get(unit) or (unit, 1.0)
        if sampled.format is not _UNSET and sampled.format == "SignedData":
            raise ValueError(f"{self.measurand}: signed data is not a number")
        try:
            number = float(sampled.value)
        except ValueError:
            raise ValueError(
                f"{self.measurand}: value {sampled.value[:40]!r} is not a number"
            ) from None
        if not math.isfinite(number):
            raise ValueError(f"{self.measurand}: value {sampled.value[:40]!r} is not finite")
        self.unit: str = base
        self.value: float = number * factor

    @property
    def is_energy_register(self) -> bool:
        """The session's total import register: no phase, so not one leg of it."""
        return self.measurand == ENERGY_REGISTER and not self.phase and self.unit == "Wh"
