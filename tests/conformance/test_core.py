"""OCTT 1.6 CSMS cases of the Core profile (document section 3.1 to 3.13, 3.20). Each case
plays the OCTT's charge point against the real hub, checks what the OCTT checks of the Central
System (its answers, the commands it sends and their payloads), and that every message of the
scenario is in the event stream with its answer. docs/conformance.md lists them all."""

from __future__ import annotations

import pytest
from ocpp.v16 import call

from tests.conformance.octt import (
    BLOCKED,
    BOOT,
    EXPIRED,
    INVALID,
    VALID,
    Octt,
    answered,
    boot_then,
)
from tests.integration.helpers import ocpp_charger

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The keys TC_019_1 expects a charger to report, with their accessibility (R or RW).
CORE_KEYS = {
    "AuthorizeRemoteTxRequests": True,
    "ClockAlignedDataInterval": False,
    "ConnectionTimeOut": False,
    "GetConfigurationMaxKeys": True,
    "HeartbeatInterval": False,
    "LocalAuthorizeOffline": False,
    "LocalPreAuthorize": False,
    "MeterValuesAlignedData": False,
    "MeterValuesSampledData": False,
    "MeterValueSampleInterval": False,
    "NumberOfConnectors": True,
    "ResetRetries": False,
    "StopTransactionOnEVSideDisconnect": False,
    "StopTransactionOnInvalidId": False,
    "StopTxnAlignedData": False,
    "StopTxnSampledData": False,
    "SupportedFeatureProfiles": True,
    "TransactionMessageAttempts": False,
    "TransactionMessageRetryInterval": False,
    "UnlockConnectorOnEVSideDisconnect": False,
    "LocalAuthListEnabled": False,
    "LocalAuthListMaxLength": True,
    "SendLocalListMaxLength": True,
}


async def test_tc_001_cold_boot_charge_point(octt: Octt) -> None:
    async with ocpp_charger(octt.port, "CP-TC001") as cp:
        boot = await cp.call(BOOT)
        for connector in (0, 1):
            await cp.call(
                call.StatusNotification(
                    connector_id=connector, error_code="NoError", status="Available"
                )
            )
        heartbeat = await cp.call(call.Heartbeat())
    assert boot.status == "Accepted" and boot.interval > 0
    assert heartbeat.current_time.endswith("Z")
    assert await octt.exchanges("CP-TC001") == answered(
        "cp:BootNotification", "cp:StatusNotification", "cp:StatusNotification", "cp:Heartbeat"
    )


async def test_tc_003_regular_charging_session_plugin_first(octt: Octt) -> None:
    async with octt.charger("CP-TC003") as cp:
        await cp.status("Preparing")
        assert (await cp.authorize(VALID))["status"] == "Accepted"
        transaction_id, verdict = await cp.start_transaction(VALID)
        await cp.status("Charging")
    assert verdict == "Accepted" and transaction_id > 0
    assert await octt.exchanges("CP-TC003") == boot_then(
        "cp:StatusNotification", "cp:Authorize", "cp:StartTransaction", "cp:StatusNotification"
    )


async def test_tc_004_1_regular_charging_session_identification_first(octt: Octt) -> None:
    async with octt.charger("CP-TC004-1") as cp:
        await cp.charging(VALID)
    assert await octt.exchanges("CP-TC004-1") == boot_then(
        "cp:Authorize", "cp:StatusNotification", "cp:StartTransaction", "cp:StatusNotification"
    )


async def test_tc_004_2_identification_first_connection_timeout(octt: Octt) -> None:
    async with octt.charger("CP-TC004-2") as cp:
        assert (await cp.authorize(VALID))["status"] == "Accepted"
        await cp.status("Preparing")
        await cp.status("Available")  # ConnectionTimeOut passed without a cable
    assert await octt.exchanges("CP-TC004-2") == boot_then(
        "cp:Authorize", "cp:StatusNotification", "cp:StatusNotification"
    )


