"""Charging profiles as domain state: the hub's SetChargingProfile / ClearChargingProfile and
the charger's answers folded into the installed profiles (OCPP 1.6 §3.13, §5.5, §5.16), and
the rules a profile must keep before it is sent (``check_profile``)."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from hub.domain.charging import Charging, reads
from hub.domain.facts import Fact, ProfileCleared, ProfileInstalled
from hub.domain.profiles import (
    ChargerProfiles,
    Installed,
    Limits,
    Period,
    Profile,
    Schedule,
    check_profile,
)
from schemas.events import CommandFinished, CommandRequested, OcppFrame
from tests.projections.scenario import Builder
from tests.unit.test_charging import fold

_commands = itertools.count(1)


def command(
    b: Builder,
    cp: str,
    action: str,
    payload: dict[str, Any],
    answer: dict[str, Any] | None,
    *,
    frames: bool = True,
    finished: bool = True,
) -> None:
    """A command the hub sent, as the stream holds it: requested, the CALL and the charger's
    answer (``None``: a CALLERROR), and the command's finished event."""
    command_id = f"cmd-{next(_commands)}"
    body = msgspec.Raw(msgspec.json.encode(payload))
    reply = msgspec.Raw(msgspec.json.encode(answer if answer is not None else {}))
    link = {"charge_point_id": cp, "gateway_id": "gw-t", "connection_id": f"c-{cp}"}
    b.events.append(
        CommandRequested(
            id=f"{command_id}:requested",
            received_at=b._tick(),
            actor="api:test",
            command_id=command_id,
            charge_point_id=cp,
            action=action,
            payload=body,
        )
    )
    if frames:
        for direction, kind, raw in (
            ("out", "CALL", body),
            ("in", "CALLRESULT" if answer is not None else "CALLERROR", reply),
        ):
            b.events.append(
                OcppFrame(
                    id=b._id(),
                    received_at=b._tick(),
                    **link,
                    ocpp_version="1.6",
                    direction=direction,  # type: ignore[arg-type]
                    message_type=kind,  # type: ignore[arg-type]
                    unique_id=command_id,
                    action=action,
                    payload=raw,
                )
            )
    if finished:
        b.events.append(
            CommandFinished(
                id=f"{command_id}:finished",
                received_at=b._tick(),
                actor="api:test",
                command_id=command_id,
                charge_point_id=cp,
                action=action,
                status="answered" if answer is not None else "callerror",
                payload=reply,
            )
        )


def schedule(limit: float = 16, unit: str = "A", **more: Any) -> dict[str, Any]:
    return {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
        **more,
    }


def profile(
    profile_id: int,
    purpose: str = "TxDefaultProfile",
    level: int = 0,
    kind: str = "Relative",
    **more: Any,
) -> dict[str, Any]:
    return {
        "chargingProfileId": profile_id,
        "stackLevel": level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": more.pop("chargingSchedule", schedule()),
        **more,
    }


def set_profile(
    b: Builder, connector: int, body: dict[str, Any], status: str = "Accepted", **how: bool
) -> None:
    payload = {"connectorId": connector, "csChargingProfiles": body}
    command(b, "CP", "SetChargingProfile", payload, {"status": status}, **how)


def clear(b: Builder, status: str = "Accepted", **criteria: Any) -> None:
    command(b, "CP", "ClearChargingProfile", criteria, {"status": status})


def held(charging: Charging, cp: str = "CP") -> list[tuple[int, int, str, int]]:
    """(connector, id, purpose, stack level) of each profile the charger holds, by id."""
    model = charging.state.profiles.get(cp)
    rows = [
        (one.connector_id, one.profile.profile_id, one.profile.purpose, one.profile.stack_level)
        for one in (model.installed if model else [])
    ]
    return sorted(rows, key=lambda row: row[1])


def cleared(facts: list[Fact]) -> list[tuple[int, str]]:
    return [(f.profile_id, f.reason) for f in facts if isinstance(f, ProfileCleared)]


# -- the model, from the stream ----------------------------------------------------------------


