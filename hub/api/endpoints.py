"""Every command endpoint: its path, method, OCPP action and request body type.

Bodies are the OCPP 1.6 request payloads themselves (camelCase JSON), decoded with the same
generated types and rules the gateway applies, so a bad body is refused with the JSON path
of the offending field before anything is stored or sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from hub.domain.certificates import chain_problem
from schemas.ocpp import PayloadError, v16, validate_call
from schemas.ocpp.formats import check_formats

Method = Literal["GET", "POST", "PUT", "DELETE"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # the path segment under /api/v1/chargers/{id}/
    method: Method
    action: str  # the OCPP 1.6 action it sends
    summary: str

    @property
    def request_type(self) -> type[msgspec.Struct]:
        return v16.REQUESTS[self.action]

    @property
    def response_type(self) -> type[msgspec.Struct]:
        return v16.RESPONSES[self.action]

    @property
    def has_body(self) -> bool:
        # GET configuration takes its keys from the query string instead.
        return self.method != "GET"


ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint("remote-start", "POST", "RemoteStartTransaction", "Start a transaction remotely"),
    Endpoint("remote-stop", "POST", "RemoteStopTransaction", "Stop a transaction remotely"),
    Endpoint("unlock", "POST", "UnlockConnector", "Unlock a connector"),
    Endpoint("reset", "POST", "Reset", "Reset the charger (Soft or Hard)"),
    Endpoint("change-availability", "POST", "ChangeAvailability", "Make a connector (in)operative"),
    Endpoint(
        "configuration", "GET", "GetConfiguration", "Read configuration keys (?key=, repeatable)"
    ),
    Endpoint("configuration", "PUT", "ChangeConfiguration", "Change one configuration key"),
    Endpoint("trigger-message", "POST", "TriggerMessage", "Ask the charger to send a message"),
    Endpoint("data-transfer", "POST", "DataTransfer", "Vendor-specific data transfer"),
    Endpoint("get-diagnostics", "POST", "GetDiagnostics", "Upload diagnostics to a location"),
    Endpoint("update-firmware", "POST", "UpdateFirmware", "Install firmware from a location"),
    Endpoint("reserve-now", "POST", "ReserveNow", "Reserve a connector for an id tag"),
    Endpoint("cancel-reservation", "POST", "CancelReservation", "Cancel a reservation"),
    Endpoint("clear-cache", "POST", "ClearCache", "Clear the authorization cache"),
    Endpoint("send-local-list", "POST", "SendLocalList", "Send the local authorization list"),
    Endpoint(
        "get-local-list-version", "POST", "GetLocalListVersion", "Read the local list version"
    ),
    Endpoint("charging-profiles", "POST", "SetChargingProfile", "Set a charging profile"),
    Endpoint("charging-profiles", "DELETE", "ClearChargingProfile", "Clear charging profiles"),
    Endpoint("composite-schedule", "POST", "GetCompositeSchedule", "Read the composite schedule"),
    Endpoint(
        "extended-trigger-message",
        "POST",
        "ExtendedTriggerMessage",
        "Security extension: trigger a message",
    ),
    Endpoint("get-log", "POST", "GetLog", "Security extension: upload a log"),
    Endpoint(
        "signed-update-firmware",
        "POST",
        "SignedUpdateFirmware",
        "Security extension: install signed firmware",
    ),
    Endpoint(
        "certificate-signed",
        "POST",
        "CertificateSigned",
        "Security extension: send the charger its signed certificate chain (PEM)",
    ),
    Endpoint(
        "install-certificate", "POST", "InstallCertificate", "Security extension: install a CA"
    ),
    Endpoint(
        "delete-certificate", "POST", "DeleteCertificate", "Security extension: delete a cert"
    ),
    Endpoint(
        "get-installed-certificate-ids",
        "POST",
        "GetInstalledCertificateIds",
        "Security extension: list installed certificates",
    ),
)

BY_ROUTE: Final[dict[tuple[str, str], Endpoint]] = {(e.method, e.name): e for e in ENDPOINTS}

_encoder: Final = msgspec.json.Encoder()


class BadBody(Exception):
    """A body the charger must never see; ``str()`` names the field (its JSON path)."""


def payload_for(endpoint: Endpoint, body: bytes, keys: list[str]) -> bytes:
    """The CALL payload for a request: the validated body, re-encoded canonically.

    ``keys`` are GET configuration's ``?key=`` values. An empty body counts as ``{}`` (for
    ClearCache and friends, and for a DELETE without filters).
    """
    if not endpoint.has_body:
        body = _encoder.encode({"key": keys} if keys else {})
    elif not body.strip():
        body = b"{}"
    decoded = validate_call("1.6", endpoint.action, body)
    if isinstance(decoded, PayloadError):
        raise BadBody(decoded.description)
    payload = _encoder.encode(decoded)
    # Formats (date-time, uri) are not part of the types; a charger must not get "tomorrow".
    if (problem := check_formats("1.6", "request", endpoint.action, payload)) is not None:
        raise BadBody(problem.description)
    if isinstance(decoded, v16.CertificateSignedRequest):
        # A charger stores what it gets as its certificate: it must be one.
        unusable = chain_problem(decoded.certificate_chain)
        if unusable is not None:
            raise BadBody(f"{unusable} - at `$.certificateChain`")
    return payload