async def test_tc_005_1_ev_side_disconnected(octt: Octt) -> None:
    async with octt.charger("CP-TC005") as cp:
        transaction_id = await cp.charging()
        await cp.status("SuspendedEV")
        assert await cp.stop(transaction_id, "EVDisconnected", id_tag=VALID) == "Accepted"
        await cp.status("Finishing")
        await cp.status("Available")
    exchanges = await octt.exchanges("CP-TC005")
    assert exchanges[5:] == answered(
        "cp:StatusNotification",
        "cp:StopTransaction",
        "cp:StatusNotification",
        "cp:StatusNotification",
    )


async def test_tc_007_regular_start_charging_session_cached_id(octt: Octt) -> None:
    async with octt.charger("CP-TC007") as cp:
        await cp.status("Preparing")
        _, verdict = await cp.start_transaction(VALID)  # authorized from the cache: no Authorize
        await cp.status("Charging")
    assert verdict == "Accepted"
    assert await octt.exchanges("CP-TC007") == boot_then(
        "cp:StatusNotification", "cp:StartTransaction", "cp:StatusNotification"
    )


async def test_tc_010_remote_start_cable_plugged_in_first(octt: Octt) -> None:
    async with octt.charger("CP-TC010") as cp:
        await cp.status("Preparing")
        status, view = await octt.command(
            "CP-TC010", "remote-start", {"idTag": VALID, "connectorId": 1}
        )
        assert cp.got("RemoteStartTransaction") == {"id_tag": VALID, "connector_id": 1}
        assert (await cp.authorize(VALID))["status"] == "Accepted"
        _, verdict = await cp.start_transaction(VALID)
        await cp.status("Charging")
    assert (status, view["status"], view["response"]) == (200, "accepted", {"status": "Accepted"})
    assert verdict == "Accepted"
    assert await octt.exchanges("CP-TC010") == boot_then(
        "cp:StatusNotification",
        "hub:RemoteStartTransaction",
        "cp:Authorize",
        "cp:StartTransaction",
        "cp:StatusNotification",
    )


async def test_tc_011_1_remote_start_remote_start_first(octt: Octt) -> None:
    async with octt.charger("CP-TC011-1") as cp:
        status, view = await octt.command("CP-TC011-1", "remote-start", {"idTag": VALID})
        assert cp.got("RemoteStartTransaction")["id_tag"] == VALID
        assert (await cp.authorize(VALID))["status"] == "Accepted"
        await cp.status("Preparing")
        _, verdict = await cp.start_transaction(VALID)
        await cp.status("Charging")
    assert (status, view["status"]) == (200, "accepted")
    assert verdict == "Accepted"
    assert await octt.exchanges("CP-TC011-1") == boot_then(
        "hub:RemoteStartTransaction",
        "cp:Authorize",
        "cp:StatusNotification",
        "cp:StartTransaction",
        "cp:StatusNotification",
    )


async def test_tc_011_2_remote_start_time_out(octt: Octt) -> None:
    async with octt.charger("CP-TC011-2") as cp:
        status, view = await octt.command("CP-TC011-2", "remote-start", {"idTag": VALID})
        assert (await cp.authorize(VALID))["status"] == "Accepted"
        await cp.status("Preparing")
        await cp.status("Available")  # the cable never came
    assert (status, view["status"]) == (200, "accepted")
    assert await octt.exchanges("CP-TC011-2") == boot_then(
        "hub:RemoteStartTransaction",
        "cp:Authorize",
        "cp:StatusNotification",
        "cp:StatusNotification",
    )


async def test_tc_012_remote_stop_charging_session(octt: Octt) -> None:
    async with octt.charger("CP-TC012") as cp:
        transaction_id = await cp.charging()
        status, view = await octt.command(
            "CP-TC012", "remote-stop", {"transactionId": transaction_id}
        )
        assert cp.got("RemoteStopTransaction") == {"transaction_id": transaction_id}
        assert await cp.stop(transaction_id, "Remote") == "Accepted"
        await cp.status("Finishing")
        await cp.status("Available")
    assert (status, view["status"]) == (200, "accepted")
    exchanges = await octt.exchanges("CP-TC012")
    assert exchanges[5:] == answered(
        "hub:RemoteStopTransaction",
        "cp:StopTransaction",
        "cp:StatusNotification",
        "cp:StatusNotification",
    )


