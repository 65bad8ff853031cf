"""Baseline 1 for OCPP 2.0.1: a CSMS as the ocpp library's README would write it.

The 2.0.1 counterpart of ocpp_lib_csms.py: `ocpp.v201.ChargePoint` with an @on handler for
every station-initiated 2.0.1 action, the library's default schema validation on both
request and answer, and no persistence. The hub with 2.0.1 allowed (`hub_full@2.0.1`) is
measured against it.
"""

from __future__ import annotations

from typing import Any

from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.datatypes import IdTokenInfoType
from ocpp.v201.enums import (
    Action,
    AuthorizationStatusEnumType,
    DataTransferStatusEnumType,
    GenericStatusEnumType,
    GetCertificateStatusEnumType,
    Iso15118EVCertificateStatusEnumType,
    NotifyEVChargingNeedsStatusEnumType,
    RegistrationStatusEnumType,
)

from bench.baselines import serve_until_signalled
from bench.baselines.ocpp_lib_csms import handler_for, now, on


def _accepted() -> IdTokenInfoType:
    return IdTokenInfoType(status=AuthorizationStatusEnumType.accepted)


class CentralSystem(ChargePoint):  # type: ignore[misc]  # ocpp is untyped
    @on(Action.boot_notification)
    async def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=now(), interval=300, status=RegistrationStatusEnumType.accepted
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=now())

    @on(Action.status_notification)
    async def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_token_info=_accepted())

    @on(Action.transaction_event)
    async def on_transaction_event(
        self, id_token: dict[str, Any] | None = None, **_: Any
    ) -> call_result.TransactionEvent:
        # As the hub does: an event that carries an id token gets its verdict.
        if id_token is None:
            return call_result.TransactionEvent()
        return call_result.TransactionEvent(id_token_info=_accepted())

    @on(Action.meter_values)
    async def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(Action.data_transfer)
    async def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status=DataTransferStatusEnumType.accepted)

    @on(Action.sign_certificate)
    async def on_sign_certificate(self, **_: Any) -> call_result.SignCertificate:
        return call_result.SignCertificate(status=GenericStatusEnumType.accepted)

    @on(Action.get_15118_ev_certificate)
    async def on_get_15118_ev_certificate(self, **_: Any) -> call_result.Get15118EVCertificate:
        return call_result.Get15118EVCertificate(
            status=Iso15118EVCertificateStatusEnumType.failed, exi_response=""
        )

    @on(Action.get_certificate_status)
    async def on_get_certificate_status(self, **_: Any) -> call_result.GetCertificateStatus:
        return call_result.GetCertificateStatus(status=GetCertificateStatusEnumType.failed)

    @on(Action.notify_ev_charging_needs)
    async def on_notify_ev_charging_needs(self, **_: Any) -> call_result.NotifyEVChargingNeeds:
        return call_result.NotifyEVChargingNeeds(
            status=NotifyEVChargingNeedsStatusEnumType.rejected
        )

    @on(Action.notify_ev_charging_schedule)
    async def on_notify_ev_charging_schedule(
        self, **_: Any
    ) -> call_result.NotifyEVChargingSchedule:
        return call_result.NotifyEVChargingSchedule(status=GenericStatusEnumType.accepted)

    @on(Action.notify_report)
    async def on_notify_report(self, **_: Any) -> call_result.NotifyReport:
        return call_result.NotifyReport()

    @on(Action.notify_event)
    async def on_notify_event(self, **_: Any) -> call_result.NotifyEvent:
        return call_result.NotifyEvent()

    @on(Action.notify_monitoring_report)
    async def on_notify_monitoring_report(self, **_: Any) -> call_result.NotifyMonitoringReport:
        return call_result.NotifyMonitoringReport()

    @on(Action.security_event_notification)
    async def on_security_event(self, **_: Any) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, **_: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    async def on_log_status(self, **_: Any) -> call_result.LogStatusNotification:
        return call_result.LogStatusNotification()

    @on(Action.publish_firmware_status_notification)
    async def on_publish_firmware_status(
        self, **_: Any
    ) -> call_result.PublishFirmwareStatusNotification:
        return call_result.PublishFirmwareStatusNotification()

    @on(Action.notify_charging_limit)
    async def on_notify_charging_limit(self, **_: Any) -> call_result.NotifyChargingLimit:
        return call_result.NotifyChargingLimit()

    @on(Action.cleared_charging_limit)
    async def on_cleared_charging_limit(self, **_: Any) -> call_result.ClearedChargingLimit:
        return call_result.ClearedChargingLimit()

    @on(Action.report_charging_profiles)
    async def on_report_charging_profiles(self, **_: Any) -> call_result.ReportChargingProfiles:
        return call_result.ReportChargingProfiles()

    @on(Action.reservation_status_update)
    async def on_reservation_status_update(self, **_: Any) -> call_result.ReservationStatusUpdate:
        return call_result.ReservationStatusUpdate()

    @on(Action.notify_customer_information)
    async def on_notify_customer_information(
        self, **_: Any
    ) -> call_result.NotifyCustomerInformation:
        return call_result.NotifyCustomerInformation()

    @on(Action.notify_display_messages)
    async def on_notify_display_messages(self, **_: Any) -> call_result.NotifyDisplayMessages:
        return call_result.NotifyDisplayMessages()


def main() -> int:
    return serve_until_signalled(
        handler_for(CentralSystem),
        "ocpp library v201 CSMS (benchmark baseline)",
        subprotocol="ocpp2.0.1",
    )


if __name__ == "__main__":
    raise SystemExit(main())
