"""Baseline 1: a central system as the ocpp library's README would write it.

`ocpp.v16.ChargePoint` with an @on handler for every charger-initiated 1.6
action, the library's default schema validation on both request and answer,
and no persistence. The hub does strictly more work per message (it persists
every frame before replying), so this is the bar it should stay close to.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import unquote

from ocpp.routing import on as _ocpp_on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    DataTransferStatus,
    GenericStatus,
    RegistrationStatus,
)
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from bench.baselines import serve_until_signalled

F = TypeVar("F", bound=Callable[..., Any])

_transaction_ids = itertools.count(1)


def on(action: str) -> Callable[[F], F]:
    """The library's decorator, typed (it ships without annotations)."""
    return cast(Callable[[F], F], _ocpp_on(action))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _accepted() -> IdTagInfo:
    return IdTagInfo(status=AuthorizationStatus.accepted)


class CentralSystem(ChargePoint):  # type: ignore[misc]  # ocpp is untyped
    @on(Action.boot_notification)
    async def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=now(), interval=300, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=now())

    @on(Action.status_notification)
    async def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=_accepted())

    @on(Action.start_transaction)
    async def on_start_transaction(self, **_: Any) -> call_result.StartTransaction:
        return call_result.StartTransaction(
            transaction_id=next(_transaction_ids), id_tag_info=_accepted()
        )

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, **_: Any) -> call_result.StopTransaction:
        return call_result.StopTransaction(id_tag_info=_accepted())

    @on(Action.meter_values)
    async def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(Action.data_transfer)
    async def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status=DataTransferStatus.accepted)

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status(self, **_: Any) -> call_result.DiagnosticsStatusNotification:
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, **_: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @on(Action.security_event_notification)
    async def on_security_event(self, **_: Any) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @on(Action.log_status_notification)
    async def on_log_status(self, **_: Any) -> call_result.LogStatusNotification:
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    async def on_signed_firmware_status(
        self, **_: Any
    ) -> call_result.SignedFirmwareStatusNotification:
        return call_result.SignedFirmwareStatusNotification()

    @on(Action.sign_certificate)
    async def on_sign_certificate(self, **_: Any) -> call_result.SignCertificate:
        return call_result.SignCertificate(status=GenericStatus.accepted)


def handler_for(
    central_system: Callable[[str, ServerConnection], Any],
) -> Callable[[ServerConnection], Awaitable[None]]:
    """Serve each connection with a fresh `central_system(charge_point_id, ws)`."""

    async def handle(ws: ServerConnection) -> None:
        assert ws.request is not None
        charge_point_id = unquote(ws.request.path.rstrip("/").rsplit("/", 1)[-1])
        with contextlib.suppress(ConnectionClosed):
            await central_system(charge_point_id, ws).start()

    return handle


handle = handler_for(CentralSystem)


def main() -> int:
    return serve_until_signalled(handle, "ocpp library v16 central system (benchmark baseline)")


if __name__ == "__main__":
    raise SystemExit(main())
