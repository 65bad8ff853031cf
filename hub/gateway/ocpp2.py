"""How the hub answers what an OCPP 2.0.1 or 2.1 charging station sends: pure functions of the
request, the policy and the registry, as for 1.6 (``ocpp16``), built once per version from
its generated types.

Every message a station may send gets an answer valid under its version's schema, each frame
stored before its answer as always:

- BootNotification, Heartbeat, Authorize, TransactionEvent and DataTransfer under the same
  policies as 1.6, and SignCertificate under the same CA;
- the notifications whose answer carries nothing (StatusNotification, MeterValues,
  NotifyReport, NotifyEvent, ... and 2.1's DER, settlement, priority and battery-swap ones);
- what the hub has no service for yet (ISO 15118 contract certificates, OCSP, EV charging
  needs, dynamic schedules, VAT numbers) gets the refusal each message defines, with a
  ``statusInfo`` saying why, so the station falls back as the specification intends.

A CSMS-to-station action sent by a station stays NotImplemented.

What the frames mean is the charging domain's (``hub.domain.charging``): a TransactionEvent
is the same transaction facts as 1.6's StartTransaction, MeterValues and StopTransaction.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Final

import msgspec

from hub.gateway.ocpp16 import (
    Context,
    Handler,
    boot_status,
    data_transfer_status,
    id_tag_status,
)
from hub.registry import format_time
from schemas.ocpp import v21, v201

# What a charging station sends whose answer has no required field, in both versions.
_ACKNOWLEDGED: Final = (
    "StatusNotification",
    "MeterValues",
    "NotifyReport",
    "NotifyEvent",
    "NotifyMonitoringReport",
    "SecurityEventNotification",
    "FirmwareStatusNotification",
    "LogStatusNotification",
    "PublishFirmwareStatusNotification",
    "NotifyChargingLimit",
    "ClearedChargingLimit",
    "ReportChargingProfiles",
    "ReservationStatusUpdate",
    "NotifyCustomerInformation",
    "NotifyDisplayMessages",
)
# ... and those 2.1 added.
_ACKNOWLEDGED_21: Final = (
    "BatterySwap",
    "ClosePeriodicEventStream",
    "NotifyDERAlarm",
    "NotifyDERStartStop",
    "NotifyPriorityCharging",
    "NotifySettlement",
    "ReportDERControl",
)
# statusInfo.reasonCode is at most 20 characters.
_NO_SERVICE: Final = "NotSupported"


def handlers(types: ModuleType) -> dict[str, Handler]:
    """The answers of one 2.x version, from its module of generated types."""

    def make(name: str, **fields: object) -> msgspec.Struct:
        made: type[msgspec.Struct] = getattr(types, name)
        return made(**fields)

    def why_not(detail: str) -> msgspec.Struct:
        return make("StatusInfo", reason_code=_NO_SERVICE, additional_info=detail)

    def boot_notification(request: Any, ctx: Context) -> msgspec.Struct:
        return make(
            "BootNotificationResponse",
            current_time=format_time(ctx.now),
            interval=ctx.settings.heartbeat_interval_s,
            status=boot_status(ctx),
        )

    def heartbeat(request: Any, ctx: Context) -> msgspec.Struct:
        return make("HeartbeatResponse", current_time=format_time(ctx.now))

    def id_token_info(id_token: Any, ctx: Context) -> msgspec.Struct:
        return make("IdTokenInfo", status=id_tag_status(id_token.id_token, ctx))

    def authorize(request: Any, ctx: Context) -> msgspec.Struct:
        return make("AuthorizeResponse", id_token_info=id_token_info(request.id_token, ctx))

    def transaction_event(request: Any, ctx: Context) -> msgspec.Struct:
        # An event that carries an id token asks for its verdict (E03/E05 in 2.0.1).
        if isinstance(request.id_token, msgspec.UnsetType):
            return make("TransactionEventResponse")
        return make("TransactionEventResponse", id_token_info=id_token_info(request.id_token, ctx))

    def data_transfer(request: Any, ctx: Context) -> msgspec.Struct:
        status = data_transfer_status(request.vendor_id, request.message_id, ctx)
        return make("DataTransferResponse", status=status)

    def sign_certificate(request: Any, ctx: Context) -> msgspec.Struct:
        # As in 1.6: Accepted means the CSR will be signed and sent in CertificateSigned.
        signable = ctx.certificate is not None and ctx.certificate.signable
        return make("SignCertificateResponse", status="Accepted" if signable else "Rejected")

    def get_15118_ev_certificate(request: Any, ctx: Context) -> msgspec.Struct:
        return make(
            "Get15118EVCertificateResponse",
            status="Failed",
            exi_response="",
            status_info=why_not("the hub brokers no ISO 15118 contract certificates"),
        )

    def get_certificate_status(request: Any, ctx: Context) -> msgspec.Struct:
        return make(
            "GetCertificateStatusResponse",
            status="Failed",
            status_info=why_not("the hub asks no OCSP responder"),
        )

    def get_certificate_chain_status(request: Any, ctx: Context) -> msgspec.Struct:
        # One status per certificate asked about, each Failed: the hub checks none.
        return make(
            "GetCertificateChainStatusResponse",
            certificate_status=[
                make(
                    "CertificateStatus",
                    certificate_hash_data=asked.certificate_hash_data,
                    source=asked.source,
                    status="Failed",
                    next_update=format_time(ctx.now),
                )
                for asked in request.certificate_status_requests
            ],
        )

    def notify_ev_charging_needs(request: Any, ctx: Context) -> msgspec.Struct:
        # K15: the CSMS accepts only if it will send a schedule; the hub computes none for
        # an EV's needs yet. 2.1 has a word for exactly that.
        status = "NoChargingProfile" if types is v21 else "Rejected"
        return make(
            "NotifyEVChargingNeedsResponse",
            status=status,
            status_info=why_not("the hub computes no schedule for an EV's needs yet"),
        )

    def notify_ev_charging_schedule(request: Any, ctx: Context) -> msgspec.Struct:
        return make("NotifyEVChargingScheduleResponse", status="Accepted")

    def open_periodic_event_stream(request: Any, ctx: Context) -> msgspec.Struct:
        # Its SENDs are stored like every other frame.
        return make("OpenPeriodicEventStreamResponse", status="Accepted")

    def pull_dynamic_schedule_update(request: Any, ctx: Context) -> msgspec.Struct:
        return make(
            "PullDynamicScheduleUpdateResponse",
            status="Rejected",
            status_info=why_not("the hub keeps no dynamic schedules"),
        )

    def vat_number_validation(request: Any, ctx: Context) -> msgspec.Struct:
        return make(
            "VatNumberValidationResponse",
            vat_number=request.vat_number,
            status="Rejected",
            status_info=why_not("the hub validates no VAT numbers"),
        )

    def acknowledged(response: type[msgspec.Struct]) -> Handler:
        def handler(request: Any, ctx: Context) -> msgspec.Struct:
            return response()

        return handler

    answered = _ACKNOWLEDGED + (_ACKNOWLEDGED_21 if types is v21 else ())
    table: dict[str, Handler] = {
        action: acknowledged(getattr(types, f"{action}Response")) for action in answered
    }
    table.update(
        BootNotification=boot_notification,
        Heartbeat=heartbeat,
        Authorize=authorize,
        TransactionEvent=transaction_event,
        DataTransfer=data_transfer,
        SignCertificate=sign_certificate,
        Get15118EVCertificate=get_15118_ev_certificate,
        GetCertificateStatus=get_certificate_status,
        NotifyEVChargingNeeds=notify_ev_charging_needs,
        NotifyEVChargingSchedule=notify_ev_charging_schedule,
    )
    if types is v21:
        table.update(
            GetCertificateChainStatus=get_certificate_chain_status,
            OpenPeriodicEventStream=open_periodic_event_stream,
            PullDynamicScheduleUpdate=pull_dynamic_schedule_update,
            VatNumberValidation=vat_number_validation,
        )
    return table


HANDLERS_201: Final = handlers(v201)
HANDLERS_21: Final = handlers(v21)
