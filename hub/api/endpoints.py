"""Every command endpoint: its path, method, OCPP action, the versions it serves and the
request body type of each.

Bodies are the OCPP request payloads themselves (camelCase JSON), decoded with the same
generated types and rules the gateway applies, so a bad body is refused with the JSON path
of the offending field before anything is stored or sent.

One path serves every version an operation exists in (``POST reset`` takes 1.6's
``{"type": "Soft"}`` and 2.x's ``{"type": "Immediate"}``); an operation of one version only
has its own path (``POST get-variables``). Which version a charger speaks is decided where
its connection is, at the gateway, when the command arrives: a body valid for any of the
endpoint's versions is recorded and sent with those versions, and the gateway refuses it
(``wrong_version``, HTTP 409) for a charger connected with another, or checks it against
the connection's own version (``invalid``, HTTP 400). No race with a reconnect under
another version is possible: the check and the CALL are on the same connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType
from typing import Final, Literal

import msgspec

from hub.domain.certificates import chain_problem
from schemas.events import OcppVersion
from schemas.ocpp import PayloadError, v16, v21, v201, validate_call
from schemas.ocpp.formats import check_formats

Method = Literal["GET", "POST", "PUT", "DELETE"]

MODULES: Final[dict[OcppVersion, ModuleType]] = {"1.6": v16, "2.0.1": v201, "2.1": v21}
V16: Final[tuple[OcppVersion, ...]] = ("1.6",)
V2: Final[tuple[OcppVersion, ...]] = ("2.0.1", "2.1")
V21: Final[tuple[OcppVersion, ...]] = ("2.1",)
EVERY: Final[tuple[OcppVersion, ...]] = ("1.6", "2.0.1", "2.1")


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # the path segment under /api/v1/chargers/{id}/
    method: Method
    action: str  # the OCPP action it sends
    summary: str
    versions: tuple[OcppVersion, ...] = V16  # the OCPP versions it exists in

    def request_type(self, version: OcppVersion) -> type[msgspec.Struct]:
        return MODULES[version].REQUESTS[self.action]  # type: ignore[no-any-return]

    def response_type(self, version: OcppVersion) -> type[msgspec.Struct]:
        return MODULES[version].RESPONSES[self.action]  # type: ignore[no-any-return]

    @property
    def has_body(self) -> bool:
        # GET configuration takes its keys from the query string instead.
        return self.method != "GET"

    @property
    def serves(self) -> str:
        """Its versions as a sentence names them: ``OCPP 1.6``, ``OCPP 2.0.1 and 2.1``."""
        return "OCPP " + " and ".join(self.versions).replace(" and ", ", ", len(self.versions) - 2)


def kebab(action: str) -> str:
    """An action's path segment: ``GetVariables`` -> ``get-variables``, ``AFRRSignal`` ->
    ``afrr-signal``, ``ClearDERControl`` -> ``clear-der-control``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", action).lower()


