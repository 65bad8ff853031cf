"""Pieces the command API tests share: an ocpp-library charger that answers every
central-system command, sample bodies for every endpoint, tokens and an HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result

from hub.tokens import Role, mint
from tests.integration.fanout_helpers import SECRET, messages_until, ui_socket
from tests.integration.helpers import ocpp_charger

# What the charger answers to each action, as call_result keyword arguments.
ANSWERS: Final[dict[str, dict[str, Any]]] = {
    "RemoteStartTransaction": {"status": "Accepted"},
    "RemoteStopTransaction": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
    "Reset": {"status": "Accepted"},
    "ChangeAvailability": {"status": "Scheduled"},
    "GetConfiguration": {
        "configuration_key": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
    },
    "ChangeConfiguration": {"status": "Accepted"},
    "TriggerMessage": {"status": "Accepted"},
    "DataTransfer": {"status": "Accepted", "data": "pong"},
    "GetDiagnostics": {"file_name": "diag.zip"},
    "UpdateFirmware": {},
    "ReserveNow": {"status": "Accepted"},
    "CancelReservation": {"status": "Accepted"},
    "ClearCache": {"status": "Accepted"},
    "SendLocalList": {"status": "Accepted"},
    "GetLocalListVersion": {"list_version": 7},
    "SetChargingProfile": {"status": "Accepted"},
    "ClearChargingProfile": {"status": "Accepted"},
    "GetCompositeSchedule": {"status": "Accepted", "connector_id": 1},
    "ExtendedTriggerMessage": {"status": "Accepted"},
    "GetLog": {"status": "Accepted", "filename": "log.txt"},
    "SignedUpdateFirmware": {"status": "Accepted"},
    "CertificateSigned": {"status": "Accepted"},
    "InstallCertificate": {"status": "Accepted"},
    "DeleteCertificate": {"status": "Accepted"},
    "GetInstalledCertificateIds": {"status": "NotFound"},
}

FUTURE: Final = "2027-01-01T00:00:00Z"


def _self_signed(common_name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


# A certificate chain for CertificateSigned: the API sends only what parses as one.
CHAIN: Final = _self_signed("CP-1")
PROFILE: Final = {
    "chargingProfileId": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Absolute",
    "chargingSchedule": {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
    },
}
# (method, endpoint, body or None, query) -> the action it must send.
SAMPLES: Final[list[tuple[str, str, Any, dict[str, str], str]]] = [
    ("POST", "remote-start", {"idTag": "TAG-1", "connectorId": 1}, {}, "RemoteStartTransaction"),
    ("POST", "remote-stop", {"transactionId": 42}, {}, "RemoteStopTransaction"),
    ("POST", "unlock", {"connectorId": 1}, {}, "UnlockConnector"),
    ("POST", "reset", {"type": "Soft"}, {}, "Reset"),
    (
        "POST",
        "change-availability",
        {"connectorId": 1, "type": "Inoperative"},
        {},
        "ChangeAvailability",
    ),
    ("GET", "configuration", None, {"key": "HeartbeatInterval"}, "GetConfiguration"),
    (
        "PUT",
        "configuration",
        {"key": "HeartbeatInterval", "value": "60"},
        {},
        "ChangeConfiguration",
    ),
    (
        "POST",
        "trigger-message",
        {"requestedMessage": "StatusNotification", "connectorId": 1},
        {},
        "TriggerMessage",
    ),
    (
        "POST",
        "data-transfer",
        {"vendorId": "acme", "messageId": "ping", "data": "x"},
        {},
        "DataTransfer",
    ),
    ("POST", "get-diagnostics", {"location": "ftp://example.com/diag"}, {}, "GetDiagnostics"),
    (
        "POST",
        "update-firmware",
        {"location": "https://example.com/fw", "retrieveDate": FUTURE},
        {},
        "UpdateFirmware",
    ),
    (
        "POST",
        "reserve-now",
        {"connectorId": 1, "expiryDate": FUTURE, "idTag": "TAG-1", "reservationId": 7},
        {},
        "ReserveNow",
    ),
    ("POST", "cancel-reservation", {"reservationId": 7}, {}, "CancelReservation"),
    ("POST", "clear-cache", None, {}, "ClearCache"),
    (
        "POST",
        "send-local-list",
        {
            "listVersion": 2,
            "updateType": "Full",
            "localAuthorizationList": [{"idTag": "TAG-1", "idTagInfo": {"status": "Accepted"}}],
        },
        {},
        "SendLocalList",
    ),
    ("POST", "get-local-list-version", None, {}, "GetLocalListVersion"),
    (
        "POST",
        "charging-profiles",
        {"connectorId": 1, "csChargingProfiles": PROFILE},
        {},
        "SetChargingProfile",
    ),
    ("DELETE", "charging-profiles", {"id": 1}, {}, "ClearChargingProfile"),
    (
        "POST",
        "composite-schedule",
        {"connectorId": 1, "duration": 3600},
        {},
        "GetCompositeSchedule",
    ),
    (
        "POST",
        "extended-trigger-message",
        {"requestedMessage": "BootNotification"},
        {},
        "ExtendedTriggerMessage",
    ),
    (
        "POST",
        "get-log",
        {
            "logType": "DiagnosticsLog",
            "requestId": 1,
            "log": {"remoteLocation": "https://example.com/logs"},
        },
        {},
        "GetLog",
    ),
    (
        "POST",
        "signed-update-firmware",
        {
            "requestId": 1,
            "firmware": {
                "location": "https://example.com/fw",
                "retrieveDateTime": FUTURE,
                "signingCertificate": "PEM",
                "signature": "c2ln",
            },
        },
        {},
        "SignedUpdateFirmware",
    ),
    ("POST", "certificate-signed", {"certificateChain": CHAIN}, {}, "CertificateSigned"),
    (
        "POST",
        "install-certificate",
        {"certificateType": "CentralSystemRootCertificate", "certificate": "PEM"},
        {},
        "InstallCertificate",
    ),
    (
        "POST",
        "delete-certificate",
        {
            "certificateHashData": {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": "a",
                "issuerKeyHash": "b",
                "serialNumber": "c",
            }
        },
        {},
        "DeleteCertificate",
    ),
    (
        "POST",
        "get-installed-certificate-ids",
        {"certificateType": "CentralSystemRootCertificate"},
        {},
        "GetInstalledCertificateIds",
    ),
]


def _handler(action: str) -> Any:
    async def handle(self: AnsweringCharger, **kwargs: Any) -> Any:
        self.received.append((action, kwargs))
        if action == "ChangeConfiguration" and kwargs.get("key") == "ReadOnly":
            return call_result.ChangeConfiguration(status="Rejected")
        if action == "UnlockConnector" and kwargs.get("connector_id") == 9:
            raise InternalError(description="connector 9 is on fire")
        if action == "RemoteStartTransaction" and kwargs.get("id_tag") == "SLOW":
            await asyncio.sleep(30)
        if action == "Reset":
            await asyncio.sleep(0.005)  # long enough for concurrent commands to overlap
        return getattr(call_result, action)(**self.answers.get(action, ANSWERS[action]))

    handle.__name__ = f"on_{action}"
    return on(action)(handle)


class AnsweringCharger(ChargePoint):  # type: ignore[misc]  # the ocpp library has no hints
    """Answers every command from ANSWERS, or from ``answers`` where a test put its own;
    rejects ChangeConfiguration of ``ReadOnly``, answers a CALLERROR to UnlockConnector 9,
    never answers RemoteStart of ``SLOW``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, dict[str, Any]] = {}
        super().__init__(*args, **kwargs)