async def _reset(octt: Octt, charge_point_id: str, kind: str) -> None:
    async with octt.charger(charge_point_id) as cp:
        status, view = await octt.command(charge_point_id, "reset", {"type": kind})
        assert cp.got("Reset") == {"type": kind}
    assert (status, view["status"]) == (200, "accepted")
    # The charger restarts: a new connection, a new boot.
    async with ocpp_charger(octt.port, charge_point_id) as cp:
        assert (await cp.call(BOOT)).status == "Accepted"
        for connector in (0, 1):
            await cp.call(
                call.StatusNotification(
                    connector_id=connector, error_code="NoError", status="Available"
                )
            )
    assert await octt.exchanges(charge_point_id) == boot_then(
        "hub:Reset", "cp:BootNotification", "cp:StatusNotification", "cp:StatusNotification"
    )
    assert await octt.sent(charge_point_id, "Reset") == [{"type": kind}]


async def test_tc_013_hard_reset(octt: Octt) -> None:
    await _reset(octt, "CP-TC013", "Hard")


async def test_tc_014_soft_reset(octt: Octt) -> None:
    await _reset(octt, "CP-TC014", "Soft")


async def _unlock(octt: Octt, charge_point_id: str, answer: str) -> None:
    """An UnlockConnector the charger answers ``answer``; the operator sees it as such."""
    async with octt.charger(charge_point_id) as cp:
        cp.answers["UnlockConnector"] = {"status": answer}
        status, view = await octt.command(charge_point_id, "unlock", {"connectorId": 1})
    assert status == 200
    assert view["response"] == {"status": answer}
    assert view["status"] == ("accepted" if answer == "Unlocked" else "rejected")
    assert await octt.exchanges(charge_point_id) == boot_then("hub:UnlockConnector")


async def test_tc_017_1_unlock_connector_no_session_not_fixed_cable(octt: Octt) -> None:
    await _unlock(octt, "CP-TC017-1", "Unlocked")


async def test_tc_017_2_unlock_connector_no_session_fixed_cable(octt: Octt) -> None:
    await _unlock(octt, "CP-TC017-2", "NotSupported")


async def test_tc_018_1_unlock_connector_with_charging_session(octt: Octt) -> None:
    async with octt.charger("CP-TC018") as cp:
        transaction_id = await cp.charging()
        status, view = await octt.command("CP-TC018", "unlock", {"connectorId": 1})
        await cp.status("Finishing")
        assert await cp.stop(transaction_id, "UnlockCommand") == "Accepted"
        await cp.status("Available")
    assert (status, view["status"]) == (200, "accepted")
    exchanges = await octt.exchanges("CP-TC018")
    assert exchanges[5:] == answered(
        "hub:UnlockConnector",
        "cp:StatusNotification",
        "cp:StopTransaction",
        "cp:StatusNotification",
    )


async def test_tc_019_1_retrieve_all_configuration_keys(octt: Octt) -> None:
    keys = [{"key": key, "readonly": readonly, "value": "1"} for key, readonly in CORE_KEYS.items()]
    async with octt.charger("CP-TC019-1") as cp:
        cp.answers["GetConfiguration"] = {"configuration_key": keys}
        status, view = await octt.command("CP-TC019-1", "configuration", method="GET")
        assert cp.got("GetConfiguration") == {}  # no key: all of them
    assert (status, view["status"]) == (200, "accepted")
    assert view["response"]["configurationKey"] == keys
    assert await octt.sent("CP-TC019-1", "GetConfiguration") == [{}]


async def test_tc_019_2_retrieve_specific_configuration_key(octt: Octt) -> None:
    answer = [{"key": "SupportedFeatureProfiles", "readonly": True, "value": "Core"}]
    async with octt.charger("CP-TC019-2") as cp:
        cp.answers["GetConfiguration"] = {"configuration_key": answer, "unknown_key": []}
        status, view = await octt.command(
            "CP-TC019-2",
            "configuration",
            method="GET",
            params={"key": "SupportedFeatureProfiles"},
        )
        assert cp.got("GetConfiguration") == {"key": ["SupportedFeatureProfiles"]}
    assert (status, view["status"]) == (200, "accepted")
    assert view["response"]["configurationKey"] == answer
    assert view["response"].get("unknownKey", []) == []


