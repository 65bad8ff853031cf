"""The pure core of every projection: (state, seq, event) -> state changed, rows out.

``apply`` is called once per stored event, in stream order, by the runner and by replay
alike; the rows it adds to ``out`` depend only on the events so far, never on how they
were batched or on a clock.
"""

from __future__ import annotations

from typing import Final

import msgspec

from hub.domain.tariffs import Tariff, TariffEntry
from hub.domain.timeutil import ch_time, parse_ms
from projections import sessions
from projections.anomalies import anomalies
from projections.events_log import event_row, undecodable_row
from projections.ledger import ledger
from projections.rows import ChargePointRow, ConnectorStatusRow, ErrorRow, EventRow, Output
from projections.state import MAX_PENDING, ChargePoint, PendingCall, State, key
from schemas.events import (
    AnomalyDetected,
    AnomalyResolved,
    ChargerConnected,
    ChargerDisconnected,
    ChargerRegistered,
    ChargerUnregistered,
    Event,
    FrameRejected,
    IntegrityAction,
    OcppFrame,
    TariffSet,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
    WalletSettled,
    decode_event,
)
from schemas.ocpp import PayloadError, validate_call, validate_result
from schemas.ocpp.v16 import (
    BootNotificationRequest,
    MeterValuesRequest,
    StartTransactionRequest,
    StartTransactionResponse,
    StatusNotificationRequest,
    StopTransactionRequest,
)

# CALLs from chargers that the projections read at once; StartTransaction waits for the
# answer that carries its transaction id.
_READ_AT_CALL: Final = frozenset(
    {"BootNotification", "StatusNotification", "MeterValues", "StopTransaction"}
)


# The range of the Int64 columns that hold charger-sent integers (connector and transaction
# ids). OCPP 1.6 bounds none of them; ClickHouse would wrap a value beyond these silently.
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1


def out_of_range(value: msgspec.Struct) -> str:
    """The first integer field of ``value`` that no Int64 column holds, as ``name value``
    (its name as sent), or an empty string."""
    names = value.__struct_encode_fields__
    for name, item in zip(names, msgspec.structs.astuple(value), strict=True):
        if type(item) is int and not INT64_MIN <= item <= INT64_MAX:
            return f"{name} {item}"
    return ""


def apply_message(state: State, out: Output, seq: int, data: bytes) -> int:
    """Apply one stored message and return its ``received_at``; one that does not decode is
    recorded in projection_errors, never fatal."""
    try:
        event = decode_event(data)
    except msgspec.DecodeError as error:
        out.add(undecodable_row(seq, data))
        out.add(_error(seq, 0, "events", "", f"undecodable event: {error}"))
        state.last_seq = seq
        return 0
    apply(state, out, seq, event)
    return event.received_at


def fold_batch(
    state: State, skip: dict[str, int], batch: list[tuple[int, bytes]]
) -> tuple[Output, list[int]]:
    """The batch's rows (minus what ``skip`` says is stored) and each event's received_at."""
    out = Output(skip)
    received: list[int] = []
    for seq, data in batch:
        received.append(apply_message(state, out, seq, data))
    return out, received


def apply(state: State, out: Output, seq: int, event: Event) -> None:
    if out.keeps(EventRow, seq):
        out.add(event_row(seq, event))
    try:
        _apply(state, out, seq, event)
    except (ValueError, ArithmeticError, msgspec.ValidationError) as error:
        # A charger's nonsense (an impossible timestamp, a reading no Decimal can price, ...)
        # costs its own row, not the run.
        out.add(
            _error(
                seq,
                event.received_at,
                "sessions",
                getattr(event, "charge_point_id", ""),
                str(error),
            )
        )
    state.last_seq = seq


# Events ``_apply`` reads besides OCPP frames; the rest leave only their events row.
_FOLDED: Final = (
    FrameRejected,
    ChargerConnected,
    ChargerDisconnected,
    ChargerRegistered,
    ChargerUnregistered,
    TariffSet,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
    WalletSettled,
    AnomalyDetected,
    AnomalyResolved,
    IntegrityAction,
)


def folds(event: Event) -> bool:
    """Whether ``apply`` does more with ``event`` than its events row. Replay sends its fold
    process only these: about half of a stream is answers and calls no projection reads."""
    if isinstance(event, OcppFrame):
        if event.direction == "in" and event.message_type == "CALL":
            return event.action == "StartTransaction" or event.action in _READ_AT_CALL
        return event.direction == "out" and event.action == "StartTransaction"
    return isinstance(event, _FOLDED)


def _apply(state: State, out: Output, seq: int, event: Event) -> None:
    if isinstance(event, _FOLDED) and (beyond := out_of_range(event)):
        cp = getattr(event, "charge_point_id", "")
        tag = type(event).__struct_config__.tag
        out.add(_error(seq, event.received_at, "events", cp, f"{tag}: {_beyond(beyond)}"))
        return
    match event:
        case OcppFrame():
            _frame(state, out, seq, event)
        case FrameRejected():
            out.add(
                _error(
                    seq,
                    event.received_at,
                    "ocpp",
                    event.charge_point_id,
                    f"rejected frame ({event.reason}): {event.error_description}",
                )
            )
        case ChargerConnected(charge_point_id=cp):
            _charge_point(state, out, seq, event.received_at, cp, connected=True)
        case ChargerDisconnected(charge_point_id=cp):
            _charge_point(state, out, seq, event.received_at, cp, connected=False)
        case ChargerRegistered(charge_point_id=cp):
            _charge_point(state, out, seq, event.received_at, cp, registered=True)
        case ChargerUnregistered(charge_point_id=cp):
            _charge_point(state, out, seq, event.received_at, cp, registered=False)
        case TariffSet():
            state.tariffs.append(
                TariffEntry(
                    charge_point_id=event.charge_point_id,
                    effective_from=event.effective_from or event.received_at,
                    tariff=Tariff.from_event(event),
                )
            )
        case WalletConfigured() | WalletCredited() | WalletHeld():
            ledger(state, out, seq, event)
        case WalletSettled():
            ledger(state, out, seq, event)
            sessions.settle(state, out, seq, event)
        case AnomalyDetected() | AnomalyResolved():
            anomalies(state, out, seq, event)
        case IntegrityAction():
            anomalies(state, out, seq, event)
            if event.action == "close_session":
                sessions.terminate(state, out, seq, event)


