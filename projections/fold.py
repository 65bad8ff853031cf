"""The pure core of every projection: (state, seq, event) -> state changed, rows out.

``apply`` is called once per stored event, in stream order, by the runner and by replay
alike; the rows it adds to ``out`` depend only on the events so far, never on how they
were batched or on a clock.
"""

from __future__ import annotations

from typing import Final

import msgspec

from hub.domain import charging, facts
from hub.domain.charging import Charging
from hub.domain.timeutil import ch_time
from projections import sessions
from projections.anomalies import anomalies
from projections.events_log import event_row, undecodable_row
from projections.ledger import ledger
from projections.rows import (
    AllocationRow,
    ChargePointRow,
    ConnectorStatusRow,
    DeviceModelRow,
    ErrorRow,
    EventRow,
    Output,
)
from projections.site_load import EVENTS as SITE_LOAD_EVENTS
from projections.site_load import SITE_EVENT_TYPES, site_load
from projections.state import ChargePoint, State
from schemas.events import (
    AllocationDecided,
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
    WalletAdjusted,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
    WalletSettled,
    decode_event,
)

# The range of the Int64 columns that hold charger-sent integers (connector and transaction
# ids). OCPP 1.6 bounds none of them; ClickHouse would wrap a value beyond these silently.
INT64_MIN: Final = sessions.INT64_MIN
INT64_MAX: Final = sessions.INT64_MAX


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
    WalletAdjusted,
    AnomalyDetected,
    AnomalyResolved,
    IntegrityAction,
    *SITE_LOAD_EVENTS,
)


# By exact type (events are never subclassed): ``isinstance`` against a msgspec Struct class
# that does not match goes through the metaclass (about 0.1 µs each), and a frame missed all
# thirteen on every event, a microsecond.
_FOLDED_TYPES: Final = frozenset(_FOLDED)


def folds(event: Event) -> bool:
    """Whether ``apply`` does more with ``event`` than its events row. Replay sends its fold
    process only these: about half of a stream is answers and calls no projection reads."""
    return charging.reads(event) or type(event) in _FOLDED_TYPES


# The fold of the state folded last: ``Charging`` keeps nothing between calls of ``apply``
# but its state, and making one per event was a twentieth of a MeterValues' fold.
_last: list[Charging] = [Charging()]


def _charging(state: State) -> Charging:
    folder = _last[0]
    if folder.state is not state.domain:
        folder = _last[0] = Charging(state.domain)
    return folder


def _apply(state: State, out: Output, seq: int, event: Event) -> None:
    if type(event) in _FOLDED_TYPES and (beyond := out_of_range(event)):
        cp = getattr(event, "charge_point_id", "")
        tag = type(event).__struct_config__.tag
        out.add(_error(seq, event.received_at, "events", cp, f"{tag}: {_beyond(beyond)}"))
        return
    found = _charging(state).apply(seq, event)
    for fact in found:
        _fact(state, out, fact)
    if state.site_load.sites.nodes or type(event) in SITE_EVENT_TYPES:
        site_load(state.site_load, state.domain, out, seq, event, found)
    if type(event) is OcppFrame:
        return  # most events: none of the cases below, each a miss that costs (above)
    match event:
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
        case ChargerRegistered(charge_point_id=cp):
            _charge_point(state, out, seq, event.received_at, cp, registered=True)
        case ChargerUnregistered(charge_point_id=cp):
            _charge_point(state, out, seq, event.received_at, cp, registered=False)
        case AnomalyDetected() | AnomalyResolved() | IntegrityAction():
            anomalies(state, out, seq, event)
        case AllocationDecided():
            out.add(
                AllocationRow(
                    seq=seq,
                    decided_at=ch_time(event.received_at),
                    event_id=event.id,
                    node_id=event.node_id,
                    charge_point_id=event.charge_point_id,
                    connector_id=event.connector_id,
                    session=event.session,
                    limit_a=event.limit_a,
                    admitted=event.admitted,
                    wants_a=event.wants_a,
                    drawn_a=event.drawn_a,
                    reason=event.reason,
                    command_id=event.command_id,
                )
            )


