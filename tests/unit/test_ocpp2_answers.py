"""Every message an OCPP 2.0.1 or 2.1 charging station can send gets an answer that its
version's official schema accepts, from the pure handlers, without sockets: the station's
library validates answers, and one it cannot parse leaves it retrying."""

from __future__ import annotations

import json
from typing import Any, Final

import msgspec
import pytest
from ocpp.messages import MessageType, get_validator

from hub.domain.certificates import SIGNABLE
from hub.gateway import ocpp2
from schemas.ocpp import PayloadError, validate_call, validate_result
from tests.test_ocpp_validation import example, load_schemas
from tests.unit.test_handlers import ctx_of

# What the specification lets a charging station send as a CALL (2.0.1 part 2, and 2.1's
# additions); 2.1's NotifyPeriodicEventStream is a SEND, never answered.
FROM_STATIONS_201: Final = frozenset(
    {
        "Authorize",
        "BootNotification",
        "ClearedChargingLimit",
        "DataTransfer",
        "FirmwareStatusNotification",
        "Get15118EVCertificate",
        "GetCertificateStatus",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "NotifyChargingLimit",
        "NotifyCustomerInformation",
        "NotifyDisplayMessages",
        "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule",
        "NotifyEvent",
        "NotifyMonitoringReport",
        "NotifyReport",
        "PublishFirmwareStatusNotification",
        "ReportChargingProfiles",
        "ReservationStatusUpdate",
        "SecurityEventNotification",
        "SignCertificate",
        "StatusNotification",
        "TransactionEvent",
    }
)
FROM_STATIONS_21: Final = FROM_STATIONS_201 | {
    "BatterySwap",
    "ClosePeriodicEventStream",
    "GetCertificateChainStatus",
    "NotifyDERAlarm",
    "NotifyDERStartStop",
    "NotifyPriorityCharging",
    "NotifySettlement",
    "OpenPeriodicEventStream",
    "PullDynamicScheduleUpdate",
    "ReportDERControl",
    "VatNumberValidation",
}
HANDLERS: Final = {"2.0.1": ocpp2.HANDLERS_201, "2.1": ocpp2.HANDLERS_21}
FROM_STATIONS: Final = {"2.0.1": FROM_STATIONS_201, "2.1": FROM_STATIONS_21}
REQUESTS: Final = {
    (schema.version, schema.action): schema
    for version in HANDLERS
    for schema in load_schemas(version)
    if schema.kind == "request" and not schema.send
}


def answer(version: str, action: str, payload: dict[str, Any], **ctx: Any) -> dict[str, Any]:
    """The handler's answer to a request decoded as the gateway decodes it, checked against
    both our types and the official schema."""
    request = validate_call(version, action, json.dumps(payload).encode())
    assert not isinstance(request, PayloadError), request
    context = msgspec.structs.replace(ctx_of(), **ctx)
    response = HANDLERS[version][action](request, context)
    data = msgspec.json.encode(response)
    assert not isinstance(validate_result(version, action, data), PayloadError)
    document: dict[str, Any] = json.loads(data)
    get_validator(MessageType.CallResult, action, version).validate(document)
    return document


@pytest.mark.parametrize("version", HANDLERS)
def test_the_hub_answers_exactly_what_a_station_may_send(version: str) -> None:
    assert set(HANDLERS[version]) == FROM_STATIONS[version]


@pytest.mark.parametrize(
    ("version", "action"),
    sorted((version, action) for version in HANDLERS for action in FROM_STATIONS[version]),
)
@pytest.mark.parametrize("maximal", [False, True], ids=["required", "every_field"])
def test_every_station_message_gets_a_schema_valid_answer(
    version: str, action: str, maximal: bool
) -> None:
    schema = REQUESTS[version, action]
    payload = example(schema, schema.root, maximal)
    assert isinstance(payload, dict)
    answer(version, action, payload)


CSR_CALL: Final = {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}


@pytest.mark.parametrize("version", HANDLERS)
def test_a_csr_is_accepted_only_when_the_ca_will_sign_it(version: str) -> None:
    assert answer(version, "SignCertificate", CSR_CALL)["status"] == "Rejected"
    signed = answer(version, "SignCertificate", CSR_CALL, certificate=SIGNABLE)
    assert signed["status"] == "Accepted"


@pytest.mark.parametrize(
    ("version", "action", "payload", "status"),
    [
        ("2.0.1", "NotifyEVChargingNeeds", {"evseId": 1}, "Rejected"),
        ("2.1", "NotifyEVChargingNeeds", {"evseId": 1}, "NoChargingProfile"),
        ("2.1", "PullDynamicScheduleUpdate", {"chargingProfileId": 3}, "Rejected"),
        ("2.1", "VatNumberValidation", {"vatNumber": "NL123"}, "Rejected"),
        ("2.0.1", "GetCertificateStatus", {}, "Failed"),
        ("2.1", "Get15118EVCertificate", {}, "Failed"),
    ],
)
def test_what_the_hub_has_no_service_for_is_refused_with_the_reason(
    version: str, action: str, payload: dict[str, Any], status: str
) -> None:
    """The refusal each message defines, so the station falls back, with a statusInfo an
    operator reading the frame understands."""
    schema = REQUESTS[version, action]
    minimal = example(schema, schema.root, maximal=False)
    assert isinstance(minimal, dict)
    answered = answer(version, action, {**minimal, **payload})
    assert answered["status"] == status
    assert answered["statusInfo"]["reasonCode"] == "NotSupported"
    if action == "VatNumberValidation":
        assert answered["vatNumber"] == "NL123"


def test_a_chain_status_answers_each_certificate_asked_about() -> None:
    schema = REQUESTS["2.1", "GetCertificateChainStatus"]
    asked = example(schema, schema.root, maximal=False)
    assert isinstance(asked, dict)
    item = asked["certificateStatusRequests"][0]
    asked["certificateStatusRequests"] = [item, {**item, "source": "CRL"}]
    statuses = answer("2.1", "GetCertificateChainStatus", asked)["certificateStatus"]
    assert [(s["source"], s["status"]) for s in statuses] == [
        (item["source"], "Failed"),
        ("CRL", "Failed"),
    ]
