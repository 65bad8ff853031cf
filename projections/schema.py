"""The DDL, one SQL for chDB and ClickHouse server alike.

Every table is append-only and every row carries the ``seq`` of the event that produced it.
Rows that evolve (a session, its bill, a charger) are written as versions; the views
``sessions``, ``billing`` and ``charge_points`` pick each key's latest version, and
``energy_hourly`` sums per-hour changes. So no query needs FINAL, and a restart that skips
what each table already holds can neither lose nor double a row (docs/projections.md).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final, NamedTuple

# Tables that hold rows of one projection group; `hub replay --projection NAME` rebuilds a
# group. The names analysts query (views) map onto the tables behind them.
GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "events": ("events",),
    "charge_points": ("charge_point_versions",),
    "connector_status": ("connector_status",),
    "meter_values": ("meter_values",),
    "sessions": ("session_versions", "energy_deltas", "billing_versions"),
    "wallet_ledger": ("wallet_ledger",),
    "session_anomalies": ("anomaly_versions",),
    "allocations": ("allocations",),
    "site_load": ("site_load",),
    "device_model": ("device_model",),
    "projection_errors": ("projection_errors",),
}
ALIASES: Final = {"energy_hourly": "sessions", "billing": "sessions"}

# Table settings: a window of recent insert tokens per table, so that a retried INSERT whose
# first attempt did land (a timeout after the commit) is stored once. Off by default on
# non-replicated tables, hence set here explicitly.
_SETTINGS: Final = "SETTINGS non_replicated_deduplication_window = 1000"

_TABLES: Final[dict[str, str]] = {
    "events": """
        seq UInt64,
        received_at DateTime64(3, 'UTC'),
        type LowCardinality(String),
        charge_point_id String,
        ocpp_version LowCardinality(String),
        direction LowCardinality(String),
        message_type LowCardinality(String),
        unique_id String,
        action LowCardinality(String),
        payload String,
        error_code LowCardinality(String)
    ) ENGINE = MergeTree ORDER BY seq""",
    "charge_point_versions": """
        seq UInt64,
        charge_point_id String,
        vendor String,
        model String,
        serial_number String,
        firmware_version String,
        last_boot Nullable(DateTime64(3, 'UTC')),
        connected Bool,
        registered Bool,
        updated_at DateTime64(3, 'UTC')
    ) ENGINE = MergeTree ORDER BY (charge_point_id, seq)""",
    "connector_status": """
        seq UInt64,
        received_at DateTime64(3, 'UTC'),
        timestamp Nullable(DateTime64(3, 'UTC')),
        charge_point_id String,
        connector_id Int64,
        status LowCardinality(String),
        error_code LowCardinality(String),
        info String,
        vendor_id String,
        vendor_error_code String
    ) ENGINE = MergeTree ORDER BY (charge_point_id, connector_id, seq)""",
    "meter_values": """
        seq UInt64,
        timestamp DateTime64(3, 'UTC'),
        charge_point_id String,
        connector_id Int64,
        transaction_id Nullable(Int64),
        session_id String,
        measurand LowCardinality(String),
        phase LowCardinality(String),
        location LowCardinality(String),
        unit LowCardinality(String),
        context LowCardinality(String),
        value Float64,
        transaction_ref String
    ) ENGINE = MergeTree ORDER BY (charge_point_id, timestamp, seq)""",
    "session_versions": """
        seq UInt64,
        charge_point_id String,
        session_id String,
        connector_id Int64,
        transaction_id Int64,
        id_tag String,
        start_time Nullable(DateTime64(3, 'UTC')),
        stop_time Nullable(DateTime64(3, 'UTC')),
        meter_start Nullable(Float64),
        meter_stop Nullable(Float64),
        energy_wh Float64,
        duration_s Float64,
        stop_reason LowCardinality(String),
        state LowCardinality(String),
        flags Array(String),
        updated_at DateTime64(3, 'UTC'),
        transaction_ref String
    ) ENGINE = MergeTree ORDER BY (charge_point_id, session_id, seq)""",
    "energy_deltas": """
        seq UInt64,
        charge_point_id String,
        session_id String,
        hour DateTime64(0, 'UTC'),
        energy_wh Float64
    ) ENGINE = MergeTree ORDER BY (charge_point_id, hour, seq)""",
    "billing_versions": """
        seq UInt64,
        charge_point_id String,
        session_id String,
        transaction_id Int64,
        tariff_id String,
        currency LowCardinality(String),
        energy_wh Float64,
        duration_s Float64,
        energy_cost Decimal(18, 4),
        time_cost Decimal(18, 4),
        session_fee Decimal(18, 4),
        total Decimal(18, 4),
        state LowCardinality(String),
        updated_at DateTime64(3, 'UTC'),
        id_tag String,
        idle_cost Decimal(18, 4),
        prepaid Decimal(18, 4),
        refund Decimal(18, 4),
        shortfall Decimal(18, 4),
        platform_fee Decimal(18, 4),
        operator_share Decimal(18, 4),
        transaction_ref String
    ) ENGINE = MergeTree ORDER BY (charge_point_id, session_id, seq)""",
    "wallet_ledger": """
        seq UInt64,
        received_at DateTime64(3, 'UTC'),
        event_id String,
        id_tag String,
        kind LowCardinality(String),
        amount Decimal(18, 4),
        balance Decimal(18, 4),
        currency LowCardinality(String),
        charge_point_id String,
        transaction_id Nullable(Int64),
        transaction_ref String
    ) ENGINE = MergeTree ORDER BY (id_tag, seq)""",
    "anomaly_versions": """
        seq UInt64,
        anomaly_id String,
        kind LowCardinality(String),
        charge_point_id String,
        connector_id Int64,
        transaction_id Nullable(Int64),
        observed_at DateTime64(3, 'UTC'),
        detected_at DateTime64(3, 'UTC'),
        detail String,
        actions Array(String),
        resolved_at Nullable(DateTime64(3, 'UTC')),
        resolution String,
        transaction_ref String
    ) ENGINE = MergeTree ORDER BY (anomaly_id, seq)""",
    # The site allocator's decisions (allocation.decided): a connector's limit against
    # what it drew then, per node; docs/smart-charging.md.
    "allocations": """
        seq UInt64,
        decided_at DateTime64(3, 'UTC'),
        event_id String,
        node_id String,
        charge_point_id String,
        connector_id Int64,
        session String,
        limit_a Float64,
        admitted Bool,
        wants_a Float64,
        drawn_a Nullable(Float64),
        reason LowCardinality(String),
        command_id String
    ) ENGINE = MergeTree ORDER BY (node_id, decided_at, seq)""",
    # Each node of each site over time: its limit in force against what the connectors
    # below it are allocated and measured to draw, per phase (projections/site_load.py).
    "site_load": """
        seq UInt64,
        received_at DateTime64(3, 'UTC'),
        site_id String,
        node_id String,
        parent String,
        cause LowCardinality(String),
        limit_a Float64,
        limit_source LowCardinality(String),
        allocated_l1 Float64,
        allocated_l2 Float64,
        allocated_l3 Float64,
        measured_l1 Float64,
        measured_l2 Float64,
        measured_l3 Float64,
        transactions UInt32,
        metered UInt32,
        removed Bool
    ) ENGINE = MergeTree ORDER BY (site_id, node_id, seq)""",
    # OCPP 2.x stations' device models: one row per attribute of every variable a
    # NotifyReport part carried, as the part was stored.
    "device_model": """
        seq UInt64,
        charge_point_id String,
        request_id Int64,
        seq_no Int64,
        tbc Bool,
        generated_at Nullable(DateTime64(3, 'UTC')),
        reported_at DateTime64(3, 'UTC'),
        component LowCardinality(String),
        component_instance String,
        evse_id Nullable(Int64),
        connector_id Nullable(Int64),
        variable LowCardinality(String),
        variable_instance String,
        attribute_type LowCardinality(String),
        value Nullable(String),
        mutability LowCardinality(String),
        persistent Nullable(Bool),
        constant Nullable(Bool),
        data_type LowCardinality(String),
        unit String,
        min_limit Nullable(Float64),
        max_limit Nullable(Float64),
        values_list String,
        supports_monitoring Nullable(Bool)
    ) ENGINE = MergeTree ORDER BY (charge_point_id, seq)""",
    "projection_errors": """
        seq UInt64,
        received_at DateTime64(3, 'UTC'),
        `projection` LowCardinality(String),
        charge_point_id String,
        reason String
    ) ENGINE = MergeTree ORDER BY seq""",
    # Written after every table of a batch: every event at or below is fully projected.
    "_progress": """
        seq UInt64
    ) ENGINE = MergeTree ORDER BY seq""",
    # The fold state after event `seq`, so a restart does not re-read the whole stream.
    "_snapshots": """
        seq UInt64,
        state String CODEC(ZSTD(3))
    ) ENGINE = MergeTree ORDER BY seq""",
}

PROJECTED: Final = tuple(table for group in GROUPS.values() for table in group)


class _View(NamedTuple):
    # The table whose every column but ``hides`` the view shows, so that a column ADDED to
    # it needs the view made again; "" for a view that picks its columns.
    shows_all_of: str
    body: str
    hides: frozenset[str] = frozenset({"seq"})


_VIEWS: Final[dict[str, _View]] = {
    "charge_points": _View(
        "",
        """
        SELECT v.charge_point_id AS charge_point_id, v.vendor AS vendor, v.model AS model,
               v.serial_number AS serial_number, v.firmware_version AS firmware_version,
               v.last_boot AS last_boot, s.last_seen AS last_seen, v.connected AS connected,
               v.registered AS registered, v.updated_at AS updated_at
        FROM (
            SELECT * FROM {db}.charge_point_versions
            ORDER BY charge_point_id, seq DESC LIMIT 1 BY charge_point_id
        ) AS v
        LEFT JOIN (
            SELECT charge_point_id, max(received_at) AS last_seen FROM {db}.events
            WHERE charge_point_id != '' GROUP BY charge_point_id
        ) AS s ON s.charge_point_id = v.charge_point_id""",
    ),
    "sessions": _View(
        "session_versions",
        """
        SELECT * EXCEPT (seq), seq AS version FROM {db}.session_versions
        ORDER BY charge_point_id, session_id, seq DESC LIMIT 1 BY charge_point_id, session_id""",
    ),
    "billing": _View(
        "billing_versions",
        """
        SELECT * EXCEPT (seq), seq AS version FROM {db}.billing_versions
        ORDER BY charge_point_id, session_id, seq DESC LIMIT 1 BY charge_point_id, session_id""",
    ),
    "session_anomalies": _View(
        "anomaly_versions",
        """
        SELECT * EXCEPT (seq), seq AS version FROM {db}.anomaly_versions
        ORDER BY anomaly_id, seq DESC LIMIT 1 BY anomaly_id""",
    ),
    # Each node's latest site_load row, while the node exists.
    "site_load_latest": _View(
        "site_load",
        """
        SELECT * EXCEPT (seq, removed), seq AS version FROM (
            SELECT * FROM {db}.site_load ORDER BY node_id, seq DESC LIMIT 1 BY node_id
        ) WHERE NOT removed""",
        hides=frozenset({"seq", "removed"}),
    ),
    # Each station's latest report of each attribute.
    "device_variables": _View(
        "device_model",
        """
        SELECT * EXCEPT (seq), seq AS version FROM {db}.device_model
        ORDER BY charge_point_id, component, component_instance, evse_id, connector_id,
                 variable, variable_instance, attribute_type, seq DESC
        LIMIT 1 BY charge_point_id, component, component_instance, evse_id, connector_id,
                   variable, variable_instance, attribute_type""",
    ),
    "energy_hourly": _View(
        "",
        """
        SELECT charge_point_id, hour, round(sum(energy_wh), 3) AS energy_wh
        FROM {db}.energy_deltas GROUP BY charge_point_id, hour
        HAVING energy_wh != 0""",
    ),
}

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_database(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"database name {name!r}: letters, digits and _ only")
    return name


def table_ddl(db: str, table: str, name: str | None = None) -> str:
    """``CREATE TABLE`` for ``table``'s columns, under ``name`` (a shadow copy in replay)."""
    return f"CREATE TABLE IF NOT EXISTS {db}.{name or table} ({_TABLES[table]} {_SETTINGS}"


