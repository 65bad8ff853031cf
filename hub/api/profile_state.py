"""What the smart-charging endpoints read: each charger's installed profiles in the charging
domain the fan-out folds (``hub.api.book.LiveFold``), and the pure pieces that answer from them.

The fan-out's follower feeds its one :class:`hub.domain.charging.Charging` every event of its
window of the stream (``hub/fanout/live.py``). Profiles need the stream from its first event,
so what the window leaves out (older than it, or than its age bound) is folded into the same
domain through :class:`ProfileBook` too, as far as it changes profiles or the transactions
TxProfiles belong to (:data:`PROFILE_SUBJECTS`): the hub's SetChargingProfile,
ClearChargingProfile and GetConfiguration with the chargers' answers, StartTransaction and
StopTransaction (2.x: TransactionEvent), 2.x stations' NotifyReports (their limits) and
ReportChargingProfiles (what they say they hold, shown beside the model), remote starts
(their profiles), connections (a charger's OCPP version), and the supervisor's closes.

A 2.x station's profiles are checked and shown in 2.x's terms: ``evseId`` and
``chargingProfile`` in the body, ChargingStationMaxProfile for the purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from hub.api.money_state import iso
from hub.domain.charging import HUB_CALLS, Charging, Session, key, reads
from hub.domain.profiles import (
    AnyChargingProfile,
    AnyPeriod,
    ChargerProfiles,
    Installed,
    Limits,
    Profile,
    Report,
    Schedule,
    Unit,
    Unreadable,
    Violation,
    check_profile,
    profile_of,
    purpose_name,
    report_differences,
)
from hub.domain.schedules import Composite, CompositePeriod, Difference
from hub.domain.timeutil import parse_ms
from hub.subjects import subject_for, subject_matches
from schemas.events import Event
from schemas.ocpp import v16, v21, v201, validate_call

# A GetCompositeSchedule answer, in any version.
CompositeAnswer = (
    v16.GetCompositeScheduleResponse
    | v201.GetCompositeScheduleResponse
    | v21.GetCompositeScheduleResponse
)

PROFILE_SUBJECTS: Final = (
    "ev.cp.*.in.StartTransaction",
    "ev.cp.*.out.StartTransaction",
    "ev.cp.*.in.StopTransaction",
    "ev.cp.*.in.TransactionEvent",
    "ev.cp.*.out.TransactionEvent",
    "ev.cp.*.in.NotifyReport",
    "ev.cp.*.in.ReportChargingProfiles",
    *(f"ev.cp.*.in.{action}" for action in sorted(HUB_CALLS)),
    "ev.cp.*.conn.>",
    "ev.admin.command.>",
    "ev.integrity.action",
)
# The longest window a schedule is computed for: a month of a week's recurring profiles.
MAX_DURATION_S: Final = 31 * 86_400


def changes_profiles(event: Event) -> bool:
    """Whether ``event`` is under :data:`PROFILE_SUBJECTS`."""
    subject = subject_for(event)
    return any(subject_matches(pattern, subject) for pattern in PROFILE_SUBJECTS)


class ProfileBook:
    """The profiles of a charging fold (a new one by default); ``apply`` folds an event of
    :data:`PROFILE_SUBJECTS` into it, a sequence seen twice once."""

    def __init__(self, charging: Charging | None = None) -> None:
        self.charging = charging or Charging()

    def apply(self, event: Event, seq: int) -> None:
        state = self.charging.state
        if seq <= state.last_seq:
            return
        if reads(event):
            self.charging.apply(seq, event)
        state.last_seq = seq

    def knows(self, charge_point_id: str) -> bool:
        state = self.charging.state
        return charge_point_id in state.chargers or charge_point_id in state.profiles

    def model(self, charge_point_id: str) -> ChargerProfiles:
        return self.charging.state.profiles.get(charge_point_id) or ChargerProfiles()

    def running(self, charge_point_id: str, connector_id: int) -> Session | None:
        """The transaction running on a connector, as far as the hub knows."""
        charger = self.charging.state.chargers.get(charge_point_id)
        connector = charger.connectors.get(connector_id) if charger is not None else None
        if connector is None or not connector.open:
            return None
        session = self.charging.state.sessions.get(connector.open)
        return session if session is not None and session.ongoing else None

    def session(self, charge_point_id: str, session: str) -> Session | None:
        return self.charging.state.sessions.get(key(charge_point_id, session))

    def version(self, charge_point_id: str) -> str:
        """The OCPP version of the charger's latest connection (1.6 if none is known)."""
        charger = self.charging.state.chargers.get(charge_point_id)
        return (charger.ocpp_version if charger is not None else "") or "1.6"


