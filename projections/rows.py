"""One Struct per table: the rows the pure projections produce and the runner inserts.

Times are ``DateTime64(3)`` strings from ``timeutil.ch_time``; ``seq`` is the stream sequence
of the event whose projection produced the row, which is how a restart knows what is stored.

A row encodes as a JSON array of its values in its table's column order (its fields are its
columns, in order: tests/projections/test_pure.py holds them to the DDL), and is inserted as
JSONCompactEachRow: without the column names an INSERT body is half the size, half as much
for msgspec to write and for ClickHouse to parse. A table ClickHouse fills from rows of
another shape (``projections.reshapes``: meter_values) takes rows of that shape instead.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from hub.domain.facts import Sample
from schemas.events import TransactionId


def int_id(transaction_id: TransactionId | None) -> int | None:
    """The ``transaction_id`` column (Int64): an OCPP 1.6 id; a 2.x string id has none."""
    return transaction_id if isinstance(transaction_id, int) else None


def ref(transaction_id: TransactionId | None) -> str:
    """The ``transaction_ref`` column: the id as the charger gave it, as text ("": none)."""
    return "" if transaction_id is None else str(transaction_id)


# Not keyword-only: a wide row is built positionally where it is made for every session
# version (``SessionRow``, ``BillingRow``), as a keyword call of a Struct that wide costs
# about six times as much. The others are keyword-only, so each is built by name.
class _Row(msgspec.Struct, frozen=True, gc=False, array_like=True):
    seq: int


class EventRow(_Row, frozen=True, kw_only=True):
    """A row of the events log, its time (``received_at``) in Unix milliseconds: the
    store makes the column's DateTime64 of them (``projections.reshapes``)."""

    received_ms: int
    type: str
    charge_point_id: str
    ocpp_version: str
    direction: str
    message_type: str
    unique_id: str
    action: str
    # JSON for the payload column: an object or array goes as it is, and ClickHouse stores
    # its text (input_format_json_read_objects_as_strings); anything else as a JSON string.
    payload: msgspec.Raw
    error_code: str


class ChargePointRow(_Row, frozen=True, kw_only=True):
    charge_point_id: str
    vendor: str
    model: str
    serial_number: str
    firmware_version: str
    last_boot: str | None
    connected: bool
    registered: bool
    updated_at: str


class ConnectorStatusRow(_Row, frozen=True, kw_only=True):
    received_at: str
    timestamp: str | None
    charge_point_id: str
    connector_id: int
    status: str
    error_code: str
    info: str
    vendor_id: str
    vendor_error_code: str


class ReadingsRow(_Row, frozen=True, kw_only=True):
    """A TransactionMetered fact's samples, for meter_values: the store makes a row of each
    (``projections.reshapes``), so its fields are the reshape's structure, not the table's
    columns."""

    charge_point_id: str
    connector_id: int
    transaction_id: int | None
    session_id: str
    transaction_ref: str
    samples: tuple[Sample, ...]


class MeterValueRow(_Row, frozen=True, kw_only=True):
    """A row of meter_values as the table holds it (made of ``ReadingsRow`` by the store)."""

    timestamp: str
    charge_point_id: str
    connector_id: int
    transaction_id: int | None
    session_id: str
    measurand: str
    phase: str
    location: str
    unit: str
    context: str
    value: float
    transaction_ref: str


class SessionRow(_Row, frozen=True):
    charge_point_id: str
    session_id: str
    connector_id: int
    transaction_id: int
    id_tag: str
    start_time: str | None
    stop_time: str | None
    meter_start: float | None
    meter_stop: float | None
    energy_wh: float
    duration_s: float
    stop_reason: str
    state: str
    flags: list[str]
    updated_at: str
    transaction_ref: str


class EnergyDeltaRow(_Row, frozen=True, kw_only=True):
    charge_point_id: str
    session_id: str
    hour: str
    energy_wh: float


class BillingRow(_Row, frozen=True):
    charge_point_id: str
    session_id: str
    transaction_id: int
    tariff_id: str
    currency: str
    energy_wh: float
    duration_s: float
    energy_cost: Decimal
    time_cost: Decimal
    session_fee: Decimal
    total: Decimal
    state: str
    updated_at: str
    id_tag: str
    idle_cost: Decimal
    # A prepaid session's settlement (wallet.settled); zero until it is settled.
    prepaid: Decimal
    refund: Decimal
    shortfall: Decimal
    platform_fee: Decimal
    operator_share: Decimal
    transaction_ref: str


