"""Charging profiles as hub state: what each charger holds, from the hub's commands and answers.

Every SetChargingProfile and ClearChargingProfile the hub sends, and the charger's answer,
changes a per-charger model of the installed profiles, by the rules of OCPP 1.6 §3.13 and
its messages (§5.5 ClearChargingProfile, §5.16 SetChargingProfile, §7 types), and of OCPP
2.0.1 and 2.1 section K (K01 SetChargingProfile, K10 ClearChargingProfile), which keep them:

- a ChargePointMaxProfile lives only on connector 0, a TxProfile only on a connector > 0,
  and only while a transaction runs there; it ends with that transaction (§3.13.1);
- a profile with the same ``chargingProfileId``, or the same purpose and stack level on the
  same connector, is replaced (§3.13.2, §5.16);
- a Clear removes the profile with its id, or every profile that matches all the criteria
  it gives (connector, purpose, stack level; none: all of them) (§5.5);
- an answer other than Accepted changes nothing (a ClearChargingProfile answered Unknown:
  the charger holds none that match, so the model holds none either).

A 2.x profile is the same :class:`Profile`: its EVSE is the connector (0: the station), its
ChargingStationMaxProfile the ChargePointMaxProfile, its ``transactionId`` a string; of its
one to three schedules (ISO 15118 lets the EV pick one) the first is ``schedule``, the
others ``alternatives``. 2.1's other purposes (ChargingStationExternalConstraints,
PriorityCharging, LocalGeneration) are held, replaced and cleared like the rest; the
composite does not count them (docs/smart-charging.md says why).

The charging fold (:mod:`hub.domain.charging`) keeps the model in its state and turns its
changes into facts (``profile.installed``, ``profile.cleared``). Everything here is pure.
:func:`check_profile` names the rule a profile would break before it is sent; the charger's
own limits (its configuration keys, as far as GetConfiguration answers told the hub) count.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Final, Literal, Protocol

import msgspec

from hub.domain.timeutil import parse_ms
from schemas.ocpp import v16, v21, v201
from schemas.ocpp.v16 import ConfigurationKey

# 1.6's purposes (2.x's ChargingStationMaxProfile is the ChargePointMaxProfile), and those
# only 2.x has.
Purpose = Literal[
    "ChargePointMaxProfile",
    "TxDefaultProfile",
    "TxProfile",
    "ChargingStationExternalConstraints",
    "PriorityCharging",
    "LocalGeneration",
]
# 2.1's Dynamic: its limits are the periods as last set, from its startSchedule (as Absolute).
Kind = Literal["Absolute", "Recurring", "Relative", "Dynamic"]
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
# 1.6's ChargingScheduleAllowedChargingRateUnit names (Current, Power); 2.x's RateUnit A, W.
_UNIT_NAMES: Final[dict[str, Unit]] = {"current": "A", "power": "W", "a": "A", "w": "W"}
# The 2.x device model's component whose variables limit profiles.
SMART_CHARGING_CTRLR: Final = "SmartChargingCtrlr"


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
    schedule_id: int | None = None  # 2.x's id (1.6's schedules have none)


class Profile(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A charging profile as the hub models it: OCPP 1.6's ChargingProfile (or 2.x's, in the
    same terms), times in Unix ms. ``alternatives``: a 2.x profile's schedules after the
    first, which the station may run instead (ISO 15118 lets the EV choose)."""

    profile_id: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    schedule: Schedule
    recurrency: Recurrency | None = None
    valid_from_ms: int | None = None
    valid_to_ms: int | None = None
    transaction_id: int | str | None = None
    alternatives: tuple[Schedule, ...] = ()

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        return (self.schedule, *self.alternatives)


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


