"""Messages the UI fan-out sends to browsers and other UI clients, and the ones it accepts.

Every message about a charger is a frozen msgspec Struct tagged by ``type`` and carries
``chargePointId``, ``seq`` (the stream sequence of the event it derives from; for a snapshot,
the last sequence folded into it), ``ts`` (the charger's own time, ``""`` when the charger
gave none) and ``receivedAt`` (the hub's clock, Unix milliseconds). Field names are camelCase
on the wire. ``v`` is the UI schema version.

Evolution rules (msgspec's, as for events): new fields get defaults, a field never changes
type, a breaking change bumps ``UI_SCHEMA_VERSION``. See docs/ui-messages.md.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from schemas.events import TransactionId

UI_SCHEMA_VERSION: Final = 1


class _Ui(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", rename="camel", gc=False):
    v: int = UI_SCHEMA_VERSION


class _ChargerMessage(_Ui, frozen=True, kw_only=True):
    charge_point_id: str
    seq: int
    ts: str = ""
    received_at: int


# -- pieces of messages ------------------------------------------------------------------------


class Reading(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """One sampled value; ``value`` is numeric when the charger sent a number."""

    measurand: str
    value: float
    unit: str = ""
    phase: str = ""
    location: str = ""
    ts: str = ""


class BootInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    vendor: str
    model: str
    serial_number: str = ""
    firmware_version: str = ""
    status: str = ""  # the hub's answer: Accepted, Pending or Rejected
    interval: int = 0
    ts: str = ""


class ConnectorView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    connector_id: int
    status: str = ""
    error_code: str = ""
    info: str = ""
    ts: str = ""
    # "measurand" or "measurand/phase" -> the latest reading.
    meter: dict[str, Reading] = {}


class TransactionView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    transaction_id: TransactionId
    connector_id: int
    id_tag: str = ""
    meter_start_wh: float = 0.0
    started_at: str = ""
    energy_wh: float = 0.0
    power_w: float | None = None
    soc: float | None = None
    # Its start was never seen (see TransactionStarted.inferred).
    inferred: bool = False


class DataTransferView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    vendor_id: str
    message_id: str = ""
    # The ``data`` string decoded as JSON when it is JSON, else the string itself.
    data: Any = None
    status: str = ""
    ts: str = ""
    received_at: int = 0


class SecurityEventView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """A security event a charger reported (SecurityEventNotification)."""

    type: str
    timestamp: str  # the charger's time of it, ISO 8601 UTC
    tech_info: str = ""
    critical: bool = False  # one of the 1.6 security whitepaper's critical events


# -- charger messages --------------------------------------------------------------------------


class Snapshot(_ChargerMessage, frozen=True, kw_only=True, tag="snapshot"):
    """Everything the hub knows about one charger, as of stream sequence ``seq``."""

    connected: bool = False
    last_seen: int = 0
    boot: BootInfo | None = None
    connectors: list[ConnectorView] = []
    transactions: list[TransactionView] = []
    data_transfers: list[DataTransferView] = []
    # The last security events it reported, oldest first.
    security_events: list[SecurityEventView] = []
    # Of its latest connection: the security profile it authenticated with (null: none
    # seen), and under profile 3 its client certificate's expiry (ISO 8601 UTC).
    security_profile: int | None = None
    certificate_not_after: str = ""
    # The OCPP version its latest connection negotiated ("1.6", "2.0.1", "2.1"); "" before any.
    ocpp_version: str = ""


class Status(_ChargerMessage, frozen=True, kw_only=True, tag="status"):
    connector_id: int
    status: str
    error_code: str = ""
    info: str = ""


class Meter(_ChargerMessage, frozen=True, kw_only=True, tag="meter"):
    connector_id: int
    transaction_id: TransactionId | None = None
    readings: list[Reading]


class TransactionStarted(_ChargerMessage, frozen=True, kw_only=True, tag="transaction.started"):
    transaction_id: TransactionId
    connector_id: int
    id_tag: str = ""
    meter_start_wh: float = 0.0
    id_tag_status: str = ""
    # The hub never saw its start: readings or a Stop came for an id nobody knew (a charger
    # that worked offline, or a start before the fan-out's rebuild window). Its start time
    # and meter start are unknown, and its energy counts from its first reading.
    inferred: bool = False


class TransactionUpdated(_ChargerMessage, frozen=True, kw_only=True, tag="transaction.updated"):
    transaction_id: TransactionId
    connector_id: int
    energy_wh: float
    power_w: float | None = None
    soc: float | None = None


class Bill(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """A session's cost by the one cost function (hub/domain/tariffs.py); amounts are
    decimal strings, so no float ever touches money."""

    tariff_id: str = ""
    currency: str = ""
    energy_wh: float = 0.0
    energy_cost: str = "0"
    time_cost: str = "0"
    idle_cost: str = "0"
    session_fee: str = "0"
    total: str = "0"


class TransactionStopped(_ChargerMessage, frozen=True, kw_only=True, tag="transaction.stopped"):
    transaction_id: TransactionId
    connector_id: int = 0
    energy_wh: float = 0.0
    duration_s: float | None = None
    reason: str = ""
    meter_stop_wh: float = 0.0
    # The final bill, as the billing table has it.
    bill: Bill | None = None
    # Who ended it: "stopped" (the charger's Stop), "superseded" (a newer start on its
    # connector: the charger restarted or lost the Stop) or "closed" (the integrity policy).
    ended_by: str = ""
    # A later Stop from the charger changed the end of a transaction already reported over
    # (say, one superseded while the charger was offline): these figures replace those.
    corrected: bool = False


class CostUpdated(_ChargerMessage, frozen=True, kw_only=True, tag="cost"):
    """The running cost of a transaction, after each meter value that moved it."""

    transaction_id: TransactionId
    connector_id: int
    bill: Bill


AlertState = Literal["detected", "resolved", "action", "limit_reached"]


class Alert(_ChargerMessage, frozen=True, kw_only=True, tag="alert"):
    """The supervisor's findings (docs/integrity.md): an anomaly ``detected`` or
    ``resolved``, an ``action`` taken on one, or a session ``limit_reached``."""

    alert_id: str
    state: AlertState
    kind: str
    connector_id: int = 0
    transaction_id: TransactionId | None = None
    detail: str = ""
    action: str = ""
    command_id: str = ""


ConnectionState = Literal["connected", "disconnected", "replaced"]


class Connection(_ChargerMessage, frozen=True, kw_only=True, tag="connection"):
    """``connected``: with the OCPP security profile it authenticated with, and under
    profile 3 its client certificate's expiry (ISO 8601 UTC)."""

    state: ConnectionState
    close_code: int | None = None
    close_reason: str = ""
    security_profile: int | None = None
    certificate_not_after: str = ""
    ocpp_version: str = ""


