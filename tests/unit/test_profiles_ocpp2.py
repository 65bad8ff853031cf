"""OCPP 2.0.1 and 2.1 charging profiles in the one model 1.6's live in: the hub's
SetChargingProfile(evseId, chargingProfile) and ClearChargingProfile(chargingProfileId |
chargingProfileCriteria) with the stations' answers become the same installed profiles and
facts (K01, K10), and ``check_profile`` holds a 2.x profile to K01's rules."""

from __future__ import annotations

from typing import Any

import pytest

from hub.api.profile_state import rule_path
from hub.domain.charging import Charging
from hub.domain.facts import Fact, Problem, ProfileInstalled, ProfileRefused, ReportedVariable
from hub.domain.profiles import (
    ChargerProfiles,
    Limits,
    Period,
    Profile,
    Schedule,
    check_profile,
    limits_of_device_model,
    purpose_name,
)
from tests.projections.scenario import Builder
from tests.unit.test_charging import fold
from tests.unit.test_profiles import cleared, command, held, profile, schedule

VERSIONS = ("2.0.1", "2.1")


def connect(b: Builder, version: str) -> None:
    b.connect("CP", version)


def schedule2(schedule_id: int = 1, limit: float = 16, unit: str = "A", **more: Any) -> Any:
    return {"id": schedule_id, **schedule(limit, unit, **more)}


def profile2(profile_id: int, *how: Any, **more: Any) -> dict[str, Any]:
    """1.6's profile in 2.x's words: ``id``, and a list of schedules."""
    more.setdefault("chargingSchedule", [schedule2()])
    body = profile(profile_id, *how, **more)
    body["id"] = body.pop("chargingProfileId")
    return body


def set2(b: Builder, evse: int, body: dict[str, Any], status: str = "Accepted") -> None:
    payload = {"evseId": evse, "chargingProfile": body}
    command(b, "CP", "SetChargingProfile", payload, {"status": status})


def clear2(b: Builder, status: str = "Accepted", **payload: Any) -> None:
    command(b, "CP", "ClearChargingProfile", payload, {"status": status})


def installed_of(facts: list[Fact]) -> list[ProfileInstalled]:
    return [f for f in facts if isinstance(f, ProfileInstalled)]


