"""How the hub answers what an OCPP 2.0.1 or 2.1 charging station sends, so far: pure
functions of the request, the policy and the registry, as for 1.6 (``ocpp16``), built once
per version from its generated types.

Answered: BootNotification, Heartbeat, Authorize and DataTransfer under the same policies as
1.6, and the
notifications whose answer carries nothing (StatusNotification, TransactionEvent,
MeterValues, NotifyReport, ...), each frame stored before its answer as always. What they
mean is the charging domain's (``hub.domain.charging``: a TransactionEvent is the same
transaction facts as 1.6's Start, MeterValues and Stop). Every other 2.x CALL is answered
NotImplemented.
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

# What a charging station sends whose answer has no required field.
_ACKNOWLEDGED: Final = (
    "StatusNotification",
    "TransactionEvent",
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


def handlers(types: ModuleType) -> dict[str, Handler]:
    """The answers of one 2.x version, from its module of generated types."""

    def boot_notification(request: Any, ctx: Context) -> msgspec.Struct:
        return types.BootNotificationResponse(  # type: ignore[no-any-return]
            current_time=format_time(ctx.now),
            interval=ctx.settings.heartbeat_interval_s,
            status=boot_status(ctx),
        )

    def heartbeat(request: Any, ctx: Context) -> msgspec.Struct:
        return types.HeartbeatResponse(current_time=format_time(ctx.now))  # type: ignore[no-any-return]

    def authorize(request: Any, ctx: Context) -> msgspec.Struct:
        status = id_tag_status(request.id_token.id_token, ctx)
        return types.AuthorizeResponse(  # type: ignore[no-any-return]
            id_token_info=types.IdTokenInfo(status=status)
        )

    def transaction_event(request: Any, ctx: Context) -> msgspec.Struct:
        # An event that carries an id token asks for its verdict (E03/E05 in 2.0.1).
        if isinstance(request.id_token, msgspec.UnsetType):
            return types.TransactionEventResponse()  # type: ignore[no-any-return]
        status = id_tag_status(request.id_token.id_token, ctx)
        return types.TransactionEventResponse(  # type: ignore[no-any-return]
            id_token_info=types.IdTokenInfo(status=status)
        )

    def data_transfer(request: Any, ctx: Context) -> msgspec.Struct:
        status = data_transfer_status(request.vendor_id, request.message_id, ctx)
        return types.DataTransferResponse(status=status)  # type: ignore[no-any-return]

    def acknowledged(response: type[msgspec.Struct]) -> Handler:
        def handler(request: Any, ctx: Context) -> msgspec.Struct:
            return response()

        return handler

    table: dict[str, Handler] = {
        action: acknowledged(getattr(types, f"{action}Response")) for action in _ACKNOWLEDGED
    }
    table.update(
        BootNotification=boot_notification,
        Heartbeat=heartbeat,
        Authorize=authorize,
        TransactionEvent=transaction_event,
        DataTransfer=data_transfer,
    )
    return table


HANDLERS_201: Final = handlers(v201)
HANDLERS_21: Final = handlers(v21)