def _only(versions: tuple[OcppVersion, ...], *actions: tuple[str, str]) -> tuple[Endpoint, ...]:
    """POST endpoints named after their actions, for the operations ``versions`` alone have."""
    return tuple(Endpoint(kebab(a), "POST", a, summary, versions) for a, summary in actions)


ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint("remote-start", "POST", "RemoteStartTransaction", "Start a transaction remotely"),
    Endpoint("remote-stop", "POST", "RemoteStopTransaction", "Stop a transaction remotely"),
    Endpoint("unlock", "POST", "UnlockConnector", "Unlock a connector", EVERY),
    Endpoint("reset", "POST", "Reset", "Reset the charger", EVERY),
    Endpoint(
        "change-availability",
        "POST",
        "ChangeAvailability",
        "Make a connector (in)operative",
        EVERY,
    ),
    Endpoint(
        "configuration", "GET", "GetConfiguration", "Read configuration keys (?key=, repeatable)"
    ),
    Endpoint("configuration", "PUT", "ChangeConfiguration", "Change one configuration key"),
    Endpoint(
        "trigger-message", "POST", "TriggerMessage", "Ask the charger to send a message", EVERY
    ),
    Endpoint("data-transfer", "POST", "DataTransfer", "Vendor-specific data transfer", EVERY),
    Endpoint("get-diagnostics", "POST", "GetDiagnostics", "Upload diagnostics to a location"),
    Endpoint(
        "update-firmware", "POST", "UpdateFirmware", "Install firmware from a location", EVERY
    ),
    Endpoint("reserve-now", "POST", "ReserveNow", "Reserve a connector or EVSE", EVERY),
    Endpoint("cancel-reservation", "POST", "CancelReservation", "Cancel a reservation", EVERY),
    Endpoint("clear-cache", "POST", "ClearCache", "Clear the authorization cache", EVERY),
    Endpoint(
        "send-local-list", "POST", "SendLocalList", "Send the local authorization list", EVERY
    ),
    Endpoint(
        "get-local-list-version",
        "POST",
        "GetLocalListVersion",
        "Read the local list version",
        EVERY,
    ),
    Endpoint("charging-profiles", "POST", "SetChargingProfile", "Set a charging profile", EVERY),
    Endpoint(
        "charging-profiles", "DELETE", "ClearChargingProfile", "Clear charging profiles", EVERY
    ),
    Endpoint(
        "composite-schedule",
        "POST",
        "GetCompositeSchedule",
        "Read the composite schedule",
        EVERY,
    ),
    Endpoint(
        "extended-trigger-message",
        "POST",
        "ExtendedTriggerMessage",
        "Security extension: trigger a message",
    ),
    Endpoint("get-log", "POST", "GetLog", "Upload a log to a location", EVERY),
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
        "Send the charger its signed certificate chain (PEM)",
        EVERY,
    ),
    Endpoint("install-certificate", "POST", "InstallCertificate", "Install a CA", EVERY),
    Endpoint("delete-certificate", "POST", "DeleteCertificate", "Delete a certificate", EVERY),
    Endpoint(
        "get-installed-certificate-ids",
        "POST",
        "GetInstalledCertificateIds",
        "List installed certificates",
        EVERY,
    ),
    *_only(
        V2,
        ("RequestStartTransaction", "Start a transaction remotely"),
        ("RequestStopTransaction", "Stop a transaction remotely"),
        ("GetTransactionStatus", "Whether a transaction is ongoing, messages queued for it"),
        ("GetVariables", "Read device model variables"),
        ("SetVariables", "Change device model variables"),
        ("GetBaseReport", "Ask for a report of the device model (NotifyReport parts)"),
        ("GetReport", "Ask for a report of selected components and variables"),
        ("SetNetworkProfile", "Set a network connection profile"),
        ("GetChargingProfiles", "Ask for the installed charging profiles"),
        ("SetDisplayMessage", "Show a message on the charger's display"),
        ("GetDisplayMessages", "Ask for the display messages"),
        ("ClearDisplayMessage", "Remove a display message"),
        ("CustomerInformation", "Ask for, or clear, a customer's data"),
        ("CostUpdated", "Send a transaction's running cost"),
        ("PublishFirmware", "Publish firmware to local controllers"),
        ("UnpublishFirmware", "Stop publishing firmware"),
        ("GetMonitoringReport", "Ask for a report of the monitors"),
        ("SetMonitoringBase", "Set the monitoring base"),
        ("SetMonitoringLevel", "Set the monitoring severity level"),
        ("SetVariableMonitoring", "Set variable monitors"),
        ("ClearVariableMonitoring", "Remove variable monitors"),
    ),
    *_only(
        V21,
        ("AFRRSignal", "Send an aFRR signal"),
        ("AdjustPeriodicEventStream", "Adjust a periodic event stream"),
        ("ChangeTransactionTariff", "Change the tariff of a transaction"),
        ("ClearDERControl", "Remove DER controls"),
        ("ClearTariffs", "Remove tariffs"),
        ("GetDERControl", "Ask for DER controls"),
        ("GetPeriodicEventStream", "Ask for the periodic event streams"),
        ("GetTariffs", "Ask for the tariffs"),
        ("NotifyAllowedEnergyTransfer", "Tell the allowed energy transfer modes"),
        ("NotifyWebPaymentStarted", "Tell that a web payment started"),
        ("RequestBatterySwap", "Ask for a battery swap"),
        ("SetDERControl", "Set a DER control"),
        ("SetDefaultTariff", "Set the default tariff"),
        ("UpdateDynamicSchedule", "Update a dynamic charging schedule"),
        ("UsePriorityCharging", "Start or stop priority charging"),
    ),
)

BY_ROUTE: Final[dict[tuple[str, str], Endpoint]] = {(e.method, e.name): e for e in ENDPOINTS}

_encoder: Final = msgspec.json.Encoder()


class BadBody(Exception):
    """A body the charger must never see; ``str()`` names the field (its JSON path)."""


def payload_for(endpoint: Endpoint, body: bytes, keys: list[str]) -> bytes:
    """The CALL payload for a request: the body, valid for one of the endpoint's versions at
    least, re-encoded canonically (as the first version it is valid for reads it).

    ``keys`` are GET configuration's ``?key=`` values. An empty body counts as ``{}`` (for
    ClearCache and friends, and for a DELETE without filters). A body no version takes is
    refused with each version's reason, the same reasons said once.
    """
    if not endpoint.has_body:
        body = _encoder.encode({"key": keys} if keys else {})
    elif not body.strip():
        body = b"{}"
    problems: dict[str, list[OcppVersion]] = {}
    for version in endpoint.versions:
        checked = _checked(version, endpoint.action, body)
        if isinstance(checked, bytes):
            return checked
        problems.setdefault(checked, []).append(version)
    if len(problems) == 1:
        raise BadBody(next(iter(problems)))
    # A body one version reads deeper into than the others is a body of that version with a
    # mistake in it: its reason alone says where (a 1.6 ReserveNow with a bad expiryDate is
    # not also "unknown field connectorId" to 2.x).
    depths = {why: _depth(why) for why in problems}
    deepest = max(depths.values())
    if sum(depth == deepest for depth in depths.values()) == 1:
        raise BadBody(next(why for why, depth in depths.items() if depth == deepest))
    raise BadBody(
        "; ".join(f"OCPP {', '.join(versions)}: {why}" for why, versions in problems.items())
    )


def _depth(why: str) -> int:
    """How deep the JSON path at the end of a reason goes (``$``: 0, ``$.a.b[2]``: 3)."""
    _, marker, path = why.rpartition(" - at `$")
    if not marker:
        return 0
    path = path.rstrip("`")
    return path.count(".") + path.count("[")


def _checked(version: OcppVersion, action: str, body: bytes) -> bytes | str:
    """The canonical payload, or why ``version`` refuses it."""
    decoded = validate_call(version, action, body)
    if isinstance(decoded, PayloadError):
        return decoded.description
    payload = _encoder.encode(decoded)
    # Formats (date-time, uri) are not part of the types; a charger must not get "tomorrow".
    if (problem := check_formats(version, "request", action, payload)) is not None:
        return problem.description
    chain = getattr(decoded, "certificate_chain", None)
    if action == "CertificateSigned" and isinstance(chain, str):
        # A charger stores what it gets as its certificate: it must be one.
        unusable = chain_problem(chain)
        if unusable is not None:
            return f"{unusable} - at `$.certificateChain`"
    return payload