def test_an_accepted_profile_is_installed_with_everything_it_says() -> None:
    b = Builder()
    b.connect("CP")
    body = profile(
        7,
        "TxDefaultProfile",
        2,
        "Recurring",
        recurrencyKind="Daily",
        validFrom="2026-01-01T00:00:00Z",
        validTo="2027-01-01T00:00:00Z",
        chargingSchedule=schedule(
            11000,
            "W",
            duration=86400,
            startSchedule="2026-01-01T00:00:00Z",
            minChargingRate=1500.5,
        ),
    )
    set_profile(b, 1, body)
    charging, facts = fold(b)
    (fact,) = [f for f in facts if isinstance(f, ProfileInstalled)]
    assert isinstance(fact, ProfileInstalled)
    assert (fact.charge_point_id, fact.connector_id) == ("CP", 1)
    got = fact.profile
    assert (got.profile_id, got.purpose, got.stack_level, got.kind) == (
        7,
        "TxDefaultProfile",
        2,
        "Recurring",
    )
    assert (got.recurrency, got.valid_from_ms, got.valid_to_ms) == (
        "Daily",
        1_767_225_600_000,
        1_798_761_600_000,
    )
    assert got.schedule == Schedule(
        unit="W",
        periods=(Period(start_s=0, limit=11000.0),),
        start_ms=1_767_225_600_000,
        duration_s=86400,
        min_rate=1500.5,
    )
    assert held(charging) == [(1, 7, "TxDefaultProfile", 2)]


@pytest.mark.parametrize("frames", [True, False])
def test_an_installed_profile_names_the_command_that_set_it(frames: bool) -> None:
    b = Builder()
    set_profile(b, 1, profile(1), frames=frames)  # the answer as a frame, or only as finished
    [requested] = [e for e in b.events if isinstance(e, CommandRequested)]
    charging, _ = fold(b)
    (installed,) = charging.state.profiles["CP"].installed
    assert installed.command_id == requested.command_id


@pytest.mark.parametrize("status", ["Rejected", "NotSupported"])
def test_a_rejected_profile_leaves_the_model_unchanged(status: str) -> None:
    b = Builder()
    set_profile(b, 0, profile(1, level=0))
    set_profile(b, 0, profile(2, level=0), status=status)  # would replace 1
    charging, facts = fold(b)
    assert held(charging) == [(0, 1, "TxDefaultProfile", 0)]
    assert [f.profile.profile_id for f in facts if isinstance(f, ProfileInstalled)] == [1]
    assert cleared(facts) == []


def test_a_callerror_or_no_answer_leaves_the_model_unchanged() -> None:
    b = Builder()
    command(
        b, "CP", "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile(1)}, None
    )
    # Requested, never answered (the charger went away): nothing is installed either.
    payload = {"connectorId": 0, "csChargingProfiles": profile(2)}
    command(
        b, "CP", "SetChargingProfile", payload, {"status": "Accepted"}, frames=False, finished=False
    )
    charging, _ = fold(b)
    assert held(charging) == []


def test_the_answer_counts_once_from_the_frame_or_from_the_finished_event() -> None:
    for frames, finished in ((True, True), (True, False), (False, True)):
        b = Builder()
        set_profile(b, 0, profile(1), frames=frames, finished=finished)
        charging, facts = fold(b)
        assert held(charging) == [(0, 1, "TxDefaultProfile", 0)]
        assert len([f for f in facts if isinstance(f, ProfileInstalled)]) == 1
        assert charging.state.hub_calls == {}


def test_the_same_purpose_and_stack_level_on_the_same_connector_replaces() -> None:
    # OCPP 1.6 §3.13.2: "Whenever a Charge Point receives a Charging Profile with a
    # stackLevel and Purpose that already exists in the Charge Point, the Charge Point SHALL
    # replace the existing profile." Per connector (§3.13.1: a connector's TxDefaultProfile
    # replaces connector 0's only for that connector).
    b = Builder()
    set_profile(b, 0, profile(1, level=1))
    set_profile(b, 1, profile(2, level=1))
    set_profile(b, 0, profile(3, level=2))
    set_profile(b, 0, profile(4, level=1))
    charging, facts = fold(b)
    assert held(charging) == [
        (1, 2, "TxDefaultProfile", 1),
        (0, 3, "TxDefaultProfile", 2),
        (0, 4, "TxDefaultProfile", 1),
    ]
    assert cleared(facts) == [(1, "replaced")]