async def _change_configuration(
    octt: Octt, charge_point_id: str, key: str, value: str, answer: str
) -> dict[str, object]:
    async with octt.charger(charge_point_id) as cp:
        cp.answers["ChangeConfiguration"] = {"status": answer}
        status, view = await octt.command(
            charge_point_id, "configuration", {"key": key, "value": value}, method="PUT"
        )
        assert cp.got("ChangeConfiguration") == {"key": key, "value": value}
    assert status == 200 and view["response"] == {"status": answer}
    assert await octt.sent(charge_point_id, "ChangeConfiguration") == [{"key": key, "value": value}]
    return view


async def test_tc_021_change_set_configuration(octt: Octt) -> None:
    view = await _change_configuration(
        octt, "CP-TC021", "MeterValueSampleInterval", "60", "Accepted"
    )
    assert view["status"] == "accepted"


async def _authorize(octt: Octt, charge_point_id: str, id_tag: str) -> str:
    async with octt.charger(charge_point_id) as cp:
        verdict = await cp.authorize(id_tag)
    assert await octt.exchanges(charge_point_id) == boot_then("cp:Authorize")
    return str(verdict["status"])


async def test_tc_023_1_start_charging_session_authorize_invalid(octt: Octt) -> None:
    assert await _authorize(octt, "CP-TC023-1", INVALID) == "Invalid"


async def test_tc_023_2_start_charging_session_authorize_expired(octt: Octt) -> None:
    assert await _authorize(octt, "CP-TC023-2", EXPIRED) == "Expired"


async def test_tc_023_3_start_charging_session_authorize_blocked(octt: Octt) -> None:
    assert await _authorize(octt, "CP-TC023-3", BLOCKED) == "Blocked"


async def test_tc_024_start_charging_session_lock_failure(octt: Octt) -> None:
    async with octt.charger("CP-TC024") as cp:
        assert (await cp.authorize(VALID))["status"] == "Accepted"
        await cp.status("Preparing")
        await cp.status("Faulted", error_code="ConnectorLockFailure")
    assert await octt.exchanges("CP-TC024") == boot_then(
        "cp:Authorize", "cp:StatusNotification", "cp:StatusNotification"
    )


async def test_tc_026_remote_start_charging_session_rejected(octt: Octt) -> None:
    async with octt.charger("CP-TC026") as cp:
        cp.answers["RemoteStartTransaction"] = {"status": "Rejected"}
        status, view = await octt.command("CP-TC026", "remote-start", {"idTag": VALID})
    assert (status, view["status"], view["response"]) == (200, "rejected", {"status": "Rejected"})
    assert await octt.exchanges("CP-TC026") == boot_then("hub:RemoteStartTransaction")


async def test_tc_028_remote_stop_transaction_rejected(octt: Octt) -> None:
    async with octt.charger("CP-TC028") as cp:
        transaction_id = await cp.charging()
        cp.answers["RemoteStopTransaction"] = {"status": "Rejected"}
        unknown = transaction_id + 1_000_000
        status, view = await octt.command("CP-TC028", "remote-stop", {"transactionId": unknown})
    assert (status, view["status"]) == (200, "rejected")
    assert await octt.sent("CP-TC028", "RemoteStopTransaction") == [{"transactionId": unknown}]


async def test_tc_030_unlock_connector_unlock_failure(octt: Octt) -> None:
    await _unlock(octt, "CP-TC030", "UnlockFailed")


async def test_tc_031_unlock_connector_unknown_connector(octt: Octt) -> None:
    await _unlock(octt, "CP-TC031", "NotSupported")


