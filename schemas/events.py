"""The event log's types: every fact the hub knows is one of these, stored on JetStream.

Evolution rules (msgspec's): new fields get defaults, a field never changes type, and a
breaking change bumps ``SCHEMA_VERSION`` and adds an upcaster in ``schemas.upcast``.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1

OcppVersion = Literal["1.6", "2.0.1", "2.1"]
Direction = Literal["in", "out"]
# CALLRESULTERROR (an error answer to a CALLRESULT the other side could not process) and
# SEND (an unconfirmed message) exist from OCPP 2.1 on; neither is ever answered.
MessageType = Literal["CALL", "CALLRESULT", "CALLERROR", "CALLRESULTERROR", "SEND"]
# A transaction id as the charger has it: an int in OCPP 1.6, a string in 2.x. Fields that
# were ``int`` widened to this: every stored event still decodes as it did.
TransactionId = int | str


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Fields every event carries.

    ``id`` doubles as the JetStream ``Nats-Msg-Id``, so publishing the same event twice
    stores it once. ``received_at`` is the hub's clock, in Unix milliseconds.
    """

    v: int = SCHEMA_VERSION
    id: str
    received_at: int


class _ChargerEvent(_Event, frozen=True, kw_only=True):
    charge_point_id: str
    gateway_id: str
    connection_id: str


class OcppFrame(_ChargerEvent, frozen=True, kw_only=True, tag="ocpp.frame"):
    """One well-formed OCPP-J frame, in either direction, exactly as it crossed the wire.

    ``payload`` is the frame's payload element verbatim (for CALLERROR, the error details).
    ``action`` is the CALL's action, repeated on its CALLRESULT or CALLERROR.
    """

    ocpp_version: OcppVersion
    direction: Direction
    message_type: MessageType
    unique_id: str
    action: str
    payload: msgspec.Raw
    error_code: str = ""
    error_description: str = ""


RejectionReason = Literal[
    "not_json",
    "bad_shape",
    "unknown_message_type",
    "unknown_action",
    "schema_violation",
    "oversized",
    "call_outstanding",
    "unique_id_too_long",
    "unexpected_result",
    "internal_error",
    "binary_frame",
]


class FrameRejected(_ChargerEvent, frozen=True, kw_only=True, tag="ocpp.rejected"):
    """An inbound frame the gateway refused; ``raw`` keeps it byte for byte (UTF-8 text).

    A frame too large to keep whole is cut: ``raw_truncated`` says so, and ``raw_size`` (bytes)
    and ``raw_sha256`` (hex) describe the whole frame."""

    ocpp_version: OcppVersion
    reason: RejectionReason
    error_code: str
    error_description: str
    raw: str
    unique_id: str = ""
    action: str = ""
    raw_truncated: bool = False
    raw_size: int = 0
    raw_sha256: str = ""


# 0: no authentication; 1: HTTP Basic; 2: HTTP Basic over TLS; 3: TLS with a client
# certificate (OCPP 1.6 security whitepaper, OCPP 2.0.1 part 2 A00).
SecurityProfile = Literal[0, 1, 2, 3]


class ChargerConnected(_ChargerEvent, frozen=True, kw_only=True, tag="connection.opened"):
    """``security_profile`` says how the charger authenticated. Under profile 3 the client
    certificate it presented: ``certificate_serial`` (hex, upper case) and
    ``certificate_not_after`` (ISO 8601 UTC); never anything private."""

    ocpp_version: OcppVersion
    remote_address: str
    security_profile: SecurityProfile
    certificate_serial: str = ""
    certificate_not_after: str = ""


class ChargerDisconnected(_ChargerEvent, frozen=True, kw_only=True, tag="connection.closed"):
    close_code: int | None = None
    close_reason: str = ""


class ChargerReplaced(_ChargerEvent, frozen=True, kw_only=True, tag="connection.replaced"):
    """The charger opened a newer connection; ``connection_id`` is the one being closed."""

    new_connection_id: str
    new_gateway_id: str


RefusalReason = Literal[
    "invalid_charge_point_id",
    "unsupported_subprotocol",
    "missing_subprotocol",
    "unknown_charger",
    "bad_credentials",
    "missing_credentials",
    "locked_out",
    # A client certificate whose subject CN is not the charger id of the URL.
    "certificate_mismatch",
    # A charger registered for security profile 3 that presented no client certificate.
    "missing_certificate",
    # A charger registered for security profile 2 or 3 on a gateway that serves no TLS.
    "tls_required",
]


