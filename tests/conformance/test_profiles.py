"""OCTT 1.6 CSMS cases of the optional feature profiles (document sections 3.14 to 3.19):
Local Auth List Management, Firmware Management, Reservation, Remote Trigger and Smart
Charging. The Central System's side of each is a command an operator sends through the REST
command API; the case checks the command the charger got, the answer the operator got, and the
whole exchange in the event stream."""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.v16 import call

from tests.conformance.octt import (
    BOOT,
    CONNECTOR,
    FUTURE,
    GROUP,
    MEMBER,
    VALID,
    Octt,
    boot_then,
)
from tests.integration.helpers import ocpp_charger

pytestmark = pytest.mark.asyncio(loop_scope="module")

# -- 3.14 Local Auth List Management -----------------------------------------------------------


async def _list_version(octt: Octt, charge_point_id: str, version: int) -> None:
    async with octt.charger(charge_point_id) as cp:
        cp.answers["GetLocalListVersion"] = {"list_version": version}
        status, view = await octt.command(charge_point_id, "get-local-list-version")
    assert (status, view["status"], view["response"]) == (200, "accepted", {"listVersion": version})
    assert await octt.exchanges(charge_point_id) == boot_then("hub:GetLocalListVersion")


async def test_tc_042_1_get_local_list_version_not_supported(octt: Octt) -> None:
    await _list_version(octt, "CP-TC042-1", -1)


async def test_tc_042_2_get_local_list_version_empty(octt: Octt) -> None:
    await _list_version(octt, "CP-TC042-2", 0)


FULL_LIST = {
    "listVersion": 1,
    "updateType": "Full",
    "localAuthorizationList": [
        {"idTag": VALID, "idTagInfo": {"status": "Accepted", "expiryDate": FUTURE}},
        {"idTag": MEMBER, "idTagInfo": {"status": "Accepted", "parentIdTag": GROUP}},
    ],
}


async def _send_full_list(octt: Octt, charge_point_id: str, answer: str) -> dict[str, Any]:
    async with octt.charger(charge_point_id) as cp:
        cp.answers["SendLocalList"] = {"status": answer}
        status, view = await octt.command(charge_point_id, "send-local-list", FULL_LIST)
        assert cp.got("SendLocalList")["update_type"] == "Full"
    assert status == 200 and view["response"] == {"status": answer}
    # The list went to the charger as the operator gave it, every entry with its idTagInfo.
    [sent] = await octt.sent(charge_point_id, "SendLocalList")
    assert sent == FULL_LIST
    assert all("idTagInfo" in entry for entry in sent["localAuthorizationList"])
    return view


async def test_tc_043_1_send_local_list_not_supported(octt: Octt) -> None:
    assert (await _send_full_list(octt, "CP-TC043-1", "NotSupported"))["status"] == "rejected"


async def test_tc_043_3_send_local_list_failed(octt: Octt) -> None:
    assert (await _send_full_list(octt, "CP-TC043-3", "Failed"))["status"] == "rejected"


async def test_tc_043_4_send_local_list_full(octt: Octt) -> None:
    assert (await _send_full_list(octt, "CP-TC043-4", "Accepted"))["status"] == "accepted"


async def test_tc_043_5_send_local_list_differential(octt: Octt) -> None:
    async with octt.charger("CP-TC043-5") as cp:
        cp.answers["GetLocalListVersion"] = {"list_version": 1}
        status, version = await octt.command("CP-TC043-5", "get-local-list-version")
        assert status == 200
        update = {
            "listVersion": version["response"]["listVersion"] + 1,
            "updateType": "Differential",
            "localAuthorizationList": [{"idTag": "D001002", "idTagInfo": {"status": "Accepted"}}],
        }
        status, view = await octt.command("CP-TC043-5", "send-local-list", update)
    assert (status, view["status"]) == (200, "accepted")
    assert await octt.sent("CP-TC043-5", "SendLocalList") == [update]
    assert await octt.exchanges("CP-TC043-5") == boot_then(
        "hub:GetLocalListVersion", "hub:SendLocalList"
    )


# -- 3.15 and 3.16 Firmware Management --------------------------------------------------------

FIRMWARE = "https://firmware.example.com/cp-model-1/2.0.bin"


