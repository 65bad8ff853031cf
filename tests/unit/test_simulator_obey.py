"""The simulated charger obeys charging profiles (tools/simulator/obey.py): pure, no sockets."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from schemas.ocpp.v16 import GetCompositeScheduleResponse
from tools.simulator.obey import MIN_CHARGING_A, Car, ChargerControl, car_draw, wanted_a

T0 = 1_800_000_000_000  # ms; a whole second


def tx_profile(
    limit: float, *, profile_id: int = 1, transaction_id: int | None = 7
) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit, "numberPhases": 3}],
        },
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return {"connectorId": 1, "csChargingProfiles": profile}


def default_profile(limit: float) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 99,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        },
    }


CAR = Car(max_a=32.0, phases=3, capacity_wh=60_000, start_soc=20, target_wh=30_000, stay_s=600)
ONE_PHASE = Car(max_a=16.0, phases=1, capacity_wh=40_000, start_soc=20, target_wh=9_000, stay_s=600)


def control(reaction_s: float = 2.0, jitter: float = 0.0) -> ChargerControl:
    return ChargerControl(reaction_s=reaction_s, jitter=jitter, rng=random.Random(1))


def test_without_profiles_a_car_draws_what_it_wants() -> None:
    firmware = control()
    firmware.transaction_started(1, 7, T0, CAR.phases)
    draw = firmware.draw(1, CAR, 30.0, T0)
    assert (draw.drawn_a, draw.wanted_a, draw.phases, draw.limit_a) == (32.0, 32.0, 3, None)


def test_a_tx_profile_takes_effect_after_the_reaction_delay() -> None:
    firmware = control(reaction_s=2.0)
    firmware.transaction_started(1, 7, T0, CAR.phases)
    assert firmware.answer("SetChargingProfile", tx_profile(10.0), T0) == {"status": "Accepted"}
    assert firmware.draw(1, CAR, 30.0, T0 + 1_999).drawn_a == 32.0
    assert firmware.draw(1, CAR, 30.0, T0 + 2_000).drawn_a == 10.0
    # A higher limit than the car wants changes nothing for it.
    firmware.answer("SetChargingProfile", tx_profile(40.0, profile_id=2), T0 + 3_000)
    assert firmware.draw(1, CAR, 30.0, T0 + 6_000).drawn_a == 32.0


def test_the_delay_is_jittered_and_changes_apply_in_order() -> None:
    firmware = control(reaction_s=2.0, jitter=0.25)
    firmware.transaction_started(1, 7, T0, CAR.phases)
    firmware.answer("SetChargingProfile", tx_profile(10.0), T0)
    firmware.answer("SetChargingProfile", tx_profile(20.0), T0 + 100)
    delays = [at - T0 for at, _ in firmware.pending]
    assert 1_500 <= delays[0] <= 2_500
    assert delays[1] >= delays[0]
    assert firmware.draw(1, CAR, 30.0, T0 + 3_000).drawn_a == 20.0


def test_the_car_takes_the_smaller_of_its_taper_and_the_limit() -> None:
    firmware = control(reaction_s=0.0)
    firmware.transaction_started(1, 7, T0, CAR.phases)
    firmware.answer("SetChargingProfile", tx_profile(20.0), T0)
    assert firmware.draw(1, CAR, 30.0, T0).drawn_a == 20.0
    # At 95 % SoC the battery takes a quarter of its maximum: 8 A, below the limit.
    assert wanted_a(CAR, 95.0) == pytest.approx(8.0)
    assert firmware.draw(1, CAR, 95.0, T0).drawn_a == pytest.approx(8.0)


def test_a_limit_below_the_minimum_rate_pauses_the_car() -> None:
    assert car_draw(32.0, MIN_CHARGING_A - 0.1) == 0.0
    assert car_draw(32.0, 0.0) == 0.0
    assert car_draw(32.0, MIN_CHARGING_A) == MIN_CHARGING_A
    firmware = control(reaction_s=0.0)
    firmware.transaction_started(1, 7, T0, CAR.phases)
    firmware.answer("SetChargingProfile", tx_profile(0.0), T0)
    assert firmware.draw(1, CAR, 30.0, T0).drawn_a == 0.0


def test_the_default_profile_limits_a_car_until_its_tx_profile_comes() -> None:
    firmware = control(reaction_s=0.0)
    assert firmware.answer("SetChargingProfile", default_profile(6.0), T0)["status"] == "Accepted"
    firmware.transaction_started(1, 7, T0 + 1_000, ONE_PHASE.phases)
    draw = firmware.draw(1, ONE_PHASE, 30.0, T0 + 1_000)
    assert (draw.drawn_a, draw.phases) == (6.0, 1)
    firmware.answer("SetChargingProfile", tx_profile(13.0), T0 + 2_000)
    assert firmware.draw(1, ONE_PHASE, 30.0, T0 + 2_000).drawn_a == 13.0


def test_a_tx_profile_ends_with_its_transaction() -> None:
    firmware = control(reaction_s=0.0)
    firmware.answer("SetChargingProfile", default_profile(16.0), T0)
    firmware.transaction_started(1, 7, T0, CAR.phases)
    firmware.answer("SetChargingProfile", tx_profile(10.0), T0)
    firmware.transaction_ended(1, T0 + 1_000)
    assert [one.profile.purpose for one in firmware.installed] == ["TxDefaultProfile"]
    firmware.transaction_started(1, 8, T0 + 2_000, CAR.phases)
    assert firmware.draw(1, CAR, 30.0, T0 + 2_000).drawn_a == 16.0


def test_profiles_the_charger_cannot_hold_are_rejected() -> None:
    firmware = control()
    # A TxProfile with no transaction running, and one for another transaction.
    assert firmware.answer("SetChargingProfile", tx_profile(10.0), T0) == {"status": "Rejected"}
    firmware.transaction_started(1, 7, T0, CAR.phases)
    other = tx_profile(10.0, transaction_id=8)
    assert firmware.answer("SetChargingProfile", other, T0) == {"status": "Rejected"}
    assert firmware.answer("SetChargingProfile", {"connectorId": 1}, T0) == {"status": "Rejected"}
    assert firmware.installed == []
    assert firmware.profile_messages == 3


def test_clear_charging_profile_lifts_the_limit() -> None:
    firmware = control(reaction_s=1.0)
    firmware.transaction_started(1, 7, T0, CAR.phases)
    firmware.answer("SetChargingProfile", tx_profile(10.0), T0)
    assert firmware.draw(1, CAR, 30.0, T0 + 1_000).drawn_a == 10.0
    cleared = firmware.answer(
        "ClearChargingProfile", {"chargingProfilePurpose": "TxProfile"}, T0 + 2_000
    )
    assert cleared == {"status": "Accepted"}
    assert firmware.draw(1, CAR, 30.0, T0 + 2_500).drawn_a == 10.0
    assert firmware.draw(1, CAR, 30.0, T0 + 3_000).drawn_a == 32.0
    assert firmware.answer("ClearChargingProfile", {"id": 5}, T0) == {"status": "Unknown"}


def test_get_composite_schedule_answers_from_what_it_holds() -> None:
    firmware = control(reaction_s=5.0)
    firmware.answer("SetChargingProfile", default_profile(16.0), T0)
    firmware.transaction_started(1, 7, T0, CAR.phases)
    firmware.answer("SetChargingProfile", tx_profile(10.0), T0)
    answer = firmware.answer(
        "GetCompositeSchedule", {"connectorId": 1, "duration": 600, "chargingRateUnit": "W"}, T0
    )
    assert answer is not None
    msgspec.convert(answer, GetCompositeScheduleResponse)  # a valid OCPP 1.6 answer
    schedule = answer["chargingSchedule"]
    assert (answer["status"], schedule["chargingRateUnit"], schedule["duration"]) == (
        "Accepted",
        "W",
        600,
    )
    assert schedule["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 6900.0, "numberPhases": 3}
    ]
    assert firmware.answer("GetCompositeSchedule", {"duration": 5}, T0) == {"status": "Rejected"}


def test_other_calls_are_left_to_the_default_answers() -> None:
    assert control().answer("Reset", {"type": "Soft"}, T0) is None