class ConnectionRefused(_Event, frozen=True, kw_only=True, tag="connection.refused"):
    """A WebSocket handshake the gateway turned down; ``charge_point_id`` is as requested."""

    charge_point_id: str
    gateway_id: str
    reason: RefusalReason
    remote_address: str
    path: str
    # What the charger offered in Sec-WebSocket-Protocol, in its order.
    offered_subprotocols: tuple[str, ...] = ()


# Why the hub did not sign a charger's CSR (SignCertificate):
#   no_ca            no certificate authority is configured
#   unknown_charger  the charger is not registered: nothing proves its id
#   not_a_csr        the csr field is no PEM certificate signing request
#   bad_signature    the CSR's signature does not verify (the sender lacks the key)
#   weak_key         a key type or size the hub does not sign
#   cn_mismatch      the CSR's common name is not the charger's id
#   busy             the charger's previous CSR is still being signed and delivered
#   ca_failed        the certificate authority failed (external command, chain unusable)
#   wrong_type       a 2.x CSR for an ISO 15118 (V2G) certificate, which the hub's CA does not issue
CertificateRefusal = Literal[
    "no_ca",
    "unknown_charger",
    "not_a_csr",
    "bad_signature",
    "weak_key",
    "cn_mismatch",
    "busy",
    "ca_failed",
    "wrong_type",
]


class CertificateRefused(_ChargerEvent, frozen=True, kw_only=True, tag="certificate.refused"):
    """The hub did not sign the CSR of the charger's SignCertificate CALL ``unique_id``.
    Refused before the answer: stored with the exchange, which answers ``Rejected``; the CA
    failing after an ``Accepted``: stored then, and no CertificateSigned follows."""

    unique_id: str
    reason: CertificateRefusal
    detail: str = ""


class CertificateIssued(_ChargerEvent, frozen=True, kw_only=True, tag="certificate.issued"):
    """The hub's CA signed the CSR of the charger's SignCertificate ``unique_id``; the
    CertificateSigned CALL ``command_id`` delivers ``chain`` (PEM, leaf first: public, no
    key). ``serial`` (hex), ``subject`` and the validity (Unix ms) are the leaf's, so no
    consumer parses the chain. ``issuer``: ``local`` (``hub ca init``) or ``external``."""

    unique_id: str
    command_id: str
    serial: str
    subject: str
    not_before: int
    not_after: int
    issuer: str
    chain: str


class _AdminEvent(_Event, frozen=True, kw_only=True):
    actor: str


class ChargerRegistered(_AdminEvent, frozen=True, kw_only=True, tag="admin.charger.registered"):
    """A charger the hub knows; ``password_hash`` is a PHC-style PBKDF2 string, never the secret.

    ``security_profile``: how it must authenticate; None (registrations from before it
    existed, and ones that give none) means by its password if it has one (profile 1 or 2,
    whichever the gateway serves), else not at all. ``ocpp_versions``: the OCPP versions it
    may connect with, within the gateway's (``--ocpp-versions``); empty: the gateway's."""

    charge_point_id: str
    password_hash: str = ""
    security_profile: SecurityProfile | None = None
    ocpp_versions: tuple[OcppVersion, ...] = ()


class ChargerUnregistered(_AdminEvent, frozen=True, kw_only=True, tag="admin.charger.unregistered"):
    charge_point_id: str


class ChargerAccepted(_AdminEvent, frozen=True, kw_only=True, tag="admin.charger.accepted"):
    """An operator accepted a charger the ``pending`` boot policy holds: its BootNotifications
    are answered ``Accepted`` from then on, and a connected one is asked for one at once."""

    charge_point_id: str


class PasswordRotationStarted(
    _AdminEvent, frozen=True, kw_only=True, tag="admin.charger.password.rotating"
):
    """The hub sends a charger a new password (ChangeConfiguration AuthorizationKey, command
    ``command_id``). Until the rotation ends, the old password and this one
    (``password_hash``, PBKDF2 like a registration's, never the secret) both log in."""

    charge_point_id: str
    rotation_id: str
    password_hash: str
    command_id: str