def test_the_same_profile_id_replaces_whatever_it_was() -> None:
    # §5.16: "If a charging profile with the same chargingProfileId [...] exists on the Charge
    # Point, the new charging profile SHALL replace the existing charging profile".
    b = Builder()
    set_profile(b, 0, profile(5, "ChargePointMaxProfile", 0, "Absolute"))
    set_profile(b, 2, profile(5, "TxDefaultProfile", 3))
    charging, facts = fold(b)
    assert held(charging) == [(2, 5, "TxDefaultProfile", 3)]
    assert cleared(facts) == [(5, "replaced")]


def _three(b: Builder) -> None:
    set_profile(b, 0, profile(1, "ChargePointMaxProfile", 0, "Absolute"))
    set_profile(b, 0, profile(2, "TxDefaultProfile", 0))
    set_profile(b, 1, profile(3, "TxDefaultProfile", 1))
    set_profile(b, 2, profile(4, "TxDefaultProfile", 1))


@pytest.mark.parametrize(
    ("criteria", "left"),
    [
        ({"id": 3}, [1, 2, 4]),
        ({"id": 3, "connectorId": 2}, [1, 2, 4]),  # by id, the rest does not count
        ({"connectorId": 0}, [3, 4]),
        ({"chargingProfilePurpose": "TxDefaultProfile"}, [1]),
        ({"stackLevel": 1}, [1, 2]),
        ({"connectorId": 1, "stackLevel": 1}, [1, 2, 4]),
        (
            {"connectorId": 0, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1},
            [1, 2, 3, 4],
        ),
        ({}, []),
    ],
)
def test_a_clear_removes_by_id_or_what_matches_every_criterion_given(
    criteria: dict[str, Any], left: list[int]
) -> None:
    # §5.5: "either a specific charging profile (denoted by id) or a selection of charging
    # profiles that match with the values of the optional connectorId, stackLevel and
    # chargingProfilePurpose fields".
    b = Builder()
    _three(b)
    charging, _ = fold(b)
    clear(b, **criteria)
    charging, facts = fold(b, charging)
    assert [row[1] for row in held(charging)] == left
    assert sorted(cleared(facts)) == [(n, "cleared") for n in (1, 2, 3, 4) if n not in left]


def test_a_clear_the_charger_answers_unknown_leaves_no_match_in_the_model() -> None:
    # "Unknown: No Charging Profile(s) were found matching the request": whatever the model
    # still held that matches is not on the charger.
    b = Builder()
    _three(b)
    clear(b, status="Unknown", stackLevel=1)
    charging, facts = fold(b)
    assert [row[1] for row in held(charging)] == [1, 2]
    assert sorted(cleared(facts)) == [(3, "unknown_to_charger"), (4, "unknown_to_charger")]


def test_a_tx_profile_ends_with_its_transaction() -> None:
    # §3.13.1: "After the transaction is stopped, the profile SHOULD be deleted."
    b = Builder()
    set_profile(b, 0, profile(1, "TxDefaultProfile", 0))
    tx = b.start("CP", 1, "2026-11-22T10:00:00Z", 0)
    other = b.start("CP", 2, "2026-11-22T10:00:00Z", 0)
    set_profile(b, 1, profile(2, "TxProfile", 1, transactionId=tx))
    set_profile(b, 2, profile(3, "TxProfile", 1))  # bound to what runs on connector 2
    charging, facts = fold(b)
    installed = {f.profile.profile_id: f.session for f in facts if isinstance(f, ProfileInstalled)}
    assert installed == {1: "", 2: str(tx), 3: str(other)}
    b.stop("CP", tx, "2026-11-22T11:00:00Z", 5000)
    charging, facts = fold(b, charging)
    assert cleared(facts) == [(2, "transaction_ended")]
    assert [row[1] for row in held(charging)] == [1, 3]
    # A newer start that supersedes the other transaction ends it, and its profile.
    b.start("CP", 2, "2026-11-22T12:00:00Z", 0)
    charging, facts = fold(b, charging)
    assert cleared(facts) == [(3, "transaction_ended")]
    assert [row[1] for row in held(charging)] == [1]


