"""``(state, event, seq) -> UI messages``: a pure function of the charger's state and one event.

It never changes ``state`` (``state.apply`` does that afterwards, with these very messages), so
replaying the same events into a fresh state yields the same messages, byte for byte.

A charger's CALL and the hub's answer are consecutive events with the same unique id; what
only the answer knows (the transactionId, whether a boot was accepted, a DataTransfer's
status) is read from the answer, paired with the CALL kept in ``state.pending``.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Final

import msgspec

from hub.domain.command_tracking import command_message
from hub.fanout.state import ChargerState
from schemas.events import (
    ChargerConnected,
    ChargerDisconnected,
    ChargerReplaced,
    CommandFinished,
    Event,
    OcppFrame,
)
from schemas.ocpp import PayloadError, v16, validate_call, validate_result
from schemas.ui import (
    Boot,
    BootInfo,
    ChargerMessage,
    Connection,
    DataTransfer,
    DataTransferView,
    Meter,
    Reading,
    Status,
    TransactionStarted,
    TransactionStopped,
    TransactionUpdated,
)

ENERGY_REGISTER: Final = "Energy.Active.Import.Register"
POWER: Final = "Power.Active.Import"
SOC: Final = "SoC"

_json: Final = msgspec.json.Decoder()


def charger_call(event: Event) -> msgspec.Struct | None:
    """The decoded request of a CALL a 1.6 charger sent (None for anything else, or one that
    does not decode): ``translate`` and the live cost read the same one."""
    if not (
        isinstance(event, OcppFrame)
        and event.ocpp_version == "1.6"
        and event.direction == "in"
        and event.message_type == "CALL"
    ):
        return None
    request = validate_call("1.6", event.action, event.payload)
    return None if isinstance(request, PayloadError) else request


def translate(
    state: ChargerState, event: Event, seq: int, call: msgspec.Struct | None = None
) -> list[ChargerMessage]:
    """The UI messages of one stored event; ``call`` is its ``charger_call``, when the
    caller has it already."""
    match event:
        case OcppFrame():
            return _frame(state, event, seq, call)
        case ChargerConnected():
            return [_connection(event, seq, "connected")]
        case ChargerReplaced():
            return [_connection(event, seq, "replaced")]
        case CommandFinished():
            # The outcome of a command sent through the command API (hub/api).
            return [command_message(event, seq)]
        case ChargerDisconnected():
            # The close of a connection that was already replaced changes nothing for a UI.
            if event.connection_id != state.connection_id:
                return []
            return [
                Connection(
                    charge_point_id=event.charge_point_id,
                    seq=seq,
                    received_at=event.received_at,
                    state="disconnected",
                    close_code=event.close_code,
                    close_reason=event.close_reason,
                )
            ]
    return []


def _connection(event: ChargerConnected | ChargerReplaced, seq: int, what: Any) -> ChargerMessage:
    return Connection(
        charge_point_id=event.charge_point_id, seq=seq, received_at=event.received_at, state=what
    )


def _frame(
    state: ChargerState, frame: OcppFrame, seq: int, call: msgspec.Struct | None
) -> list[ChargerMessage]:
    if frame.ocpp_version != "1.6":
        return []
    if frame.direction == "in" and frame.message_type == "CALL":
        request = call if call is not None else charger_call(frame)
        match request:
            case v16.StatusNotificationRequest():
                return [
                    Status(
                        charge_point_id=frame.charge_point_id,
                        seq=seq,
                        ts=_text(request.timestamp),
                        received_at=frame.received_at,
                        connector_id=request.connector_id,
                        status=request.status,
                        error_code=request.error_code,
                        info=_text(request.info),
                    )
                ]
            case v16.MeterValuesRequest():
                return _meter(state, frame, seq, request)
            case v16.StopTransactionRequest():
                return [_stopped(state, frame, seq, request)]
        return []
    pending = state.pending
    if (
        frame.direction != "out"
        or frame.message_type != "CALLRESULT"
        or pending is None
        or pending.unique_id != frame.unique_id
    ):
        return []
    request = validate_call("1.6", pending.action, pending.payload)
    response = validate_result("1.6", pending.action, frame.payload)
    match request, response:
        case v16.BootNotificationRequest(), v16.BootNotificationResponse():
            boot = BootInfo(
                vendor=request.charge_point_vendor,
                model=request.charge_point_model,
                serial_number=_text(request.charge_point_serial_number)
                or _text(request.charge_box_serial_number),
                firmware_version=_text(request.firmware_version),
                status=response.status,
                interval=response.interval,
                ts=response.current_time,
            )
            return [
                Boot(
                    charge_point_id=frame.charge_point_id,
                    seq=seq,
                    ts=response.current_time,
                    received_at=frame.received_at,
                    boot=boot,
                )
            ]
        case v16.StartTransactionRequest(), v16.StartTransactionResponse():
            return [
                TransactionStarted(
                    charge_point_id=frame.charge_point_id,
                    seq=seq,
                    ts=request.timestamp,
                    received_at=frame.received_at,
                    transaction_id=response.transaction_id,
                    connector_id=request.connector_id,
                    id_tag=request.id_tag,
                    meter_start_wh=float(request.meter_start),
                    id_tag_status=response.id_tag_info.status,
                )
            ]
        case v16.DataTransferRequest(), v16.DataTransferResponse():
            transfer = DataTransferView(
                vendor_id=request.vendor_id,
                message_id=_text(request.message_id),
                data=_decoded(request.data),
                status=response.status,
                received_at=frame.received_at,
            )
            return [
                DataTransfer(
                    charge_point_id=frame.charge_point_id,
                    seq=seq,
                    received_at=frame.received_at,
                    transfer=transfer,
                )
            ]
    return []


def _meter(
    state: ChargerState, frame: OcppFrame, seq: int, request: v16.MeterValuesRequest
) -> list[ChargerMessage]:
    readings: list[Reading] = []
    ts = ""
    for meter_value in request.meter_value:
        ts = meter_value.timestamp
        for sampled in meter_value.sampled_value:
            if sampled.format == "SignedData":
                continue
            value = _number(sampled.value)
            if value is None:
                continue
            readings.append(
                Reading(
                    measurand=_text(sampled.measurand) or ENERGY_REGISTER,
                    value=value,
                    unit=_text(sampled.unit),
                    phase=_text(sampled.phase),
                    location=_text(sampled.location),
                    ts=meter_value.timestamp,
                )
            )
    if not readings:
        return []
    transaction_id = request.transaction_id if isinstance(request.transaction_id, int) else None
    messages: list[ChargerMessage] = [
        Meter(
            charge_point_id=frame.charge_point_id,
            seq=seq,
            ts=ts,
            received_at=frame.received_at,
            connector_id=request.connector_id,
            transaction_id=transaction_id,
            readings=readings,
        )
    ]
    transaction = (
        state.transactions.get(transaction_id) if transaction_id is not None else None
    ) or state.transaction_on(request.connector_id)
    register = _energy_wh(readings)
    if transaction is not None and register is not None:
        messages.append(
            TransactionUpdated(
                charge_point_id=frame.charge_point_id,
                seq=seq,
                ts=ts,
                received_at=frame.received_at,
                transaction_id=transaction.transaction_id,
                connector_id=transaction.connector_id,
                energy_wh=max(0.0, register - transaction.meter_start_wh),
                power_w=_power_w(readings),
                soc=_latest(readings, SOC),
            )
        )
    return messages


def _stopped(
    state: ChargerState, frame: OcppFrame, seq: int, request: v16.StopTransactionRequest
) -> ChargerMessage:
    transaction = state.transactions.get(request.transaction_id)
    energy = duration = None
    connector_id = 0
    if transaction is not None:
        connector_id = transaction.connector_id
        energy = max(0.0, request.meter_stop - transaction.meter_start_wh)
        duration = _seconds_between(transaction.started_at, request.timestamp)
    return TransactionStopped(
        charge_point_id=frame.charge_point_id,
        seq=seq,
        ts=request.timestamp,
        received_at=frame.received_at,
        transaction_id=request.transaction_id,
        connector_id=connector_id,
        energy_wh=energy if energy is not None else 0.0,
        duration_s=duration,
        reason=_text(request.reason) or "Local",  # OCPP 1.6: an absent reason means Local
        meter_stop_wh=float(request.meter_stop),
    )


# -- helpers -----------------------------------------------------------------------------------


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _decoded(data: object) -> Any:
    if not isinstance(data, str):
        return None
    try:
        return _json.decode(data)
    except msgspec.DecodeError:
        return data


_SCALE: Final = {"kWh": 1000.0, "kW": 1000.0, "Wh": 1.0, "W": 1.0, "": 1.0}


def _energy_wh(readings: list[Reading]) -> float | None:
    for reading in reversed(readings):
        if reading.measurand == ENERGY_REGISTER and not reading.phase:
            return reading.value * _SCALE.get(reading.unit, 1.0)
    return None


def _power_w(readings: list[Reading]) -> float | None:
    phases = [r for r in readings if r.measurand == POWER]
    if not phases:
        return None
    total = [r for r in phases if not r.phase]
    chosen = total[-1:] if total else phases
    return sum(r.value * _SCALE.get(r.unit, 1.0) for r in chosen)


def _latest(readings: list[Reading], measurand: str) -> float | None:
    for reading in reversed(readings):
        if reading.measurand == measurand:
            return reading.value
    return None


def _seconds_between(start: str, end: str) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (ValueError, TypeError):
        return None
