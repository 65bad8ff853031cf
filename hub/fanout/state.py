"""Per-charger live state: what a UI is shown, folded from the UI messages the stream's
events translate into.

``apply`` is the only code that changes a ``ChargerState``; it takes the event and the
messages ``translate.translate`` derived from it, so the state a snapshot shows is exactly
what the live messages told a UI. Which transactions are going on, and their energy, are the
charging domain's (``snapshot`` reads them from it); kept here is only what readings alone
tell of them (power, SoC). Everything here is bounded: a charger that invents connector ids
or DataTransfer vendors cannot grow it without limit.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

from hub.domain.charging import Charging
from hub.fanout.money import energy_of
from hub.fanout.translate import iso
from schemas.events import ChargerConnected, Event, FrameRejected, OcppFrame, TransactionId
from schemas.ui import (
    Boot,
    BootInfo,
    ChargerMessage,
    Connection,
    ConnectorView,
    DataTransfer,
    DataTransferView,
    Meter,
    Reading,
    SecurityEvent,
    SecurityEventView,
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
# The last security events a snapshot shows; older ones are in the stream.
MAX_SECURITY_EVENTS: Final = 20


@dataclass(slots=True)
class ConnectorState:
    status: str = ""
    error_code: str = ""
    info: str = ""
    ts: str = ""
    meter: dict[str, Reading] = field(default_factory=dict)


@dataclass(slots=True)
class Readings:
    """What only the readings tell of a transaction going on."""

    power_w: float | None = None
    soc: float | None = None


@dataclass(slots=True)
class ChargerState:
    charge_point_id: str
    seq: int = 0
    connected: bool = False
    last_seen: int = 0
    boot: BootInfo | None = None
    connectors: dict[int, ConnectorState] = field(default_factory=dict)
    # The transactions UIs were told started and not yet stopped, by transaction id (the
    # domain resolves every id a charger uses to the one the hub knows a transaction by).
    transactions: dict[TransactionId, Readings] = field(default_factory=dict)
    data_transfers: OrderedDict[tuple[str, str], DataTransferView] = field(
        default_factory=OrderedDict
    )
    security_profile: int | None = None
    certificate_not_after: str = ""
    ocpp_version: str = ""
    security_events: deque[SecurityEventView] = field(
        default_factory=lambda: deque(maxlen=MAX_SECURITY_EVENTS)
    )


def reading_key(reading: Reading) -> str:
    return f"{reading.measurand}/{reading.phase}" if reading.phase else reading.measurand


def apply(state: ChargerState, event: Event, seq: int, messages: list[ChargerMessage]) -> None:
    """Fold one event, and the messages translated from it, into ``state``."""
    state.seq = seq
    match event:
        case OcppFrame(direction="in") | FrameRejected() | ChargerConnected():
            # Anything the charger sent, understood or not, is a sign of life.
            state.last_seen = max(state.last_seen, event.received_at)
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
        case Connection():
            # A replaced connection's close is no message: the charger stays connected.
            if message.state != "replaced":
                state.connected = message.state == "connected"
            if message.state == "connected":
                state.security_profile = message.security_profile
                state.certificate_not_after = message.certificate_not_after
                state.ocpp_version = message.ocpp_version
        case TransactionStarted():
            if len(state.transactions) < MAX_TRANSACTIONS:
                state.transactions[message.transaction_id] = Readings()
        case TransactionUpdated():
            current = state.transactions.get(message.transaction_id)
            if current is None and len(state.transactions) < MAX_TRANSACTIONS:
                # Started before the replay's window: the domain knows it from its start (the
                # fan-out folds what changes profiles from the stream's first event on).
                current = state.transactions[message.transaction_id] = Readings()
            if current is not None:
                if message.power_w is not None:
                    current.power_w = message.power_w
                if message.soc is not None:
                    current.soc = message.soc
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
        case SecurityEvent():
            state.security_events.append(message.event)
        case _:
            pass


def transactions(state: ChargerState, charging: Charging) -> list[TransactionView]:
    """The charger's transactions going on, as the domain has them after the last event
    folded (a superseded one, or one a Stop stamped -1 ended, is gone), by connector."""
    views: list[TransactionView] = []
    for transaction_id, readings in state.transactions.items():
        session = charging.session_of(state.charge_point_id, transaction_id)
        if session is None or not session.ongoing:
            continue
        views.append(
            TransactionView(
                transaction_id=transaction_id,
                connector_id=session.connector_id,
                id_tag=session.id_tag,
                meter_start_wh=session.meter_start or 0.0,
                started_at=iso(session.start_ms),
                energy_wh=energy_of(session.curve()),
                power_w=readings.power_w,
                soc=readings.soc,
                inferred=session.start_ms is None,
            )
        )
    # 1.6's int ids and 2.x's string ids each in their order, never compared to each other.
    return sorted(
        views,
        key=lambda t: (t.connector_id, isinstance(t.transaction_id, str), t.transaction_id),
    )


def snapshot(state: ChargerState, charging: Charging, seq: int, received_at: int) -> Snapshot:
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
        transactions=transactions(state, charging),
        data_transfers=list(state.data_transfers.values()),
        security_events=list(state.security_events),
        security_profile=state.security_profile,
        certificate_not_after=state.certificate_not_after,
        ocpp_version=state.ocpp_version,
    )
