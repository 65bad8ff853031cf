"""A data directory from before the columns were widened gets them widened at start, with
every row kept, so a charger's connectorId -1 no longer stalls it."""

from __future__ import annotations

import re
from pathlib import Path

from projections import store
from projections.backends.embedded import ChdbBackend
from projections.rows import ConnectorStatusRow, EnergyDeltaRow, Output
from projections.schema import ADDED, table_ddl
from tests.projections.helpers import rows

# The tables as a7f583d made them.
_OLD = {
    "connector_status": """
        seq UInt64, received_at DateTime64(3, 'UTC'), timestamp Nullable(DateTime64(3, 'UTC')),
        charge_point_id String, connector_id UInt32, status LowCardinality(String),
        error_code LowCardinality(String), info String, vendor_id String,
        vendor_error_code String
    ) ENGINE = MergeTree ORDER BY (charge_point_id, connector_id, seq)""",
    "energy_deltas": """
        seq UInt64, charge_point_id String, session_id String, hour DateTime('UTC'),
        energy_wh Float64
    ) ENGINE = MergeTree ORDER BY (charge_point_id, hour, seq)""",
}


def _status(seq: int, connector: int) -> ConnectorStatusRow:
    return ConnectorStatusRow(
        seq=seq,
        received_at="2026-11-22 10:00:00.000",
        timestamp=None,
        charge_point_id="CP-1",
        connector_id=connector,
        status="Available",
        error_code="NoError",
        info="",
        vendor_id="",
        vendor_error_code="",
    )


async def test_old_tables_are_retyped_with_their_rows_and_take_what_they_refused(
    tmp_path: Path,
) -> None:
    backend = ChdbBackend(tmp_path / "clickhouse")
    try:
        await backend.execute("CREATE DATABASE ocpp")
        for table, columns in _OLD.items():
            await backend.execute(f"CREATE TABLE ocpp.{table} ({columns}")
        old = Output()
        old.add(_status(1, 2))
        old.add(
            EnergyDeltaRow(
                seq=1,
                charge_point_id="CP-1",
                session_id="7",
                hour="2026-11-22 10:00:00",
                energy_wh=5.0,
            )
        )
        for table in _OLD:
            await backend.insert(f"ocpp.{table}", store.encode_rows(old.rows[table]), token="t")

        await store.ensure_schema(backend, "ocpp")
        await store.ensure_schema(backend, "ocpp")  # again, as every start does: no change

        types = await rows(
            backend,
            "SELECT table, name, type FROM system.columns WHERE database = 'ocpp' "
            "AND table IN ('connector_status', 'energy_deltas') "
            "AND name IN ('connector_id', 'hour') ORDER BY table",
        )
        assert types == [
            {"table": "connector_status", "name": "connector_id", "type": "Int64"},
            {"table": "energy_deltas", "name": "hour", "type": "DateTime64(0, 'UTC')"},
        ]
        assert await rows(backend, "SELECT seq, connector_id FROM ocpp.connector_status") == [
            {"seq": 1, "connector_id": 2}
        ]
        assert await rows(
            backend, "SELECT toString(hour) AS hour, energy_wh FROM ocpp.energy_deltas"
        ) == [{"hour": "2026-11-22 10:00:00", "energy_wh": 5.0}]
        tables = await rows(backend, "SELECT name FROM system.tables WHERE database = 'ocpp'")
        assert not [t for t in tables if "__" in t["name"]]

        new = Output()
        new.add(_status(2, -1))
        new.add(_status(3, 1 << 32))
        await store.store_batch(backend, "ocpp", new, 2, 3, known={})
        assert await rows(
            backend, "SELECT connector_id FROM ocpp.connector_status ORDER BY seq"
        ) == [{"connector_id": 2}, {"connector_id": -1}, {"connector_id": 1 << 32}]
    finally:
        await backend.close()


async def test_views_from_before_a_column_was_added_show_it_after_a_start(
    tmp_path: Path,
) -> None:
    backend = ChdbBackend(tmp_path / "clickhouse")
    try:
        # session_versions and its view as they were before transaction_ref was added.
        columns = table_ddl("ocpp", "session_versions").split("(", 1)[1]
        old = columns.replace(",\n        transaction_ref String", "")
        assert old != columns
        await backend.execute("CREATE DATABASE ocpp")
        await backend.execute(f"CREATE TABLE ocpp.session_versions ({old}")
        await backend.execute(
            "CREATE VIEW ocpp.sessions AS SELECT * EXCEPT (seq), seq AS version "
            "FROM ocpp.session_versions"
        )

        await store.ensure_schema(backend, "ocpp")
        await store.ensure_schema(backend, "ocpp")

        names = await rows(
            backend,
            "SELECT name FROM system.columns WHERE database = 'ocpp' AND table = 'sessions' "
            "AND name = 'transaction_ref'",
        )
        assert names == [{"name": "transaction_ref"}]
    finally:
        await backend.close()


class _Recording:
    """The real chDB backend, with every statement it is asked to run written down."""

    def __init__(self, backend: ChdbBackend) -> None:
        self.backend = backend
        self.executed: list[str] = []

    async def execute(self, sql: str) -> None:
        self.executed.append(sql)
        await self.backend.execute(sql)

    async def query(self, sql: str, *, fmt: str = "JSONEachRow", readonly: bool = False) -> bytes:
        return await self.backend.query(sql, fmt=fmt, readonly=readonly)


async def test_a_schema_in_place_costs_no_ddl_and_columns_added_later_still_come(
    tmp_path: Path,
) -> None:
    """Every start and every replay ensures the schema: once it is there, that is one look at
    system.columns, not two dozen statements of tens of ms each in chDB."""
    backend = ChdbBackend(tmp_path / "clickhouse")
    try:
        await backend.execute("CREATE DATABASE ocpp")
        added = set(ADDED["billing_versions"])
        old = [
            line
            for line in table_ddl("ocpp", "billing_versions").splitlines()
            if line.strip().rstrip(",") not in added
        ]
        # The table as it first shipped: without the columns added since.
        await backend.execute(re.sub(r",\s*\) ENGINE", ") ENGINE", "\n".join(old)))
        recording = _Recording(backend)

        await store.ensure_schema(recording, "ocpp")  # type: ignore[arg-type]
        columns = await rows(
            backend,
            "SELECT name FROM system.columns WHERE database = 'ocpp' "
            "AND table = 'billing_versions' ORDER BY position",
        )
        assert [column["name"] for column in columns][-len(added) :] == [
            column.split()[0] for column in ADDED["billing_versions"]
        ]
        assert any("ADD COLUMN" in sql for sql in recording.executed)

        recording.executed.clear()
        await store.ensure_schema(recording, "ocpp")  # type: ignore[arg-type]
        assert recording.executed == []
    finally:
        await backend.close()
