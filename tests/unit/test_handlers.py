"""The OCPP 1.6 answers (hub.gateway.ocpp16) and the registry they consult (hub.registry).

Every answer is checked against both the generated msgspec validators and the ocpp library's
own jsonschema, so a policy can never make the hub send something a charger must refuse.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from ocpp.messages import MessageType, get_validator

from hub.config import GatewaySettings
from hub.domain.wallets import Wallets
from hub.gateway import ocpp16
from hub.registry import IdTagVerdict, Registry
from schemas.events import (
    AdminEvent,
    ChargerRegistered,
    ChargerUnregistered,
    IdTagRemoved,
    IdTagStatus,
    IdTagUpserted,
    WalletConfigured,
    WalletCredited,
)
from schemas.ocpp import PayloadError, validate_call, validate_result

NOW = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)
NOW_TEXT = "2026-03-04T05:06:07.890Z"
_seq = iter(range(1, 1_000_000))


def _admin(event_type: type[Any], **fields: Any) -> AdminEvent:
    event: AdminEvent = event_type(id=f"a{next(_seq)}", received_at=0, actor="test", **fields)
    return event


def registry_of(*events: AdminEvent) -> Registry:
    registry = Registry()
    for seq, event in enumerate(events, start=1):
        registry.apply(event, seq)
    return registry


def registered(cp: str) -> AdminEvent:
    return _admin(ChargerRegistered, charge_point_id=cp)


def tag(
    id_tag: str, status: IdTagStatus = "Accepted", expiry: str = "", parent: str = ""
) -> AdminEvent:
    return _admin(
        IdTagUpserted, id_tag=id_tag, status=status, expiry_date=expiry, parent_id_tag=parent
    )


def ctx_of(
    registry: Registry | None = None,
    *,
    cp: str = "CP-1",
    transaction_id: int = 0,
    **settings: Any,
) -> ocpp16.Context:
    return ocpp16.Context(
        charge_point_id=cp,
        now=NOW,
        settings=GatewaySettings(**settings),
        registry=registry or Registry(),
        transaction_id=transaction_id,
    )


def call(action: str, payload: dict[str, Any], ctx: ocpp16.Context) -> dict[str, Any]:
    """Run the handler on a request decoded from JSON, and return the answer as a charger
    reads it, after checking it against both validators."""
    request = validate_call("1.6", action, json.dumps(payload).encode())
    assert not isinstance(request, PayloadError), request
    response = ocpp16.HANDLERS[action](request, ctx)
    data = msgspec.json.encode(response)
    ours = validate_result("1.6", action, data)
    assert not isinstance(ours, PayloadError), (action, data, ours)
    document: dict[str, Any] = json.loads(data)
    get_validator(MessageType.CallResult, action, "1.6").validate(document)
    return document


# -- BootNotification / Heartbeat -------------------------------------------------------------

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


@pytest.mark.parametrize("known", [False, True])
def test_boot_policy_accept_accepts_anyone(known: bool) -> None:
    registry = registry_of(registered("CP-1")) if known else Registry()
    answer = call("BootNotification", BOOT, ctx_of(registry, boot_policy="accept"))
    assert answer == {"status": "Accepted", "currentTime": NOW_TEXT, "interval": 300}


def test_boot_policy_known_rejects_unknown_chargers() -> None:
    registry = registry_of(registered("CP-2"))
    answer = call("BootNotification", BOOT, ctx_of(registry, boot_policy="known"))
    assert answer["status"] == "Rejected"


def test_boot_policy_known_accepts_registered_chargers() -> None:
    registry = registry_of(registered("CP-1"))
    answer = call("BootNotification", BOOT, ctx_of(registry, boot_policy="known"))
    assert answer["status"] == "Accepted"


def test_boot_policy_known_after_unregistration() -> None:
    registry = registry_of(registered("CP-1"), _admin(ChargerUnregistered, charge_point_id="CP-1"))
    answer = call("BootNotification", BOOT, ctx_of(registry, boot_policy="known"))
    assert answer["status"] == "Rejected"


@pytest.mark.parametrize("known", [False, True])
def test_boot_policy_pending(known: bool) -> None:
    registry = registry_of(registered("CP-1")) if known else Registry()
    answer = call("BootNotification", BOOT, ctx_of(registry, boot_policy="pending"))
    assert answer["status"] == "Pending"


def test_heartbeat_interval_comes_from_settings() -> None:
    answer = call("BootNotification", BOOT, ctx_of(heartbeat_interval_s=42))
    assert answer["interval"] == 42


def test_heartbeat_reports_the_hub_clock() -> None:
    assert call("Heartbeat", {}, ctx_of()) == {"currentTime": NOW_TEXT}


def test_times_are_sent_in_utc() -> None:
    from datetime import timedelta, timezone

    from hub.registry import format_time

    moment = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2026-01-01T10:00:00.000Z"
    assert format_time(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"


# -- Authorize --------------------------------------------------------------------------------


def authorize(registry: Registry, id_tag: str, policy: str = "list") -> dict[str, Any]:
    answer = call("Authorize", {"idTag": id_tag}, ctx_of(registry, authorize_policy=policy))
    info: dict[str, Any] = answer["idTagInfo"]
    return info


def test_authorize_policy_accept_ignores_the_list() -> None:
    registry = registry_of(tag("BLOCKED", "Blocked"))
    assert authorize(registry, "BLOCKED", "accept") == {"status": "Accepted"}
    assert authorize(registry, "NOBODY", "accept") == {"status": "Accepted"}


def test_authorize_unknown_tag_is_invalid() -> None:
    assert authorize(registry_of(tag("T1")), "T2") == {"status": "Invalid"}


@pytest.mark.parametrize("status", ["Accepted", "Blocked", "Expired", "Invalid"])
def test_authorize_answers_the_stored_status(status: IdTagStatus) -> None:
    assert authorize(registry_of(tag("T1", status)), "T1") == {"status": status}


def test_authorize_expired_tag() -> None:
    registry = registry_of(tag("T1", expiry="2026-03-04T05:06:07Z"))
    assert authorize(registry, "T1") == {
        "status": "Expired",
        "expiryDate": "2026-03-04T05:06:07.000Z",
    }


@pytest.mark.parametrize(
    "expiry",
    [
        "2026-03-04T05:06:07",  # no offset: read as UTC, 0.89 s before NOW
        "2026-03-04T06:00:00+01:00",  # 05:00 UTC
        "2020-01-01T00:00:00.000Z",
    ],
)
def test_authorize_expiry_in_the_past_is_expired(expiry: str) -> None:
    assert authorize(registry_of(tag("T1", expiry=expiry)), "T1")["status"] == "Expired"


@pytest.mark.parametrize(
    ("expiry", "sent"),
    [
        ("2026-03-04T05:06:09Z", "2026-03-04T05:06:09.000Z"),
        ("2026-03-04T06:00:00+00:30", "2026-03-04T05:30:00.000Z"),
        ("2099-12-31T23:59:59.000Z", "2099-12-31T23:59:59.000Z"),
    ],
)
def test_authorize_expiry_in_the_future_is_accepted_and_echoed_in_utc(
    expiry: str, sent: str
) -> None:
    info = authorize(registry_of(tag("T1", expiry=expiry)), "T1")
    assert info == {"status": "Accepted", "expiryDate": sent}


def test_authorize_blocked_parent_blocks_the_child() -> None:
    registry = registry_of(tag("PARENT", "Blocked"), tag("CHILD", parent="PARENT"))
    assert authorize(registry, "CHILD") == {"status": "Blocked", "parentIdTag": "PARENT"}


@pytest.mark.parametrize("parent_events", [[], [tag("PARENT")]], ids=["unknown", "accepted"])
def test_authorize_harmless_parent_is_echoed(parent_events: list[AdminEvent]) -> None:
    registry = registry_of(*parent_events, tag("CHILD", parent="PARENT"))
    assert authorize(registry, "CHILD") == {"status": "Accepted", "parentIdTag": "PARENT"}


def test_authorize_follows_the_latest_upsert_and_removal() -> None:
    registry = registry_of(tag("T1", "Blocked"), tag("T1", "Accepted"))
    assert authorize(registry, "T1") == {"status": "Accepted"}
    registry.apply(_admin(IdTagRemoved, id_tag="T1"))
    assert authorize(registry, "T1") == {"status": "Invalid"}


def test_authorize_fails_closed_on_an_unreadable_stored_expiry() -> None:
    info = authorize(registry_of(tag("T1", expiry="next tuesday")), "T1")
    assert info["status"] == "Expired"


def test_authorize_never_echoes_an_overlong_parent_id_tag() -> None:
    info = authorize(registry_of(tag("T1", parent="P" * 21)), "T1")
    assert info == {"status": "Accepted"}


# -- transactions -----------------------------------------------------------------------------

START = {"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": "2026-03-04T05:00:00Z"}
STOP = {"meterStop": 10, "timestamp": "2026-03-04T06:00:00Z", "transactionId": 4711}


def test_start_transaction_echoes_the_allocated_transaction_id() -> None:
    answer = call("StartTransaction", START, ctx_of(transaction_id=4711))
    assert answer == {"idTagInfo": {"status": "Accepted"}, "transactionId": 4711}


def test_start_transaction_applies_the_authorize_policy() -> None:
    ctx = ctx_of(registry_of(tag("T1", "Blocked")), transaction_id=9, authorize_policy="list")
    answer = call("StartTransaction", START, ctx)
    assert answer == {"idTagInfo": {"status": "Blocked"}, "transactionId": 9}


def test_stop_transaction_without_id_tag_has_no_id_tag_info() -> None:
    ctx = ctx_of(registry_of(tag("T1", "Blocked")), authorize_policy="list")
    assert call("StopTransaction", STOP, ctx) == {}


def test_stop_transaction_with_id_tag_reports_it() -> None:
    ctx = ctx_of(registry_of(tag("T1", "Blocked")), authorize_policy="list")
    answer = call("StopTransaction", {**STOP, "idTag": "T1"}, ctx)
    assert answer == {"idTagInfo": {"status": "Blocked"}}
    assert call("StopTransaction", {**STOP, "idTag": "T9"}, ctx) == {
        "idTagInfo": {"status": "Invalid"}
    }


# -- DataTransfer -----------------------------------------------------------------------------


def data_transfer(vendors: dict[str, list[str]], payload: dict[str, Any]) -> str:
    answer = call("DataTransfer", payload, ctx_of(data_transfer_vendors=vendors))
    status: str = answer["status"]
    return status


def test_data_transfer_empty_policy_accepts_everything() -> None:
    assert data_transfer({}, {"vendorId": "anyone", "messageId": "m", "data": "x"}) == "Accepted"
    assert data_transfer({}, {"vendorId": "anyone"}) == "Accepted"


def test_data_transfer_unknown_vendor() -> None:
    vendors = {"com.acme": ["Ping"]}
    assert data_transfer(vendors, {"vendorId": "com.other", "messageId": "Ping"}) == (
        "UnknownVendorId"
    )


def test_data_transfer_known_and_unknown_message_ids() -> None:
    vendors = {"com.acme": ["Ping", "Pong"]}
    assert data_transfer(vendors, {"vendorId": "com.acme", "messageId": "Pong"}) == "Accepted"
    assert data_transfer(vendors, {"vendorId": "com.acme", "messageId": "Boom"}) == (
        "UnknownMessageId"
    )
    assert data_transfer(vendors, {"vendorId": "com.acme"}) == "UnknownMessageId"


def test_data_transfer_star_accepts_any_message_id() -> None:
    vendors = {"com.acme": ["*"], "com.other": []}
    assert data_transfer(vendors, {"vendorId": "com.acme", "messageId": "Whatever"}) == "Accepted"
    assert data_transfer(vendors, {"vendorId": "com.acme"}) == "Accepted"
    assert data_transfer(vendors, {"vendorId": "com.other", "messageId": "x"}) == (
        "UnknownMessageId"
    )


# -- every handler gives a schema-valid answer ------------------------------------------------

SAMPLE_REQUESTS: dict[str, dict[str, Any]] = {
    "Authorize": {"idTag": "T1"},
    "BootNotification": BOOT,
    "DataTransfer": {"vendorId": "com.acme", "messageId": "m", "data": "{}"},
    "DiagnosticsStatusNotification": {"status": "Uploaded"},
    "FirmwareStatusNotification": {"status": "Installed"},
    "Heartbeat": {},
    "LogStatusNotification": {"status": "Uploaded", "requestId": 1},
    "MeterValues": {
        "connectorId": 1,
        "transactionId": 4711,
        "meterValue": [{"timestamp": "2026-03-04T05:00:00Z", "sampledValue": [{"value": "1"}]}],
    },
    "SecurityEventNotification": {"type": "FirmwareUpdated", "timestamp": "2026-03-04T05:00:00Z"},
    "SignCertificate": {"csr": "-----BEGIN CERTIFICATE REQUEST-----"},
    "SignedFirmwareStatusNotification": {"status": "Installed", "requestId": 1},
    "StartTransaction": START,
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    "StopTransaction": {**STOP, "idTag": "T1"},
}


def test_every_handler_has_a_sample() -> None:
    assert set(SAMPLE_REQUESTS) == set(ocpp16.HANDLERS)


POLICIES: list[dict[str, Any]] = [
    {},
    {
        "boot_policy": "known",
        "authorize_policy": "list",
        "data_transfer_vendors": {"com.other": ["x"]},
    },
    {
        "boot_policy": "pending",
        "authorize_policy": "list",
        "data_transfer_vendors": {"com.acme": []},
    },
]


@pytest.mark.parametrize("policy", POLICIES, ids=["defaults", "strict", "pending"])
@pytest.mark.parametrize("action", sorted(SAMPLE_REQUESTS))
def test_every_answer_is_schema_valid(action: str, policy: dict[str, Any]) -> None:
    registry = registry_of(
        tag("T1", expiry="2099-01-01T00:00:00Z", parent="GROUP"), tag("GROUP", "Blocked")
    )
    call(action, SAMPLE_REQUESTS[action], ctx_of(registry, transaction_id=7, **policy))


def test_sign_certificate_is_refused_without_a_ca() -> None:
    assert call("SignCertificate", SAMPLE_REQUESTS["SignCertificate"], ctx_of()) == {
        "status": "Rejected"
    }


# -- the registry is a fold of admin events ---------------------------------------------------


def test_registration_and_unregistration() -> None:
    registry = registry_of(registered("CP-1"), registered("CP-2"))
    assert registry.is_known("CP-1") and registry.is_known("CP-2")
    assert not registry.is_known("CP-3")
    registry.apply(_admin(ChargerUnregistered, charge_point_id="CP-1"), 3)
    assert not registry.is_known("CP-1")
    assert registry.is_known("CP-2")


def test_reregistration_replaces_the_password_hash() -> None:
    registry = registry_of(
        _admin(ChargerRegistered, charge_point_id="CP-1", password_hash="$old"),
        _admin(ChargerRegistered, charge_point_id="CP-1", password_hash="$new"),
    )
    assert registry.chargers["CP-1"].password_hash == "$new"


def test_removing_what_is_not_there_is_harmless() -> None:
    registry = registry_of(
        _admin(ChargerUnregistered, charge_point_id="ghost"), _admin(IdTagRemoved, id_tag="ghost")
    )
    assert registry.chargers == {}
    assert registry.id_tags == {}


def test_id_tag_removed_removes() -> None:
    registry = registry_of(tag("T1"), tag("T2"), _admin(IdTagRemoved, id_tag="T1"))
    assert set(registry.id_tags) == {"T2"}
    assert registry.authorize("T1", NOW).status == "Invalid"
    assert registry.authorize("T2", NOW).status == "Accepted"


def test_last_seq_tracks_the_highest_sequence_applied() -> None:
    registry = Registry()
    registry.apply(registered("CP-1"), 5)
    registry.apply(registered("CP-2"), 3)
    assert registry.last_seq == 5
    registry.apply(registered("CP-3"), 8)
    assert registry.last_seq == 8


def test_fold_is_order_sensitive_like_the_stream() -> None:
    events = [registered("CP-1"), _admin(ChargerUnregistered, charge_point_id="CP-1")]
    assert not registry_of(*events).is_known("CP-1")
    assert registry_of(*reversed(events)).is_known("CP-1")


# -- CiStrings: id tags, vendors and message ids match in any case (OCPP 1.6 §7.15) -----------


def test_an_id_tag_matches_in_any_case_and_keeps_its_spelling() -> None:
    registry = registry_of(
        tag("Aqckz"), tag("fleet-a", "Blocked"), tag("Driver7", parent="FLEET-A")
    )
    assert registry.authorize("aQCKZ", NOW).status == "Accepted"
    assert registry.authorize("driver7", NOW) == IdTagVerdict("Blocked", "", "FLEET-A")
    # Upserting another spelling changes the one tag; removing in any case removes it.
    registry.apply(tag("AQCKZ", "Blocked"), 10)
    assert set(registry.id_tags) == {"AQCKZ", "fleet-a", "Driver7"}
    assert registry.authorize("aqckz", NOW).status == "Blocked"
    registry.apply(_admin(IdTagRemoved, id_tag="aqCKZ"), 11)
    assert registry.authorize("Aqckz", NOW).status == "Invalid"


def test_a_prepaid_wallet_is_found_by_its_tag_in_any_case() -> None:
    wallets = Wallets()
    wallets.apply(_admin(WalletConfigured, id_tag="Prepaid1", hold_amount="10"))
    [entry] = wallets.apply(_admin(WalletCredited, id_tag="PREPAID1", amount="25"))
    assert entry.id_tag == "Prepaid1"  # the ledger keeps the wallet's spelling
    assert wallets.hold_for("prepaid1") == Decimal("10")
    assert not wallets.too_low("pREPAID1")


def test_data_transfer_vendor_and_message_ids_match_in_any_case() -> None:
    vendors = {"com.Acme": ["GetPrice"]}
    assert data_transfer(vendors, {"vendorId": "COM.ACME", "messageId": "getprice"}) == "Accepted"
    assert data_transfer(vendors, {"vendorId": "com.acme", "messageId": "Other"}) == (
        "UnknownMessageId"
    )