for _action in ANSWERS:
    setattr(AnsweringCharger, f"on_{_action}", _handler(_action))


def api_token(
    role: Role = "operator", chargers: list[str] | str = "*", subject: str = "alice"
) -> str:
    scope: Any = chargers
    return mint(SECRET, "HS256", chargers=scope, ttl_s=600, role=role, subject=subject)


@contextlib.asynccontextmanager
async def online(
    port: int,
    ui_port: int,
    charge_point_id: str,
    charger_class: type[AnsweringCharger] = AnsweringCharger,
    **connect_kwargs: Any,
) -> AsyncIterator[AnsweringCharger]:
    """An answering charger, connected once the API's live state has seen it connect."""
    async with ui_socket(
        ui_port, f"/ws/chargers/{charge_point_id}", token_value=api_token("viewer")
    ) as ws:
        async with ocpp_charger(
            port, charge_point_id, charger_class=charger_class, **connect_kwargs
        ) as cp:
            await messages_until(
                ws, lambda m: m["type"] == "connection" and m["state"] == "connected"
            )
            yield cp


class Api:
    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{port}"

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or api_token()}"} if token != "" else {}
        async with self.session.request(
            method,
            f"{self.base}{path}",
            json=body if data is None and body is not None else None,
            data=data,
            params=params,
            headers=headers,
        ) as response:
            return response.status, await response.json()


@contextlib.asynccontextmanager
async def api_client(port: int) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, port)