async def _update_firmware(octt: Octt, charge_point_id: str, outcome: list[str]) -> None:
    """UpdateFirmware, then the charger reports each status of ``outcome`` (a reboot and
    StatusNotifications where a real charger installs)."""
    async with octt.charger(charge_point_id) as cp:
        status, view = await octt.command(
            charge_point_id, "update-firmware", {"location": FIRMWARE, "retrieveDate": FUTURE}
        )
        assert cp.got("UpdateFirmware")["location"] == FIRMWARE
        for firmware_status in outcome[:2]:
            await cp.call(call.FirmwareStatusNotification(status=firmware_status))
        if len(outcome) > 2:
            await cp.status("Unavailable")
            await cp.call(call.FirmwareStatusNotification(status=outcome[2]))
    assert (status, view["status"], view["response"]) == (200, "accepted", {})
    if len(outcome) > 2:
        # The charger reboots into the new firmware.
        async with ocpp_charger(octt.port, charge_point_id) as cp:
            assert (await cp.call(BOOT)).status == "Accepted"
            await cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
            )
            await cp.call(call.FirmwareStatusNotification(status=outcome[3]))
    expected = [
        "hub:UpdateFirmware",
        "cp:FirmwareStatusNotification",
        "cp:FirmwareStatusNotification",
    ]
    if len(outcome) > 2:
        expected += [
            "cp:StatusNotification",
            "cp:FirmwareStatusNotification",
            "cp:BootNotification",
            "cp:StatusNotification",
            "cp:FirmwareStatusNotification",
        ]
    assert await octt.exchanges(charge_point_id) == boot_then(*expected)


async def test_tc_044_1_firmware_update_download_and_install(octt: Octt) -> None:
    await _update_firmware(
        octt, "CP-TC044-1", ["Downloading", "Downloaded", "Installing", "Installed"]
    )


async def test_tc_044_2_firmware_update_download_failed(octt: Octt) -> None:
    await _update_firmware(octt, "CP-TC044-2", ["Downloading", "DownloadFailed"])


async def test_tc_044_3_firmware_update_installation_failed(octt: Octt) -> None:
    await _update_firmware(
        octt, "CP-TC044-3", ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    )


async def _get_diagnostics(octt: Octt, charge_point_id: str, outcome: str) -> None:
    location = "ftp://diagnostics.example.com/uploads/"
    async with octt.charger(charge_point_id) as cp:
        status, view = await octt.command(
            charge_point_id, "get-diagnostics", {"location": location}
        )
        assert cp.got("GetDiagnostics")["location"] == location
        for diagnostics_status in ("Uploading", outcome):
            await cp.call(call.DiagnosticsStatusNotification(status=diagnostics_status))
    assert (status, view["status"], view["response"]) == (200, "accepted", {"fileName": "diag.zip"})
    assert await octt.exchanges(charge_point_id) == boot_then(
        "hub:GetDiagnostics", "cp:DiagnosticsStatusNotification", "cp:DiagnosticsStatusNotification"
    )


async def test_tc_045_1_get_diagnostics(octt: Octt) -> None:
    await _get_diagnostics(octt, "CP-TC045-1", "Uploaded")


async def test_tc_045_2_get_diagnostics_upload_failed(octt: Octt) -> None:
    await _get_diagnostics(octt, "CP-TC045-2", "UploadFailed")


# -- 3.17 Reservation ---------------------------------------------------------------------


def reservation(reservation_id: int, connector: int = CONNECTOR, **extra: Any) -> dict[str, Any]:
    return {
        "connectorId": connector,
        "expiryDate": FUTURE,
        "idTag": VALID,
        "reservationId": reservation_id,
        **extra,
    }


async def test_tc_046_reservation_of_a_connector_transaction(octt: Octt) -> None:
    async with octt.charger("CP-TC046") as cp:
        status, view = await octt.command("CP-TC046", "reserve-now", reservation(46))
        await cp.status("Reserved")
        await cp.charging(VALID, reservation_id=46)
    assert (status, view["status"]) == (200, "accepted")
    assert await octt.sent("CP-TC046", "ReserveNow") == [reservation(46)]
    assert await octt.exchanges("CP-TC046") == boot_then(
        "hub:ReserveNow",
        "cp:StatusNotification",
        "cp:Authorize",
        "cp:StatusNotification",
        "cp:StartTransaction",
        "cp:StatusNotification",
    )


