"""Charging profiles as hub state: what each charger holds, from the hub's commands and answers.

Every SetChargingProfile and ClearChargingProfile the hub sends, and the charger's answer,
changes a per-charger model of the installed profiles, by the rules of OCPP 1.6 §3.13 and
its messages (§5.5 ClearChargingProfile, §5.16 SetChargingProfile, §7 types):

- a ChargePointMaxProfile lives only on connector 0, a TxProfile only on a connector > 0,
  and only while a transaction runs there; it ends with that transaction (§3.13.1);
- a profile with the same ``chargingProfileId``, or the same purpose and stack level on the
  same connector, is replaced (§3.13.2, §5.16);
- a Clear removes the profile with its id, or every profile that matches all the criteria
  it gives (connector, purpose, stack level; none: all of them) (§5.5);
- an answer other than Accepted changes nothing (a ClearChargingProfile answered Unknown:
  the charger holds none that match, so the model holds none either).

The charging fold (:mod:`hub.domain.charging`) keeps the model in its state and turns its
changes into facts (``profile.installed``, ``profile.cleared``). Everything here is pure.
:func:`check_profile` names the rule a profile would break before it is sent; the charger's
own limits (its configuration keys, as far as GetConfiguration answers told the hub) count.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Final, Literal

import msgspec

from hub.domain.timeutil import parse_ms
from schemas.ocpp.v16 import ChargingProfile, ClearChargingProfileRequest, ConfigurationKey

Purpose = Literal["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"]
Kind = Literal["Absolute", "Recurring", "Relative"]
Recurrency = Literal["Daily", "Weekly"]
Unit = Literal["A", "W"]
# Why a profile left the model:
#   cleared              a ClearChargingProfile the charger accepted matched it
#   unknown_to_charger   the charger answered such a Clear ``Unknown``: it held none that match
#   replaced             a newer profile with its id, or its purpose and stack level, came
#   transaction_ended    a TxProfile's transaction is over
ClearReason = Literal["cleared", "unknown_to_charger", "replaced", "transaction_ended"]

# The configuration keys (OCPP 1.6 §9.4 Smart Charging profile) whose values limit profiles.
MAX_STACK_LEVEL_KEY: Final = "ChargeProfileMaxStackLevel"
MAX_PERIODS_KEY: Final = "ChargingScheduleMaxPeriods"
MAX_INSTALLED_KEY: Final = "MaxChargingProfilesInstalled"
ALLOWED_UNITS_KEY: Final = "ChargingScheduleAllowedChargingRateUnit"
LIMIT_KEYS: Final = frozenset(
    {MAX_STACK_LEVEL_KEY, MAX_PERIODS_KEY, MAX_INSTALLED_KEY, ALLOWED_UNITS_KEY}
)
_UNIT_NAMES: Final[dict[str, Unit]] = {"current": "A", "power": "W"}


class Period(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """From ``start_s`` seconds after the schedule's start, at most ``limit`` (A per phase,
    or W in all) on ``phases`` phases (None: not given, which means 3, §7.8)."""

    start_s: int
    limit: float
    phases: int | None = None


class Schedule(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    unit: Unit
    periods: tuple[Period, ...]
    start_ms: int | None = None  # startSchedule
    duration_s: int | None = None  # None: the last period goes on
    min_rate: float | None = None  # minChargingRate, in ``unit``


class Profile(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A charging profile as the hub models it: OCPP 1.6's ChargingProfile, times in Unix ms."""

    profile_id: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    schedule: Schedule
    recurrency: Recurrency | None = None
    valid_from_ms: int | None = None
    valid_to_ms: int | None = None
    transaction_id: int | None = None