def _frame(state: State, out: Output, seq: int, frame: OcppFrame) -> None:
    cp = frame.charge_point_id
    if frame.direction == "in" and frame.message_type == "CALL":
        if frame.action == "StartTransaction":
            state.pending[key(cp, frame.unique_id)] = PendingCall(
                action=frame.action, payload=bytes(frame.payload).decode(), seq=seq
            )
            if len(state.pending) > MAX_PENDING:
                del state.pending[next(iter(state.pending))]
            return
        if frame.action not in _READ_AT_CALL:
            return
        request = validate_call(frame.ocpp_version, frame.action, frame.payload)
        if isinstance(request, PayloadError):
            out.add(_error(seq, frame.received_at, "ocpp", cp, f"{frame.action}: {request}"))
            return
        if beyond := out_of_range(request):
            out.add(
                _error(seq, frame.received_at, "ocpp", cp, f"{frame.action}: {_beyond(beyond)}")
            )
            return
        match request:
            case BootNotificationRequest():
                serial = request.charge_point_serial_number
                if not isinstance(serial, str):
                    serial = request.charge_box_serial_number
                firmware = request.firmware_version
                _charge_point(
                    state,
                    out,
                    seq,
                    frame.received_at,
                    cp,
                    vendor=request.charge_point_vendor,
                    model=request.charge_point_model,
                    serial_number=serial if isinstance(serial, str) else "",
                    firmware_version=firmware if isinstance(firmware, str) else "",
                    last_boot_ms=frame.received_at,
                )
            case StatusNotificationRequest():
                _status(out, seq, frame, request)
            case MeterValuesRequest():
                sessions.meter_values(state, out, seq, frame.received_at, cp, request)
            case StopTransactionRequest():
                sessions.stop(state, out, seq, frame.received_at, cp, request)
        return
    if frame.direction == "out" and frame.action == "StartTransaction":
        pending = state.pending.pop(key(cp, frame.unique_id), None)
        if pending is None or frame.message_type != "CALLRESULT":
            return
        start = validate_call(frame.ocpp_version, "StartTransaction", pending.payload)
        answer = validate_result(frame.ocpp_version, "StartTransaction", frame.payload)
        if isinstance(start, StartTransactionRequest) and isinstance(
            answer, StartTransactionResponse
        ):
            if beyond := out_of_range(start) or out_of_range(answer):
                why = f"StartTransaction: {_beyond(beyond)}"
                out.add(_error(seq, frame.received_at, "ocpp", cp, why))
                return
            sessions.start(state, out, seq, frame.received_at, cp, start, answer.transaction_id)
        else:
            out.add(_error(seq, frame.received_at, "ocpp", cp, "StartTransaction: undecodable"))


def _status(out: Output, seq: int, frame: OcppFrame, request: StatusNotificationRequest) -> None:
    timestamp = request.timestamp if isinstance(request.timestamp, str) else None
    out.add(
        ConnectorStatusRow(
            seq=seq,
            received_at=ch_time(frame.received_at),
            timestamp=ch_time(parse_ms(timestamp)) if timestamp else None,
            charge_point_id=frame.charge_point_id,
            connector_id=request.connector_id,
            status=request.status,
            error_code=request.error_code,
            info=request.info if isinstance(request.info, str) else "",
            vendor_id=request.vendor_id if isinstance(request.vendor_id, str) else "",
            vendor_error_code=(
                request.vendor_error_code if isinstance(request.vendor_error_code, str) else ""
            ),
        )
    )


def _charge_point(
    state: State, out: Output, seq: int, received_at: int, cp: str, **changes: object
) -> None:
    record = state.charge_points.get(cp)
    if record is None:
        record = state.charge_points[cp] = ChargePoint()
    for name, value in changes.items():
        setattr(record, name, value)
    out.add(
        ChargePointRow(
            seq=seq,
            charge_point_id=cp,
            vendor=record.vendor,
            model=record.model,
            serial_number=record.serial_number,
            firmware_version=record.firmware_version,
            last_boot=ch_time(record.last_boot_ms) if record.last_boot_ms is not None else None,
            connected=record.connected,
            registered=record.registered,
            updated_at=ch_time(received_at),
        )
    )


def _beyond(field: str) -> str:
    return f"{field} is beyond the Int64 columns (-2^63 to 2^63-1): the message is not projected"


def _error(seq: int, received_at: int, projection: str, cp: str, reason: str) -> ErrorRow:
    return ErrorRow(
        seq=seq,
        received_at=ch_time(received_at),
        projection=projection,
        charge_point_id=cp,
        reason=reason[:1000],
    )