def test_the_chargers_limits_come_from_its_get_configuration_answers() -> None:
    b = Builder()
    keys = [
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "3"},
        {"key": "ChargingScheduleMaxPeriods", "readonly": True, "value": "24"},
        {"key": "MaxChargingProfilesInstalled", "readonly": True, "value": "nonsense"},
        {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"},
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
    ]
    command(b, "CP", "GetConfiguration", {}, {"configurationKey": keys})
    charging, _ = fold(b)
    assert charging.state.profiles["CP"].limits == Limits(
        max_stack_level=3, max_periods=24, max_installed=None, units=("A",)
    )


def test_the_fold_reads_the_hubs_profile_commands_and_their_answers() -> None:
    b = Builder()
    set_profile(b, 0, profile(1))
    command(b, "CP", "Reset", {"type": "Soft"}, {"status": "Accepted"})
    read = [(type(e).__name__, getattr(e, "message_type", "")) for e in b.events if reads(e)]
    assert read == [
        ("CommandRequested", ""),
        ("OcppFrame", "CALLRESULT"),
        ("CommandFinished", ""),
    ]


def test_profiles_survive_a_snapshot_of_the_state() -> None:
    from hub.domain.charging import decode_state, encode_state

    b = Builder()
    _three(b)
    charging, _ = fold(b)
    again = Charging(decode_state(encode_state(charging.state)))
    assert held(again) == held(charging)


# -- check_profile -----------------------------------------------------------------------------


def _profile(
    purpose: str = "TxDefaultProfile",
    *,
    level: int = 0,
    kind: str = "Relative",
    periods: tuple[Period, ...] = (Period(start_s=0, limit=16),),
    unit: str = "A",
    **more: Any,
) -> Profile:
    start_ms = more.pop("start_ms", None)
    return Profile(
        profile_id=more.pop("profile_id", 1),
        stack_level=level,
        purpose=purpose,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        schedule=Schedule(unit=unit, periods=periods, start_ms=start_ms),  # type: ignore[arg-type]
        **more,
    )


@pytest.mark.parametrize(
    ("connector", "candidate", "transaction", "rule"),
    [
        (
            1,
            _profile("ChargePointMaxProfile", kind="Absolute", start_ms=0),
            None,
            "charge_point_max_on_connector_0",
        ),
        (0, _profile("TxProfile"), 7, "tx_profile_on_a_connector"),
        (1, _profile("TxProfile"), None, "tx_profile_needs_a_transaction"),
        (1, _profile("TxProfile", transaction_id=8), 7, "tx_profile_transaction"),
        (1, _profile(transaction_id=8), 7, "transaction_id_only_for_tx_profile"),
        (1, _profile(kind="Recurring", start_ms=0), None, "recurring_needs_recurrency_and_start"),
        (
            1,
            _profile(kind="Recurring", recurrency="Daily"),
            None,
            "recurring_needs_recurrency_and_start",
        ),
        (1, _profile(periods=()), None, "periods"),
        (1, _profile(periods=(Period(start_s=60, limit=6),)), None, "first_period_at_0"),
        (
            1,
            _profile(periods=(Period(start_s=0, limit=6), Period(start_s=0, limit=8))),
            None,
            "periods_in_order",
        ),
        (1, _profile(periods=(Period(start_s=0, limit=-1),)), None, "negative_limit"),
        (1, _profile(periods=(Period(start_s=0, limit=6, phases=4),)), None, "number_phases"),
        (1, _profile(valid_from_ms=2000, valid_to_ms=1000), None, "validity"),
        (1, _profile(level=-1), None, "stack_level"),
        (-1, _profile(), None, "connector_id"),
    ],
)
def test_check_profile_names_the_rule_a_profile_breaks(
    connector: int, candidate: Profile, transaction: int | None, rule: str
) -> None:
    problem = check_profile(ChargerProfiles(), connector, candidate, transaction_id=transaction)
    assert problem is not None and problem.rule == rule, problem