class Boot(_ChargerMessage, frozen=True, kw_only=True, tag="boot"):
    boot: BootInfo


class DataTransfer(_ChargerMessage, frozen=True, kw_only=True, tag="data_transfer"):
    transfer: DataTransferView


class SecurityEvent(_ChargerMessage, frozen=True, kw_only=True, tag="security_event"):
    event: SecurityEventView


class Command(_ChargerMessage, frozen=True, kw_only=True, tag="command"):
    """The outcome of a command sent through the command API (hub/domain/command_tracking.py):
    ``status`` is accepted, rejected, failed or timeout; ``detail`` the answer or the error."""

    command_id: str
    action: str
    status: str
    detail: Any = None


class Allocation(_ChargerMessage, frozen=True, kw_only=True, tag="allocation"):
    """The site allocator's word on a connector (docs/smart-charging.md): its limit in A per
    phase (``admitted`` false: no room for its minimum, so 0 A), what it wants and draws,
    the node it hangs below, and why now (``reason``)."""

    connector_id: int
    session: str = ""
    limit_a: float
    admitted: bool = True
    wants_a: float = 0.0
    drawn_a: float | None = None
    node_id: str = ""
    reason: str = ""
    command_id: str = ""


ChargerMessage = (
    Snapshot
    | Status
    | Meter
    | TransactionStarted
    | TransactionUpdated
    | TransactionStopped
    | Connection
    | Boot
    | DataTransfer
    | SecurityEvent
    | Command
    | CostUpdated
    | Alert
    | Allocation
)


# -- session control ---------------------------------------------------------------------------

ErrorCode = Literal[
    "bad_request",
    "forbidden",
    "resume_unavailable",
    "rate_limited",
    "not_found",
    "resume_beyond_end",
]


class Error(_Ui, frozen=True, kw_only=True, tag="error"):
    """A request the server could not honour; the connection stays up unless said otherwise."""

    code: ErrorCode
    message: str
    charge_point_id: str = ""


class _ClientRequest(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="op", forbid_unknown_fields=True
):
    """Unknown fields are refused, as everywhere else the hub reads input: a misspelt
    `since` would otherwise turn a resume into a fresh subscribe without a word."""


class Subscribe(_ClientRequest, frozen=True, kw_only=True, tag="subscribe"):
    chargers: list[str]
    since: int | None = None


class Unsubscribe(_ClientRequest, frozen=True, kw_only=True, tag="unsubscribe"):
    chargers: list[str]


ClientMessage = Subscribe | Unsubscribe
UiMessage = ChargerMessage | Error

_encoder: Final = msgspec.json.Encoder()
_decoder: Final[msgspec.json.Decoder[UiMessage]] = msgspec.json.Decoder(UiMessage)
_client_decoder: Final[msgspec.json.Decoder[ClientMessage]] = msgspec.json.Decoder(ClientMessage)


def encode_ui(message: UiMessage) -> bytes:
    return _encoder.encode(message)


def decode_ui(data: bytes | str) -> UiMessage:
    return _decoder.decode(data)


def decode_client(data: bytes | str) -> ClientMessage:
    """Raises ``msgspec.DecodeError``/``ValidationError`` naming the offending field."""
    return _client_decoder.decode(data)