async def test_tc_047_reservation_of_a_connector_expire(octt: Octt) -> None:
    async with octt.charger("CP-TC047") as cp:
        status, view = await octt.command("CP-TC047", "reserve-now", reservation(47))
        await cp.status("Reserved")
        await cp.status("Available")  # expired, unused
    assert (status, view["status"]) == (200, "accepted")
    [sent] = await octt.sent("CP-TC047", "ReserveNow")
    assert (sent["connectorId"], sent["idTag"], sent["expiryDate"]) == (CONNECTOR, VALID, FUTURE)
    assert await octt.exchanges("CP-TC047") == boot_then(
        "hub:ReserveNow", "cp:StatusNotification", "cp:StatusNotification"
    )


async def _reservation_refused(octt: Octt, charge_point_id: str, answer: str) -> list[str]:
    """A ReserveNow the charger refuses with ``answer``: the hub takes it, the operator sees
    it refused. Returns the exchanges after the boot."""
    async with octt.charger(charge_point_id) as cp:
        cp.answers["ReserveNow"] = {"status": answer}
        if answer == "Occupied":
            await cp.status("Preparing")
        if answer == "Unavailable":
            cp.answers["ChangeAvailability"] = {"status": "Accepted"}
            status, view = await octt.command(
                charge_point_id, "change-availability", {"connectorId": 1, "type": "Inoperative"}
            )
            assert (status, view["status"]) == (200, "accepted")
            await cp.status("Unavailable")
        status, view = await octt.command(charge_point_id, "reserve-now", reservation(48))
        assert cp.got("ReserveNow")["connector_id"] == CONNECTOR
        assert cp.got("ReserveNow")["id_tag"] == VALID
    assert (status, view["status"], view["response"]) == (200, "rejected", {"status": answer})
    return [action for _, action, _ in (await octt.exchanges(charge_point_id))[1:]]


async def test_tc_048_1_reservation_of_a_connector_faulted(octt: Octt) -> None:
    assert await _reservation_refused(octt, "CP-TC048-1", "Faulted") == ["ReserveNow"]


async def test_tc_048_2_reservation_of_a_connector_occupied(octt: Octt) -> None:
    assert await _reservation_refused(octt, "CP-TC048-2", "Occupied") == [
        "StatusNotification",
        "ReserveNow",
    ]


async def test_tc_048_3_reservation_of_a_connector_unavailable(octt: Octt) -> None:
    assert await _reservation_refused(octt, "CP-TC048-3", "Unavailable") == [
        "ChangeAvailability",
        "StatusNotification",
        "ReserveNow",
    ]
    assert await octt.sent("CP-TC048-3", "ChangeAvailability") == [
        {"connectorId": 1, "type": "Inoperative"}
    ]


async def test_tc_048_4_reservation_of_a_connector_rejected(octt: Octt) -> None:
    assert await _reservation_refused(octt, "CP-TC048-4", "Rejected") == ["ReserveNow"]


async def test_tc_049_reservation_of_a_charge_point_transaction(octt: Octt) -> None:
    async with octt.charger("CP-TC049") as cp:
        status, view = await octt.command("CP-TC049", "reserve-now", reservation(49, 0))
        assert cp.got("ReserveNow")["connector_id"] == 0
        await cp.status("Reserved", connector=0)
    assert (status, view["status"]) == (200, "accepted")
    assert await octt.exchanges("CP-TC049") == boot_then("hub:ReserveNow", "cp:StatusNotification")


async def _cancel(octt: Octt, charge_point_id: str, answer: str) -> dict[str, Any]:
    async with octt.charger(charge_point_id) as cp:
        status, reserved = await octt.command(charge_point_id, "reserve-now", reservation(51))
        assert (status, reserved["status"]) == (200, "accepted")
        await cp.status("Reserved")
        cp.answers["CancelReservation"] = {"status": answer}
        status, view = await octt.command(
            charge_point_id, "cancel-reservation", {"reservationId": 51}
        )
        assert cp.got("CancelReservation") == {"reservation_id": 51}
        if answer == "Accepted":
            await cp.status("Available")
    assert status == 200 and view["response"] == {"status": answer}
    return view


async def test_tc_051_cancel_reservation(octt: Octt) -> None:
    assert (await _cancel(octt, "CP-TC051", "Accepted"))["status"] == "accepted"
    assert await octt.exchanges("CP-TC051") == boot_then(
        "hub:ReserveNow",
        "cp:StatusNotification",
        "hub:CancelReservation",
        "cp:StatusNotification",
    )