@pytest.mark.parametrize("version", VERSIONS)
def test_an_accepted_2x_profile_is_the_same_model_as_a_16_one(version: str) -> None:
    b = Builder()
    connect(b, version)
    body = profile2(
        7,
        "ChargingStationMaxProfile",
        2,
        "Recurring",
        recurrencyKind="Daily",
        validFrom="2026-01-01T00:00:00Z",
        chargingSchedule=[
            schedule2(11, 11000, "W", startSchedule="2026-01-01T00:00:00Z", duration=86400),
        ],
    )
    set2(b, 0, body)
    charging, facts = fold(b)
    (fact,) = installed_of(facts)
    assert (fact.connector_id, fact.session) == (0, "")
    got = fact.profile
    # 2.x's ChargingStationMaxProfile is 1.6's ChargePointMaxProfile: the composite, the
    # load manager and the projections know it by that name.
    assert (got.profile_id, got.purpose, got.stack_level, got.kind, got.recurrency) == (
        7,
        "ChargePointMaxProfile",
        2,
        "Recurring",
        "Daily",
    )
    assert got.valid_from_ms == 1_767_225_600_000
    assert got.schedule == Schedule(
        unit="W",
        periods=(Period(start_s=0, limit=11000.0),),
        start_ms=1_767_225_600_000,
        duration_s=86400,
        schedule_id=11,
    )
    assert purpose_name(got.purpose, version) == "ChargingStationMaxProfile"
    assert held(charging) == [(0, 7, "ChargePointMaxProfile", 2)]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_tx_profile_belongs_to_the_transaction_its_string_id_names_and_ends_with_it(
    version: str,
) -> None:
    b = Builder()
    connect(b, version)
    b.event2("CP", "Started", "tx-1", 0, "2026-11-22T10:00:00Z", 0, version=version)
    b.event2("CP", "Started", "tx-2", 0, "2026-11-22T10:00:00Z", 0, evse=2, version=version)
    # Three schedules (ISO 15118: the EV picks one): all are held, the first is the schedule.
    schedules = [schedule2(1, 16), schedule2(2, 10), schedule2(3, 6)]
    set2(b, 1, profile2(1, "TxProfile", 1, transactionId="tx-1", chargingSchedule=schedules))
    set2(b, 2, profile2(2, "TxProfile", 1, transactionId="tx-2"))
    set2(b, 0, profile2(3, "TxDefaultProfile", 0))
    charging, facts = fold(b)
    by_id = {f.profile.profile_id: f for f in installed_of(facts)}
    assert {n: f.session for n, f in by_id.items()} == {1: "tx-1", 2: "tx-2", 3: ""}
    first = by_id[1].profile
    assert first.transaction_id == "tx-1"
    assert [s.schedule_id for s in first.schedules] == [1, 2, 3]
    assert [s.periods[0].limit for s in first.schedules] == [16.0, 10.0, 6.0]
    b.event2("CP", "Ended", "tx-1", 1, "2026-11-22T11:00:00Z", 5000, version=version)
    charging, facts = fold(b, charging)
    assert cleared(facts) == [(1, "transaction_ended")]
    assert [row[1] for row in held(charging)] == [2, 3]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_rejected_2x_profile_leaves_the_model_unchanged(version: str) -> None:
    b = Builder()
    connect(b, version)
    set2(b, 0, profile2(1, level=0))
    set2(b, 0, profile2(2, level=0), status="Rejected")  # would replace 1
    charging, facts = fold(b)
    assert held(charging) == [(0, 1, "TxDefaultProfile", 0)]
    assert [f.profile.profile_id for f in installed_of(facts)] == [1]
    assert [(f.connector_id, f.status) for f in facts if isinstance(f, ProfileRefused)] == [
        (0, "Rejected")
    ]
    assert cleared(facts) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_the_same_id_or_purpose_and_stack_level_on_the_same_evse_replaces(version: str) -> None:
    b = Builder()
    connect(b, version)
    set2(b, 1, profile2(1, level=0))
    set2(b, 2, profile2(2, level=0))  # another EVSE: stays
    set2(b, 1, profile2(3, level=0))  # K01: same purpose and stack level on EVSE 1
    set2(b, 0, profile2(2, level=4))  # K01.FR.05: the same id, wherever it was
    charging, facts = fold(b)
    assert cleared(facts) == [(1, "replaced"), (2, "replaced")]
    assert held(charging) == [(0, 2, "TxDefaultProfile", 4), (1, 3, "TxDefaultProfile", 0)]


