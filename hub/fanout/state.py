"""Per-charger live state, folded from the UI messages the stream's events translate into.

``apply`` is the only code that changes a ``ChargerState``; it takes the event and the
messages ``translate.translate`` derived from it, so the state a snapshot shows is exactly
what the live messages told a UI. Everything here is bounded: a charger that invents
connector ids or DataTransfer vendors cannot grow it without limit.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

import msgspec

from schemas.events import (
    ChargerConnected,
    ChargerDisconnected,
    ChargerReplaced,
    Event,
    FrameRejected,
    OcppFrame,
)
from schemas.ui import (
    Boot,
    BootInfo,
    ChargerMessage,
    ConnectorView,
    DataTransfer,
    DataTransferView,
    Meter,
    Reading,
    Snapshot,
    Status,
    TransactionStarted,
    TransactionStopped,
    TransactionUpdated,
    TransactionView,
)

MAX_CONNECTORS: Final = 64
MAX_READINGS_PER_CONNECTOR: Final = 256
MAX_TRANSACTIONS: Final = 64
MAX_DATA_TRANSFERS: Final = 32


@dataclass(slots=True)
class PendingCall:
    """The charger's CALL that the hub has not answered yet (OCPP-J allows one at a time)."""

    unique_id: str
    action: str
    payload: bytes


@dataclass(slots=True)
class ConnectorState:
    status: str = ""
    error_code: str = ""
    info: str = ""
    ts: str = ""
    meter: dict[str, Reading] = field(default_factory=dict)


@dataclass(slots=True)
class ChargerState:
    charge_point_id: str
    seq: int = 0
    connected: bool = False
    connection_id: str = ""
    last_seen: int = 0
    boot: BootInfo | None = None
    pending: PendingCall | None = None
    connectors: dict[int, ConnectorState] = field(default_factory=dict)
    transactions: dict[int, TransactionView] = field(default_factory=dict)
    data_transfers: OrderedDict[tuple[str, str], DataTransferView] = field(
        default_factory=OrderedDict
    )

    def transaction_on(self, connector_id: int) -> TransactionView | None:
        for transaction in self.transactions.values():
            if transaction.connector_id == connector_id:
                return transaction
        return None


def reading_key(reading: Reading) -> str:
    return f"{reading.measurand}/{reading.phase}" if reading.phase else reading.measurand


def apply(state: ChargerState, event: Event, seq: int, messages: list[ChargerMessage]) -> None:
    """Fold one event, and the messages translated from it, into ``state``."""
    state.seq = seq
    match event:
        case OcppFrame():
            if event.direction == "in":
                state.last_seen = max(state.last_seen, event.received_at)
                if event.message_type == "CALL":
                    state.pending = PendingCall(event.unique_id, event.action, bytes(event.payload))
            elif state.pending is not None and state.pending.unique_id == event.unique_id:
                state.pending = None
        case FrameRejected():
            state.last_seen = max(state.last_seen, event.received_at)
        case ChargerConnected():
            state.connected = True
            state.connection_id = event.connection_id
            state.last_seen = max(state.last_seen, event.received_at)
            state.pending = None
        case ChargerReplaced():
            # The old connection's close, which follows, must not mark the charger offline.
            state.connection_id = event.new_connection_id
        case ChargerDisconnected():
            if event.connection_id == state.connection_id:
                state.connected = False
                state.pending = None
    for message in messages:
        _apply_message(state, message)


def _connector(state: ChargerState, connector_id: int) -> ConnectorState | None:
    connector = state.connectors.get(connector_id)
    if connector is None:
        if len(state.connectors) >= MAX_CONNECTORS:
            return None
        connector = state.connectors[connector_id] = ConnectorState()
    return connector


def _apply_message(state: ChargerState, message: ChargerMessage) -> None:
    match message:
        case Status():
            if (connector := _connector(state, message.connector_id)) is not None:
                connector.status = message.status
                connector.error_code = message.error_code
                connector.info = message.info
                connector.ts = message.ts
        case Meter():
            if (connector := _connector(state, message.connector_id)) is not None:
                for reading in message.readings:
                    key = reading_key(reading)
                    if key in connector.meter or len(connector.meter) < MAX_READINGS_PER_CONNECTOR:
                        connector.meter[key] = reading
        case TransactionStarted():
            if len(state.transactions) < MAX_TRANSACTIONS:
                state.transactions[message.transaction_id] = TransactionView(
                    transaction_id=message.transaction_id,
                    connector_id=message.connector_id,
                    id_tag=message.id_tag,
                    meter_start_wh=message.meter_start_wh,
                    started_at=message.ts,
                )
        case TransactionUpdated():
            current = state.transactions.get(message.transaction_id)
            if current is not None:
                state.transactions[message.transaction_id] = msgspec.structs.replace(
                    current,
                    energy_wh=message.energy_wh,
                    power_w=message.power_w if message.power_w is not None else current.power_w,
                    soc=message.soc if message.soc is not None else current.soc,
                )
        case TransactionStopped():
            state.transactions.pop(message.transaction_id, None)
        case Boot():
            state.boot = message.boot
        case DataTransfer():
            pair = (message.transfer.vendor_id, message.transfer.message_id)
            state.data_transfers.pop(pair, None)
            state.data_transfers[pair] = message.transfer
            while len(state.data_transfers) > MAX_DATA_TRANSFERS:
                state.data_transfers.popitem(last=False)
        case _:
            pass


def snapshot(state: ChargerState, seq: int, received_at: int) -> Snapshot:
    """The charger as of stream sequence ``seq`` (the last one folded by this instance)."""
    return Snapshot(
        charge_point_id=state.charge_point_id,
        seq=seq,
        received_at=received_at,
        connected=state.connected,
        last_seen=state.last_seen,
        boot=state.boot,
        connectors=[
            ConnectorView(
                connector_id=connector_id,
                status=connector.status,
                error_code=connector.error_code,
                info=connector.info,
                ts=connector.ts,
                meter=dict(connector.meter),
            )
            for connector_id, connector in sorted(state.connectors.items())
        ],
        transactions=sorted(state.transactions.values(), key=lambda t: t.connector_id),
        data_transfers=list(state.data_transfers.values()),
    )