def test_check_profile_lets_a_sound_profile_through() -> None:
    model = ChargerProfiles()
    assert (
        check_profile(model, 0, _profile("ChargePointMaxProfile", kind="Absolute", start_ms=0))
        is None
    )
    assert check_profile(model, 0, _profile()) is None
    assert (
        check_profile(model, 1, _profile("TxProfile", transaction_id=7), transaction_id=7) is None
    )
    assert check_profile(model, 1, _profile("TxProfile"), transaction_id="tx-2") is None
    daily = _profile(kind="Recurring", recurrency="Daily", start_ms=0)
    assert check_profile(model, 1, daily) is None


def test_check_profile_keeps_the_chargers_advertised_limits() -> None:
    limits = Limits(max_stack_level=2, max_periods=2, max_installed=2, units=("W",))
    model = ChargerProfiles(limits=limits)
    watts = (Period(start_s=0, limit=11000),)

    def rule(candidate: Profile, given: Limits | None = None) -> str | None:
        problem = check_profile(model, 1, candidate, given)
        return problem.rule if problem is not None else None

    assert rule(_profile(unit="W", periods=watts)) is None
    assert rule(_profile(level=3, unit="W", periods=watts)) == "max_stack_level"
    many = tuple(Period(start_s=n * 60, limit=11000) for n in range(3))
    assert rule(_profile(unit="W", periods=many)) == "max_periods"
    assert rule(_profile(unit="A")) == "charging_rate_unit"
    assert rule(_profile(unit="A"), Limits()) is None  # limits given override the model's
    # Two installed: a third is one too many, one that replaces either is not.
    model.installed = [
        Installed(connector_id=1, profile=_profile(profile_id=1, level=0, unit="W", periods=watts)),
        Installed(connector_id=1, profile=_profile(profile_id=2, level=1, unit="W", periods=watts)),
    ]
    assert (
        rule(_profile(profile_id=3, level=2, unit="W", periods=watts)) == "max_profiles_installed"
    )
    assert rule(_profile(profile_id=3, level=1, unit="W", periods=watts)) is None
    assert rule(_profile(profile_id=1, level=2, unit="W", periods=watts)) is None


def remote_start(b: Builder, body: dict[str, Any], tag: str = "TAG", **where: int) -> None:
    payload = {"idTag": tag, "chargingProfile": body, **where}
    command(b, "CP", "RemoteStartTransaction", payload, {"status": "Accepted"})


@pytest.mark.parametrize("start_first", [False, True])
def test_a_remote_starts_profile_goes_to_the_transaction_of_its_id_tag(start_first: bool) -> None:
    # The charger's StartTransaction may reach the hub before its answer to the remote start.
    b = Builder()
    b.connect("CP")
    other = b.start("CP", 2, "2026-11-22T10:00:00Z", 0, tag="TAG")  # before the request
    remote_start(b, profile(5, "TxProfile"), tag="tag", connectorId=1)
    answer = b.events[-2:]  # the CALLRESULT and the command's finished event
    if start_first:
        del b.events[-2:]
    txid = b.start("CP", 1, "2026-11-22T10:00:01Z", 0, tag="TAG")
    if start_first:
        b.events.extend(answer)
    charging, facts = fold(b)
    assert held(charging) == [(1, 5, "TxProfile", 0)]
    model = charging.state.profiles["CP"]
    assert model.installed[0].profile.transaction_id == txid != other
    assert model.installed[0].session == str(txid)
    assert model.awaiting == []
    assert [f.profile.profile_id for f in facts if isinstance(f, ProfileInstalled)] == [5]