# Columns added to a table after it first shipped: a data directory from before gets them
# (at their defaults, until `hub replay` fills them).
# transaction_ref: the transaction id as the charger gave it, as text (OCPP 2.x ids are
# strings; the Int64 transaction_id holds 1.6's).
_REF: Final = "transaction_ref String"
ADDED: Final[dict[str, tuple[str, ...]]] = {
    "billing_versions": (
        "id_tag String",
        "idle_cost Decimal(18, 4)",
        "prepaid Decimal(18, 4)",
        "refund Decimal(18, 4)",
        "shortfall Decimal(18, 4)",
        "platform_fee Decimal(18, 4)",
        "operator_share Decimal(18, 4)",
        _REF,
    ),
    "meter_values": (_REF,),
    "session_versions": (_REF,),
    "wallet_ledger": (_REF,),
    "anomaly_versions": (_REF,),
}


# Columns whose type changed after they first shipped (connector ids were UInt32, which
# refused -1, stalling every projection, and wrapped 2^32 to 0): a data directory from
# before has such a table rebuilt under the new type at start, its rows copied as they are
# (``store.ensure_schema``).
RETYPED: Final[dict[str, dict[str, str]]] = {
    "connector_status": {"connector_id": "Int64"},
    "meter_values": {"connector_id": "Int64"},
    "session_versions": {"connector_id": "Int64"},
    "anomaly_versions": {"connector_id": "Int64"},
    # DateTime ends in 2106 and begins in 1970, and clamps a charger's hour outside silently.
    "energy_deltas": {"hour": "DateTime64(0, 'UTC')"},
}
# The new table a retyped one is copied into before the two are exchanged.
MIGRATING: Final = "__migrating"