async def test_tc_052_cancel_reservation_rejected(octt: Octt) -> None:
    assert (await _cancel(octt, "CP-TC052", "Rejected"))["status"] == "rejected"
    assert await octt.exchanges("CP-TC052") == boot_then(
        "hub:ReserveNow", "cp:StatusNotification", "hub:CancelReservation"
    )


async def test_tc_053_use_a_reserved_connector_with_parent_id_tag(octt: Octt) -> None:
    """The connector is reserved for a group (parentIdTag); a member of the group uses it: the
    hub answers the member's Authorize with the group as its parentIdTag, so the charger can
    match it to the reservation, and accepts the transaction on it."""
    body = reservation(53, parentIdTag=GROUP)
    async with octt.charger("CP-TC053") as cp:
        status, view = await octt.command("CP-TC053", "reserve-now", body)
        assert cp.got("ReserveNow")["parent_id_tag"] == GROUP
        await cp.status("Reserved")
        verdict = await cp.authorize(MEMBER)
        await cp.status("Preparing")
        _, started = await cp.start_transaction(MEMBER, reservation_id=53)
        await cp.status("Charging")
    assert (status, view["status"]) == (200, "accepted")
    assert (verdict["status"], verdict.get("parent_id_tag")) == ("Accepted", GROUP)
    assert started == "Accepted"


# -- 3.18 Remote Trigger ------------------------------------------------------------------


async def test_tc_054_trigger_message(octt: Octt) -> None:
    requests = [
        ({"requestedMessage": "MeterValues", "connectorId": 1}, "MeterValues"),
        ({"requestedMessage": "Heartbeat"}, "Heartbeat"),
        ({"requestedMessage": "StatusNotification", "connectorId": 1}, "StatusNotification"),
        ({"requestedMessage": "DiagnosticsStatusNotification"}, "DiagnosticsStatusNotification"),
        ({"requestedMessage": "FirmwareStatusNotification"}, "FirmwareStatusNotification"),
    ]
    triggered: dict[str, Any] = {
        "MeterValues": call.MeterValues(
            connector_id=1,
            meter_value=[
                {
                    "timestamp": "2026-03-01T10:00:00Z",
                    "sampledValue": [{"value": "1000", "context": "Trigger"}],
                }
            ],
        ),
        "Heartbeat": call.Heartbeat(),
        "StatusNotification": call.StatusNotification(
            connector_id=1, error_code="NoError", status="Available"
        ),
        "DiagnosticsStatusNotification": call.DiagnosticsStatusNotification(status="Idle"),
        "FirmwareStatusNotification": call.FirmwareStatusNotification(status="Idle"),
    }
    async with octt.charger("CP-TC054") as cp:
        for body, action in requests:
            status, view = await octt.command("CP-TC054", "trigger-message", body)
            assert (status, view["status"]) == (200, "accepted"), action
            await cp.call(triggered[action])
    assert await octt.sent("CP-TC054", "TriggerMessage") == [body for body, _ in requests]
    assert await octt.exchanges("CP-TC054") == boot_then(
        *(step for _, action in requests for step in ("hub:TriggerMessage", f"cp:{action}"))
    )


async def test_tc_055_trigger_message_rejected(octt: Octt) -> None:
    async with octt.charger("CP-TC055") as cp:
        cp.answers["TriggerMessage"] = {"status": "Rejected"}
        status, view = await octt.command(
            "CP-TC055", "trigger-message", {"requestedMessage": "MeterValues"}
        )
    assert (status, view["status"], view["response"]) == (200, "rejected", {"status": "Rejected"})
    assert await octt.sent("CP-TC055", "TriggerMessage") == [{"requestedMessage": "MeterValues"}]


# -- 3.19 Smart Charging ------------------------------------------------------------------


def profile(purpose: str, profile_id: int, **extra: Any) -> dict[str, Any]:
    """A charging profile as the OCTT expects it: Absolute, with validFrom, validTo,
    startSchedule and duration, 6 A from the start."""
    return {
        "chargingProfileId": profile_id,
        "stackLevel": 1,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "validFrom": "2026-03-01T00:00:00Z",
        "validTo": FUTURE,
        "chargingSchedule": {
            "startSchedule": "2026-03-01T00:00:00Z",
            "duration": 3600,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}],
        },
        **extra,
    }


