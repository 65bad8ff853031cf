"""A 2.x station's report of the profiles it holds (K09 GetChargingProfiles answered by
ReportChargingProfiles parts): recorded, shown beside the hub's model with where they
differ, and never written over the model (docs/smart-charging.md#what-a-station-reports)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from ocpp.routing import on

from hub.api.money_state import iso
from hub.gateway.server import Gateway
from tests.integration.api_helpers import api_client
from tests.integration.test_smart_charging_v2 import (
    BASE,
    CALLS,
    CP,
    VERSIONS,
    SmartStation21,
    SmartStation201,
    gateway,
    profile2,
    set2,
    ui_port,
)
from tests.integration.v2_helpers import station_online

__all__ = ["gateway", "ui_port"]  # fixtures: imported for pytest, which finds them here


class _Reporting:
    results: Any

    @on("GetChargingProfiles")
    async def on_get_profiles(self, **_: Any) -> Any:
        return self.results.GetChargingProfiles(status="Accepted")


class _Reporting201(_Reporting, SmartStation201):  # type: ignore[misc]
    pass


class _Reporting21(_Reporting, SmartStation21):  # type: ignore[misc]
    pass


REPORTING = {"2.0.1": _Reporting201, "2.1": _Reporting21}


def _snake(profile: dict[str, Any]) -> dict[str, Any]:
    """A profile as the ocpp library's calls take it."""
    schedule = profile["chargingSchedule"][0]
    return {
        "id": profile["id"],
        "stack_level": profile["stackLevel"],
        "charging_profile_purpose": profile["chargingProfilePurpose"],
        "charging_profile_kind": profile["chargingProfileKind"],
        "charging_schedule": [
            {
                "id": schedule["id"],
                "charging_rate_unit": schedule["chargingRateUnit"],
                "charging_schedule_period": [
                    {"start_period": p["startPeriod"], "limit": p["limit"]}
                    for p in schedule["chargingSchedulePeriod"]
                ],
            }
        ],
    }


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_stations_report_is_compared_with_the_model_and_does_not_change_it(
    gateway: Gateway, ui_port: int, version: str
) -> None:
    default = profile2(1, "TxDefaultProfile", [(0, 16.0)], kind="Relative")
    # A station-wide maximum may not be Relative (K01.FR.38): Absolute, from a start.
    most = profile2(2, "ChargingStationMaxProfile", [(0, 32.0)], start_ms=int(time.time() * 1000))
    changed = profile2(1, "TxDefaultProfile", [(0, 6.0)], kind="Relative")
    stranger = profile2(5, "TxDefaultProfile", [(0, 10.0)], kind="Relative", stack_level=2)
    ems = profile2(6, "TxDefaultProfile", [(0, 10.0)], kind="Relative", stack_level=3)
    parts = [(1, "CSO", [changed, stranger], True), (1, "EMS", [ems], False)]
    async with (
        station_online(gateway.port, ui_port, CP, version, REPORTING[version]) as station,
        api_client(ui_port) as api,
    ):
        for evse, body in ((1, default), (0, most)):
            status, answer = await set2(api, evse, body)
            assert status == 200 and answer["status"] == "accepted", answer
        asked = await api.call(
            "POST", f"{BASE}/get-charging-profiles", {"requestId": 7, "chargingProfile": {}}
        )
        for evse, source, given, more in parts:
            await station.call(
                CALLS[version].ReportChargingProfiles(
                    request_id=7,
                    charging_limit_source=source,
                    evse_id=evse,
                    charging_profile=[_snake(p) for p in given],
                    tbc=more,
                ),
                suppress=False,
            )
            _, shown = await api.call("GET", f"{BASE}/profiles")
            if more:
                partial = shown
    assert asked[0] == 200 and asked[1]["status"] == "accepted", asked
    # Part one of two: recorded, nothing compared yet.
    assert partial["report"]["complete"] is False and "differences" not in partial["report"]
    report = shown["report"]
    assert report["requestId"] == 7 and report["complete"] is True
    assert report["commandId"] == asked[1]["commandId"]
    assert [(p["chargingProfileId"], p["chargingLimitSource"]) for p in report["profiles"]] == [
        (1, "CSO"),
        (5, "CSO"),
        (6, "EMS"),
    ]
    assert report["agree"] is False
    assert sorted(
        (d["chargingProfileId"], d["difference"], d.get("fields")) for d in report["differences"]
    ) == [
        (1, "differs", ["chargingSchedule"]),
        (2, "missing_at_charger", None),
        (5, "unknown_to_hub", None),
    ]
    # The model is what the hub sent and the station accepted: the report is evidence.
    hub = {p["chargingProfileId"]: p for p in shown["profiles"]}
    assert sorted(hub) == [1, 2]
    assert hub[1]["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 16.0}
    ]
    assert iso(time.time_ns() // 1_000_000) >= report["updatedAt"]