def _three2(b: Builder, version: str) -> None:
    connect(b, version)
    b.event2("CP", "Started", "tx-1", 0, "2026-11-22T10:00:00Z", 0, version=version)
    set2(b, 0, profile2(1, "ChargingStationMaxProfile", 0, "Absolute"))
    set2(b, 0, profile2(2, "TxDefaultProfile", 1))
    set2(b, 1, profile2(3, "TxProfile", 1, transactionId="tx-1"))
    set2(b, 1, profile2(4, "TxDefaultProfile", 1))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("payload", "left"),
    [
        ({"chargingProfileId": 3}, [1, 2, 4]),
        # K10: the id alone counts when given.
        ({"chargingProfileId": 2, "chargingProfileCriteria": {"evseId": 1}}, [1, 3, 4]),
        ({"chargingProfileCriteria": {"evseId": 1}}, [1, 2]),
        ({"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}}, [1, 3]),
        (
            {
                "chargingProfileCriteria": {
                    "evseId": 0,
                    "chargingProfilePurpose": "ChargingStationMaxProfile",
                }
            },
            [2, 3, 4],
        ),
        ({"chargingProfileCriteria": {"stackLevel": 1, "evseId": 1}}, [1, 2]),
        ({}, []),
    ],
)
def test_a_2x_clear_removes_by_id_or_by_every_criterion_given(
    version: str, payload: dict[str, Any], left: list[int]
) -> None:
    b = Builder()
    _three2(b, version)
    clear2(b, **payload)
    charging, facts = fold(b)
    assert [row[1] for row in held(charging)] == left
    assert {reason for _, reason in cleared(facts)} <= {"cleared"}


@pytest.mark.parametrize("version", VERSIONS)
def test_a_2x_clear_the_station_answers_unknown_leaves_no_match_in_the_model(
    version: str,
) -> None:
    b = Builder()
    _three2(b, version)
    clear2(b, "Unknown", chargingProfileCriteria={"evseId": 1})
    charging, facts = fold(b)
    assert [row[1] for row in held(charging)] == [1, 2]
    assert cleared(facts) == [(3, "unknown_to_charger"), (4, "unknown_to_charger")]


def test_21s_own_purposes_are_held_and_cleared_like_the_others() -> None:
    b = Builder()
    connect(b, "2.1")
    set2(b, 0, profile2(1, "LocalGeneration", 0, "Absolute"))
    set2(b, 1, profile2(2, "PriorityCharging", 0))
    charging, _ = fold(b)
    assert held(charging) == [(0, 1, "LocalGeneration", 0), (1, 2, "PriorityCharging", 0)]
    clear2(b, chargingProfileCriteria={"chargingProfilePurpose": "PriorityCharging"})
    charging, facts = fold(b, charging)
    assert cleared(facts) == [(2, "cleared")]


def test_a_21_period_without_a_limit_is_a_problem_not_a_profile() -> None:
    b = Builder()
    connect(b, "2.1")
    setpoint = {
        "id": 1,
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [{"startPeriod": 0, "setpoint": 5000}],
    }
    set2(b, 0, profile2(1, chargingSchedule=[setpoint]))
    charging, facts = fold(b)
    assert held(charging) == []
    assert [f for f in facts if isinstance(f, Problem) and "no limit" in f.reason]


# -- check_profile for 2.x ---------------------------------------------------------------------


def _p(
    purpose: str = "TxDefaultProfile",
    *,
    periods: tuple[Period, ...] = (Period(start_s=0, limit=16),),
    alternatives: tuple[Schedule, ...] = (),
    **more: Any,
) -> Profile:
    return Profile(
        profile_id=1,
        stack_level=more.pop("level", 0),
        purpose=purpose,  # type: ignore[arg-type]
        kind=more.pop("kind", "Relative"),
        schedule=Schedule(
            unit="A", periods=periods, schedule_id=1, start_ms=more.pop("start_ms", None)
        ),
        alternatives=alternatives,
        **more,
    )


def _rule(evse: int, profile: Profile, transaction: str | None = None, **how: Any) -> Any:
    found = check_profile(
        ChargerProfiles(), evse, profile, transaction_id=transaction, ocpp_version="2.0.1", **how
    )
    return (found.rule, found.schedule) if found is not None else None


def test_check_profile_holds_a_2x_profile_to_k01() -> None:
    assert _rule(1, _p("TxProfile", transaction_id="tx-1"), "tx-1") is None
    assert _rule(1, _p("TxProfile"), "tx-1") == ("tx_profile_needs_transaction_id", 0)
    assert _rule(1, _p("TxProfile", transaction_id="tx-9"), "tx-1") == (
        "tx_profile_transaction",
        0,
    )
    assert _rule(1, _p("TxProfile", transaction_id="tx-1")) == (
        "tx_profile_needs_a_transaction",
        0,
    )
    assert _rule(0, _p("TxProfile", transaction_id="tx-1"), "tx-1") == (
        "tx_profile_on_a_connector",
        0,
    )
    assert _rule(2, _p("ChargePointMaxProfile")) == ("charge_point_max_on_connector_0", 0)
    assert _rule(0, _p("ChargingStationExternalConstraints")) == ("external_constraints", 0)
    other = Schedule(unit="A", periods=(Period(start_s=0, limit=6),), schedule_id=2)
    assert _rule(1, _p(alternatives=(other,))) == ("schedules_only_for_tx_profile", 0)
    # The rules of a schedule hold for each one; the answer says which.
    late = Schedule(unit="A", periods=(Period(start_s=60, limit=6),), schedule_id=2)
    with_late = _p("TxProfile", transaction_id="tx-1", alternatives=(other, late))
    assert _rule(1, with_late, "tx-1") == ("first_period_at_0", 2)
    assert _rule(1, _p("TxProfile", transaction_id="tx-1", alternatives=(other,)), "tx-1") is None
    assert _rule(1, _p(), limits=Limits(units=("W",))) == ("charging_rate_unit", 0)


def test_check_profile_holds_a_2x_profile_to_k01s_rules_on_kind_and_start() -> None:
    # K01.FR.38: a station-wide limit has no transaction to be relative to.
    assert _rule(0, _p("ChargePointMaxProfile")) == ("max_profile_not_relative", 0)
    assert _rule(0, _p("ChargePointMaxProfile", kind="Absolute", start_ms=0)) is None
    # K01.FR.40 and FR.41, for each schedule.
    assert _rule(1, _p(kind="Absolute")) == ("start_schedule_needed", 0)
    assert _rule(1, _p(kind="Absolute", start_ms=0)) is None
    started = Schedule(unit="A", periods=(Period(start_s=0, limit=6),), schedule_id=2, start_ms=0)
    relative = _p("TxProfile", transaction_id="tx-1", alternatives=(started,))
    assert _rule(1, relative, "tx-1") == ("start_schedule_not_relative", 1)
    # 1.6 has none of these rules.
    model = ChargerProfiles()
    assert check_profile(model, 0, _p("ChargePointMaxProfile")) is None
    assert check_profile(model, 1, _p(kind="Absolute")) is None


def test_check_profile_speaks_the_chargers_version() -> None:
    model = ChargerProfiles(limits=Limits(max_stack_level=1))
    found = check_profile(model, 2, _p(level=3), ocpp_version="2.1")
    assert found is not None and "SmartChargingCtrlr.ProfileStackLevel" in found.detail
    found = check_profile(model, 2, _p("ChargePointMaxProfile"), ocpp_version="2.1")
    assert found is not None and "ChargingStationMaxProfile" in found.detail
    assert "EVSE 0" in found.detail


def test_2x_profiles_survive_a_snapshot_of_the_state() -> None:
    from hub.domain.charging import decode_state, encode_state

    b = Builder()
    _three2(b, "2.0.1")
    charging, _ = fold(b)
    again = Charging(decode_state(encode_state(charging.state)))
    assert again.state.profiles == charging.state.profiles


def test_a_stations_smart_charging_variables_are_its_limits() -> None:
    def row(variable: str, value: str | None, **more: Any) -> ReportedVariable:
        return ReportedVariable(
            component="SmartChargingCtrlr", variable=variable, value=value, **more
        )

    reported = [
        row("ProfileStackLevel", "3"),
        row("PeriodsPerSchedule", "24"),
        row("RateUnit", "A,W"),
        row("Entries", "2", variable_instance="ChargingProfiles", max_limit=10),
        row("ProfileStackLevel", "9", attribute_type="MaxSet"),  # not the Actual value
        ReportedVariable(component="OCPPCommCtrlr", variable="ProfileStackLevel", value="7"),
    ]
    assert limits_of_device_model(Limits(), reported) == Limits(
        max_stack_level=3, max_periods=24, max_installed=10, units=("A", "W")
    )
    known = Limits(max_stack_level=1, units=("A",))
    assert limits_of_device_model(known, [row("PeriodsPerSchedule", "x")]) == Limits(
        max_stack_level=1, units=("A",)
    )


def test_the_path_of_a_broken_2x_rule_is_in_the_2x_body() -> None:
    late = Schedule(unit="A", periods=(Period(start_s=0, limit=6), Period(start_s=0, limit=8)))
    profile = _p("TxProfile", transaction_id="t", alternatives=(late,))
    found = check_profile(ChargerProfiles(), 1, profile, transaction_id="t", ocpp_version="2.1")
    assert found is not None
    assert rule_path(found, profile, "2.1") == (
        "$.chargingProfile.chargingSchedule[1].chargingSchedulePeriod[1].startPeriod"
    )
    found = check_profile(ChargerProfiles(), 1, _p("ChargePointMaxProfile"), ocpp_version="2.1")
    assert found is not None and rule_path(found, profile, "2.1") == "$.evseId"