def ddl(db: str, present: Collection[tuple[str, str]] = ()) -> list[str]:
    """The statements that make the schema. ``present`` holds the (table or view, column)
    pairs the database has already: what they show is there is left out, since even an
    ALTER or CREATE VIEW that changes nothing costs chDB tens of ms, every start and every
    replay."""
    tables = {table for table, _ in present}
    # A database that holds a table is there.
    statements = [] if tables else [f"CREATE DATABASE IF NOT EXISTS {db}"]
    statements += [table_ddl(db, table) for table in _TABLES if table not in tables]
    statements += [
        f"ALTER TABLE {db}.{table} ADD COLUMN IF NOT EXISTS {column}"
        for table, columns in ADDED.items()
        for column in columns
        if (table, column.split()[0]) not in present
    ]
    # A view keeps the columns its table had when it was made, so one from before a column
    # was ADDED would never show it: such a view is made again.
    statements += [
        f"CREATE OR REPLACE VIEW {db}.{view} AS {body.format(db=db)}"
        for view, (_, body, _) in _VIEWS.items()
        if view not in tables or _hides_columns(view, present)
    ]
    return statements


def _hides_columns(view: str, present: Collection[tuple[str, str]]) -> bool:
    table, _, hidden = _VIEWS[view]
    if not table:
        return False
    shown = {column for name, column in present if name == view}
    columns = {column for name, column in present if name == table}
    columns |= {added.split()[0] for added in ADDED.get(table, ())}
    return bool(columns - shown - hidden)


INSERT_SETTINGS: Final = {
    # Pinned, not left to server defaults: 26.x turns async_insert on, which would ack an
    # insert before it is stored. Our acks to JetStream follow the insert's success.
    "async_insert": 0,
    "wait_for_async_insert": 1,
    "insert_deduplicate": 1,
    # One INSERT must be one part, so a crash leaves all of a batch's rows or none: a batch
    # is far below these, and one thread keeps the input from being split.
    "max_insert_block_size": 10_000_000,
    "min_insert_block_size_rows": 10_000_000,
    "min_insert_block_size_bytes": 1 << 30,
    "max_insert_threads": 1,
    "input_format_parallel_parsing": 0,
    # events.payload arrives as the JSON object or array itself: its text is stored.
    "input_format_json_read_objects_as_strings": 1,
    "input_format_json_read_arrays_as_strings": 1,
}
