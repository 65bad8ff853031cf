"""session_anomalies: each anomaly the supervisor found, as versions: detected, acted on,
resolved (docs/integrity.md). The view picks each anomaly's latest version."""

from __future__ import annotations

from typing import Final

from hub.domain.timeutil import ch_time
from projections.rows import AnomalyRow, Output, int_id, ref
from projections.state import Anomaly, State
from schemas.events import AnomalyDetected, AnomalyResolved, Event, IntegrityAction

# Anomalies open at once in the state; beyond, the oldest is forgotten (its later
# resolution then writes no version).
MAX_OPEN: Final = 100_000


def anomalies(state: State, out: Output, seq: int, event: Event) -> None:
    match event:
        case AnomalyDetected():
            if len(state.anomalies) >= MAX_OPEN:
                del state.anomalies[next(iter(state.anomalies))]
            record = state.anomalies[event.anomaly_id] = Anomaly(
                kind=event.kind,
                charge_point_id=event.charge_point_id,
                connector_id=event.connector_id,
                transaction_id=event.transaction_id,
                observed_ms=event.observed_at,
                detected_ms=event.received_at,
                detail=event.detail,
            )
            out.add(_row(seq, event.anomaly_id, record, None, ""))
        case IntegrityAction():
            found = state.anomalies.get(event.anomaly_id)
            if found is not None:
                found.actions = [*found.actions, event.action]
                out.add(_row(seq, event.anomaly_id, found, None, ""))
        case AnomalyResolved():
            gone = state.anomalies.pop(event.anomaly_id, None)
            if gone is not None:
                out.add(_row(seq, event.anomaly_id, gone, event.received_at, event.resolution))


def _row(
    seq: int, anomaly_id: str, record: Anomaly, resolved_ms: int | None, resolution: str
) -> AnomalyRow:
    return AnomalyRow(
        seq=seq,
        anomaly_id=anomaly_id,
        kind=record.kind,
        charge_point_id=record.charge_point_id,
        connector_id=record.connector_id,
        transaction_id=int_id(record.transaction_id),
        observed_at=ch_time(record.observed_ms),
        detected_at=ch_time(record.detected_ms),
        detail=record.detail,
        actions=list(record.actions),
        resolved_at=ch_time(resolved_ms) if resolved_ms is not None else None,
        resolution=resolution,
        transaction_ref=ref(record.transaction_id),
    )
