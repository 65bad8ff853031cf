"""Money and integrity for UIs: a session's cost by the one cost function, and the
supervisor's findings as ``alert`` messages. Pure functions, like the rest of translate.

The tariff is the one the charging domain fixed at the session's start (``session.tariff``)
and the curve is the domain's (``session.curve()``): the very inputs the billing table and
the supervisor's settlements use, so a UI shows to the cent what is billed.
"""

from __future__ import annotations

from collections.abc import Sequence

from hub.domain import energy
from hub.domain.charging import Session
from hub.domain.tariffs import Point, session_cost
from schemas.events import (
    AnomalyDetected,
    AnomalyResolved,
    Event,
    IntegrityAction,
    LimitReached,
)
from schemas.ui import Alert, Bill


def energy_of(curve: Sequence[Point]) -> float:
    """Energy of a session's curve as UIs get it: rounded as the bill rounds it (readings
    in kWh scaled to Wh carry float noise a UI should not show)."""
    return round(energy.energy_wh(curve), 6)


def bill(session: Session, curve: Sequence[Point]) -> Bill | None:
    """The bill of ``session`` (``curve`` is ``session.curve()``): so far while it runs, the
    final one once it ended. None when nothing is priced, or when its start is unknown: a
    bill from its first reading on would be too low."""
    tariff = session.tariff
    if not tariff.tariff_id or session.start_ms is None or session.meter_start is None:
        return None
    cost = session_cost(tariff, curve)
    return Bill(
        tariff_id=tariff.tariff_id,
        currency=tariff.currency,
        energy_wh=energy_of(curve),
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
