"""Shared pieces of the projection tests: reading tables, waiting for the runner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import nats

from hub.domain.timeutil import ch_time
from projections.backends import Backend
from projections.replay import Progress, replay
from projections.rows import MeterValueRow, ReadingsRow
from projections.service import Projections


async def rows(backend: Backend, sql: str) -> list[dict[str, Any]]:
    data = await backend.query(sql)
    return [msgspec.json.decode(line) for line in data.splitlines() if line.strip()]


async def last_seq(nats_url: str, stream: str = "OCPP_EVENTS") -> int:
    client = await nats.connect(nats_url)
    try:
        info = await client.jetstream().stream_info(stream)
        seq: int = info.state.last_seq
        return seq
    finally:
        await client.close()


TABLES_ORDERED = {
    "events": "seq",
    "charge_point_versions": "charge_point_id, seq",
    "connector_status": "seq, connector_id",
    "meter_values": "seq, timestamp, measurand, phase, location",
    "session_versions": "charge_point_id, session_id, seq",
    "energy_deltas": "charge_point_id, session_id, hour, seq",
    "billing_versions": "charge_point_id, session_id, seq",
    "wallet_ledger": "id_tag, seq, kind",
    "anomaly_versions": "anomaly_id, seq",
    "site_load": "node_id, seq",
    "projection_errors": "seq, reason",
}


async def dump(backend: Backend, db: str = "ocpp") -> dict[str, list[dict[str, Any]]]:
    """Every projected table, row for row, in a stable order (no FINAL, no dedup)."""
    return {
        table: await rows(backend, f"SELECT * FROM {db}.{table} ORDER BY {order}")
        for table, order in TABLES_ORDERED.items()
    }


async def replay_in(
    projections: Projections,
    *names: str,
    from_seq: int = 1,
    alongside_runner: bool = True,
    on_progress: Callable[[Progress], None] = lambda _: None,
) -> Progress:
    """``hub replay`` of the projections ``names`` (all when none) into the tests' stream
    and database, as the hub runs it: beside its runner, unless told otherwise."""
    return await replay(
        projections.backend,
        projections.connection,
        database="ocpp",
        stream="OCPP_EVENTS",
        projections=list(names),
        from_seq=from_seq,
        runner=projections.runner if alongside_runner else None,
        on_progress=on_progress,
    )


def meter_values(rows: list[ReadingsRow]) -> list[MeterValueRow]:
    """The meter_values rows the store makes of ``rows`` (projections.reshapes), as the fold
    made them itself before: one per sample, its time as ch_time's text."""
    return [
        MeterValueRow(
            seq=row.seq,
            timestamp=ch_time(sample.at_ms),
            charge_point_id=row.charge_point_id,
            connector_id=row.connector_id,
            transaction_id=row.transaction_id,
            session_id=row.session_id,
            measurand=sample.measurand,
            phase=sample.phase,
            location=sample.location,
            unit=sample.unit,
            context=sample.context,
            value=sample.value,
            transaction_ref=row.transaction_ref,
        )
        for row in rows
        for sample in row.samples
    ]
