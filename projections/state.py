"""The state the projections fold events into: a plain value, encodable as a snapshot.

Nothing in here reads a clock. Every field is derived from events in stream order, so the
same events give the same state, live, after a crash, or in a replay.
"""

from __future__ import annotations

from typing import Final

import msgspec

from hub.domain.tariffs import Point, Tariff, TariffEntry
from hub.domain.wallets import Wallets

# Bump whenever a projection's code changes what it derives from events: snapshots of
# another version are then ignored, and `hub replay` rebuilds the tables.
STATE_VERSION: Final = 5
# Completed sessions stay in the state so late meter values still reach them; beyond this
# many the oldest completed one is forgotten (its late values are then recorded in
# projection_errors instead of moving its energy). FIFO by completion: deterministic.
KEEP_COMPLETED: Final = 20_000
# A charger that never answers leaves its CALL here; the oldest beyond this many go.
MAX_PENDING: Final = 10_000


class PendingCall(msgspec.Struct, kw_only=True, gc=False):
    action: str
    payload: str
    seq: int


class ChargePoint(msgspec.Struct, kw_only=True):
    vendor: str = ""
    model: str = ""
    serial_number: str = ""
    firmware_version: str = ""
    last_boot_ms: int | None = None
    connected: bool = False
    registered: bool = False


class Session(msgspec.Struct, kw_only=True):
    charge_point_id: str
    session_id: str
    connector_id: int = 0
    transaction_id: int = 0
    id_tag: str = ""
    start_ms: int | None = None
    stop_ms: int | None = None
    meter_start: float | None = None
    meter_stop: float | None = None
    stop_reason: str = ""
    state: str = "ongoing"
    flags: list[str] = []
    # Register readings, sorted by charger time (equal times in arrival order).
    points: list[Point] = []
    # nano-Wh per hour of the curve, as written to energy_deltas so far.
    hourly: dict[int, int] = {}
    tariff: Tariff | None = None
    updated_ms: int = 0
    # Charger time of the newest reading the latest session version covered (None: no
    # version yet, or none with a reading): readings write a new one VERSION_EVERY_MS later.
    versioned_ms: int | None = None
    # wallet.settled of a prepaid session: amounts as the event has them.
    settlement: Settlement | None = None


class Settlement(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    held: str
    refund: str
    shortfall: str
    platform_fee: str
    operator_share: str


class Anomaly(msgspec.Struct, kw_only=True):
    """An anomaly between its detection and its resolution, for session_anomalies."""

    kind: str
    charge_point_id: str
    connector_id: int
    transaction_id: int | None
    observed_ms: int
    detected_ms: int
    detail: str
    actions: list[str] = []


class State(msgspec.Struct, kw_only=True):
    version: int = STATE_VERSION
    last_seq: int = 0
    pending: dict[str, PendingCall] = {}
    charge_points: dict[str, ChargePoint] = {}
    sessions: dict[str, Session] = {}
    # "<charger>\x1f<connector>" -> key of the session open on it.
    open_by_connector: dict[str, str] = {}
    # "<charger>\x1f<transaction id as sent>" -> key, for ids the hub never issued.
    aliases: dict[str, str] = {}
    completed: list[str] = []
    tariffs: list[TariffEntry] = []
    wallets: Wallets = msgspec.field(default_factory=Wallets)
    # Open anomalies by id; a resolved one is forgotten.
    anomalies: dict[str, Anomaly] = {}


def key(first: object, second: object) -> str:
    return f"{first}\x1f{second}"


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(State)


def encode_state(state: State) -> bytes:
    return _encoder.encode(state)


def decode_state(data: bytes | str) -> State:
    return _decoder.decode(data)