async def test_tc_032_1_power_failure_stop_transactions(octt: Octt) -> None:
    async with octt.charger("CP-TC032") as cp:
        transaction_id = await cp.charging()
    # Power comes back: a new connection, a boot, then the transaction stopped for PowerLoss.
    async with ocpp_charger(octt.port, "CP-TC032") as cp:
        boot = await cp.call(BOOT)
        for connector, status in ((0, "Available"), (1, "Finishing")):
            await cp.call(
                call.StatusNotification(connector_id=connector, error_code="NoError", status=status)
            )
        stop = await cp.call(
            call.StopTransaction(
                meter_stop=3000,
                timestamp="2026-03-01T10:30:00Z",
                transaction_id=transaction_id,
                reason="PowerLoss",
            )
        )
    assert boot.status == "Accepted"
    assert stop.id_tag_info is None or stop.id_tag_info["status"] == "Accepted"
    exchanges = await octt.exchanges("CP-TC032")
    assert exchanges[5:] == answered(
        "cp:BootNotification",
        "cp:StatusNotification",
        "cp:StatusNotification",
        "cp:StopTransaction",
    )


async def test_tc_037_1_offline_start_transaction_valid_idtag(octt: Octt) -> None:
    async with octt.charger("CP-TC037-1") as cp:
        # Queued while offline: sent after the connection came back, with the time it happened.
        _, verdict = await cp.start_transaction(VALID, timestamp="2026-03-01T08:00:00Z")
        await cp.status("Charging")
    assert verdict == "Accepted"
    assert await octt.exchanges("CP-TC037-1") == boot_then(
        "cp:StartTransaction", "cp:StatusNotification"
    )


async def test_tc_037_3_offline_start_transaction_invalid_idtag(octt: Octt) -> None:
    async with octt.charger("CP-TC037-3") as cp:
        transaction_id, verdict = await cp.start_transaction(
            INVALID, timestamp="2026-03-01T08:00:00Z"
        )
        await cp.status("Charging")
        # StopTransactionOnInvalidId = true: the charger ends the transaction it started.
        await cp.stop(transaction_id, "DeAuthorized")
        await cp.status("Finishing")
    assert verdict == "Invalid"
    assert transaction_id > 0  # a transaction id all the same, so it can be stopped
    assert await octt.exchanges("CP-TC037-3") == boot_then(
        "cp:StartTransaction",
        "cp:StatusNotification",
        "cp:StopTransaction",
        "cp:StatusNotification",
    )


async def test_tc_039_offline_transaction(octt: Octt) -> None:
    async with octt.charger("CP-TC039") as cp:
        transaction_id, verdict = await cp.start_transaction(
            VALID, timestamp="2026-03-01T07:00:00Z"
        )
        stopped = await cp.stop(
            transaction_id, "Local", id_tag=VALID, timestamp="2026-03-01T07:45:00Z"
        )
    assert (verdict, stopped) == ("Accepted", "Accepted")
    assert await octt.exchanges("CP-TC039") == boot_then(
        "cp:StartTransaction", "cp:StopTransaction"
    )


async def test_tc_040_1_configuration_keys_not_supported(octt: Octt) -> None:
    view = await _change_configuration(octt, "CP-TC040-1", "Testing", "true", "NotSupported")
    assert view["status"] == "rejected"


async def test_tc_040_2_configuration_keys_invalid_value(octt: Octt) -> None:
    view = await _change_configuration(
        octt, "CP-TC040-2", "MeterValueSampleInterval", "-1", "Rejected"
    )
    assert view["status"] == "rejected"


async def test_tc_061_clear_authorization_cache(octt: Octt) -> None:
    async with octt.charger("CP-TC061") as cp:
        status, view = await octt.command("CP-TC061", "clear-cache")
        assert cp.got("ClearCache") == {}
    assert (status, view["status"], view["response"]) == (200, "accepted", {"status": "Accepted"})
    assert await octt.exchanges("CP-TC061") == boot_then("hub:ClearCache")


async def test_tc_064_data_transfer_to_a_central_system(octt: Octt) -> None:
    async with octt.charger("CP-TC064") as cp:
        answer = await cp.call(call.DataTransfer(vendor_id="unknown.vendor", message_id="x"))
    assert answer.status in ("Rejected", "UnknownMessageId", "UnknownVendorId")
    assert await octt.exchanges("CP-TC064") == boot_then("cp:DataTransfer")
