"""Money and integrity for UIs: live cost by the one cost function, and the supervisor's
findings as ``alert`` messages. Pure functions of events, like the rest of translate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from hub.domain import energy
from hub.domain.meter_values import register_points
from hub.domain.tariffs import Point, Tariff, TariffEntry, session_cost, tariff_for
from hub.domain.timeutil import parse_ms
from schemas.events import (
    AnomalyDetected,
    AnomalyResolved,
    Event,
    IntegrityAction,
    LimitReached,
    OcppFrame,
    TariffSet,
)
from schemas.ocpp import validate_call
from schemas.ocpp.v16 import MeterValuesRequest, StopTransactionRequest
from schemas.ui import (
    Alert,
    Bill,
    ChargerMessage,
    CostUpdated,
    Meter,
    TransactionStarted,
    TransactionStopped,
)

# Open transactions metered at once; beyond, the oldest stops getting cost messages.
MAX_METERED: Final = 100_000


class TariffBook:
    """Every tariff set so far, folded from ``admin.tariff.set``; one per fan-out, shared by
    all chargers' states."""

    def __init__(self) -> None:
        self.entries: list[TariffEntry] = []

    def apply(self, event: TariffSet) -> None:
        self.entries.append(
            TariffEntry(
                charge_point_id=event.charge_point_id,
                effective_from=event.effective_from or event.received_at,
                tariff=Tariff.from_event(event),
            )
        )

    def tariff_for(self, charge_point_id: str, at_ms: int) -> Tariff:
        return tariff_for(self.entries, charge_point_id, at_ms)


def bill(tariff: Tariff, points: Sequence[Point], start: Point, stop: Point | None = None) -> Bill:
    """The bill of a session's readings so far (or, with ``stop``, its final one): the same
    curve and function as the billing table."""
    curve = energy.curve(points, start, stop)
    cost = session_cost(tariff, curve)
    return Bill(
        tariff_id=tariff.tariff_id,
        currency=tariff.currency,
        energy_wh=round(energy.energy_wh(curve), 6),
        energy_cost=str(cost.energy_cost),
        time_cost=str(cost.time_cost),
        idle_cost=str(cost.idle_cost),
        session_fee=str(cost.session_fee),
        total=str(cost.total),
    )


def alert(event: Event, seq: int) -> Alert | None:
    match event:
        case AnomalyDetected():
            return Alert(
                charge_point_id=event.charge_point_id,
                seq=seq,
                received_at=event.received_at,
                alert_id=event.anomaly_id,
                state="detected",
                kind=event.kind,
                connector_id=event.connector_id,
                transaction_id=event.transaction_id,
                detail=event.detail,
            )
        case AnomalyResolved():
            return Alert(
                charge_point_id=event.charge_point_id,
                seq=seq,
                received_at=event.received_at,
                alert_id=event.anomaly_id,
                state="resolved",
                kind=event.kind,
                connector_id=event.connector_id,
                transaction_id=event.transaction_id,
                detail=event.resolution,
            )
        case IntegrityAction():
            return Alert(
                charge_point_id=event.charge_point_id,
                seq=seq,
                received_at=event.received_at,
                alert_id=event.anomaly_id,
                state="action",
                kind=event.action,
                connector_id=event.connector_id,
                transaction_id=event.transaction_id,
                action=event.action,
                command_id=event.command_id,
            )
        case LimitReached():
            return Alert(
                charge_point_id=event.charge_point_id,
                seq=seq,
                received_at=event.received_at,
                alert_id=event.id,
                state="limit_reached",
                kind=event.limit,
                connector_id=event.connector_id,
                transaction_id=event.transaction_id,
                detail=f"{event.limit} {event.value} reached the {event.source} limit "
                f"{event.threshold}",
                command_id=event.command_id,
            )
    return None


@dataclass(slots=True)
class Metered:
    tariff: Tariff
    start: Point
    points: list[Point] = field(default_factory=list)


class Metering:
    """Live cost of every open transaction the fan-out follows: a second pure step after
    ``translate``, which adds ``cost`` messages and the final bill on ``transaction.stopped``."""

    def __init__(self) -> None:
        self.tariffs = TariffBook()
        self.open: dict[tuple[str, int], Metered] = {}

    def enrich(
        self,
        event: Event,
        seq: int,
        messages: list[ChargerMessage],
        call: msgspec.Struct | None = None,
    ) -> list[ChargerMessage]:
        """``messages`` with the live cost added; ``call`` is the event's decoded request
        (``translate.charger_call``), read here again only when it is not given."""
        if not isinstance(event, OcppFrame) or not messages:
            return messages
        out: list[ChargerMessage] = []
        meter: Meter | None = None
        for message in messages:
            match message:
                case TransactionStarted():
                    self._open(message)
                    out.append(message)
                case TransactionStopped():
                    out.append(self._stopped(event, message, call))
                case Meter():
                    meter = message
                    out.append(message)
                case _:
                    out.append(message)
        if meter is not None:
            out.extend(self._cost(event, seq, meter.transaction_id, call))
        return out

    def _open(self, message: TransactionStarted) -> None:
        try:
            start_ms = parse_ms(message.ts)
        except ValueError:
            return
        if len(self.open) >= MAX_METERED:
            del self.open[next(iter(self.open))]
        tariff = self.tariffs.tariff_for(message.charge_point_id, start_ms)
        if not tariff.tariff_id:
            return  # nothing is priced: no cost to show
        self.open[message.charge_point_id, message.transaction_id] = Metered(
            tariff, (start_ms, message.meter_start_wh)
        )

    def _cost(
        self, frame: OcppFrame, seq: int, transaction_id: int | None, call: msgspec.Struct | None
    ) -> list[ChargerMessage]:
        metered = self.open.get((frame.charge_point_id, transaction_id or 0))
        if metered is None:
            return []
        request = (
            call
            if call is not None
            else validate_call(frame.ocpp_version, "MeterValues", frame.payload)
        )
        if not isinstance(request, MeterValuesRequest):
            return []
        points = register_points(request.meter_value)
        if not points:
            return []
        metered.points.extend(points)
        return [
            CostUpdated(
                charge_point_id=frame.charge_point_id,
                seq=seq,
                ts=request.meter_value[-1].timestamp,
                received_at=frame.received_at,
                transaction_id=transaction_id or 0,
                connector_id=request.connector_id,
                bill=bill(metered.tariff, metered.points, metered.start),
            )
        ]

    def _stopped(
        self, frame: OcppFrame, message: TransactionStopped, call: msgspec.Struct | None
    ) -> TransactionStopped:
        metered = self.open.pop((frame.charge_point_id, message.transaction_id), None)
        if metered is None:
            return message
        request = (
            call
            if call is not None
            else validate_call(frame.ocpp_version, "StopTransaction", frame.payload)
        )
        if not isinstance(request, StopTransactionRequest):
            return message
        if isinstance(request.transaction_data, list):
            metered.points.extend(register_points(request.transaction_data))
        try:
            stop = (parse_ms(request.timestamp), float(request.meter_stop))
        except ValueError:
            return message
        final = bill(metered.tariff, metered.points, metered.start, stop)
        return msgspec.structs.replace(message, bill=final)