# -- checking a SetChargingProfile -------------------------------------------------------------


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """A profile refused before it is sent: the rule, why, and where in the body."""

    rule: str
    detail: str
    path: str

    @property
    def message(self) -> str:
        return f"{self.detail} (rule {self.rule}) - at `{self.path}`"


class _Paths(msgspec.Struct, frozen=True):
    """Where a version's SetChargingProfile body holds the connector and the profile."""

    connector: str
    profile: str
    schedules_listed: bool  # 2.x: chargingSchedule is a list

    def schedule(self, index: int) -> str:
        listed = f"[{index}]" if self.schedules_listed else ""
        return f"{self.profile}.chargingSchedule{listed}"


_PATHS_16: Final = _Paths("$.connectorId", "$.csChargingProfiles", schedules_listed=False)
_PATHS_2X: Final = _Paths("$.evseId", "$.chargingProfile", schedules_listed=True)
# A remote start's body (1.6 RemoteStartTransaction; 2.x's RequestStartTransaction is
# SetChargingProfile's shape).
_PATHS_16_START: Final = _Paths("$.connectorId", "$.chargingProfile", schedules_listed=False)


def rule_path(
    violation: Violation, profile: Profile, ocpp_version: str = "1.6", paths: _Paths | None = None
) -> str:
    """The JSON path, in a SetChargingProfile body of ``ocpp_version`` (or one whose
    ``paths`` are given), of what breaks ``violation``'s rule."""
    if paths is None:
        paths = _PATHS_16 if ocpp_version == "1.6" else _PATHS_2X
    top, schedule = paths.profile, paths.schedule(violation.schedule)
    periods = profile.schedules[violation.schedule].periods
    at = f"{schedule}.chargingSchedulePeriod"
    match violation.rule:
        case "recurring_needs_recurrency_and_start":
            if profile.recurrency is None:
                return f"{top}.recurrencyKind"
            return f"{paths.schedule(0)}.startSchedule"
        case "first_period_at_0":
            return f"{at}[0].startPeriod"
        case "periods_in_order":
            index = next(
                i for i in range(1, len(periods)) if periods[i].start_s <= periods[i - 1].start_s
            )
            return f"{at}[{index}].startPeriod"
        case "negative_limit":
            index = next(i for i, period in enumerate(periods) if period.limit < 0)
            return f"{at}[{index}].limit"
        case "number_phases":
            index = next(
                i
                for i, period in enumerate(periods)
                if period.phases is not None and not 1 <= period.phases <= 3
            )
            return f"{at}[{index}].numberPhases"
        case "connector_id" | "charge_point_max_on_connector_0" | "tx_profile_on_a_connector":
            return paths.connector
        case "tx_profile_needs_a_transaction" | "external_constraints" | "remote_start_tx_profile":
            return f"{top}.chargingProfilePurpose"
        case (
            "tx_profile_transaction"
            | "transaction_id_only_for_tx_profile"
            | "tx_profile_needs_transaction_id"
            | "remote_start_transaction_id"
        ):
            return f"{top}.transactionId"
        case "stack_level" | "max_stack_level":
            return f"{top}.stackLevel"
        case "periods" | "max_periods":
            return at
        case "duration":
            return f"{schedule}.duration"
        case "charging_rate_unit":
            return f"{schedule}.chargingRateUnit"
        case "validity":
            return f"{top}.validTo"
        case "schedules_only_for_tx_profile":
            return f"{top}.chargingSchedule"
    return top


def refusal(book: ProfileBook, charge_point_id: str, payload: bytes) -> Refusal | None:
    """Why the hub refuses to send this SetChargingProfile (an already valid OCPP payload),
    checked against what it knows of the charger: its profiles, its advertised limits and
    the transaction running on the connector, by the rules of its OCPP version. None: send
    it."""
    version = book.version(charge_point_id)
    request = validate_call(version, "SetChargingProfile", payload)
    given: AnyChargingProfile
    match request:
        case v16.SetChargingProfileRequest():
            connector_id, given = request.connector_id, request.cs_charging_profiles
        case v201.SetChargingProfileRequest() | v21.SetChargingProfileRequest():
            connector_id, given = request.evse_id, request.charging_profile
        case _:
            return None  # another version's body: the charger will say what it makes of it
    running = book.running(charge_point_id, connector_id) if connector_id > 0 else None
    return _refused(
        book,
        charge_point_id,
        connector_id,
        given,
        _PATHS_16 if version == "1.6" else _PATHS_2X,
        transaction_id=running.transaction_id if running is not None else None,
    )