def _fact(state: State, out: Output, fact: facts.Fact) -> None:
    # Exact types, most frequent first (a match statement's misses cost, see _FOLDED_TYPES).
    if type(fact) is facts.TransactionStarted and fact.inferred:
        return  # known only from readings or a Stop: its rows come with them
    if beyond := _ids_beyond(fact):
        why = f"{type(fact).__struct_config__.tag}: {_beyond(beyond)}"
        out.add(_error(fact.seq, fact.at, "ocpp", fact.charge_point_id, why))
        return
    if type(fact) is facts.TransactionMetered:
        sessions.metered(state, out, fact)
    elif type(fact) is facts.TransactionStarted or type(fact) is facts.TransactionEnded:
        sessions.bounds_moved(state, out, fact)
    elif type(fact) is facts.ConnectorStatusChanged:
        _status(out, fact)
    elif type(fact) is facts.TransactionFlagged:
        sessions.flagged(state, out, fact)
    elif type(fact) is facts.TransactionSettled:
        sessions.settled(state, out, fact)
    elif type(fact) is facts.ChargerBooted:
        _charge_point(
            state,
            out,
            fact.seq,
            fact.at,
            fact.charge_point_id,
            vendor=fact.vendor,
            model=fact.model,
            serial_number=fact.serial_number,
            firmware_version=fact.firmware_version,
            last_boot_ms=fact.at,
        )
    elif type(fact) is facts.ChargerConnected:
        _charge_point(state, out, fact.seq, fact.at, fact.charge_point_id, connected=True)
    elif type(fact) is facts.ChargerDisconnected:
        _charge_point(state, out, fact.seq, fact.at, fact.charge_point_id, connected=False)
    elif type(fact) is facts.WalletMoved:
        ledger(out, fact)
    elif type(fact) is facts.ReportPart:
        _report(out, fact)
    elif type(fact) is facts.Problem:
        out.add(_error(fact.seq, fact.at, "sessions", fact.charge_point_id, fact.reason))


def _report(out: Output, fact: facts.ReportPart) -> None:
    if not out.keeps(DeviceModelRow, fact.seq):
        return
    if beyond := _beyond_int64(("request_id", fact.request_id), ("seq_no", fact.seq_no)):
        why = f"report.part: {_beyond(beyond)}"
        out.add(_error(fact.seq, fact.at, "device_model", fact.charge_point_id, why))
        return
    reported_at = ch_time(fact.at)
    generated_at = ch_time(fact.generated_at_ms) if fact.generated_at_ms is not None else None
    for variable in fact.variables:
        ids = (("evse_id", variable.evse_id), ("connector_id", variable.connector_id))
        if beyond := _beyond_int64(*ids):
            why = f"report.part {fact.request_id}: {_beyond(beyond)}"
            out.add(_error(fact.seq, fact.at, "device_model", fact.charge_point_id, why))
            continue
        out.add(
            DeviceModelRow(
                seq=fact.seq,
                charge_point_id=fact.charge_point_id,
                request_id=fact.request_id,
                seq_no=fact.seq_no,
                tbc=fact.tbc,
                generated_at=generated_at,
                reported_at=reported_at,
                component=variable.component,
                component_instance=variable.component_instance,
                evse_id=variable.evse_id,
                connector_id=variable.connector_id,
                variable=variable.variable,
                variable_instance=variable.variable_instance,
                attribute_type=variable.attribute_type,
                value=variable.value,
                mutability=variable.mutability,
                persistent=variable.persistent,
                constant=variable.constant,
                data_type=variable.data_type,
                unit=variable.unit,
                min_limit=variable.min_limit,
                max_limit=variable.max_limit,
                values_list=variable.values_list,
                supports_monitoring=variable.supports_monitoring,
            )
        )


def _beyond_int64(*values: tuple[str, int | None]) -> str:
    """The first of ``values`` no Int64 column holds, as ``name value``, or ""."""
    for name, value in values:
        if value is not None and not INT64_MIN <= value <= INT64_MAX:
            return f"{name} {value}"
    return ""


def _ids_beyond(fact: facts.Fact) -> str:
    """A fact's id no Int64 column holds, as ``name value``, or an empty string (the only
    integers facts carry are connector and transaction ids)."""
    names = _ID_FIELDS.get(type(fact))
    if names is None:
        fields = type(fact).__struct_fields__
        names = _ID_FIELDS[type(fact)] = tuple(
            name for name in ("connector_id", "transaction_id") if name in fields
        )
    for name in names:
        value = getattr(fact, name)
        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            return f"{name} {value}"
    return ""


# Each fact type's id fields, found once per type, not looked for twice per fact.
_ID_FIELDS: Final[dict[type, tuple[str, ...]]] = {}


def _status(out: Output, fact: facts.ConnectorStatusChanged) -> None:
    out.add(
        ConnectorStatusRow(
            seq=fact.seq,
            received_at=ch_time(fact.at),
            timestamp=ch_time(fact.timestamp_ms) if fact.timestamp_ms is not None else None,
            charge_point_id=fact.charge_point_id,
            connector_id=fact.connector_id,
            status=fact.status,
            error_code=fact.error_code,
            info=fact.info,
            vendor_id=fact.vendor_id,
            vendor_error_code=fact.vendor_error_code,
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
    return f"{field} is beyond the Int64 columns (-2^63 to 2^63-1): it is not projected"


def _error(seq: int, received_at: int, projection: str, cp: str, reason: str) -> ErrorRow:
    return ErrorRow(
        seq=seq,
        received_at=ch_time(received_at),
        projection=projection,
        charge_point_id=cp,
        reason=reason[:1000],
    )