# completed: the charger logged in with the new password, which replaces the old one.
# rejected: it answered anything but Accepted (or RebootRequired), or a CALLERROR.
# timeout: it did not answer in time, or disconnected before answering.
# failed: the CALL never reached it (offline, too many commands queued).
RotationOutcome = Literal["completed", "rejected", "timeout", "failed"]


class PasswordRotationEnded(
    _AdminEvent, frozen=True, kw_only=True, tag="admin.charger.password.rotated"
):
    """What became of a rotation; unless ``completed``, the old password stays the only one.
    ``detail``: the charger's status or error code, or why nothing reached it."""

    charge_point_id: str
    rotation_id: str
    outcome: RotationOutcome
    detail: str = ""


IdTagStatus = Literal["Accepted", "Blocked", "Expired", "Invalid"]


class SessionLimits(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Where a session is stopped (RemoteStopTransaction); ``None`` is no limit.

    ``max_cost`` is a decimal string in the tariff's currency, like every price."""

    max_energy_wh: float | None = None
    max_duration_s: int | None = None
    max_cost: str | None = None


class IdTagUpserted(_AdminEvent, frozen=True, kw_only=True, tag="admin.idtag.upserted"):
    id_tag: str
    status: IdTagStatus = "Accepted"
    expiry_date: str = ""
    parent_id_tag: str = ""
    limits: SessionLimits | None = None


class IdTagRemoved(_AdminEvent, frozen=True, kw_only=True, tag="admin.idtag.removed"):
    id_tag: str


class TariffBand(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Prices for a time-of-day window, ``HH:MM`` to ``HH:MM`` UTC (may wrap past midnight)."""

    start: str
    end: str
    per_kwh: str = "0"
    per_minute: str = "0"


class TariffSet(_AdminEvent, frozen=True, kw_only=True, tag="admin.tariff.set"):
    """A tariff an operator put in force; billing applies it to sessions starting from then.

    Prices are decimal strings so money never passes through a float. An empty
    ``charge_point_id`` makes it the default for every charger without a tariff of its own.
    ``effective_from`` is Unix ms; 0 means from ``received_at``.
    """

    tariff_id: str
    charge_point_id: str = ""
    currency: str = "EUR"
    per_kwh: str = "0"
    per_minute: str = "0"
    session_fee: str = "0"
    bands: tuple[TariffBand, ...] = ()
    effective_from: int = 0
    # Idle: connected after the energy stopped flowing, billed beyond the grace period.
    idle_per_minute: str = "0"
    idle_grace_minutes: int = 0
    limits: SessionLimits | None = None


class WalletConfigured(_AdminEvent, frozen=True, kw_only=True, tag="admin.wallet.configured"):
    """An id tag pays from a prepaid wallet.

    At each start the hub holds ``hold_amount`` (empty: the whole available balance, capped
    by it in any case); Authorize and StartTransaction refuse the tag while its available
    balance is not above ``min_balance``.
    """

    id_tag: str
    currency: str = "EUR"
    hold_amount: str = ""
    min_balance: str = "0"


WalletCreditKind = Literal["topup", "adjustment"]


class WalletCredited(_AdminEvent, frozen=True, kw_only=True, tag="admin.wallet.credited"):
    """Money put into (or, for a negative adjustment, taken out of) a wallet by an operator.

    ``reference`` is the caller's idempotency key; the event id derives from it.
    """

    id_tag: str
    amount: str
    kind: WalletCreditKind = "topup"
    currency: str = "EUR"
    reference: str = ""
    note: str = ""


class SessionLimitsSet(_AdminEvent, frozen=True, kw_only=True, tag="admin.session.limits"):
    """Limits an operator put on one running transaction, over its tariff's and tag's."""

    charge_point_id: str
    transaction_id: TransactionId
    limits: SessionLimits


class CommandRequested(_AdminEvent, frozen=True, kw_only=True, tag="admin.command.requested"):
    """An operator asked, through the command API, for a CALL to a charger; stored before it
    is sent. ``command_id`` is the CALL's OCPP-J unique id; ``payload`` the request as sent."""

    command_id: str
    charge_point_id: str
    action: str
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    timeout_s: float = 30.0


class CommandFinished(_AdminEvent, frozen=True, kw_only=True, tag="admin.command.finished"):
    """What became of a requested command, as the API learnt it from the gateway's reply.

    ``status`` is the reply's (``answered``, ``callerror``, ``timeout``, ``offline``,
    ``busy``, ``invalid``, ``invalid_answer``); ``payload`` is the charger's CALLRESULT payload.
    """

    command_id: str
    charge_point_id: str
    action: str
    status: str
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    error_code: str = ""
    error_description: str = ""


class AccessDenied(_AdminEvent, frozen=True, kw_only=True, tag="admin.access.denied"):
    """An API request refused for want of a valid token (401), a role or a scope (403).

    ``actor`` is the token's subject when the token was valid, else empty."""

    method: str
    path: str
    http_status: int
    reason: str
    charge_point_id: str = ""


class DailyLimit(msgspec.Struct, frozen=True, kw_only=True, gc=False, rename={"start": "from"}):
    """From ``start`` (``HH:MM`` UTC) on each day, until the next entry's, the node's limit."""

    start: str
    limit: float


SiteUnit = Literal["A", "W"]


class SiteNodeSet(_AdminEvent, frozen=True, kw_only=True, tag="admin.site.node.set"):
    """A node of a site (the grid connection, a feeder, a fuse): its ``parent`` (empty for a
    site's root) and its static limit, in A per phase or in W over its ``phases`` at
    ``voltage``. ``daily``: a schedule by time of day (UTC) that replaces ``limit`` from each
    entry's time on; empty: ``limit`` all day. Setting a node again replaces it."""

    node_id: str
    parent: str = ""
    limit: float
    unit: SiteUnit = "A"
    phases: int = 3
    voltage: float = 230.0
    daily: tuple[DailyLimit, ...] = ()


class SiteNodeRemoved(_AdminEvent, frozen=True, kw_only=True, tag="admin.site.node.removed"):
    node_id: str


class SiteLimitSet(_AdminEvent, frozen=True, kw_only=True, tag="admin.site.limit.set"):
    """A live limit on a node (from an EMS, a building meter) that overrides its static and
    daily limit while set; ``limit`` None clears it."""

    node_id: str
    limit: float | None = None
    unit: SiteUnit = "A"


class SiteConnectorAssigned(
    _AdminEvent, frozen=True, kw_only=True, tag="admin.site.connector.assigned"
):
    """A connector hangs below ``node_id`` (empty: below none); ``connector_id`` 0 stands for
    every connector of the charger without an assignment of its own. ``min_a``/``max_a``: the
    least the charger charges at and the most it (and its cable) allow, per phase."""

    charge_point_id: str
    connector_id: int = 0
    node_id: str = ""
    priority: int = 0
    min_a: float = 6.0
    max_a: float = 32.0
    phases: int = 3


class ClockTick(_Event, frozen=True, kw_only=True, tag="clock.tick"):
    """The hub's clock, as an event: timers in pure folds advance on these, never on a
    clock read, so a replay fires every timer where it fired live."""


class _DerivedEvent(_Event, frozen=True, kw_only=True):
    """A fact the supervisor derived from the events before it; ``cause_seq`` is the stream
    sequence of the event that made it so."""

    cause_seq: int


class WalletHeld(_DerivedEvent, frozen=True, kw_only=True, tag="wallet.held"):
    """Money set aside from a wallet when a prepaid transaction started."""

    id_tag: str
    charge_point_id: str
    transaction_id: TransactionId
    amount: str
    currency: str


class WalletSettled(_DerivedEvent, frozen=True, kw_only=True, tag="wallet.settled"):
    """A prepaid transaction's bill: ``refund = max(0, held - cost)`` goes back to the wallet,
    ``shortfall = max(0, cost - held)`` is taken from it, and ``cost`` splits into the
    platform's fee and the operator's share."""

    id_tag: str
    charge_point_id: str
    transaction_id: TransactionId
    currency: str
    held: str
    cost: str
    refund: str
    shortfall: str
    platform_fee: str
    operator_share: str
    fee_rate: str


class WalletAdjusted(_DerivedEvent, frozen=True, kw_only=True, tag="wallet.adjusted"):
    """A settled prepaid transaction's bill moved (readings that came late, a corrected
    Stop): the wallet pays the difference. ``amount = cost - what it paid so far``: above 0
    taken from the wallet, below 0 given back. ``refund``, ``shortfall``, ``platform_fee``
    and ``operator_share`` are the changes to the settlement's: with it and the earlier
    adjustments they add up to what a settlement at ``cost`` would be."""

    id_tag: str
    charge_point_id: str
    transaction_id: TransactionId
    currency: str
    held: str
    cost: str  # the bill now: what the wallet has paid for the transaction in all
    amount: str
    refund: str
    shortfall: str
    platform_fee: str
    operator_share: str
    fee_rate: str


AnomalyKind = Literal[
    "orphaned",
    "ghost",
    "duplicate_start",
    "stale",
    "meter_backwards",
    "power_exceeded",
    "certificate_expiring",
    "certificate_expired",
    # A connector of a site the allocator does not control: it refused a profile, did not
    # answer, or is offline; its load is counted at its last accepted limit (or its maximum).
    "load_unmanaged",
]


class AnomalyDetected(_DerivedEvent, frozen=True, kw_only=True, tag="integrity.detected"):
    """A session integrity detector fired; ``observed_at`` is when the condition began (ms)."""

    anomaly_id: str
    kind: AnomalyKind
    charge_point_id: str
    connector_id: int = 0
    transaction_id: TransactionId | None = None
    observed_at: int
    detail: str = ""


class AnomalyResolved(_DerivedEvent, frozen=True, kw_only=True, tag="integrity.resolved"):
    anomaly_id: str
    kind: AnomalyKind
    charge_point_id: str
    connector_id: int = 0
    transaction_id: TransactionId | None = None
    resolution: str


IntegrityActionKind = Literal["trigger_status", "remote_stop", "close_session"]


class IntegrityAction(_DerivedEvent, frozen=True, kw_only=True, tag="integrity.action"):
    """What the policy did about an anomaly; ``close_session`` ends the transaction in the
    projections as ``terminated``, without the charger."""

    anomaly_id: str
    action: IntegrityActionKind
    charge_point_id: str
    connector_id: int = 0
    transaction_id: TransactionId | None = None
    command_id: str = ""


LimitKind = Literal["energy", "duration", "cost"]
LimitSource = Literal["tariff", "id_tag", "api", "prepaid"]


class LimitReached(_DerivedEvent, frozen=True, kw_only=True, tag="session.limit_reached"):
    """A running transaction crossed a limit; the hub sends RemoteStopTransaction
    (``command_id``)."""

    charge_point_id: str
    connector_id: int
    transaction_id: TransactionId
    limit: LimitKind
    source: LimitSource
    threshold: str
    value: str
    command_id: str


AllocationReason = Literal["start", "meter", "limit", "end", "tick", "connect", "rejected"]


class AllocationDecided(_DerivedEvent, frozen=True, kw_only=True, tag="allocation.decided"):
    """The site allocator's word on a connector: its limit in A per phase (``admitted``
    false: no room for its minimum, so 0 A), what it wants and draws (per phase, the highest;
    None: no reading yet), the node it hangs below, and why now (``reason``). ``command_id``
    names the SetChargingProfile that carries it ("" when nothing is sent)."""

    charge_point_id: str
    connector_id: int
    session: str = ""
    limit_a: float
    admitted: bool = True
    wants_a: float = 0.0
    drawn_a: float | None = None
    node_id: str = ""
    reason: AllocationReason
    command_id: str = ""


ChargerEvent = (
    OcppFrame
    | FrameRejected
    | ChargerConnected
    | ChargerDisconnected
    | ChargerReplaced
    | CertificateRefused
    | CertificateIssued
)
AdminEvent = (
    ChargerRegistered
    | ChargerUnregistered
    | ChargerAccepted
    | PasswordRotationStarted
    | PasswordRotationEnded
    | IdTagUpserted
    | IdTagRemoved
    | TariffSet
    | WalletConfigured
    | WalletCredited
    | SessionLimitsSet
    | CommandRequested
    | CommandFinished
    | AccessDenied
    | SiteNodeSet
    | SiteNodeRemoved
    | SiteLimitSet
    | SiteConnectorAssigned
)
DerivedEvent = (
    WalletHeld
    | WalletSettled
    | WalletAdjusted
    | AnomalyDetected
    | AnomalyResolved
    | IntegrityAction
    | LimitReached
    | AllocationDecided
)
Event = ChargerEvent | ConnectionRefused | AdminEvent | ClockTick | DerivedEvent

_encoder: Final = msgspec.json.Encoder()
_decoder: Final[msgspec.json.Decoder[Event]] = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    return _decoder.decode(data)