class AwaitingStart(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A TxProfile the charger accepted with a remote start (1.6's RemoteStartTransaction,
    2.x's RequestStartTransaction), for the transaction it has yet to start: on
    ``connector_id`` (None: the charger picks), for 1.6's ``id_tag`` (its CiString20, as
    :func:`hub.domain.cistring.ci` folds it), or 2.x's ``remote_start_id``."""

    profile: Profile
    connector_id: int | None = None
    id_tag: str = ""
    remote_start_id: int | None = None
    at: int = 0  # when the hub sent the request
    command_id: str = ""


class ReportCriteria(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a 2.x GetChargingProfiles asked for (None: not given, any)."""

    evse_id: int | None = None
    purpose: Purpose | None = None
    stack_level: int | None = None
    profile_ids: tuple[int, ...] | None = None
    sources: tuple[str, ...] | None = None


class ReportedProfile(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A profile a 2.x station says it holds, on ``connector_id`` (its EVSE), and who set it
    (its chargingLimitSource: CSO is the hub)."""

    connector_id: int
    profile: Profile
    source: str = "CSO"


class Report(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A 2.x station's latest answer to a GetChargingProfiles: what was asked (None: the hub
    did not see the request), the profiles its ReportChargingProfiles gave so far, and
    whether the last part (``tbc`` false) came, or it answered NoProfiles."""

    request_id: int
    criteria: ReportCriteria | None = None
    profiles: tuple[ReportedProfile, ...] = ()
    complete: bool = False
    command_id: str = ""
    asked_at: int = 0  # when the hub sent the request
    updated_at: int = 0  # when the last part, or the answer, came


class ChargerProfiles(msgspec.Struct, kw_only=True):
    """One charger's installed profiles, in the order they were installed, and its limits;
    ``awaiting``: remote starts' profiles waiting for the transaction they belong to;
    ``report``: its latest report of what it holds (2.x), evidence beside the model."""

    installed: list[Installed] = []
    limits: Limits = msgspec.field(default_factory=Limits)
    awaiting: list[AwaitingStart] = []
    report: Report | None = None


class Violation(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The rule a profile breaks (``rule`` is stable, for clients), and why, in words;
    ``schedule``: the index of the schedule that breaks it, for a schedule's rules."""

    rule: str
    detail: str
    schedule: int = 0


class Unreadable(ValueError):
    """A profile the model cannot hold: a time that does not parse (``rule`` date_time), a
    2.1 period without a limit (``period_limit``)."""

    def __init__(self, detail: str, rule: str = "date_time") -> None:
        super().__init__(detail)
        self.rule = rule


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


# 2.x's name of a purpose that 1.6 has under another.
_PURPOSE_OF_2X: Final[dict[str, Purpose]] = {"ChargingStationMaxProfile": "ChargePointMaxProfile"}
_PURPOSE_IN_2X: Final = {ours: theirs for theirs, ours in _PURPOSE_OF_2X.items()}

AnyChargingProfile = v16.ChargingProfile | v201.ChargingProfile | v21.ChargingProfile
AnyChargingSchedule = v16.ChargingSchedule | v201.ChargingSchedule | v21.ChargingSchedule
AnyPeriod = v16.ChargingSchedulePeriod | v201.ChargingSchedulePeriod | v21.ChargingSchedulePeriod
AnyClear = (
    v16.ClearChargingProfileRequest
    | v201.ClearChargingProfileRequest
    | v21.ClearChargingProfileRequest
)


def purpose_of(name: str) -> Purpose:
    """The model's purpose for a purpose as any version names it (the schemas' enums)."""
    return _PURPOSE_OF_2X.get(name) or name  # type: ignore[return-value]


def purpose_name(purpose: Purpose, ocpp_version: str) -> str:
    """``purpose`` as ``ocpp_version`` names it."""
    return purpose if ocpp_version == "1.6" else _PURPOSE_IN_2X.get(purpose, purpose)


def _schedule_of(schedule: AnyChargingSchedule, index: int) -> Schedule:
    periods = []
    given: Sequence[AnyPeriod] = schedule.charging_schedule_period
    for number, period in enumerate(given):
        if not isinstance(period.limit, int | float):
            # 2.1: a period may give setpoints instead; the model holds limits only.
            raise Unreadable(
                f"chargingSchedule[{index}] period {number} has no limit", "period_limit"
            )
        phases = period.number_phases
        periods.append(
            Period(
                start_s=period.start_period,
                limit=float(period.limit),
                phases=phases if isinstance(phases, int) else None,
            )
        )
    duration = schedule.duration
    return Schedule(
        unit=schedule.charging_rate_unit,
        periods=tuple(periods),
        start_ms=_optional_ms("startSchedule", schedule.start_schedule),
        duration_s=duration if isinstance(duration, int) else None,
        min_rate=_optional(schedule.min_charging_rate),
        schedule_id=None if isinstance(schedule, v16.ChargingSchedule) else schedule.id,
    )


def profile_of(payload: AnyChargingProfile) -> Profile:
    """The model's profile from OCPP 1.6's, 2.0.1's or 2.1's; :class:`Unreadable` if it says
    what the model cannot hold."""
    schedules: Sequence[AnyChargingSchedule]
    if isinstance(payload, v16.ChargingProfile):
        profile_id, schedules = payload.charging_profile_id, [payload.charging_schedule]
    else:
        profile_id, schedules = payload.id, payload.charging_schedule
    first, *others = (_schedule_of(schedule, i) for i, schedule in enumerate(schedules))
    recurrency = payload.recurrency_kind
    transaction_id = payload.transaction_id
    return Profile(
        profile_id=profile_id,
        stack_level=payload.stack_level,
        purpose=purpose_of(payload.charging_profile_purpose),
        kind=payload.charging_profile_kind,
        recurrency=recurrency if isinstance(recurrency, str) else None,
        valid_from_ms=_optional_ms("validFrom", payload.valid_from),
        valid_to_ms=_optional_ms("validTo", payload.valid_to),
        transaction_id=transaction_id if isinstance(transaction_id, int | str) else None,
        schedule=first,
        alternatives=tuple(others),
    )


class Clear(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A ClearChargingProfile's criteria (None: not given)."""

    profile_id: int | None = None
    connector_id: int | None = None
    purpose: Purpose | None = None
    stack_level: int | None = None


def clear_of(payload: AnyClear) -> Clear:
    """The criteria of 1.6's ClearChargingProfile, or 2.x's (its ``chargingProfileId``, and
    its ``chargingProfileCriteria``: EVSE, purpose, stack level)."""

    def given(value: object) -> int | None:
        return value if isinstance(value, int) else None

    profile_id: object
    connector_id: object
    purpose: object
    stack_level: object
    if isinstance(payload, v16.ClearChargingProfileRequest):
        profile_id, connector_id = payload.id, payload.connector_id
        purpose, stack_level = payload.charging_profile_purpose, payload.stack_level
    else:
        profile_id = payload.charging_profile_id
        criteria = payload.charging_profile_criteria
        if isinstance(criteria, msgspec.UnsetType):
            connector_id = purpose = stack_level = msgspec.UNSET
        else:
            connector_id, stack_level = criteria.evse_id, criteria.stack_level
            purpose = criteria.charging_profile_purpose
    return Clear(
        profile_id=given(profile_id),
        connector_id=given(connector_id),
        purpose=purpose_of(purpose) if isinstance(purpose, str) else None,
        stack_level=given(stack_level),
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
                changes["units"] = _units(value)
    return msgspec.structs.replace(known, **changes) if changes else known


class DeviceVariable(Protocol):
    """One reported attribute of a 2.x station's device model (``facts.ReportedVariable``)."""

    @property
    def component(self) -> str: ...
    @property
    def variable(self) -> str: ...
    @property
    def variable_instance(self) -> str: ...
    @property
    def attribute_type(self) -> str: ...
    @property
    def value(self) -> str | None: ...
    @property
    def max_limit(self) -> float | None: ...


def limits_of_device_model(known: Limits, variables: Iterable[DeviceVariable]) -> Limits:
    """``known`` with what a 2.x station's NotifyReport says of the SmartChargingCtrlr
    variables that limit profiles: ProfileStackLevel, PeriodsPerSchedule, RateUnit (their
    Actual values) and Entries of ChargingProfiles (its maxLimit: how many it can hold)."""
    changes: dict[str, object] = {}
    for entry in variables:
        if entry.component != SMART_CHARGING_CTRLR:
            continue
        actual = entry.attribute_type == "Actual"
        match entry.variable:
            case "ProfileStackLevel" if actual:
                changes["max_stack_level"] = _int(entry.value)
            case "PeriodsPerSchedule" if actual:
                changes["max_periods"] = _int(entry.value)
            case "RateUnit" if actual:
                changes["units"] = _units(entry.value)
            case "Entries" if entry.variable_instance == "ChargingProfiles":
                if entry.max_limit is not None:
                    changes["max_installed"] = int(entry.max_limit)
    return msgspec.structs.replace(known, **changes) if changes else known


def _units(value: str | None) -> tuple[Unit, ...] | None:
    units = [_UNIT_NAMES.get(name.strip().lower()) for name in (value or "").split(",")]
    return tuple(unit for unit in units if unit is not None) or None


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


# -- a station's report of what it holds (2.x K09) ---------------------------------------------

AnyGetProfiles = v201.GetChargingProfilesRequest | v21.GetChargingProfilesRequest
# Who set a profile a station reports: the CSMS (the hub) is CSO.
HUB_SOURCE: Final = "CSO"


def criteria_of(request: AnyGetProfiles) -> ReportCriteria:
    """What a GetChargingProfiles asks for."""
    asked = request.charging_profile
    evse, purpose, level = request.evse_id, asked.charging_profile_purpose, asked.stack_level
    ids, sources = asked.charging_profile_id, asked.charging_limit_source
    return ReportCriteria(
        evse_id=evse if isinstance(evse, int) else None,
        purpose=purpose_of(purpose) if isinstance(purpose, str) else None,
        stack_level=level if isinstance(level, int) else None,
        profile_ids=tuple(ids) if isinstance(ids, list) else None,
        sources=tuple(sources) if isinstance(sources, list) else None,
    )


def asked_for(criteria: ReportCriteria, connector_id: int, profile: Profile, source: str) -> bool:
    """Whether a profile (on ``connector_id``, set by ``source``) answers ``criteria``; an
    EVSE asked for is that EVSE's profiles (0: the station's own, K09)."""
    return (
        (criteria.evse_id is None or criteria.evse_id == connector_id)
        and (criteria.purpose is None or criteria.purpose == profile.purpose)
        and (criteria.stack_level is None or criteria.stack_level == profile.stack_level)
        and (criteria.profile_ids is None or profile.profile_id in criteria.profile_ids)
        and (criteria.sources is None or source in criteria.sources)
    )


def report_part(
    report: Report | None,
    request_id: int,
    part: Sequence[ReportedProfile],
    *,
    last: bool,
    at: int,
) -> Report:
    """``report`` with one ReportChargingProfiles more (a new report if it answers another
    request); at most :data:`MAX_REPORTED` profiles are kept."""
    if report is None or report.request_id != request_id:
        report = Report(request_id=request_id)
    profiles = (*report.profiles, *part)[:MAX_REPORTED]
    return msgspec.structs.replace(report, profiles=profiles, complete=last, updated_at=at)


# Profiles kept of one report (a station holds a few dozen).
MAX_REPORTED: Final = 1_000


class ReportDifference(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Where a station's report and the hub's model disagree on one profile:
    ``missing_at_charger`` (the hub holds it, the report, which asked for it, does not),
    ``unknown_to_hub`` (the station holds one the hub set, CSO, that the hub does not),
    ``differs`` (both hold it; ``fields`` say what differs)."""

    profile_id: int
    connector_id: int
    difference: Literal["missing_at_charger", "unknown_to_hub", "differs"]
    fields: tuple[str, ...] = ()


_COMPARED: Final = (
    "stack_level",
    "purpose",
    "kind",
    "recurrency",
    "valid_from_ms",
    "valid_to_ms",
    "transaction_id",
    "schedule",
    "alternatives",
)


def report_differences(installed: Sequence[Installed], report: Report) -> list[ReportDifference]:
    """Where a complete report differs from the model, by profile id: the hub's profiles
    the request asked for that it lacks (without the request's criteria, none: the hub
    cannot tell what was asked), those of the hub's (CSO) it holds that the model does not,
    and those both hold that differ. Profiles other sources set (an EMS, the grid operator)
    are the station's business."""
    ours = {one.profile.profile_id: one for one in installed}
    theirs = {one.profile.profile_id: one for one in report.profiles}
    found: list[ReportDifference] = []
    criteria = report.criteria
    for profile_id, held in ours.items():
        if profile_id in theirs or criteria is None or not report.complete:
            continue
        if asked_for(criteria, held.connector_id, held.profile, HUB_SOURCE):
            found.append(
                ReportDifference(
                    profile_id=profile_id,
                    connector_id=held.connector_id,
                    difference="missing_at_charger",
                )
            )
    for profile_id, reported in theirs.items():
        mine = ours.get(profile_id)
        if mine is None:
            if reported.source == HUB_SOURCE:
                found.append(
                    ReportDifference(
                        profile_id=profile_id,
                        connector_id=reported.connector_id,
                        difference="unknown_to_hub",
                    )
                )
            continue
        fields = tuple(
            name
            for name in _COMPARED
            if getattr(mine.profile, name) != getattr(reported.profile, name)
        )
        if mine.connector_id != reported.connector_id:
            fields = ("connector_id", *fields)
        if fields:
            found.append(
                ReportDifference(
                    profile_id=profile_id,
                    connector_id=reported.connector_id,
                    difference="differs",
                    fields=fields,
                )
            )
    return found


# How long a remote start's profile waits for its transaction: a charger that accepted the
# start but sees no car plugged in gives up after its ConnectionTimeOut (1.6; 2.x's
# EVConnectionTimeOut), seconds to minutes.
AWAITING_MS: Final = 15 * 60_000
# Remote starts waiting per charger (a few connectors); beyond, the oldest goes.
MAX_AWAITING: Final = 16


def awaiting_added(awaiting: Sequence[AwaitingStart], new: AwaitingStart) -> list[AwaitingStart]:
    """The remote starts waiting once ``new`` waits too (the oldest beyond the bound go)."""
    return [*awaiting, new][-MAX_AWAITING:]


def taken_by(
    awaiting: Sequence[AwaitingStart],
    at: int,
    *,
    connector_id: int,
    id_tag: str = "",
    remote_start_id: int | None = None,
) -> tuple[list[AwaitingStart], AwaitingStart | None]:
    """The remote starts still waiting once a transaction started at ``at`` (the hub's time)
    on ``connector_id``, and the one whose profile it takes, if any: 2.x's by its
    ``remoteStartId`` (the TransactionEvent names it), 1.6's by the same idTag on the
    connector asked for (any, if the start named none), the oldest such first. Those older
    than :data:`AWAITING_MS` are dropped: their charger gave up on them."""
    fresh = [one for one in awaiting if at - one.at <= AWAITING_MS]
    for index, one in enumerate(fresh):
        if remote_start_id is not None:
            matched = one.remote_start_id == remote_start_id
        else:
            matched = (
                one.remote_start_id is None
                and bool(id_tag)
                and one.id_tag == id_tag
                and one.connector_id in (None, connector_id)
            )
        if matched:
            return [*fresh[:index], *fresh[index + 1 :]], one
    return fresh, None


def check_profile(
    model: ChargerProfiles,
    connector_id: int | None,
    profile: Profile,
    limits: Limits | None = None,
    *,
    transaction_id: int | str | None = None,
    ocpp_version: str = "1.6",
    remote_start: bool = False,
) -> Violation | None:
    """The rule ``profile`` would break if it were set on ``connector_id``, None if none.

    ``transaction_id`` is the transaction running on the connector (None: none is), which a
    TxProfile needs; ``limits`` the charger's (default: those the model knows);
    ``ocpp_version`` the charger's (2.x: the connector is an EVSE, and K01's rules count).
    ``remote_start``: the profile rides in a remote start (1.6 RemoteStartTransaction, 2.x
    RequestStartTransaction), so it is the TxProfile of the transaction that start begins,
    which has no id yet; its ``connector_id`` may be None (the charger picks one).
    """
    limits = limits if limits is not None else model.limits
    v16_ = ocpp_version == "1.6"
    words = _WORDS_16 if v16_ else _WORDS_2X
    where = f"{words.connector} {connector_id}"
    purpose = profile.purpose
    # The transaction a remote start's profile belongs to is the one it starts.
    needs_running = purpose == "TxProfile" and not remote_start
    checks: tuple[tuple[bool, str, str], ...] = (
        (
            remote_start and purpose != "TxProfile",
            "remote_start_tx_profile",
            f"the profile of a {words.remote_start} is the TxProfile of the transaction it "
            f"starts ({words.remote_start_rules})",
        ),
        (
            remote_start and profile.transaction_id is not None,
            "remote_start_transaction_id",
            f"a {words.remote_start}'s profile has no transactionId: the transaction it "
            f"belongs to has not started yet ({words.remote_start_rules})",
        ),
        (
            connector_id is not None and connector_id < 0,
            "connector_id",
            f"{words.connector_field} {connector_id} is no {words.connector}",
        ),
        (
            purpose == "ChargePointMaxProfile" and connector_id != 0,
            "charge_point_max_on_connector_0",
            f"a {words.max_profile} can only be set on {words.connector} 0 ({words.tx_rules})",
        ),
        (
            purpose == "TxProfile" and connector_id == 0,
            "tx_profile_on_a_connector",
            f"a TxProfile can only be set on {words.connector} > 0 ({words.tx_rules})",
        ),
        (
            purpose == "ChargingStationExternalConstraints",
            "external_constraints",
            "a ChargingStationExternalConstraints profile is the station's own, from an "
            "external system: the CSMS does not set one (OCPP 2.0.1 K01.FR.22)",
        ),
        (
            not v16_ and purpose == "ChargePointMaxProfile" and profile.kind == "Relative",
            "max_profile_not_relative",
            "a ChargingStationMaxProfile cannot be Relative: it has no transaction to start "
            "from (OCPP 2.0.1 K01.FR.38)",
        ),
        (
            needs_running and transaction_id is None,
            "tx_profile_needs_a_transaction",
            f"no transaction runs on {where}, and a TxProfile needs one ({words.tx_needs})",
        ),
        (
            not v16_ and needs_running and profile.transaction_id is None,
            "tx_profile_needs_transaction_id",
            "a TxProfile names its transaction's transactionId (OCPP 2.0.1 K01.FR.03)",
        ),
        (
            needs_running
            and profile.transaction_id is not None
            and transaction_id is not None
            and profile.transaction_id != transaction_id,
            "tx_profile_transaction",
            f"transactionId {profile.transaction_id} is not the transaction running on "
            f"{where} ({transaction_id})",
        ),
        (
            purpose != "TxProfile" and profile.transaction_id is not None,
            "transaction_id_only_for_tx_profile",
            f"transactionId is only valid in a TxProfile ({words.types})",
        ),
        (
            purpose != "TxProfile" and bool(profile.alternatives),
            "schedules_only_for_tx_profile",
            "more than one chargingSchedule is only allowed in a TxProfile, for ISO 15118 "
            "(OCPP 2.0.1 ChargingProfileType)",
        ),
        (
            profile.stack_level < 0,
            "stack_level",
            f"the lowest stack level is 0 ({words.types})",
        ),
        (
            profile.kind == "Recurring"
            and (profile.recurrency is None or profile.schedule.start_ms is None),
            "recurring_needs_recurrency_and_start",
            "a Recurring profile needs a recurrencyKind and a startSchedule to recur from "
            f"({words.recurring})",
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
            f"{words.max_stack_level} ({limits.max_stack_level})",
        ),
    )
    found = _first_broken(checks)
    if found is not None:
        return found
    for index, schedule in enumerate(profile.schedules):
        found = _schedule_violation(schedule, limits, words)
        if found is None and not v16_:
            found = _start_violation(profile.kind, schedule)
        if found is not None:
            return msgspec.structs.replace(found, schedule=index)
    if limits.max_installed is not None:
        # No connector given: none it would replace by its slot is known (-1 matches none).
        on = connector_id if connector_id is not None else -1
        kept, _ = install(model.installed, Installed(connector_id=on, profile=profile))
        if len(kept) > limits.max_installed:
            return Violation(
                rule="max_profiles_installed",
                detail=f"the charger holds {len(kept) - 1} profiles that stay, and "
                f"{words.max_installed} is {limits.max_installed}",
            )
    return None


class _Words(msgspec.Struct, frozen=True, kw_only=True):
    """How a version names what the rules speak of, and where its spec says them."""

    connector: str
    connector_field: str
    max_profile: str
    tx_rules: str
    tx_needs: str
    types: str
    recurring: str
    max_stack_level: str
    max_periods: str
    max_installed: str
    units: str
    remote_start: str
    remote_start_rules: str


_WORDS_16: Final = _Words(
    connector="connector",
    connector_field="connectorId",
    max_profile="ChargePointMaxProfile",
    tx_rules="OCPP 1.6 §3.13.1",
    tx_needs="OCPP 1.6 §3.13.1, §5.16.2",
    types="OCPP 1.6 §7.7",
    recurring="OCPP 1.6 §7.9, §7.10",
    max_stack_level=MAX_STACK_LEVEL_KEY,
    max_periods=MAX_PERIODS_KEY,
    max_installed=MAX_INSTALLED_KEY,
    units=ALLOWED_UNITS_KEY,
    remote_start="RemoteStartTransaction",
    remote_start_rules="OCPP 1.6 §5.11",
)
# 2.x's limits are SmartChargingCtrlr variables of the station's device model.
_WORDS_2X: Final = _Words(
    connector="EVSE",
    connector_field="evseId",
    max_profile="ChargingStationMaxProfile",
    tx_rules="OCPP 2.0.1 K01",
    tx_needs="OCPP 2.0.1 K01",
    types="OCPP 2.0.1 ChargingProfileType",
    recurring="OCPP 2.0.1 ChargingProfileType",
    max_stack_level="SmartChargingCtrlr.ProfileStackLevel",
    max_periods="SmartChargingCtrlr.PeriodsPerSchedule",
    max_installed="SmartChargingCtrlr.Entries (ChargingProfiles)",
    units="SmartChargingCtrlr.RateUnit",
    remote_start="RequestStartTransaction",
    remote_start_rules="OCPP 2.0.1 F01, K05",
)


def _schedule_violation(schedule: Schedule, limits: Limits, words: _Words) -> Violation | None:
    """The rule one schedule of a profile breaks, None if none."""
    periods = schedule.periods
    checks: tuple[tuple[bool, str, str], ...] = (
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
            limits.max_periods is not None and len(periods) > limits.max_periods,
            "max_periods",
            f"{len(periods)} periods are more than the charger's {words.max_periods} "
            f"({limits.max_periods})",
        ),
        (
            limits.units is not None and schedule.unit not in limits.units,
            "charging_rate_unit",
            f"the charger takes schedules in {', '.join(limits.units or ())} only "
            f"({words.units}), not {schedule.unit}",
        ),
    )
    return _first_broken(checks)


def _start_violation(kind: Kind, schedule: Schedule) -> Violation | None:
    """2.x's rules for one schedule's startSchedule: 1.6 leaves an Absolute one without it to
    the charger (most take it as from now), 2.0.1's K01 does not."""
    return _first_broken(
        (
            (
                kind != "Relative" and schedule.start_ms is None,
                "start_schedule_needed",
                f"an {kind} profile's schedule needs a startSchedule (OCPP 2.0.1 K01.FR.40)",
            ),
            (
                kind == "Relative" and schedule.start_ms is not None,
                "start_schedule_not_relative",
                "a Relative profile's schedule starts with its transaction, not at a "
                "startSchedule (OCPP 2.0.1 K01.FR.41)",
            ),
        )
    )


def _first_broken(checks: Iterable[tuple[bool, str, str]]) -> Violation | None:
    """The first of (broken, rule, detail) that is broken, as a violation."""
    for broken, rule, detail in checks:
        if broken:
            return Violation(rule=rule, detail=detail)
    return None
