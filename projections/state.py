"""The state the projections fold events into: a plain value, encodable as a snapshot.

Nothing in here reads a clock. Every field is derived from events in stream order, so the
same events give the same state, live, after a crash, or in a replay.
"""

from __future__ import annotations

from typing import Final

import msgspec

from hub.domain import charging
from hub.domain.sites import SitesState
from schemas.events import TransactionId

# Bump whenever a projection's code changes what it derives from events: snapshots of
# another version are then ignored, and `hub replay` rebuilds the tables.
STATE_VERSION: Final = 9


class ChargePoint(msgspec.Struct, kw_only=True):
    vendor: str = ""
    model: str = ""
    serial_number: str = ""
    firmware_version: str = ""
    last_boot_ms: int | None = None
    connected: bool = False
    registered: bool = False


class Written(msgspec.Struct, kw_only=True):
    """What the projections wrote of one transaction so far (the domain's ``Session`` says
    what it is)."""

    # nano-Wh per hour of the curve, as written to energy_deltas so far.
    hourly: dict[int, int] = {}
    # Charger time of the newest reading the latest session version covered (None: no
    # version yet, or none with a reading): readings write a new one VERSION_EVERY_MS later.
    versioned_ms: int | None = None
    # Whether a version was written: a transaction known only from its readings gets its
    # first with them.
    versioned: bool = False


class Anomaly(msgspec.Struct, kw_only=True):
    """An anomaly between its detection and its resolution, for session_anomalies."""

    kind: str
    charge_point_id: str
    connector_id: int
    transaction_id: TransactionId | None
    observed_ms: int
    detected_ms: int
    detail: str
    actions: list[str] = []


# Current on L1, L2 and L3, in mA: whole numbers, so sums kept by adding and taking back
# are exact, whatever the order.
MilliAmps = tuple[int, int, int]


class Below(msgspec.Struct, kw_only=True):
    """A transaction running on a connector assigned below a site's node, for site_load:
    its latest reading per phase and the limit the allocator last gave it (mA)."""

    charge_point_id: str
    connector_id: int
    session: str
    measured: MilliAmps | None = None
    allocated: int | None = None


class Totals(msgspec.Struct, kw_only=True):
    """The transactions below a node, summed (mA per phase)."""

    allocated: list[int] = msgspec.field(default_factory=lambda: [0, 0, 0])
    measured: list[int] = msgspec.field(default_factory=lambda: [0, 0, 0])
    transactions: int = 0
    metered: int = 0


class NodeLoad(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a node's site_load row shows, besides when and why."""

    site_id: str
    parent: str
    limit_a: float
    limit_source: str
    allocated: MilliAmps
    measured: MilliAmps
    transactions: int
    metered: int


class SiteLoad(msgspec.Struct, kw_only=True):
    sites: SitesState = msgspec.field(default_factory=SitesState)
    # Transactions below a node, by connector key.
    below: dict[str, Below] = {}
    # By node: what the transactions below it add up to.
    totals: dict[str, Totals] = {}
    # What each node's latest row showed; a node gone is forgotten.
    written: dict[str, NodeLoad] = {}


class State(msgspec.Struct, kw_only=True):
    version: int = STATE_VERSION
    last_seq: int = 0
    # What the events mean: the charging domain's state, folded here like everywhere.
    domain: charging.State = msgspec.field(default_factory=charging.State)
    charge_points: dict[str, ChargePoint] = {}
    # By the domain's session key; forgotten with the domain's session.
    written: dict[str, Written] = {}
    # Open anomalies by id; a resolved one is forgotten.
    anomalies: dict[str, Anomaly] = {}
    site_load: SiteLoad = msgspec.field(default_factory=SiteLoad)


def key(first: object, second: object) -> str:
    return f"{first}\x1f{second}"


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(State)


def encode_state(state: State) -> bytes:
    return _encoder.encode(state)


def decode_state(data: bytes | str) -> State:
    return _decoder.decode(data)
