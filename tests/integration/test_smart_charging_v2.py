"""Smart charging of OCPP 2.0.1 and 2.1 stations end to end: REST -> NATS -> gateway -> an
ocpp-library station that keeps its own profiles by K01/K10 (the hub's pure model of them)
and computes its own composite schedule, and the hub's model folded back from the stream
(docs/smart-charging.md#ocpp-201-and-21-stations)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from hub.api.money_state import iso
from hub.domain import profiles
from hub.gateway.server import Gateway
from schemas.ocpp import v21, v201
from tests.integration.api_helpers import Api, api_client, api_token
from tests.integration.fanout_helpers import messages_until, ui_socket
from tests.integration.test_ocpp2_gateway import gateway, ui_port
from tests.integration.test_smart_charging_api import own_composite
from tests.integration.v2_helpers import Station21, Station201, station_online
from tools.simulator.ocpp2 import SimulatedStation
from tools.simulator.session import Sample

__all__ = ["gateway", "ui_port"]  # fixtures: imported for pytest, which finds them here

CP = "CP-SC2"
BASE = f"/api/v1/chargers/{CP}"
VERSIONS = ("2.0.1", "2.1")
CALLS: dict[str, Any] = {"2.0.1": call201, "2.1": call21}
PROFILE_TYPES: dict[str, Any] = {"2.0.1": v201.ChargingProfile, "2.1": v21.ChargingProfile}
CLEAR_TYPES: dict[str, Any] = {
    "2.0.1": v201.ClearChargingProfileRequest,
    "2.1": v21.ClearChargingProfileRequest,
}


class _Smart:
    """Holds the profiles it accepts (by the hub's pure model of K01/K10) and answers
    GetCompositeSchedule with the composite it computes from them at its own time."""

    version: str
    received: list[tuple[str, dict[str, Any]]]
    results: Any

    def _smart(self) -> None:
        self.installed: list[profiles.Installed] = []
        self.reject = False
        self.transaction_start_ms: int | None = None

    @on("SetChargingProfile")
    async def on_set(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Any:
        self.received.append(("SetChargingProfile", {"evse_id": evse_id}))
        if self.reject:
            return self.results.SetChargingProfile(status="Rejected")
        given = msgspec.convert(snake_to_camel_case(charging_profile), PROFILE_TYPES[self.version])
        new = profiles.Installed(connector_id=evse_id, profile=profiles.profile_of(given))
        self.installed, _ = profiles.install(self.installed, new)
        return self.results.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    async def on_clear(self, **criteria: Any) -> Any:
        self.received.append(("ClearChargingProfile", criteria))
        request = msgspec.convert(snake_to_camel_case(criteria), CLEAR_TYPES[self.version])
        self.installed, removed = profiles.split(self.installed, profiles.clear_of(request))
        return self.results.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    @on("GetCompositeSchedule")
    async def on_composite(
        self, duration: int, evse_id: int, charging_rate_unit: str = "A", **_: Any
    ) -> Any:
        self.received.append(("GetCompositeSchedule", {"evse_id": evse_id}))
        unit: profiles.Unit = "W" if charging_rate_unit == "W" else "A"
        mine, periods = own_composite(
            self.installed, evse_id, duration, unit, self.transaction_start_ms
        )
        return self.results.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": evse_id,
                "duration": duration,
                "schedule_start": iso(mine.start_ms),
                "charging_rate_unit": unit,
                "charging_schedule_period": periods,
            },
        )


class SmartStation201(_Smart, Station201):  # type: ignore[misc]
    version = "2.0.1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._smart()


class SmartStation21(_Smart, Station21):  # type: ignore[misc]
    version = "2.1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._smart()


SMART = {"2.0.1": SmartStation201, "2.1": SmartStation21}


@asynccontextmanager
async def smart_station(gateway: Gateway, ui_port: int, version: str) -> AsyncIterator[_Smart]:
    async with station_online(gateway.port, ui_port, CP, version, SMART[version]) as station:
        assert isinstance(station, _Smart)
        yield station


def schedule2(periods: list[tuple[int, float]], schedule_id: int = 1, **more: Any) -> Any:
    return {
        "id": schedule_id,
        "chargingRateUnit": more.pop("unit", "A"),
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": limit} for s, limit in periods],
        **more,
    }


def profile2(
    profile_id: int,
    purpose: str,
    periods: list[tuple[int, float]],
    *,
    stack_level: int = 0,
    kind: str = "Absolute",
    start_ms: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    more = {"startSchedule": iso(start_ms)} if start_ms is not None else {}
    return {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [schedule2(periods, **more)],
        **extra,
    }


async def set2(api: Api, evse: int, body: dict[str, Any]) -> tuple[int, Any]:
    return await api.call(
        "POST", f"{BASE}/charging-profiles", {"evseId": evse, "chargingProfile": body}
    )


async def listed(api: Api) -> list[tuple[int, int, str]]:
    status, answer = await api.call("GET", f"{BASE}/profiles", token=api_token("viewer"))
    assert status == 200, answer
    return [
        (p["connectorId"], p["chargingProfileId"], p["chargingProfilePurpose"])
        for p in answer["profiles"]
    ]


def station_holds(station: _Smart) -> list[tuple[int, int, str]]:
    return [
        (i.connector_id, i.profile.profile_id, profiles.purpose_name(i.profile.purpose, "2.0.1"))
        for i in station.installed
    ]


def transaction_event(version: str, kind: str, tx: str, seq_no: int) -> Any:
    trigger = {"Started": "Authorized", "Ended": "EVDeparted"}[kind]
    return CALLS[version].TransactionEvent(
        event_type=kind,
        timestamp=iso(time.time_ns() // 1_000_000),
        trigger_reason=trigger,
        seq_no=seq_no,
        transaction_info={"transaction_id": tx},
        evse={"id": 1, "connector_id": 1},
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_stations_profiles_are_listed_from_its_answers_and_cleared_by_criteria(
    gateway: Gateway, ui_port: int, version: str
) -> None:
    now = time.time_ns() // 1_000_000
    async with smart_station(gateway, ui_port, version) as station, api_client(ui_port) as api:
        most = profile2(1, "ChargingStationMaxProfile", [(0, 32.0)], start_ms=now)
        default = profile2(2, "TxDefaultProfile", [(0, 16.0)], kind="Relative")
        other = profile2(3, "TxDefaultProfile", [(0, 10.0)], kind="Relative", stack_level=1)
        accepted = [await set2(api, 0, most), await set2(api, 1, default)]
        station.reject = True
        rejected = await set2(api, 1, other)
        station.reject = False
        before = await listed(api)
        _, shown = await api.call("GET", f"{BASE}/profiles")
        cleared = await api.call(
            "DELETE", f"{BASE}/charging-profiles", {"chargingProfileCriteria": {"evseId": 1}}
        )
        after = await listed(api)
    assert [status for status, _ in accepted] == [200, 200], accepted
    assert rejected[0] == 200 and rejected[1]["status"] == "rejected"
    # The station's purpose names; the EVSE is the connector.
    assert before == [(0, 1, "ChargingStationMaxProfile"), (1, 2, "TxDefaultProfile")]
    assert shown["profiles"][0]["chargingSchedule"] == {
        "id": 1,
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0}],
        "startSchedule": iso(now),
    }
    assert cleared[0] == 200 and cleared[1]["response"] == {"status": "Accepted"}
    assert after == [(0, 1, "ChargingStationMaxProfile")]
    assert station_holds(station) == after


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_tx_profile_needs_its_transaction_and_ends_with_it(
    gateway: Gateway, ui_port: int, version: str
) -> None:
    tx = profile2(7, "TxProfile", [(0, 10.0)], kind="Relative", transactionId="tx-77")
    async with smart_station(gateway, ui_port, version) as station, api_client(ui_port) as api:
        early = await set2(api, 1, tx)
        await station.call(transaction_event(version, "Started", "tx-77", 0), suppress=False)
        unnamed = await set2(api, 1, {k: v for k, v in tx.items() if k != "transactionId"})
        wrong = await set2(api, 1, {**tx, "transactionId": "tx-other"})
        during = await set2(api, 1, tx)
        _, running = await api.call("GET", f"{BASE}/profiles")
        await station.call(transaction_event(version, "Ended", "tx-77", 1), suppress=False)
        after = await listed(api)
    assert early[0] == 400 and early[1]["rule"] == "tx_profile_needs_a_transaction"
    assert "at `$.chargingProfile.chargingProfilePurpose`" in early[1]["message"]
    assert unnamed[0] == 400 and unnamed[1]["rule"] == "tx_profile_needs_transaction_id"
    assert wrong[0] == 400 and wrong[1]["rule"] == "tx_profile_transaction"
    assert "at `$.chargingProfile.transactionId`" in wrong[1]["message"]
    assert during[0] == 200 and during[1]["status"] == "accepted", during
    assert [(p["chargingProfileId"], p["transactionId"]) for p in running["profiles"]] == [
        (7, "tx-77")
    ]
    assert after == []
    sent = [action for action, _ in station.received if action == "SetChargingProfile"]
    assert len(sent) == 1


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_hubs_schedule_against_the_stations_own(
    gateway: Gateway, ui_port: int, version: str
) -> None:
    now = time.time_ns() // 1_000_000
    start = now - 600_000  # ten minutes ago; the default falls ten minutes from now
    default = profile2(1, "TxDefaultProfile", [(0, 32.0), (1200, 10.0)], start_ms=start)
    most = profile2(2, "ChargingStationMaxProfile", [(0, 20.0)], start_ms=start)
    schedule = f"{BASE}/connectors/1/schedule"
    async with smart_station(gateway, ui_port, version) as station, api_client(ui_port) as api:
        await set2(api, 1, default)
        await set2(api, 0, most)
        agreed = await api.call("GET", schedule, params={"duration": "3600", "askCharger": "true"})
        # A profile the station holds and the hub never set: 6 A for 30 minutes from now.
        local = profile2(9, "TxDefaultProfile", [(0, 6.0)], stack_level=3, start_ms=now)
        local["chargingSchedule"][0]["duration"] = 1800
        held = profiles.profile_of(msgspec.convert(local, PROFILE_TYPES[version]))
        station.installed.append(profiles.Installed(connector_id=1, profile=held))
        differs = await api.call("GET", schedule, params={"duration": "3600", "askCharger": "true"})
    assert agreed[0] == 200, agreed
    hub = [(p["startPeriod"], p["limit"]) for p in agreed[1]["hub"]["chargingSchedulePeriod"]]
    assert [limit for _, limit in hub] == [20.0, 10.0] and 598 <= hub[1][0] <= 601
    assert agreed[1]["agree"] is True and agreed[1]["differences"] == []
    # The station was asked in its own version's terms.
    assert ("GetCompositeSchedule", {"evse_id": 1}) in station.received
    charger = agreed[1]["charger"]["schedule"]["chargingSchedulePeriod"]
    assert [p["limit"] for p in charger] == [20.0, 10.0]
    assert differs[0] == 200 and differs[1]["agree"] is False
    first, second = differs[1]["differences"]
    assert (first["hubLimit"], first["chargerLimit"]) == (20.0, 6.0)
    assert (second["hubLimit"], second["chargerLimit"]) == (10.0, 6.0)


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_stations_smart_charging_variables_limit_what_the_hub_sends(
    gateway: Gateway, ui_port: int, version: str
) -> None:
    def variable(name: str, value: str, **more: Any) -> dict[str, Any]:
        return {
            "component": {"name": "SmartChargingCtrlr"},
            "variable": {"name": name, **more.pop("variable", {})},
            "variable_attribute": [{"type": "Actual", "value": value, "mutability": "ReadOnly"}],
            "variable_characteristics": {
                "data_type": more.pop("data_type", "integer"),
                "supports_monitoring": False,
                **more,
            },
        }

    report = [
        variable("ProfileStackLevel", "2"),
        variable("PeriodsPerSchedule", "4"),
        variable("RateUnit", "A", data_type="MemberList", values_list="A,W"),
        variable("Entries", "0", variable={"instance": "ChargingProfiles"}, max_limit=1),
    ]
    default = profile2(1, "TxDefaultProfile", [(0, 16.0)], kind="Relative")
    async with smart_station(gateway, ui_port, version) as station, api_client(ui_port) as api:
        before = await set2(api, 1, {**default, "stackLevel": 5})
        await station.call(
            CALLS[version].NotifyReport(
                request_id=1,
                generated_at=iso(time.time_ns() // 1_000_000),
                seq_no=0,
                report_data=report,
            ),
            suppress=False,
        )
        too_high = await set2(api, 1, {**default, "id": 2, "stackLevel": 3})
        watts = await set2(
            api, 1, {**default, "id": 2, "chargingSchedule": [schedule2([(0, 11000)], unit="W")]}
        )
        one_more = await set2(api, 2, {**default, "id": 2})
        replacing = await set2(api, 1, default)
        _, shown = await api.call("GET", f"{BASE}/profiles")
    assert before[0] == 200, before  # nothing was known of the station's limits yet
    assert too_high[0] == 400 and too_high[1]["rule"] == "max_stack_level"
    assert "SmartChargingCtrlr.ProfileStackLevel (2)" in too_high[1]["message"]
    assert "at `$.chargingProfile.stackLevel`" in too_high[1]["message"]
    assert watts[0] == 400 and watts[1]["rule"] == "charging_rate_unit"
    assert "at `$.chargingProfile.chargingSchedule[0].chargingRateUnit`" in watts[1]["message"]
    assert one_more[0] == 400 and one_more[1]["rule"] == "max_profiles_installed"
    assert replacing[0] == 200, replacing  # the same id: it replaces the one installed
    assert shown["limits"] == {
        "chargeProfileMaxStackLevel": 2,
        "chargingScheduleMaxPeriods": 4,
        "maxChargingProfilesInstalled": 1,
        "chargingScheduleAllowedChargingRateUnit": ["A"],
    }


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_simulated_station_obeys_profiles_and_agrees_with_the_hub(
    gateway: Gateway, ui_port: int, version: str
) -> None:
    cp = "SIM-2X"
    base = f"/api/v1/chargers/{cp}"
    url = f"ws://127.0.0.1:{gateway.port}/ocpp"
    station = SimulatedStation(cp, url, version=version)  # type: ignore[arg-type]
    try:
        async with ui_socket(ui_port, f"/ws/chargers/{cp}", token_value=api_token("viewer")) as ws:
            await station.come_online()
            await messages_until(
                ws, lambda m: m["type"] == "connection" and m["state"] == "connected"
            )
        at = Sample(datetime.now(UTC), 0.0, 0.0, 0.0, 230.0, 20.0)
        tx, _ = await station.start_transaction(1, "SIMTAG0001", at)
        limited = {
            **profile2(5, "TxProfile", [(0, 10.0)], kind="Relative", stack_level=1),
            "transactionId": tx.transaction_id,
        }
        default = profile2(6, "TxDefaultProfile", [(0, 16.0)], kind="Relative")
        async with api_client(ui_port) as api:
            answers = [
                await api.call(
                    "POST", f"{base}/charging-profiles", {"evseId": evse, "chargingProfile": body}
                )
                for evse, body in ((1, limited), (0, default))
            ]
            asked = await api.call(
                "GET",
                f"{base}/connectors/1/schedule",
                params={"duration": "600", "askCharger": "true"},
            )
            await station.stop_transaction(
                tx, Sample(datetime.now(UTC), 100.0, 0.0, 0.0, 230.0, 21)
            )
            _, after = await api.call("GET", f"{base}/profiles")
    finally:
        await station.close()
    assert [answer[1]["status"] for answer in answers] == ["accepted", "accepted"], answers
    assert asked[0] == 200, asked
    assert asked[1]["agree"] is True, asked[1]
    limits = asked[1]["charger"]["schedule"]["chargingSchedulePeriod"]
    assert [p["limit"] for p in limits] == [10.0]
    # The TxProfile ended with the transaction, at the station and in the hub.
    assert [p["chargingProfileId"] for p in after["profiles"]] == [6]
    assert [i.profile.profile_id for i in station.control.installed] == [6]
