"""A simulated 2.0.1 or 2.1 station obeys charging profiles as the 1.6 charger does
(tools/simulator/obey.py): 2.x's messages, K01's rules, the hub's model and composite."""

from __future__ import annotations

import random
from typing import Any

import pytest
from ocpp.messages import CallResult, validate_payload

from tools.simulator.obey import ChargerControl

T0 = 1_800_000_000_000  # ms; a whole second
VERSIONS = ("2.0.1", "2.1")


def station(version: str) -> ChargerControl:
    return ChargerControl(ocpp_version=version, reaction_s=0.0, jitter=0.0, rng=random.Random(1))


def tx_profile(limit: float, transaction_id: str | None = "tx-a") -> dict[str, Any]:
    profile: dict[str, Any] = {
        "id": 1,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [
            {
                "id": 1,
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit, "numberPhases": 3}],
            }
        ],
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return {"evseId": 1, "chargingProfile": profile}


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_station_holds_a_tx_profile_for_its_transaction_and_answers_its_composite(
    version: str,
) -> None:
    firmware = station(version)
    assert firmware.answer("SetChargingProfile", tx_profile(10.0), T0) == {"status": "Rejected"}
    firmware.transaction_started(1, "tx-a", T0, 3)
    # K01.FR.03: a TxProfile names its transaction.
    unnamed = firmware.answer("SetChargingProfile", tx_profile(10.0, None), T0)
    assert unnamed == {"status": "Rejected"}
    assert firmware.answer("SetChargingProfile", tx_profile(10.0), T0) == {"status": "Accepted"}
    answer = firmware.answer(
        "GetCompositeSchedule", {"evseId": 1, "duration": 600, "chargingRateUnit": "A"}, T0
    )
    assert answer is not None
    await validate_payload(CallResult("r", answer, "GetCompositeSchedule"), version)
    assert answer["schedule"]["evseId"] == 1
    assert [p["limit"] for p in answer["schedule"]["chargingSchedulePeriod"]] == [10.0]
    assert firmware.limit_a(1, T0 + 1) == (10.0, 3)
    firmware.transaction_ended(1, T0 + 1_000)
    assert firmware.installed == []


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_station_clears_by_criteria(version: str) -> None:
    firmware = station(version)
    default = tx_profile(16.0, None)
    default["chargingProfile"]["chargingProfilePurpose"] = "TxDefaultProfile"
    assert firmware.answer("SetChargingProfile", default, T0) == {"status": "Accepted"}
    miss = {"chargingProfileCriteria": {"evseId": 2}}
    assert firmware.answer("ClearChargingProfile", miss, T0) == {"status": "Unknown"}
    hit = {"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}}
    answer = firmware.answer("ClearChargingProfile", hit, T0)
    assert answer == {"status": "Accepted"}
    await validate_payload(CallResult("r", answer, "ClearChargingProfile"), version)
    assert firmware.installed == [] and firmware.limit_a(1, T0 + 1)[0] is None
