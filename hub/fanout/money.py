"""Money and integrity for UIs: live cost by the one cost function, and the supervisor's
findings as ``alert`` messages. Pure functions of events, like the rest of translate."""

from __future__ import annotations

from collections.abc import Sequence

from projections import energy
from projections.billing import tariff_for
from projections.state import TariffEntry
from projections.tariffs import Point, Tariff, session_cost
from schemas.events import (
    AnomalyDetected,
    AnomalyResolved,
    Event,
    IntegrityAction,
    LimitReached,
    TariffSet,
)
from schemas.ui import Alert, Bill


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
