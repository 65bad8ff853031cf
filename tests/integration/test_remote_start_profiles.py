"""A remote start that carries a charging profile (OCPP 1.6 §5.11 RemoteStartTransaction,
2.x K05 RequestStartTransaction): checked like a SetChargingProfile before it is sent, and,
once the charger accepted it, the TxProfile of the transaction it starts, which ends with it
(docs/smart-charging.md#a-remote-start-with-a-profile)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import call

from hub.api.money_state import iso
from hub.gateway.server import Gateway
from tests.integration.api_helpers import api_client, online
from tests.integration.test_smart_charging_api import BASE, SmartCharger, listed, profile
from tests.integration.test_smart_charging_v2 import (
    BASE as BASE2,
)
from tests.integration.test_smart_charging_v2 import (
    CALLS,
    VERSIONS,
    SmartStation21,
    SmartStation201,
    gateway,
    profile2,
    ui_port,
)
from tests.integration.test_smart_charging_v2 import CP as CP2
from tests.integration.v2_helpers import station_online

__all__ = ["gateway", "ui_port"]  # fixtures: imported for pytest, which finds them here


def _now() -> str:
    return iso(time.time_ns() // 1_000_000)


async def test_a_remote_starts_profile_is_the_tx_profile_of_the_transaction_it_starts(
    gateway: Gateway, ui_port: int
) -> None:
    tx = profile(7, "TxProfile", [(0, 10.0)], kind="Relative")
    start = f"{BASE}/remote-start"
    async with (
        online(gateway.port, ui_port, "CP-SC", SmartCharger) as charger,
        api_client(ui_port) as api,
    ):
        assert isinstance(charger, SmartCharger)
        default = await api.call(
            "POST",
            start,
            {
                "idTag": "TAG1",
                "connectorId": 1,
                "chargingProfile": {**tx, "chargingProfilePurpose": "TxDefaultProfile"},
            },
        )
        named = await api.call(
            "POST",
            start,
            {"idTag": "TAG1", "connectorId": 1, "chargingProfile": {**tx, "transactionId": 5}},
        )
        accepted = await api.call(
            "POST", start, {"idTag": "tag1", "connectorId": 1, "chargingProfile": tx}
        )
        before = await listed(api)
        started = await charger.call(
            call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0, timestamp=_now())
        )
        _, during = await api.call("GET", f"{BASE}/profiles")
        await charger.call(
            call.StopTransaction(
                transaction_id=started.transaction_id, meter_stop=1000, timestamp=_now()
            )
        )
        after = await listed(api)
    assert default[0] == 400 and default[1]["rule"] == "remote_start_tx_profile", default
    assert "at `$.chargingProfile.chargingProfilePurpose`" in default[1]["message"]
    assert named[0] == 400 and named[1]["rule"] == "remote_start_transaction_id", named
    assert "at `$.chargingProfile.transactionId`" in named[1]["message"]
    assert accepted[0] == 200 and accepted[1]["status"] == "accepted", accepted
    # Only the accepted one was sent; no transaction yet, so nothing is installed.
    sent = [action for action, _ in charger.received if action == "RemoteStartTransaction"]
    assert len(sent) == 1
    assert before == []
    shown = during["profiles"]
    assert [(p["connectorId"], p["chargingProfileId"], p["transactionId"]) for p in shown] == [
        (1, 7, started.transaction_id)
    ]
    assert shown[0]["commandId"] == accepted[1]["commandId"]
    assert after == []  # it ended with its transaction


class _Later:
    """Accepts a remote start and starts the transaction later (no transactionId yet)."""

    results: Any

    @on("RequestStartTransaction")
    async def on_request_start(self, **_: Any) -> Any:
        return self.results.RequestStartTransaction(status="Accepted")


class _Later201(_Later, SmartStation201):  # type: ignore[misc]
    pass


class _Later21(_Later, SmartStation21):  # type: ignore[misc]
    pass


LATER = {"2.0.1": _Later201, "2.1": _Later21}


async def event(
    station: Any, version: str, kind: str, seq_no: int, tx: str, evse: int, **info: Any
) -> None:
    trigger = {"Started": "RemoteStart", "Ended": "EVDeparted"}[kind]
    await station.call(
        CALLS[version].TransactionEvent(
            event_type=kind,
            timestamp=_now(),
            trigger_reason=trigger,
            seq_no=seq_no,
            transaction_info={"transaction_id": tx, **info},
            evse={"id": evse, "connector_id": 1},
        ),
        suppress=False,
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_request_starts_profile_belongs_to_the_transaction_of_its_remote_start_id(
    gateway: Gateway, ui_port: int, version: str
) -> None:
    tx = profile2(9, "TxProfile", [(0, 8.0)], kind="Relative")
    start = f"{BASE2}/request-start-transaction"
    body = {"idToken": {"idToken": "TAG2", "type": "ISO14443"}, "evseId": 1}
    async with (
        station_online(gateway.port, ui_port, CP2, version, LATER[version]) as station,
        api_client(ui_port) as api,
    ):
        named = await api.call(
            "POST",
            start,
            {**body, "remoteStartId": 41, "chargingProfile": {**tx, "transactionId": "t"}},
        )
        accepted = await api.call(
            "POST", start, {**body, "remoteStartId": 42, "chargingProfile": tx}
        )
        # Another transaction starts first on EVSE 2: not the remote start's.
        await event(station, version, "Started", 0, "other", 2)
        await event(station, version, "Started", 0, "tx-42", 1, remote_start_id=42)
        _, during = await api.call("GET", f"{BASE2}/profiles")
        await event(station, version, "Ended", 1, "tx-42", 1)
        _, after = await api.call("GET", f"{BASE2}/profiles")
    assert named[0] == 400 and named[1]["rule"] == "remote_start_transaction_id", named
    assert accepted[0] == 200 and accepted[1]["status"] == "accepted", accepted
    assert [
        (p["connectorId"], p["chargingProfileId"], p["transactionId"]) for p in during["profiles"]
    ] == [(1, 9, "tx-42")]
    assert after["profiles"] == []