def remote_start_refusal(
    book: ProfileBook, charge_point_id: str, action: str, payload: bytes
) -> Refusal | None:
    """Why the hub refuses to send this remote start (1.6 RemoteStartTransaction, 2.x
    RequestStartTransaction: an already valid OCPP payload) for the charging profile it
    carries: the TxProfile of the transaction it starts (1.6 §5.11, 2.x K05), checked like
    a SetChargingProfile's, with no transaction running yet. None: send it."""
    version = book.version(charge_point_id)
    request = validate_call(version, action, payload)
    connector_id: object
    match request:
        case v16.RemoteStartTransactionRequest():
            paths, connector_id = _PATHS_16_START, request.connector_id
        case v201.RequestStartTransactionRequest() | v21.RequestStartTransactionRequest():
            paths, connector_id = _PATHS_2X, request.evse_id
        case _:
            return None  # another version's body: the charger will say what it makes of it
    given = request.charging_profile
    if isinstance(given, msgspec.UnsetType):
        return None
    return _refused(
        book,
        charge_point_id,
        connector_id if isinstance(connector_id, int) else None,
        given,
        paths,
        remote_start=True,
    )


def _refused(
    book: ProfileBook,
    charge_point_id: str,
    connector_id: int | None,
    given: AnyChargingProfile,
    paths: _Paths,
    *,
    transaction_id: int | str | None = None,
    remote_start: bool = False,
) -> Refusal | None:
    """The first rule ``given`` breaks on the charger as the hub knows it, where it is."""
    version = book.version(charge_point_id)
    try:
        profile = profile_of(given)
    except Unreadable as error:
        return Refusal(rule=error.rule, detail=str(error), path=paths.profile)
    violation = check_profile(
        book.model(charge_point_id),
        connector_id,
        profile,
        transaction_id=transaction_id,
        ocpp_version=version,
        remote_start=remote_start,
    )
    if violation is None:
        return None
    return Refusal(
        rule=violation.rule,
        detail=violation.detail,
        path=rule_path(violation, profile, version, paths),
    )


# -- views -------------------------------------------------------------------------------------


