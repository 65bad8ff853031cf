"""Domain facts: what a sequence of events means, decided once, for every consumer.

The charging fold (:mod:`hub.domain.charging`) turns each stored event into zero or more
facts. Consumers (projections, the supervisor, the fan-out, the API) render facts into
rows, derived events and UI messages; none of them reads an OCPP payload to decide what
happened. Facts are values: the same events give the same facts, live or in a replay.

Facts are version-neutral. OCPP 1.6's StartTransaction, MeterValues and StopTransaction
and OCPP 2.0.1's TransactionEvent (Started, Updated, Ended) map onto the same three
transaction facts; a transaction id is the charger's (an int in 1.6, a string in 2.x).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from hub.domain.profiles import ClearReason, Profile, Purpose
from hub.domain.tariffs import Point
from hub.domain.wallets import LedgerEntry
from schemas.events import TransactionId as TransactionId

# Why a transaction ended:
#   stopped     the charger said so (StopTransaction; TransactionEvent Ended)
#   superseded  a newer transaction started on the same connector before it was stopped:
#               the charger restarted, or lost the Stop; the older one is over
#   closed      the hub's integrity policy closed it (a ghost the charger never stopped)
EndReason = Literal["stopped", "superseded", "closed"]

# Marks on a transaction:
#   retransmitted_start     the charger sent its start again and got a second id
#   unknown_transaction_id  messages came with an id the hub never issued (-1, 0, ...)
#   no_start                messages for a transaction whose start the hub never saw
Flag = Literal["retransmitted_start", "unknown_transaction_id", "no_start"]


class _Fact(msgspec.Struct, frozen=True, kw_only=True, tag_field="fact", gc=False):
    seq: int  # the stream position of the event it came from
    at: int  # that event's received_at: the hub's time, Unix ms
    charge_point_id: str


class ChargerConnected(_Fact, frozen=True, kw_only=True, tag="charger.connected"):
    connection_id: str
    ocpp_version: str
    security_profile: int = 0  # how it authenticated (schemas.events.SecurityProfile)
    # Its client certificate, under profile 3: serial (hex) and expiry (ISO 8601 UTC).
    certificate_serial: str = ""
    certificate_not_after: str = ""


class ChargerDisconnected(_Fact, frozen=True, kw_only=True, tag="charger.disconnected"):
    """The charger's current connection ended (a replaced connection's close is no fact)."""

    connection_id: str
    close_code: int | None = None
    close_reason: str = ""


class ChargerBooted(_Fact, frozen=True, kw_only=True, tag="charger.booted"):
    vendor: str
    model: str
    serial_number: str = ""
    firmware_version: str = ""
    status: str = ""  # the hub's answer: Accepted, Pending, Rejected ("" if none was stored)
    interval: int = 0


class ConnectorStatusChanged(_Fact, frozen=True, kw_only=True, tag="connector.status"):
    connector_id: int
    status: str
    error_code: str = ""
    info: str = ""
    vendor_id: str = ""
    vendor_error_code: str = ""
    timestamp_ms: int | None = None  # the charger's time, when it gave one


class Sample(msgspec.Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """One sampled value, in its base unit (Wh, W, A, V, %, ...). Encoded as an array of its
    fields in order: meter_values gets a fact's samples as they are (projections/reshapes.py)."""

    at_ms: int  # the charger's time
    measurand: str
    value: float
    unit: str = ""
    phase: str = ""
    location: str = ""
    context: str = ""


class TransactionStarted(_Fact, frozen=True, kw_only=True, tag="transaction.started"):
    """A transaction began. ``session`` names it for its whole life, whatever ids the
    charger uses for it later. ``inferred``: its start was never seen (messages came for
    an id nobody knows), so start time and meter start are unknown."""

    session: str
    connector_id: int
    transaction_id: TransactionId
    id_tag: str = ""
    start_ms: int | None = None
    meter_start_wh: float | None = None
    tariff_id: str = ""
    inferred: bool = False
    # The hub's word on the id tag when it answered the start (Accepted, Blocked, ...).
    authorization: str = ""


class TransactionMetered(_Fact, frozen=True, kw_only=True, tag="transaction.metered"):
    """Readings arrived. ``session`` is empty for readings outside any transaction;
    ``register`` holds the energy register readings (Wh) among ``samples``, the points of
    the session's energy curve."""

    session: str
    connector_id: int
    transaction_id: TransactionId | None = None
    samples: tuple[Sample, ...] = ()
    register: tuple[Point, ...] = ()
    # How the session's energy per clock hour changed (start of the hour, Unix ms -> nano-Wh):
    # only the segments the readings split, so a consumer writing hours needs no curve walk.
    hours: dict[int, int] = {}


class TransactionFlagged(_Fact, frozen=True, kw_only=True, tag="transaction.flagged"):
    session: str
    flag: Flag
    # The id the charger used, where the flag is about one.
    transaction_id: TransactionId | None = None