async def _set_profile(octt: Octt, charge_point_id: str, connector: int, body: Any) -> None:
    status, view = await octt.command(
        charge_point_id,
        "charging-profiles",
        {"connectorId": connector, "csChargingProfiles": body},
    )
    assert (status, view["status"], view["response"]) == (200, "accepted", {"status": "Accepted"})


async def test_tc_056_central_smart_charging_tx_default_profile(octt: Octt) -> None:
    body = profile("TxDefaultProfile", 56)
    async with octt.charger("CP-TC056"):
        await _set_profile(octt, "CP-TC056", CONNECTOR, body)
    [sent] = await octt.sent("CP-TC056", "SetChargingProfile")
    assert sent == {"connectorId": CONNECTOR, "csChargingProfiles": body}
    assert "transactionId" not in sent["csChargingProfiles"]
    assert "recurrencyKind" not in sent["csChargingProfiles"]


async def test_tc_057_central_smart_charging_tx_profile(octt: Octt) -> None:
    async with octt.charger("CP-TC057") as cp:
        transaction_id = await cp.charging()
        body = profile("TxProfile", 57, transactionId=transaction_id)
        await _set_profile(octt, "CP-TC057", CONNECTOR, body)
    [sent] = await octt.sent("CP-TC057", "SetChargingProfile")
    assert sent["csChargingProfiles"]["transactionId"] == transaction_id
    assert (await octt.exchanges("CP-TC057"))[-1] == ("hub", "SetChargingProfile", "CALLRESULT")


async def test_tc_059_remote_start_transaction_with_charging_profile(octt: Octt) -> None:
    relative = {
        "chargingProfileId": 59,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
        },
    }
    body = {"idTag": VALID, "connectorId": CONNECTOR, "chargingProfile": relative}
    async with octt.charger("CP-TC059") as cp:
        status, view = await octt.command("CP-TC059", "remote-start", body)
        assert (await cp.authorize(VALID))["status"] == "Accepted"
        await cp.status("Preparing")
        _, verdict = await cp.start_transaction(VALID)
        await cp.status("Charging")
    assert (status, view["status"], verdict) == (200, "accepted", "Accepted")
    assert await octt.sent("CP-TC059", "RemoteStartTransaction") == [body]
    assert await octt.exchanges("CP-TC059") == boot_then(
        "hub:RemoteStartTransaction",
        "cp:Authorize",
        "cp:StatusNotification",
        "cp:StartTransaction",
        "cp:StatusNotification",
    )


async def test_tc_066_get_composite_schedule(octt: Octt) -> None:
    schedule = {
        "duration": 3600,
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
    }
    request = {"connectorId": CONNECTOR, "duration": 3600, "chargingRateUnit": "A"}
    async with octt.charger("CP-TC066") as cp:
        cp.answers["GetCompositeSchedule"] = {
            "status": "Accepted",
            "connector_id": CONNECTOR,
            "schedule_start": "2026-03-01T10:00:00Z",
            "charging_schedule": schedule,
        }
        status, view = await octt.command("CP-TC066", "composite-schedule", request)
    assert (status, view["status"]) == (200, "accepted")
    assert view["response"]["chargingSchedule"] == schedule
    assert await octt.sent("CP-TC066", "GetCompositeSchedule") == [request]


async def test_tc_067_clear_charging_profile(octt: Octt) -> None:
    clears: list[dict[str, Any]] = [
        {"id": 671},
        {"connectorId": CONNECTOR, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1},
        {},
    ]
    async with octt.charger("CP-TC067") as cp:
        transaction_id = await cp.charging()
        await _set_profile(octt, "CP-TC067", 0, profile("ChargePointMaxProfile", 671))
        await _set_profile(octt, "CP-TC067", CONNECTOR, profile("TxDefaultProfile", 672))
        await _set_profile(
            octt, "CP-TC067", CONNECTOR, profile("TxProfile", 673, transactionId=transaction_id)
        )
        for body in clears:
            status, view = await octt.command(
                "CP-TC067", "charging-profiles", body, method="DELETE"
            )
            assert (status, view["status"]) == (200, "accepted"), body
    assert await octt.sent("CP-TC067", "ClearChargingProfile") == clears
    sent = await octt.sent("CP-TC067", "SetChargingProfile")
    assert [s["csChargingProfiles"]["chargingProfileId"] for s in sent] == [671, 672, 673]