class _View(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    pass


class PeriodView(_View, frozen=True, kw_only=True):
    start_period: int
    limit: float
    number_phases: int | None = None


class ScheduleView(_View, frozen=True, kw_only=True):
    """A profile's schedule as OCPP writes it (times as ISO 8601, UTC; ``id``: 2.x's)."""

    id: int | None = None
    charging_rate_unit: Unit
    charging_schedule_period: list[PeriodView]
    start_schedule: str | None = None
    duration: int | None = None
    min_charging_rate: float | None = None


class ProfileView(_View, frozen=True, kw_only=True):
    """An installed profile: OCPP 1.6's ChargingProfile fields, on ``connectorId`` (a 2.x
    station's EVSE), with the transaction it belongs to (a TxProfile; ``session`` is the
    hub's name for it), when the charger's answer installed it and the command that set it.
    A 2.x profile's purpose is named as 2.x names it, and its schedules after the first are
    ``alternativeChargingSchedules``."""

    connector_id: int
    charging_profile_id: int
    stack_level: int
    charging_profile_purpose: str
    charging_profile_kind: str
    charging_schedule: ScheduleView
    alternative_charging_schedules: list[ScheduleView] | None = None
    recurrency_kind: str | None = None
    valid_from: str | None = None
    valid_to: str | None = None
    transaction_id: int | str | None = None
    session: str = ""
    installed_at: str
    command_id: str = ""


class ChargerLimitsView(_View, frozen=True, kw_only=True):
    """What the charger advertised in its GetConfiguration answers (absent: unknown)."""

    charge_profile_max_stack_level: int | None = None
    charging_schedule_max_periods: int | None = None
    max_charging_profiles_installed: int | None = None
    charging_schedule_allowed_charging_rate_unit: list[Unit] | None = None


class ReportedView(_View, frozen=True, kw_only=True):
    """A profile the station reported: where, its id, purpose, and who set it."""

    connector_id: int
    charging_profile_id: int
    charging_profile_purpose: str
    stack_level: int
    charging_limit_source: str


class ReportDifferenceView(_View, frozen=True, kw_only=True):
    charging_profile_id: int
    connector_id: int
    difference: str
    fields: list[str] | None = None


class ProfileReportView(_View, frozen=True, kw_only=True):
    """The station's latest report of what it holds (2.x GetChargingProfiles answered by
    ReportChargingProfiles), and where it differs from the hub's model; ``differences``
    and ``agree`` only once the report is complete."""

    request_id: int
    complete: bool
    command_id: str = ""
    asked_at: str | None = None
    updated_at: str
    profiles: list[ReportedView]
    differences: list[ReportDifferenceView] | None = None
    agree: bool | None = None


class ProfileList(_View, frozen=True, kw_only=True):
    charge_point_id: str
    profiles: list[ProfileView]
    limits: ChargerLimitsView
    report: ProfileReportView | None = None


def _iso(ms: int | None) -> str | None:
    return iso(ms) if ms is not None else None


def schedule_view(schedule: Schedule) -> ScheduleView:
    return ScheduleView(
        id=schedule.schedule_id,
        charging_rate_unit=schedule.unit,
        charging_schedule_period=[
            PeriodView(start_period=p.start_s, limit=p.limit, number_phases=p.phases)
            for p in schedule.periods
        ],
        start_schedule=_iso(schedule.start_ms),
        duration=schedule.duration_s,
        min_charging_rate=schedule.min_rate,
    )


def profile_view(book: ProfileBook, charge_point_id: str, installed: Installed) -> ProfileView:
    profile = installed.profile
    session = book.session(charge_point_id, installed.session) if installed.session else None
    alternatives = [schedule_view(schedule) for schedule in profile.alternatives]
    return ProfileView(
        connector_id=installed.connector_id,
        charging_profile_id=profile.profile_id,
        stack_level=profile.stack_level,
        charging_profile_purpose=purpose_name(profile.purpose, book.version(charge_point_id)),
        charging_profile_kind=profile.kind,
        recurrency_kind=profile.recurrency,
        valid_from=_iso(profile.valid_from_ms),
        valid_to=_iso(profile.valid_to_ms),
        transaction_id=session.transaction_id if session is not None else profile.transaction_id,
        charging_schedule=schedule_view(profile.schedule),
        alternative_charging_schedules=alternatives or None,
        session=installed.session,
        installed_at=iso(installed.installed_at),
        command_id=installed.command_id,
    )


def profile_report_view(
    book: ProfileBook, charge_point_id: str, report: Report
) -> ProfileReportView:
    version = book.version(charge_point_id)
    differences = None
    if report.complete:
        found = report_differences(book.model(charge_point_id).installed, report)
        differences = [
            ReportDifferenceView(
                charging_profile_id=one.profile_id,
                connector_id=one.connector_id,
                difference=one.difference,
                fields=[_FIELD_NAMES.get(name, name) for name in one.fields] or None,
            )
            for one in found
        ]
    return ProfileReportView(
        request_id=report.request_id,
        complete=report.complete,
        command_id=report.command_id,
        asked_at=_iso(report.asked_at or None),
        updated_at=iso(report.updated_at),
        profiles=[
            ReportedView(
                connector_id=one.connector_id,
                charging_profile_id=one.profile.profile_id,
                charging_profile_purpose=purpose_name(one.profile.purpose, version),
                stack_level=one.profile.stack_level,
                charging_limit_source=one.source,
            )
            for one in report.profiles
        ],
        differences=differences,
        agree=not differences if differences is not None else None,
    )


# The model's field names as OCPP's JSON names them.
_FIELD_NAMES: Final = {
    "connector_id": "evseId",
    "stack_level": "stackLevel",
    "purpose": "chargingProfilePurpose",
    "kind": "chargingProfileKind",
    "recurrency": "recurrencyKind",
    "valid_from_ms": "validFrom",
    "valid_to_ms": "validTo",
    "transaction_id": "transactionId",
    "schedule": "chargingSchedule",
    "alternatives": "chargingSchedule",
}


def profile_list(
    book: ProfileBook, charge_point_id: str, connector_id: int | None = None
) -> ProfileList:
    model = book.model(charge_point_id)
    limits: Limits = model.limits
    report = model.report
    return ProfileList(
        charge_point_id=charge_point_id,
        profiles=[
            profile_view(book, charge_point_id, installed)
            for installed in model.installed
            if connector_id is None or installed.connector_id == connector_id
        ],
        limits=ChargerLimitsView(
            charge_profile_max_stack_level=limits.max_stack_level,
            charging_schedule_max_periods=limits.max_periods,
            max_charging_profiles_installed=limits.max_installed,
            charging_schedule_allowed_charging_rate_unit=(
                list(limits.units) if limits.units is not None else None
            ),
        ),
        report=profile_report_view(book, charge_point_id, report) if report is not None else None,
    )


# -- composite schedules -----------------------------------------------------------------------


class CompositePeriodView(_View, frozen=True, kw_only=True):
    """``limit`` absent: no profile limits the connector then (the charger's own maximum
    applies, which the hub does not know)."""

    start_period: int
    limit: float | None = None
    number_phases: int


class CompositeView(_View, frozen=True, kw_only=True):
    schedule_start: str
    duration: int
    charging_rate_unit: Unit
    charging_schedule_period: list[CompositePeriodView]
    min_charging_rate: float | None = None


class DifferenceView(_View, frozen=True, kw_only=True):
    """From ``startPeriod`` to ``endPeriod`` seconds after the hub's ``scheduleStart`` the
    charger says ``chargerLimit`` (absent: nothing) where the hub says ``hubLimit``."""

    start_period: int
    end_period: int
    hub_limit: float | None = None
    charger_limit: float | None = None
    hub_phases: int
    charger_phases: int


def composite_view(composite: Composite) -> CompositeView:
    return CompositeView(
        schedule_start=iso(composite.start_ms),
        duration=composite.duration_s,
        charging_rate_unit=composite.unit,
        charging_schedule_period=[
            CompositePeriodView(start_period=p.start_s, limit=p.limit, number_phases=p.phases)
            for p in composite.periods
        ],
        min_charging_rate=composite.min_rate,
    )


def difference_view(difference: Difference) -> DifferenceView:
    return DifferenceView(
        start_period=difference.start_s,
        end_period=difference.end_s,
        hub_limit=difference.hub,
        charger_limit=difference.charger,
        hub_phases=difference.hub_phases,
        charger_phases=difference.charger_phases,
    )


def default_unit(limits: Limits) -> Unit:
    """The unit a schedule is given in when none is asked: the charger's, if it advertised
    only one, else A."""
    return limits.units[0] if limits.units is not None and len(limits.units) == 1 else "A"


def chargers_composite(
    answer: CompositeAnswer, asked_at_ms: int, duration_s: int
) -> Composite | None:
    """The charger's answer (1.6's or 2.x's) as a composite (None: it gave no schedule).
    Without a ``scheduleStart`` (1.6 may leave it out) its window starts when the hub asked;
    without a duration, it covers what was asked."""
    if isinstance(answer, v16.GetCompositeScheduleResponse):
        given = answer.charging_schedule
        if isinstance(given, msgspec.UnsetType):
            return None
        start_text = answer.schedule_start
        if not isinstance(start_text, str):
            start_text = given.start_schedule
        duration, unit = given.duration, given.charging_rate_unit
        periods: Sequence[AnyPeriod] = given.charging_schedule_period
    else:
        schedule = answer.schedule
        if isinstance(schedule, msgspec.UnsetType):
            return None
        start_text, duration = schedule.schedule_start, schedule.duration
        unit, periods = schedule.charging_rate_unit, schedule.charging_schedule_period
    start_ms = asked_at_ms
    if isinstance(start_text, str):
        try:
            start_ms = parse_ms(start_text)
        except (ValueError, OverflowError):
            return None
    return Composite(
        start_ms=start_ms,
        duration_s=duration if isinstance(duration, int) else duration_s,
        unit=unit,
        periods=tuple(
            CompositePeriod(
                start_s=period.start_period,
                # 2.1's periods may leave the limit out: no limit there, as in the hub's.
                limit=float(period.limit) if isinstance(period.limit, int | float) else None,
                phases=period.number_phases if isinstance(period.number_phases, int) else 3,
            )
            for period in periods
        ),
    )
