"""Smart charging through the API end to end: REST -> NATS -> gateway -> an ocpp-library
charger that keeps its own profiles and computes its own composite schedule, and the hub's
model of them folded back from the stream (docs/smart-charging.md)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v16 import call, call_result

from hub.api.money_state import iso
from hub.config import Settings
from hub.domain import profiles, schedules
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from schemas.events import CommandRequested
from schemas.ocpp.v16 import ChargingProfile, ClearChargingProfileRequest
from tests.integration.api_helpers import AnsweringCharger, Api, api_client, api_token, online
from tests.integration.fanout_helpers import with_fanout
from tests.integration.helpers import stored_events

HUB = Path(sys.executable).with_name("hub")
BASE = "/api/v1/chargers/CP-SC"


@pytest.fixture
async def ui_port(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[int]:
    async with running_fanout(with_fanout(settings), nats_server.url) as port:
        yield port


def own_composite(
    installed: list[profiles.Installed],
    connector_id: int,
    duration: int,
    unit: profiles.Unit,
    transaction_start_ms: int | None,
) -> tuple[schedules.Composite, list[dict[str, Any]]]:
    """A charger's composite of what it holds, from its own now, and its periods as the
    ocpp library writes them (those where a profile limits it, to OCPP's 0.1)."""
    mine = schedules.composite(
        installed,
        connector_id,
        time.time_ns() // 1_000_000,
        duration,
        unit,
        transaction_start_ms=transaction_start_ms,
    )
    periods = [
        {"start_period": p.start_s, "limit": round(p.limit, 1), "number_phases": p.phases}
        for p in mine.periods
        if p.limit is not None
    ]
    return mine, periods


class SmartCharger(AnsweringCharger):
    """Holds the profiles it accepts by OCPP 1.6's rules (the hub's pure model of them), and
    answers GetCompositeSchedule with the composite it computes from them at its own time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.installed: list[profiles.Installed] = []
        self.reject = False
        self.configuration: dict[str, str] = {}
        self.transaction_start_ms: int | None = None

    @on("SetChargingProfile")
    async def on_set(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        self.received.append(("SetChargingProfile", {"connector_id": connector_id}))
        if self.reject:
            return call_result.SetChargingProfile(status="Rejected")
        payload = msgspec.convert(snake_to_camel_case(cs_charging_profiles), ChargingProfile)
        new = profiles.Installed(connector_id=connector_id, profile=profiles.profile_of(payload))
        self.installed, _ = profiles.install(self.installed, new)
        return call_result.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    async def on_clear(self, **criteria: Any) -> Any:
        self.received.append(("ClearChargingProfile", criteria))
        request = msgspec.convert(snake_to_camel_case(criteria), ClearChargingProfileRequest)
        self.installed, removed = profiles.split(self.installed, profiles.clear_of(request))
        return call_result.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    @on("GetConfiguration")
    async def on_configuration(self, key: list[str] | None = None) -> Any:
        self.received.append(("GetConfiguration", {"key": key}))
        return call_result.GetConfiguration(
            configuration_key=[
                {"key": name, "readonly": True, "value": value}
                for name, value in self.configuration.items()
            ]
        )

    @on("GetCompositeSchedule")
    async def on_composite(
        self, connector_id: int, duration: int, charging_rate_unit: str = "A"
    ) -> Any:
        self.received.append(("GetCompositeSchedule", {"connector_id": connector_id}))
        unit: profiles.Unit = "W" if charging_rate_unit == "W" else "A"
        mine, periods = own_composite(
            self.installed, connector_id, duration, unit, self.transaction_start_ms
        )
        return call_result.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=iso(mine.start_ms),
            charging_schedule={
                "duration": duration,
                "charging_rate_unit": unit,
                "charging_schedule_period": periods,
            },
        )


def profile(
    profile_id: int,
    purpose: str,
    periods: list[tuple[int, float]],
    *,
    stack_level: int = 0,
    unit: str = "A",
    start_ms: int | None = None,
    kind: str = "Absolute",
    duration: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": limit} for s, limit in periods],
    }
    if duration is not None:
        schedule["duration"] = duration
    if start_ms is not None:
        schedule["startSchedule"] = iso(start_ms)
    return {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
        **extra,
    }


async def set_profile(api: Api, connector_id: int, body: dict[str, Any]) -> tuple[int, Any]:
    return await api.call(
        "POST",
        f"{BASE}/charging-profiles",
        {"connectorId": connector_id, "csChargingProfiles": body},
    )


async def listed(api: Api, **params: str) -> list[tuple[int, int, str]]:
    status, answer = await api.call(
        "GET", f"{BASE}/profiles", token=api_token("viewer"), params=params
    )
    assert status == 200, answer
    return [
        (p["connectorId"], p["chargingProfileId"], p["chargingProfilePurpose"])
        for p in answer["profiles"]
    ]


def charger_holds(charger: SmartCharger) -> list[tuple[int, int, str]]:
    return [(i.connector_id, i.profile.profile_id, i.profile.purpose) for i in charger.installed]


async def test_profiles_are_listed_from_the_chargers_answers_and_cleared(
    gateway: Gateway, ui_port: int
) -> None:
    now = time.time_ns() // 1_000_000
    async with (
        online(gateway.port, ui_port, "CP-SC", SmartCharger) as charger,
        api_client(ui_port) as api,
    ):
        assert isinstance(charger, SmartCharger)
        default = profile(1, "TxDefaultProfile", [(0, 16.0), (3600, 8.0)], start_ms=now)
        most = profile(2, "ChargePointMaxProfile", [(0, 32.0)], stack_level=1, start_ms=now)
        first = await set_profile(api, 1, default)
        second = await set_profile(api, 0, most)
        both = await listed(api)
        status, answer = await api.call("GET", f"{BASE}/profiles", params={"connectorId": "0"})
        cleared = await api.call("DELETE", f"{BASE}/charging-profiles", {"id": 1})
        after_clear = await listed(api)
        unknown = await api.call("DELETE", f"{BASE}/charging-profiles", {"id": 99})
        after_unknown = await listed(api)
    assert first[0] == second[0] == 200, (first, second)
    assert both == [(1, 1, "TxDefaultProfile"), (0, 2, "ChargePointMaxProfile")]
    assert status == 200 and len(answer["profiles"]) == 1
    shown = answer["profiles"][0]
    assert shown["commandId"] == second[1]["commandId"]
    assert shown["stackLevel"] == 1 and shown["chargingProfileKind"] == "Absolute"
    assert shown["chargingSchedule"] == {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0}],
        "startSchedule": iso(now),
    }
    assert shown["installedAt"] >= iso(now - 1000)
    assert cleared[0] == 200 and after_clear == [(0, 2, "ChargePointMaxProfile")]
    assert unknown[1]["response"] == {"status": "Unknown"}
    assert after_unknown == after_clear
    # What the hub lists is what the charger holds.
    assert charger_holds(charger) == after_clear


async def test_a_rejected_profile_leaves_the_list_unchanged(gateway: Gateway, ui_port: int) -> None:
    async with (
        online(gateway.port, ui_port, "CP-SC", SmartCharger) as charger,
        api_client(ui_port) as api,
    ):
        assert isinstance(charger, SmartCharger)
        accepted = await set_profile(api, 1, profile(1, "TxDefaultProfile", [(0, 16.0)]))
        charger.reject = True
        rejected = await set_profile(api, 1, profile(1, "TxDefaultProfile", [(0, 6.0)]))
        other = await set_profile(api, 2, profile(3, "TxDefaultProfile", [(0, 6.0)]))
        _, answer = await api.call("GET", f"{BASE}/profiles")
    assert accepted[1]["status"] == "accepted"
    assert rejected[1]["status"] == other[1]["status"] == "rejected"
    assert [
        (p["chargingProfileId"], p["chargingSchedule"]["chargingSchedulePeriod"])
        for p in answer["profiles"]
    ] == [(1, [{"startPeriod": 0, "limit": 16.0}])]


async def test_a_tx_profile_ends_with_its_transaction(gateway: Gateway, ui_port: int) -> None:
    tx = profile(7, "TxProfile", [(0, 10.0)], kind="Relative")
    async with (
        online(gateway.port, ui_port, "CP-SC", SmartCharger) as charger,
        api_client(ui_port) as api,
    ):
        # No transaction runs yet: refused, nothing sent.
        early = await set_profile(api, 1, tx)
        start = await charger.call(
            call.StartTransaction(
                connector_id=1, id_tag="TAG1", meter_start=0, timestamp=iso(time.time_ns() // 10**6)
            )
        )
        # Set at once: the hub counts the StartTransaction it answered just before.
        during = await set_profile(api, 1, tx)
        while_running = await api.call("GET", f"{BASE}/profiles")
        await charger.call(
            call.StopTransaction(
                transaction_id=start.transaction_id,
                meter_stop=1000,
                timestamp=iso(time.time_ns() // 10**6),
            )
        )
        after = await listed(api)
    assert early[0] == 400 and early[1]["rule"] == "tx_profile_needs_a_transaction"
    assert during[0] == 200, during
    assert [(p["chargingProfileId"], p["transactionId"]) for p in while_running[1]["profiles"]] == [
        (7, start.transaction_id)
    ]
    assert after == []
    assert [action for action, _ in charger.received].count("SetChargingProfile") == 1


async def test_a_profile_breaking_a_rule_is_refused_before_anything_is_stored_or_sent(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats
) -> None:
    async with (
        online(gateway.port, ui_port, "CP-SC", SmartCharger) as charger,
        api_client(ui_port) as api,
    ):
        assert isinstance(charger, SmartCharger)
        on_connector = await set_profile(api, 1, profile(1, "ChargePointMaxProfile", [(0, 32.0)]))
        charger.configuration = {
            "ChargeProfileMaxStackLevel": "3",
            "ChargingScheduleAllowedChargingRateUnit": "Current",
            "ChargingScheduleMaxPeriods": "2",
        }
        before = await set_profile(
            api, 1, profile(1, "TxDefaultProfile", [(0, 16.0)], stack_level=5)
        )
        configuration = await api.call("GET", f"{BASE}/configuration")
        too_high = await set_profile(
            api, 1, profile(1, "TxDefaultProfile", [(0, 16.0)], stack_level=5)
        )
        in_watts = await set_profile(api, 1, profile(1, "TxDefaultProfile", [(0, 11000)], unit="W"))
        periods = await set_profile(
            api, 1, profile(1, "TxDefaultProfile", [(0, 16.0), (60, 8.0), (120, 16.0)])
        )
        order = await set_profile(api, 1, profile(1, "TxDefaultProfile", [(0, 16.0), (0, 8.0)]))
        _, limits = await api.call("GET", f"{BASE}/profiles")
    assert on_connector[0] == 400
    assert on_connector[1]["rule"] == "charge_point_max_on_connector_0"
    assert "at `$.connectorId`" in on_connector[1]["message"]
    # Before the hub knew the charger's limits, stack level 5 was fine.
    assert before[0] == 200 and configuration[0] == 200
    assert too_high[0] == 400 and too_high[1]["rule"] == "max_stack_level"
    assert "ChargeProfileMaxStackLevel (3)" in too_high[1]["message"]
    assert "at `$.csChargingProfiles.stackLevel`" in too_high[1]["message"]
    assert in_watts[1]["rule"] == "charging_rate_unit"
    assert "chargingSchedule.chargingRateUnit`" in in_watts[1]["message"]
    assert periods[1]["rule"] == "max_periods"
    assert order[1]["rule"] == "periods_in_order"
    assert "chargingSchedulePeriod[1].startPeriod`" in order[1]["message"]
    assert limits["limits"] == {
        "chargeProfileMaxStackLevel": 3,
        "chargingScheduleMaxPeriods": 2,
        "chargingScheduleAllowedChargingRateUnit": ["A"],
    }
    sent = [action for action, _ in charger.received if action == "SetChargingProfile"]
    assert len(sent) == 1  # the one before the limits were known
    requested = [
        e
        for _, e in await stored_events(nats_server.url, "ev.admin.command.>")
        if isinstance(e, CommandRequested) and e.action == "SetChargingProfile"
    ]
    assert len(requested) == 1


async def test_the_hubs_schedule_against_the_chargers_own(gateway: Gateway, ui_port: int) -> None:
    now = time.time_ns() // 1_000_000
    start = now - 600_000  # ten minutes ago; the limit falls ten minutes from now
    default = profile(1, "TxDefaultProfile", [(0, 32.0), (1200, 10.0)], start_ms=start)
    most = profile(2, "ChargePointMaxProfile", [(0, 20.0)], start_ms=start)
    schedule = f"{BASE}/connectors/1/schedule"
    async with (
        online(gateway.port, ui_port, "CP-SC", SmartCharger) as charger,
        api_client(ui_port) as api,
    ):
        assert isinstance(charger, SmartCharger)
        await set_profile(api, 1, default)
        await set_profile(api, 0, most)
        hub_only = await api.call(
            "GET", schedule, params={"duration": "3600"}, token=api_token("viewer")
        )
        sent_before = len(charger.received)
        agreed = await api.call("GET", schedule, params={"duration": "3600", "askCharger": "true"})
        in_watts = await api.call(
            "GET",
            schedule,
            params={"duration": "3600", "askCharger": "true", "chargingRateUnit": "W"},
        )
        # A profile the charger holds and the hub never set: 6 A for 30 minutes from now.
        local = profile(
            9, "TxDefaultProfile", [(0, 6.0)], stack_level=3, start_ms=now, duration=1800
        )
        local_profile = profiles.profile_of(msgspec.convert(local, ChargingProfile))
        charger.installed.append(profiles.Installed(connector_id=1, profile=local_profile))
        differs = await api.call("GET", schedule, params={"duration": "3600", "askCharger": "true"})
        viewer_asks = await api.call(
            "GET",
            schedule,
            params={"duration": "3600", "askCharger": "true"},
            token=api_token("viewer"),
        )
        bad = await api.call("GET", schedule, params={"duration": "0"})
    assert hub_only[0] == 200, hub_only
    hub = hub_only[1]["hub"]
    assert hub["chargingRateUnit"] == "A" and hub["duration"] == 3600
    limits = [(p["startPeriod"], p["limit"]) for p in hub["chargingSchedulePeriod"]]
    assert [limit for _, limit in limits] == [20.0, 10.0]
    assert 598 <= limits[1][0] <= 601
    assert "charger" not in hub_only[1] and "agree" not in hub_only[1]
    assert agreed[0] == 200, agreed
    assert agreed[1]["agree"] is True and agreed[1]["differences"] == []
    assert agreed[1]["charger"]["command"]["action"] == "GetCompositeSchedule"
    charger_periods = agreed[1]["charger"]["schedule"]["chargingSchedulePeriod"]
    assert [p["limit"] for p in charger_periods] == [20.0, 10.0]
    assert received_after(charger, sent_before) == ["GetCompositeSchedule"] * 3
    assert in_watts[1]["agree"] is True
    assert in_watts[1]["hub"]["chargingSchedulePeriod"][0]["limit"] == 20.0 * 3 * 230
    assert differs[0] == 200 and differs[1]["agree"] is False
    # The charger's own 6 A prevails for 30 minutes: under the hub's 20 A, then its 10 A.
    first, second = differs[1]["differences"]
    assert (first["hubLimit"], first["chargerLimit"]) == (20.0, 6.0)
    assert (second["hubLimit"], second["chargerLimit"]) == (10.0, 6.0)
    assert first["startPeriod"] == 0 and 598 <= first["endPeriod"] <= 601
    assert second["startPeriod"] == first["endPeriod"]
    assert 1798 <= second["endPeriod"] <= 1801
    assert viewer_asks[0] == 403
    assert bad[0] == 400 and "duration" in bad[1]["message"]


def received_after(charger: AnsweringCharger, count: int) -> list[str]:
    return [action for action, _ in charger.received[count:]]


async def hub(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(HUB), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_hub_profiles_and_hub_schedule_print_what_the_api_answers(
    gateway: Gateway, ui_port: int
) -> None:
    api_flags = ["--api-url", f"http://127.0.0.1:{ui_port}", "--token", api_token()]
    async with (
        online(gateway.port, ui_port, "CP-SC", SmartCharger),
        api_client(ui_port) as api,
    ):
        await set_profile(api, 1, profile(1, "TxDefaultProfile", [(0, 16.0)]))
        listing = await hub("profiles", "list", "CP-SC", *api_flags)
        one_connector = await hub("profiles", "list", "CP-SC", "--connector-id", "0", *api_flags)
        asked = await hub(
            "schedule", "CP-SC", "1", "--duration", "600", "--ask-charger", *api_flags
        )
        unknown = await hub("schedule", "CP-NONE", "1", "--duration", "600", *api_flags)
        refused = await hub(
            "cmd",
            "CP-SC",
            "set-charging-profile",
            "--connector-id",
            "1",
            "--cs-charging-profiles",
            msgspec.json.encode(profile(2, "ChargePointMaxProfile", [(0, 32.0)])).decode(),
            *api_flags,
        )
    assert listing[0] == 0, listing
    assert [p["chargingProfileId"] for p in msgspec.json.decode(listing[1])["profiles"]] == [1]
    assert msgspec.json.decode(one_connector[1])["profiles"] == []
    assert asked[0] == 0, asked
    answer = msgspec.json.decode(asked[1])
    assert answer["agree"] is True
    assert answer["hub"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 16.0, "numberPhases": 3}
    ]
    assert unknown[0] == 1 and msgspec.json.decode(unknown[1])["error"] == "not_found"
    assert refused[0] == 1
    assert msgspec.json.decode(refused[1])["rule"] == "charge_point_max_on_connector_0"


async def test_the_openapi_document_describes_profiles_and_schedules(ui_port: int) -> None:
    async with api_client(ui_port) as api:
        status, document = await api.call("GET", "/api/v1/openapi.json")
    assert status == 200
    paths = document["paths"]
    listing = paths["/api/v1/chargers/{charge_point_id}/profiles"]["get"]
    schedule = paths["/api/v1/chargers/{charge_point_id}/connectors/{connector_id}/schedule"]["get"]
    assert set(listing["responses"]) == {"200", "400", "401", "403", "404"}
    assert set(schedule["responses"]) >= {"200", "400", "403", "404", "409", "502", "504"}
    assert {p["name"] for p in schedule["parameters"]} >= {"duration", "askCharger"}
    assert "rule" in document["components"]["schemas"]["ErrorBody"]["properties"]