class TransactionEnded(_Fact, frozen=True, kw_only=True, tag="transaction.ended"):
    """A transaction is over. It comes once per transaction; ``corrected`` marks a later
    Stop from the charger that changes the end of one already over (say, one superseded
    while the charger was offline): consumers update what they show, but what was settled
    at the first end stays settled, and a bill it changes is adjusted (``wallet.adjusted``)."""

    session: str
    connector_id: int
    reason: EndReason
    stop_ms: int | None = None
    meter_stop_wh: float | None = None
    charger_reason: str = ""  # the charger's own word (OCPP's reason), or the policy's
    corrected: bool = False


class TransactionSettled(_Fact, frozen=True, kw_only=True, tag="transaction.settled"):
    """A prepaid transaction's wallet hold was settled (``wallet.settled``), or that
    settlement adjusted because its bill moved (``wallet.adjusted``): the figures are the
    settlement's with every adjustment so far."""

    session: str
    held: str
    refund: str
    shortfall: str
    platform_fee: str
    operator_share: str


class WalletMoved(_Fact, frozen=True, kw_only=True, tag="wallet.moved"):
    """Money moved in a prepaid wallet (a top-up, an adjustment, a hold, its settlement);
    ``charge_point_id`` is the transaction's charger, if the movement is about one."""

    entry: LedgerEntry


class DataTransferred(_Fact, frozen=True, kw_only=True, tag="data.transferred"):
    """A vendor-specific DataTransfer from the charger, once the hub answered it."""

    vendor_id: str
    message_id: str = ""
    data: str | None = None  # as the charger sent it
    status: str = ""  # the hub's answer


class CertificateKnown(_Fact, frozen=True, kw_only=True, tag="certificate.known"):
    """A charger has a certificate that runs out at ``not_after`` (Unix ms): one the hub
    issued it (``issued``), or the one it connected with (``presented``). The newest one
    known is the charger's."""

    serial: str  # hex
    not_after: int
    origin: Literal["issued", "presented"]
    subject: str = ""


class SecurityEventReported(_Fact, frozen=True, kw_only=True, tag="security.event"):
    """A charger reported a security event (SecurityEventNotification, OCPP 1.6 security
    whitepaper): an invalid certificate, tampering, a firmware change. ``critical``: one
    of the whitepaper's critical events, which a charger must report, not only log."""

    type: str
    timestamp_ms: int  # the charger's time of it (the hub's, if it gave none that parses)
    tech_info: str = ""
    critical: bool = False


class ProfileInstalled(_Fact, frozen=True, kw_only=True, tag="profile.installed"):
    """The charger accepted a charging profile (SetChargingProfile) on ``connector_id`` (0:
    the charger as a whole). A TxProfile names its transaction's ``session``; the profiles it
    replaced come before it as ``profile.cleared`` (``replaced``)."""

    connector_id: int
    profile: Profile
    session: str = ""
    command_id: str = ""  # the hub's SetChargingProfile that set it


class ProfileRefused(_Fact, frozen=True, kw_only=True, tag="profile.refused"):
    """The charger did not take a profile the hub sent (SetChargingProfile ``command_id``):
    ``status`` is its answer (``Rejected``, ``NotSupported``), or ``callerror``, or what became
    of the command (``timeout``, ``offline``, ``busy``, ...). It holds what it held."""

    connector_id: int
    command_id: str
    status: str


class ProfileCleared(_Fact, frozen=True, kw_only=True, tag="profile.cleared"):
    """A charging profile left the charger: cleared, replaced, or its transaction ended."""

    connector_id: int
    profile_id: int
    purpose: Purpose
    stack_level: int
    reason: ClearReason


class ReportedVariable(msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel"):
    """One attribute of one variable of one component, as a 2.x station reported it in a
    NotifyReport (its device model): where (component, its instance, EVSE and connector),
    what (variable, instance, attribute type), the value and its characteristics."""

    component: str
    variable: str
    attribute_type: str = "Actual"
    value: str | None = None  # absent for a WriteOnly variable (a password)
    component_instance: str = ""
    evse_id: int | None = None
    connector_id: int | None = None
    variable_instance: str = ""
    mutability: str = ""
    persistent: bool | None = None
    constant: bool | None = None
    data_type: str = ""
    unit: str = ""
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: str = ""
    supports_monitoring: bool | None = None


class ReportPart(_Fact, frozen=True, kw_only=True, tag="report.part"):
    """One NotifyReport of a 2.x station: part ``seq_no`` of the report ``request_id`` (the
    GetBaseReport's or GetReport's), more to come while ``tbc``."""

    request_id: int
    seq_no: int
    tbc: bool
    generated_at_ms: int | None  # the station's time of the report, if it parses
    variables: tuple[ReportedVariable, ...]


class Problem(_Fact, frozen=True, kw_only=True, tag="problem"):
    """Something in a frame the domain cannot use: a timestamp that does not parse, a
    reading that is no number. The rest of the frame still counts."""

    reason: str


Fact = (
    ChargerConnected
    | ChargerDisconnected
    | ChargerBooted
    | ConnectorStatusChanged
    | TransactionStarted
    | TransactionMetered
    | TransactionFlagged
    | TransactionEnded
    | TransactionSettled
    | WalletMoved
    | DataTransferred
    | CertificateKnown
    | SecurityEventReported
    | ProfileInstalled
    | ProfileRefused
    | ProfileCleared
    | ReportPart
    | Problem
)