class WalletLedgerRow(_Row, frozen=True, kw_only=True):
    received_at: str
    event_id: str
    id_tag: str
    kind: str
    amount: Decimal
    balance: Decimal
    currency: str
    charge_point_id: str
    transaction_id: int | None
    transaction_ref: str


class AnomalyRow(_Row, frozen=True, kw_only=True):
    anomaly_id: str
    kind: str
    charge_point_id: str
    connector_id: int
    transaction_id: int | None
    observed_at: str
    detected_at: str
    detail: str
    actions: list[str]
    resolved_at: str | None
    resolution: str
    transaction_ref: str


class AllocationRow(_Row, frozen=True, kw_only=True):
    decided_at: str
    event_id: str
    node_id: str
    charge_point_id: str
    connector_id: int
    session: str
    limit_a: float
    admitted: bool
    wants_a: float
    drawn_a: float | None
    reason: str
    command_id: str


class SiteLoadRow(_Row, frozen=True, kw_only=True):
    received_at: str
    site_id: str
    node_id: str
    parent: str
    cause: str
    limit_a: float
    limit_source: str
    allocated_l1: float
    allocated_l2: float
    allocated_l3: float
    measured_l1: float
    measured_l2: float
    measured_l3: float
    transactions: int
    metered: int
    removed: bool


class DeviceModelRow(_Row, frozen=True, kw_only=True):
    charge_point_id: str
    request_id: int
    seq_no: int
    tbc: bool
    generated_at: str | None
    reported_at: str
    component: str
    component_instance: str
    evse_id: int | None
    connector_id: int | None
    variable: str
    variable_instance: str
    attribute_type: str
    value: str | None
    mutability: str
    persistent: bool | None
    constant: bool | None
    data_type: str
    unit: str
    min_limit: float | None
    max_limit: float | None
    values_list: str
    supports_monitoring: bool | None


class ErrorRow(_Row, frozen=True, kw_only=True):
    received_at: str
    projection: str
    charge_point_id: str
    reason: str


Row = (
    EventRow
    | ChargePointRow
    | ConnectorStatusRow
    | ReadingsRow
    | SessionRow
    | EnergyDeltaRow
    | BillingRow
    | WalletLedgerRow
    | AnomalyRow
    | AllocationRow
    | SiteLoadRow
    | DeviceModelRow
    | ErrorRow
)

# Table each row type goes to; the runner does one INSERT per table per batch.
TABLE_OF: dict[type[_Row], str] = {
    EventRow: "events",
    ChargePointRow: "charge_point_versions",
    ConnectorStatusRow: "connector_status",
    ReadingsRow: "meter_values",
    SessionRow: "session_versions",
    EnergyDeltaRow: "energy_deltas",
    BillingRow: "billing_versions",
    WalletLedgerRow: "wallet_ledger",
    AnomalyRow: "anomaly_versions",
    AllocationRow: "allocations",
    SiteLoadRow: "site_load",
    DeviceModelRow: "device_model",
    ErrorRow: "projection_errors",
}
TABLES: tuple[str, ...] = tuple(TABLE_OF.values())


class Output:
    """Rows produced by one batch, per table, with the tables a restart must not rewrite.

    ``skip[table]`` is the highest seq already stored in it: rows at or below are dropped,
    so re-projecting events after a crash repeats nothing.
    """

    def __init__(self, skip: dict[str, int] | None = None) -> None:
        self.skip = skip or {}
        self.rows: dict[str, list[_Row]] = {table: [] for table in TABLES}
        # Per row type: its table's list and the seq its rows must be above.
        self._into = {
            kind: (self.rows[table], self.skip.get(table, 0)) for kind, table in TABLE_OF.items()
        }

    def add(self, row: _Row) -> None:
        rows, floor = self._into[type(row)]
        if row.seq > floor:
            rows.append(row)

    def keeps(self, kind: type[_Row], seq: int) -> bool:
        """Whether a row of type ``kind`` from event ``seq`` would be kept: when not, the
        fold need not build it."""
        return seq > self._into[kind][1]

    def count(self) -> int:
        return sum(len(rows) for rows in self.rows.values())