class Installed(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A profile a charger holds, on ``connector_id`` (0: the charger as a whole). A TxProfile
    names the session it belongs to (the domain's key; "" if the hub knew of none)."""

    connector_id: int
    profile: Profile
    session: str = ""
    installed_at: int = 0  # the hub's time of the answer that installed it
    command_id: str = ""  # the hub's SetChargingProfile that installed it


class Limits(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a charger advertises it can hold (None: the hub does not know)."""

    max_stack_level: int | None = None
    max_periods: int | None = None
    max_installed: int | None = None
    units: tuple[Unit, ...] | None = None


class ChargerProfiles(msgspec.Struct, kw_only=True):
    """One charger's installed profiles, in the order they were installed, and its limits."""

    installed: list[Installed] = []
    limits: Limits = msgspec.field(default_factory=Limits)


class Violation(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The rule a profile breaks (``rule`` is stable, for clients), and why, in words."""

    rule: str
    detail: str


class Unreadable(ValueError):
    """A profile whose times do not parse."""


# -- from OCPP payloads ----------------------------------------------------------------------


def _optional_ms(name: str, text: object) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_ms(text)
    except (ValueError, OverflowError) as error:
        raise Unreadable(f"{name} {text[:64]!r} is not a date-time") from error


def _optional(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def profile_of(payload: ChargingProfile) -> Profile:
    """The model's profile from OCPP 1.6's; :class:`Unreadable` if a time does not parse."""
    schedule = payload.charging_schedule
    duration = schedule.duration
    recurrency = payload.recurrency_kind
    transaction_id = payload.transaction_id
    return Profile(
        profile_id=payload.charging_profile_id,
        stack_level=payload.stack_level,
        purpose=payload.charging_profile_purpose,
        kind=payload.charging_profile_kind,
        recurrency=recurrency if isinstance(recurrency, str) else None,
        valid_from_ms=_optional_ms("validFrom", payload.valid_from),
        valid_to_ms=_optional_ms("validTo", payload.valid_to),
        transaction_id=transaction_id if isinstance(transaction_id, int) else None,
        schedule=Schedule(
            unit=schedule.charging_rate_unit,
            periods=tuple(
                Period(
                    start_s=period.start_period,
                    limit=float(period.limit),
                    phases=period.number_phases if isinstance(period.number_phases, int) else None,
                )
                for period in schedule.charging_schedule_period
            ),
            start_ms=_optional_ms("startSchedule", schedule.start_schedule),
            duration_s=duration if isinstance(duration, int) else None,
            min_rate=_optional(schedule.min_charging_rate),
        ),
    )


class Clear(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A ClearChargingProfile's criteria (None: not given)."""

    profile_id: int | None = None
    connector_id: int | None = None
    purpose: Purpose | None = None
    stack_level: int | None = None


def clear_of(payload: ClearChargingProfileRequest) -> Clear:
    def given(value: object) -> int | None:
        return value if isinstance(value, int) else None

    purpose = payload.charging_profile_purpose
    return Clear(
        profile_id=given(payload.id),
        connector_id=given(payload.connector_id),
        purpose=purpose if isinstance(purpose, str) else None,
        stack_level=given(payload.stack_level),
    )


def limits_of(known: Limits, keys: Iterable[ConfigurationKey]) -> Limits:
    """``known`` with what a GetConfiguration answer says of the keys that limit profiles;
    a value that is no number (or names no unit) leaves that limit unknown."""
    changes: dict[str, object] = {}
    for entry in keys:
        value = entry.value if isinstance(entry.value, str) else None
        match entry.key:
            case "ChargeProfileMaxStackLevel":
                changes["max_stack_level"] = _int(value)
            case "ChargingScheduleMaxPeriods":
                changes["max_periods"] = _int(value)
            case "MaxChargingProfilesInstalled":
                changes["max_installed"] = _int(value)
            case "ChargingScheduleAllowedChargingRateUnit":
                units = [_UNIT_NAMES.get(name.strip().lower()) for name in (value or "").split(",")]
                found = tuple(unit for unit in units if unit is not None)
                changes["units"] = found or None
    return msgspec.structs.replace(known, **changes) if changes else known


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# -- the model's rules -----------------------------------------------------------------------


def install(
    installed: Sequence[Installed], new: Installed
) -> tuple[list[Installed], list[Installed]]:
    """The profiles after the charger accepted ``new``, and those it replaced: the one with
    its id (on any connector: ids are the charger's), and the one with its purpose and stack
    level on its connector."""
    profile = new.profile
    kept: list[Installed] = []
    replaced: list[Installed] = []
    for old in installed:
        same_slot = (
            old.connector_id == new.connector_id
            and old.profile.purpose == profile.purpose
            and old.profile.stack_level == profile.stack_level
        )
        if same_slot or old.profile.profile_id == profile.profile_id:
            replaced.append(old)
        else:
            kept.append(old)
    kept.append(new)
    return kept, replaced


def matches(clear: Clear, old: Installed) -> bool:
    """Whether a Clear removes ``old``: by id, if it names one (the other criteria then do
    not count, §5.5: "either a specific charging profile (denoted by id) or a selection");
    else if every criterion it gives matches."""
    if clear.profile_id is not None:
        return old.profile.profile_id == clear.profile_id
    return (
        (clear.connector_id is None or clear.connector_id == old.connector_id)
        and (clear.purpose is None or clear.purpose == old.profile.purpose)
        and (clear.stack_level is None or clear.stack_level == old.profile.stack_level)
    )


def split(installed: Sequence[Installed], clear: Clear) -> tuple[list[Installed], list[Installed]]:
    """The profiles a Clear keeps, and those it removes."""
    kept = [old for old in installed if not matches(clear, old)]
    removed = [old for old in installed if matches(clear, old)]
    return kept, removed


def transaction_over(
    installed: Sequence[Installed], connector_id: int, session: str
) -> tuple[list[Installed], list[Installed]]:
    """The profiles left once ``session`` on ``connector_id`` is over, and its TxProfiles,
    which end with it (§3.13.1). TxProfiles the hub could tie to no session end with the
    next transaction that ends on their connector (or on the charger, when the charger's
    Stop named no connector)."""

    def ends(old: Installed) -> bool:
        if old.profile.purpose != "TxProfile":
            return False
        if old.session:
            return old.session == session
        return connector_id in (0, old.connector_id)

    return [old for old in installed if not ends(old)], [old for old in installed if ends(old)]


def check_profile(
    model: ChargerProfiles,
    connector_id: int,
    profile: Profile,
    limits: Limits | None = None,
    *,
    transaction_id: int | str | None = None,
) -> Violation | None:
    """The rule ``profile`` would break if it were set on ``connector_id``, None if none.

    ``transaction_id`` is the transaction running on the connector (None: none is), which a
    TxProfile needs; ``limits`` the charger's (default: those the model knows).
    """
    limits = limits if limits is not None else model.limits
    purpose, schedule = profile.purpose, profile.schedule
    periods = schedule.periods
    checks: tuple[tuple[bool, str, str], ...] = (
        (
            connector_id < 0,
            "connector_id",
            f"connectorId {connector_id} is no connector",
        ),
        (
            purpose == "ChargePointMaxProfile" and connector_id != 0,
            "charge_point_max_on_connector_0",
            "a ChargePointMaxProfile can only be set on connector 0 (OCPP 1.6 §3.13.1)",
        ),
        (
            purpose == "TxProfile" and connector_id == 0,
            "tx_profile_on_a_connector",
            "a TxProfile can only be set on a connector > 0 (OCPP 1.6 §3.13.1)",
        ),
        (
            purpose == "TxProfile" and transaction_id is None,
            "tx_profile_needs_a_transaction",
            f"no transaction runs on connector {connector_id}, and a TxProfile needs one "
            "(OCPP 1.6 §3.13.1, §5.16.2)",
        ),
        (
            purpose == "TxProfile"
            and profile.transaction_id is not None
            and transaction_id is not None
            and profile.transaction_id != transaction_id,
            "tx_profile_transaction",
            f"transactionId {profile.transaction_id} is not the transaction running on "
            f"connector {connector_id} ({transaction_id})",
        ),
        (
            purpose != "TxProfile" and profile.transaction_id is not None,
            "transaction_id_only_for_tx_profile",
            "transactionId is only valid in a TxProfile (OCPP 1.6 §7.7)",
        ),
        (
            profile.stack_level < 0,
            "stack_level",
            "the lowest stack level is 0 (OCPP 1.6 §7.7)",
        ),
        (
            profile.kind == "Recurring"
            and (profile.recurrency is None or schedule.start_ms is None),
            "recurring_needs_recurrency_and_start",
            "a Recurring profile needs a recurrencyKind and a startSchedule to recur from "
            "(OCPP 1.6 §7.9, §7.10)",
        ),
        (
            not periods,
            "periods",
            "a schedule needs at least one period",
        ),
        (
            bool(periods) and periods[0].start_s != 0,
            "first_period_at_0",
            "the first period must start at 0: before it the schedule would say nothing",
        ),
        (
            any(later.start_s <= earlier.start_s for earlier, later in itertools.pairwise(periods)),
            "periods_in_order",
            "periods must start in increasing order",
        ),
        (
            any(period.limit < 0 for period in periods),
            "negative_limit",
            "a limit cannot be negative",
        ),
        (
            any(period.phases is not None and not 1 <= period.phases <= 3 for period in periods),
            "number_phases",
            "numberPhases is 1, 2 or 3",
        ),
        (
            schedule.duration_s is not None and schedule.duration_s <= 0,
            "duration",
            "a schedule's duration must be positive",
        ),
        (
            profile.valid_from_ms is not None
            and profile.valid_to_ms is not None
            and profile.valid_to_ms <= profile.valid_from_ms,
            "validity",
            "validTo must come after validFrom",
        ),
        (
            limits.max_stack_level is not None and profile.stack_level > limits.max_stack_level,
            "max_stack_level",
            f"stack level {profile.stack_level} is above the charger's "
            f"{MAX_STACK_LEVEL_KEY} ({limits.max_stack_level})",
        ),
        (
            limits.max_periods is not None and len(periods) > limits.max_periods,
            "max_periods",
            f"{len(periods)} periods are more than the charger's {MAX_PERIODS_KEY} "
            f"({limits.max_periods})",
        ),
        (
            limits.units is not None and schedule.unit not in limits.units,
            "charging_rate_unit",
            f"the charger takes schedules in {', '.join(limits.units or ())} only "
            f"({ALLOWED_UNITS_KEY}), not {schedule.unit}",
        ),
    )
    for broken, rule, detail in checks:
        if broken:
            return Violation(rule=rule, detail=detail)
    if limits.max_installed is not None:
        kept, _ = install(model.installed, Installed(connector_id=connector_id, profile=profile))
        if len(kept) > limits.max_installed:
            return Violation(
                rule="max_profiles_installed",
                detail=f"the charger holds {len(kept) - 1} profiles that stay, and "
                f"{MAX_INSTALLED_KEY} is {limits.max_installed}",
            )
    return None
