"""How the hub answers each CALL an OCPP 1.6 charger can send: pure functions of the request,
the policy and the registry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from hub.config import GatewaySettings
from hub.domain.certificates import Verdict
from hub.domain.cistring import ci
from hub.registry import Registry, format_time
from schemas.ocpp import v16


class Context(msgspec.Struct, frozen=True, kw_only=True):
    charge_point_id: str
    now: datetime
    settings: GatewaySettings
    registry: Registry
    transaction_id: int = 0
    # SignCertificate: whether its CSR will be signed (None: no CA was asked).
    certificate: Verdict | None = None


Handler = Callable[[Any, Context], msgspec.Struct]


def _id_tag_info(id_tag: str, ctx: Context) -> v16.IdTagInfo:
    # A prepaid tag without the money for a session is refused under either policy.
    if ctx.registry.wallets.too_low(id_tag):
        return v16.IdTagInfo(status="Blocked")
    if ctx.settings.authorize_policy == "accept":
        return v16.IdTagInfo(status="Accepted")
    verdict = ctx.registry.authorize(id_tag, ctx.now)
    return v16.IdTagInfo(
        status=verdict.status,
        expiry_date=verdict.expiry_date or msgspec.UNSET,
        parent_id_tag=verdict.parent_id_tag or msgspec.UNSET,
    )


def boot_status(ctx: Context) -> Literal["Accepted", "Pending", "Rejected"]:
    """A BootNotification's answer under the hub's boot policy, in every OCPP version."""
    policy = ctx.settings.boot_policy
    if policy == "pending":
        # Pending lasts until an operator accepts the charger (OCPP 1.6 §4.2: the central
        # system may configure it meanwhile).
        return "Accepted" if ctx.charge_point_id in ctx.registry.accepted else "Pending"
    if policy == "known" and not ctx.registry.is_known(ctx.charge_point_id):
        return "Rejected"
    return "Accepted"


def id_tag_status(id_tag: str, ctx: Context) -> str:
    """Authorize's verdict on an id tag (an id token in 2.x), in 1.6's words, which 2.x
    keeps for these."""
    return _id_tag_info(id_tag, ctx).status


def boot_notification(
    request: v16.BootNotificationRequest, ctx: Context
) -> v16.BootNotificationResponse:
    return v16.BootNotificationResponse(
        status=boot_status(ctx),
        current_time=format_time(ctx.now),
        interval=ctx.settings.heartbeat_interval_s,
    )


def heartbeat(request: v16.HeartbeatRequest, ctx: Context) -> v16.HeartbeatResponse:
    return v16.HeartbeatResponse(current_time=format_time(ctx.now))


def authorize(request: v16.AuthorizeRequest, ctx: Context) -> v16.AuthorizeResponse:
    return v16.AuthorizeResponse(id_tag_info=_id_tag_info(request.id_tag, ctx))


def start_transaction(
    request: v16.StartTransactionRequest, ctx: Context
) -> v16.StartTransactionResponse:
    return v16.StartTransactionResponse(
        id_tag_info=_id_tag_info(request.id_tag, ctx), transaction_id=ctx.transaction_id
    )


def stop_transaction(
    request: v16.StopTransactionRequest, ctx: Context
) -> v16.StopTransactionResponse:
    if isinstance(request.id_tag, msgspec.UnsetType):
        return v16.StopTransactionResponse()
    return v16.StopTransactionResponse(id_tag_info=_id_tag_info(request.id_tag, ctx))


def data_transfer_status(
    vendor_id: str, message_id: str | msgspec.UnsetType, ctx: Context
) -> Literal["Accepted", "UnknownVendorId", "UnknownMessageId"]:
    """A DataTransfer's answer under the vendor policy, in every OCPP version. The policy only
    shapes the answer; the event keeps the data either way."""
    vendors = ctx.settings.data_transfer_vendors
    if not vendors:
        return "Accepted"
    # vendorId (CiString255) and messageId (CiString50) are compared without case.
    wanted = ci(vendor_id)
    accepted = next((ids for vendor, ids in vendors.items() if ci(vendor) == wanted), None)
    if accepted is None:
        return "UnknownVendorId"
    message = "" if isinstance(message_id, msgspec.UnsetType) else message_id
    if "*" not in accepted and ci(message) not in {ci(known) for known in accepted}:
        return "UnknownMessageId"
    return "Accepted"


def data_transfer(request: v16.DataTransferRequest, ctx: Context) -> v16.DataTransferResponse:
    status = data_transfer_status(request.vendor_id, request.message_id, ctx)
    return v16.DataTransferResponse(status=status)


def _empty(response: type[msgspec.Struct]) -> Handler:
    def handler(request: Any, ctx: Context) -> msgspec.Struct:
        return response()

    return handler


def sign_certificate(
    request: v16.SignCertificateRequest, ctx: Context
) -> v16.SignCertificateResponse:
    # Accepted means the CSR will be signed and sent back in CertificateSigned; without a
    # CA, or for a CSR the hub will not sign (not the charger's CN...), Rejected.
    signable = ctx.certificate is not None and ctx.certificate.signable
    return v16.SignCertificateResponse(status="Accepted" if signable else "Rejected")


HANDLERS: Final[dict[str, Handler]] = {
    "Authorize": authorize,
    "BootNotification": boot_notification,
    "DataTransfer": data_transfer,
    "DiagnosticsStatusNotification": _empty(v16.DiagnosticsStatusNotificationResponse),
    "FirmwareStatusNotification": _empty(v16.FirmwareStatusNotificationResponse),
    "Heartbeat": heartbeat,
    "LogStatusNotification": _empty(v16.LogStatusNotificationResponse),
    "MeterValues": _empty(v16.MeterValuesResponse),
    "SecurityEventNotification": _empty(v16.SecurityEventNotificationResponse),
    "SignCertificate": sign_certificate,
    "SignedFirmwareStatusNotification": _empty(v16.SignedFirmwareStatusNotificationResponse),
    "StartTransaction": start_transaction,
    "StatusNotification": _empty(v16.StatusNotificationResponse),
    "StopTransaction": stop_transaction,
}
