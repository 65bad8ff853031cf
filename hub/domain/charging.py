"""The charging fold: ``Charging.apply(seq, event) -> facts``, the one meaning of the stream.

It alone decides:

- which CALL an answer belongs to (a StartTransaction's transaction id is in the hub's
  answer, so a start is a fact only once both are stored);
- which transaction a message belongs to. Chargers that worked offline use ids the hub
  never issued (``-1``, ``0``, ...); such a message belongs to the transaction open on its
  connector (for a Stop: on its charger) that started before it, and failing that becomes
  a transaction of its own, flagged ``no_start``, so nothing is dropped;
- what a retry is: a start with the same connector, time, meter and tag as the one open
  is the same transaction under a second id, and as one the hub already answered with the
  same id (a reboot replays frames, even after the Stop) it is that transaction again; a
  Stop equal to the one that ended a transaction changes nothing. Retries are recognised
  by content, whatever message id they came with (firmware retries under new ids, and
  reuses ids after a reboot);
- that a newer start on a busy connector ends the older transaction (``superseded``);
- which reading is the energy register (:mod:`hub.domain.meter_values`);
- what an OCPP 2.0.1 or 2.1 frame means: the same facts as its 1.6 counterpart. A
  TransactionEvent Started opens a transaction (named by the charger's string id) the way an
  answered StartTransaction does, Updated meters it as MeterValues do, Ended stops it as
  StopTransaction does; the EVSE id is the connector id; a transaction first seen from an
  Updated or Ended (its Started never reached the hub) is one of its own, flagged
  ``no_start``; an event whose ``seqNo`` the transaction already had is a retry and changes
  nothing, and events that arrive after the end (an offline queue) still belong to it;
- which tariff applies: the one in force at the transaction's start;
- which charging profiles a charger holds: those the hub set and the charger accepted,
  less those cleared, replaced, or whose transaction ended (:mod:`hub.domain.profiles`).

State is a plain msgspec value, changed only here, so it snapshots and replays. Nothing
reads a clock. Consumers read ``state`` (sessions, chargers, tariffs, wallets) as it stands
after the facts they were handed, and never change it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
from msgspec import UnsetType

from hub.domain import certificates, device_model, energy, meter_values, profiles
from hub.domain.cistring import ci
from hub.domain.facts import (
    ChargerBooted,
    ChargerConnected,
    ChargerDisconnected,
    ConnectorStatusChanged,
    DataTransferred,
    EndReason,
    Fact,
    Flag,
    Problem,
    ProfileCleared,
    ProfileInstalled,
    ProfileRefused,
    ReportPart,
    Sample,
    SecurityEventReported,
    TransactionEnded,
    TransactionFlagged,
    TransactionId,
    TransactionMetered,
    TransactionSettled,
    TransactionStarted,
    WalletMoved,
)
from hub.domain.profiles import ChargerProfiles, ClearReason, Installed
from hub.domain.tariffs import Point, Tariff, TariffEntry, tariff_for
from hub.domain.timeutil import parse_ms
from hub.domain.wallets import LedgerEntry, Wallets, money
from schemas.events import (
    ChargerConnected as ConnectedEvent,
)
from schemas.events import (
    ChargerDisconnected as DisconnectedEvent,
)
from schemas.events import (
    ChargerReplaced,
    CommandFinished,
    CommandRequested,
    Event,
    IdTagRemoved,
    IdTagUpserted,
    IntegrityAction,
    LimitSource,
    OcppFrame,
    SessionLimits,
    SessionLimitsSet,
    TariffSet,
    WalletAdjusted,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
    WalletSettled,
)
from schemas.ocpp import PayloadError, v21, v201, validate_call, validate_result
from schemas.ocpp.v16 import (
    BootNotificationRequest,
    BootNotificationResponse,
    ClearChargingProfileRequest,
    ClearChargingProfileResponse,
    DataTransferRequest,
    DataTransferResponse,
    GetConfigurationRequest,
    GetConfigurationResponse,
    MeterValue,
    MeterValuesRequest,
    RemoteStartTransactionRequest,
    RemoteStartTransactionResponse,
    SecurityEventNotificationRequest,
    SetChargingProfileRequest,
    SetChargingProfileResponse,
    StartTransactionRequest,
    StartTransactionResponse,
    StatusNotificationRequest,
    StopTransactionRequest,
    TransactionData,
)

# Bump whenever the fold derives something else from the same events: snapshots of
# another version are then ignored and the stream is folded again.
STATE_VERSION: Final = 12
# Ended transactions stay known so late readings and retried Stops still find them; beyond
# this many the oldest ended one is forgotten (FIFO by end: deterministic).
KEEP_ENDED: Final = 20_000
# Connectors kept per charger (real ones have a handful).
MAX_CONNECTORS: Final = 256
# Transactions ongoing at once on one charger; a newer one beyond ends the oldest.
MAX_ONGOING: Final = 64
# Transactions a newer start superseded, kept per connector with when they were superseded:
# a charger that rebooted flushes their queued messages (stamped -1) after the new start.
KEEP_SUPERSEDED: Final = 4
# CALLs waiting for the hub's answer (a charger that never gets one leaves its CALL here);
# the oldest beyond this many go.
MAX_PENDING: Final = 10_000
# Profiles kept per charger (real ones hold a few dozen at most); beyond, the oldest goes.
MAX_PROFILES: Final = 1_000
# Runs of TransactionEvent seqNos kept per 2.x transaction (one, unless events went missing);
# beyond, the lowest run is forgotten and a retry that old counts again.
MAX_SEQ_RUNS: Final = 64

# CALLs whose meaning needs the hub's answer; the rest mean what they say at once.
# (2.x's TransactionEvent: the answer carries the hub's word on its id token.)
ANSWERED: Final = frozenset(
    {"StartTransaction", "BootNotification", "DataTransfer", "TransactionEvent"}
)
# The hub's CALLs whose answers change what the domain knows of a charger: its profiles, and
# the configuration keys that limit them, and remote starts, whose profile is the TxProfile
# of the transaction they begin. The request is the command's (admin.command.requested,
# under the CALL's unique id); the answer is the charger's CALLRESULT frame or, for a
# consumer that follows only admin events, the command's finished event.
HUB_CALLS: Final = frozenset(
    {
        "SetChargingProfile",
        "ClearChargingProfile",
        "GetConfiguration",
        "RemoteStartTransaction",
        "RequestStartTransaction",
        "GetChargingProfiles",
    }
)
_READ: Final = frozenset(
    {
        "StatusNotification",
        "MeterValues",
        "StopTransaction",
        "SecurityEventNotification",
        "NotifyReport",
        "ReportChargingProfiles",
    }
)
# The security events the 1.6 security whitepaper calls critical (its appendix): a charger
# sends these; the others it may only log.
CRITICAL_SECURITY_EVENTS: Final = frozenset(
    {
        "FirmwareUpdated",
        "SettingSystemTime",
        "StartupOfTheDevice",
        "ResetOrReboot",
        "SecurityLogWasCleared",
        "MemoryExhaustion",
        "TamperDetectionActivated",
    }
)


def reads(event: Event) -> bool:
    """Whether the fold reads ``event``: the rest of a stream, about half of it, is
    Heartbeats, answers no meaning depends on, and actions no fact is made of."""
    if isinstance(event, OcppFrame):
        if event.direction == "in":
            if event.message_type == "CALL":
                return event.action in ANSWERED or event.action in _READ
            return event.action in HUB_CALLS
        return event.action in ANSWERED
    if isinstance(event, CommandRequested | CommandFinished):
        return event.action in HUB_CALLS
    return isinstance(event, _READ_EVENTS)


_READ_EVENTS: Final = (
    ConnectedEvent,
    ChargerReplaced,
    DisconnectedEvent,
    TariffSet,
    IdTagUpserted,
    IdTagRemoved,
    SessionLimitsSet,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
    WalletSettled,
    WalletAdjusted,
    IntegrityAction,
)


# The 2.x requests the fold reads, in either version's types (their fields are the same).
TransactionEvent2 = v201.TransactionEventRequest | v21.TransactionEventRequest
TransactionAnswer2 = v201.TransactionEventResponse | v21.TransactionEventResponse
MeterValue2 = v201.MeterValue | v21.MeterValue


class Connector(msgspec.Struct, kw_only=True):
    status: str = ""
    status_at: int = 0
    # The key of the transaction open on it ("" if none), and when that last changed.
    open: str = ""
    open_changed_at: int = 0
    # The latest transactions a newer start superseded here, oldest first: (key, the
    # charger's time of the start that superseded it).
    superseded: list[tuple[str, int]] = []


class Charger(msgspec.Struct, kw_only=True):
    connected: bool = False
    connection_id: str = ""
    ocpp_version: str = ""  # its latest connection's
    connected_changed_at: int = 0
    vendor: str = ""
    model: str = ""
    serial_number: str = ""
    firmware_version: str = ""
    last_boot_at: int | None = None
    connectors: dict[int, Connector] = {}
    # Keys of its ongoing sessions, oldest first.
    ongoing: list[str] = []

    def connector(self, connector_id: int) -> Connector:
        found = self.connectors.get(connector_id)
        if found is None:
            found = Connector()
            # A charger that invents connector ids must not grow the state without bound:
            # beyond this many, a new one is not kept (what it says still reaches facts).
            if len(self.connectors) < MAX_CONNECTORS:
                self.connectors[connector_id] = found
        return found


class Limits(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Limits on a transaction, and who set them."""

    source: LimitSource
    limits: SessionLimits


class Settlement(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A prepaid transaction's settlement with its adjustments (``wallet.adjusted``) so far:
    what its wallet paid in all is ``platform_fee + operator_share``."""

    held: str
    refund: str
    shortfall: str
    platform_fee: str
    operator_share: str
    adjustments: int = 0


class Session(msgspec.Struct, kw_only=True):
    """One transaction, from its start (or first sign of it) to its end and beyond."""

    charge_point_id: str
    session: str  # its name: the hub's transaction id, or ``unknown-<seq>`` if it had none
    connector_id: int = 0
    transaction_id: TransactionId = 0
    id_tag: str = ""
    start_ms: int | None = None
    stop_ms: int | None = None
    meter_start: float | None = None
    meter_stop: float | None = None
    # ongoing; completed (the charger stopped it); terminated (the hub ended it: superseded
    # or closed by policy)
    state: str = "ongoing"
    end_reason: EndReason | None = None
    stop_reason: str = ""  # the charger's reason, or why the hub ended it
    flags: list[Flag] = []
    # Register readings, sorted by charger time (equal times in arrival order).
    points: list[Point] = []
    tariff: Tariff = msgspec.field(default_factory=Tariff)
    limits: list[Limits] = []
    # 2.x: the TransactionEvent seqNos it had, as sorted runs (first, last), so a retried
    # event changes nothing.
    seq_nos: list[tuple[int, int]] = []
    opened_at: int = 0  # hub time of its start fact
    updated_at: int = 0  # hub time of the last event that changed it
    last_meter_at: int = 0  # hub time of its last readings
    settlement: Settlement | None = None
    remote_start_id: int | None = None  # 2.x: the RequestStartTransaction that began it

    @property
    def ongoing(self) -> bool:
        return self.state == "ongoing"

    def bounds(self) -> tuple[Point | None, Point | None]:
        start = (
            (self.start_ms, self.meter_start)
            if self.start_ms is not None and self.meter_start is not None
            else None
        )
        stop = (
            (self.stop_ms, self.meter_stop)
            if self.stop_ms is not None and self.meter_stop is not None
            else None
        )
        return start, stop

    def curve(self) -> list[Point]:
        """The energy register over time, bounded by the start and stop readings."""
        start, stop = self.bounds()
        return energy.bounded(self.points, start, stop)


class PendingCall(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    action: str
    payload: str
    seq: int
    ocpp_version: str = "1.6"
    at: int = 0  # when the hub stored it


class State(msgspec.Struct, kw_only=True):
    version: int = STATE_VERSION
    last_seq: int = 0
    chargers: dict[str, Charger] = {}
    sessions: dict[str, Session] = {}
    # "<charger>\x1f<id as the charger sent it>" -> session key, for ids that name a
    # session under another key (retransmitted starts, ids the hub never issued).
    aliases: dict[str, str] = {}
    ended: list[str] = []
    pending: dict[str, PendingCall] = {}
    tariffs: list[TariffEntry] = []
    id_tag_limits: dict[str, SessionLimits] = {}  # by ci(id tag): CiString20
    wallets: Wallets = msgspec.field(default_factory=Wallets)
    # Charging profiles by charger, and the hub's CALLs (HUB_CALLS) awaiting their answer.
    profiles: dict[str, ChargerProfiles] = {}
    hub_calls: dict[str, PendingCall] = {}


class _Connector(msgspec.Struct, frozen=True, rename="camel", gc=False):
    """Where a SetChargingProfile goes: 1.6's connector, 2.x's EVSE."""

    connector_id: int = 0
    evse_id: int = 0


def key(first: object, second: object) -> str:
    return f"{first}\x1f{second}"


class Charging:
    """The fold. ``apply`` is its only mutator."""

    def __init__(self, state: State | None = None) -> None:
        self.state = state or State()
        self._seq = 0
        self._at = 0
        self._facts: list[Fact] = []

    def charger(self, charge_point_id: str) -> Charger:
        found = self.state.chargers.get(charge_point_id)
        if found is None:
            found = self.state.chargers[charge_point_id] = Charger()
        return found

    def session_of(self, charge_point_id: str, transaction_id: TransactionId) -> Session | None:
        """The session a transaction id the charger (or an operator) used names, if known."""
        return self._named(key(charge_point_id, transaction_id))

    def _named(self, id_key: str) -> Session | None:
        """``session_of`` by the key of the charger and the id it used."""
        return self.state.sessions.get(self.state.aliases.get(id_key, id_key))

    def apply(self, seq: int, event: Event) -> list[Fact]:
        self._seq, self._at, self._facts = seq, event.received_at, []
        state = self.state
        match event:
            case OcppFrame():
                self._frame(event)
            case ConnectedEvent(charge_point_id=cp):
                charger = self.charger(cp)
                charger.connected, charger.connection_id = True, event.connection_id
                charger.ocpp_version = event.ocpp_version
                charger.connected_changed_at = event.received_at
                self._facts.append(
                    ChargerConnected(
                        seq=seq,
                        at=self._at,
                        charge_point_id=cp,
                        connection_id=event.connection_id,
                        ocpp_version=event.ocpp_version,
                        security_profile=event.security_profile,
                        certificate_serial=event.certificate_serial,
                        certificate_not_after=event.certificate_not_after,
                    )
                )
                self._facts.extend(certificates.presented(seq, event))
            case certificates.CertificateIssued():
                self._facts.append(certificates.issued(seq, event))
            case ChargerReplaced(charge_point_id=cp):
                # The old connection's close, which follows, must not mark it offline.
                self.charger(cp).connection_id = event.new_connection_id
            case DisconnectedEvent(charge_point_id=cp):
                charger = self.charger(cp)
                if event.connection_id == charger.connection_id:
                    charger.connected = False
                    charger.connected_changed_at = event.received_at
                    self._facts.append(
                        ChargerDisconnected(
                            seq=seq,
                            at=self._at,
                            charge_point_id=cp,
                            connection_id=event.connection_id,
                            close_code=event.close_code,
                            close_reason=event.close_reason,
                        )
                    )
            case TariffSet():
                state.tariffs.append(
                    TariffEntry(
                        charge_point_id=event.charge_point_id,
                        effective_from=event.effective_from or event.received_at,
                        tariff=Tariff.from_event(event),
                    )
                )
            case IdTagUpserted(id_tag=tag, limits=limits):
                if limits is None:
                    state.id_tag_limits.pop(ci(tag), None)
                else:
                    state.id_tag_limits[ci(tag)] = limits
            case IdTagRemoved(id_tag=tag):
                state.id_tag_limits.pop(ci(tag), None)
            case SessionLimitsSet():
                found = self.session_of(event.charge_point_id, event.transaction_id)
                if found is not None:
                    found.limits = [*found.limits, Limits(source="api", limits=event.limits)]
            case WalletConfigured() | WalletCredited() | WalletHeld():
                self._moved(state.wallets.apply(event))
            case WalletSettled() | WalletAdjusted():
                self._moved(state.wallets.apply(event))
                self._settled(event)
            case CommandRequested(action=action) if action in HUB_CALLS:
                self._hub_call(event)
            case CommandFinished(action=action) if action in HUB_CALLS:
                answer = event.payload if event.status == "answered" else None
                self._hub_answer(event.charge_point_id, event.command_id, answer, event.status)
            case IntegrityAction(action="close_session", transaction_id=int() | str() as tx):
                found = self.session_of(event.charge_point_id, tx)
                if found is not None and found.ongoing:
                    self._end(found, "closed", f"integrity:{event.anomaly_id}")
        state.last_seq = seq
        return self._facts

    # -- frames ------------------------------------------------------------------------------

    def _frame(self, frame: OcppFrame) -> None:
        cp = frame.charge_point_id
        if frame.direction == "in" and frame.message_type != "CALL":
            if frame.action in HUB_CALLS:
                result = frame.payload if frame.message_type == "CALLRESULT" else None
                self._hub_answer(cp, frame.unique_id, result, frame.message_type.lower())
            return
        if frame.direction == "in" and frame.message_type == "CALL":
            if frame.action in ANSWERED:
                pending = self.state.pending
                pending[key(cp, frame.unique_id)] = PendingCall(
                    action=frame.action, payload=bytes(frame.payload).decode(), seq=self._seq
                )
                if len(pending) > MAX_PENDING:
                    del pending[next(iter(pending))]
                return
            if frame.action not in _READ:
                return
            if frame.action == "NotifyReport":  # 2.x: the station's device model
                part = device_model.report_part(self._seq, frame)
                self._facts.append(part)
                if isinstance(part, ReportPart) and any(
                    v.component == profiles.SMART_CHARGING_CTRLR for v in part.variables
                ):
                    model = self._profiles(cp)
                    model.limits = profiles.limits_of_device_model(model.limits, part.variables)
                return
            request = validate_call(frame.ocpp_version, frame.action, frame.payload)
            # The most frequent first: each case missed is an isinstance against a Struct
            # class, which costs (see meter_values._SAMPLED_2X).
            match request:
                case MeterValuesRequest():
                    self._meter_values(cp, request)
                case StatusNotificationRequest():
                    self._status(
                        cp,
                        request.connector_id,
                        request.status,
                        request.timestamp,
                        error_code=request.error_code,
                        info=_text(request.info),
                        vendor_id=_text(request.vendor_id),
                        vendor_error_code=_text(request.vendor_error_code),
                    )
                case v201.StatusNotificationRequest() | v21.StatusNotificationRequest():
                    # The EVSE is the domain's connector (docs/events.md).
                    self._status(cp, request.evse_id, request.connector_status, request.timestamp)
                case StopTransactionRequest():
                    self._stop(cp, request)
                case v201.MeterValuesRequest() | v21.MeterValuesRequest():
                    values = request.meter_value
                    self._metered(cp, request.evse_id, None, None, values, self._times(cp, values))
                case (
                    SecurityEventNotificationRequest()
                    | v201.SecurityEventNotificationRequest()
                    | v21.SecurityEventNotificationRequest()
                ):
                    self._security_event(cp, request)
                case v201.ReportChargingProfilesRequest() | v21.ReportChargingProfilesRequest():
                    self._reported(cp, request)
                case PayloadError():
                    self._problem(cp, f"{frame.action}: {request}")
            return
        if frame.direction == "out" and frame.action in ANSWERED:
            pending_call = self.state.pending.pop(key(cp, frame.unique_id), None)
            if pending_call is None or frame.message_type != "CALLRESULT":
                return
            request = validate_call(frame.ocpp_version, frame.action, pending_call.payload)
            answer = validate_result(frame.ocpp_version, frame.action, frame.payload)
            match request, answer:
                case StartTransactionRequest(), StartTransactionResponse():
                    self._start(cp, request, answer)
                case BootNotificationRequest(), BootNotificationResponse():
                    serial = request.charge_point_serial_number
                    if not isinstance(serial, str):
                        serial = request.charge_box_serial_number
                    self._booted(
                        cp,
                        request.charge_point_vendor,
                        request.charge_point_model,
                        _text(serial),
                        _text(request.firmware_version),
                        answer,
                    )
                case (
                    v201.BootNotificationRequest() | v21.BootNotificationRequest(),
                    v201.BootNotificationResponse() | v21.BootNotificationResponse(),
                ):
                    station = request.charging_station
                    self._booted(
                        cp,
                        station.vendor_name,
                        station.model,
                        _text(station.serial_number),
                        _text(station.firmware_version),
                        answer,
                    )
                case (
                    v201.TransactionEventRequest() | v21.TransactionEventRequest(),
                    v201.TransactionEventResponse() | v21.TransactionEventResponse(),
                ):
                    self._transaction_event(cp, request, answer)
                case (
                    DataTransferRequest() | v201.DataTransferRequest() | v21.DataTransferRequest(),
                    DataTransferResponse()
                    | v201.DataTransferResponse()
                    | v21.DataTransferResponse(),
                ):
                    self._facts.append(
                        DataTransferred(
                            seq=self._seq,
                            at=self._at,
                            charge_point_id=cp,
                            vendor_id=request.vendor_id,
                            message_id=_text(request.message_id),
                            data=request.data if isinstance(request.data, str) else None,
                            status=answer.status,
                        )
                    )
                case _:
                    self._problem(cp, f"{frame.action}: undecodable")

    def _booted(
        self,
        cp: str,
        vendor: str,
        model: str,
        serial: str,
        firmware: str,
        answer: BootNotificationResponse
        | v201.BootNotificationResponse
        | v21.BootNotificationResponse,
    ) -> None:
        charger = self.charger(cp)
        charger.vendor, charger.model = vendor, model
        charger.serial_number, charger.firmware_version = serial, firmware
        charger.last_boot_at = self._at
        self._facts.append(
            ChargerBooted(
                seq=self._seq,
                at=self._at,
                charge_point_id=cp,
                vendor=charger.vendor,
                model=charger.model,
                serial_number=charger.serial_number,
                firmware_version=charger.firmware_version,
                status=answer.status,
                interval=answer.interval,
            )
        )

    def _status(
        self,
        cp: str,
        connector_id: int,
        status: str,
        timestamp: str | UnsetType,
        *,
        error_code: str = "",
        info: str = "",
        vendor_id: str = "",
        vendor_error_code: str = "",
    ) -> None:
        timestamp_ms: int | None = None
        if isinstance(timestamp, str):
            try:
                timestamp_ms = parse_ms(timestamp)
            except (ValueError, OverflowError):
                self._problem(cp, f"status timestamp {_quote(timestamp)}")
        connector = self.charger(cp).connector(connector_id)
        if connector.status != status:
            connector.status, connector.status_at = status, self._at
        self._facts.append(
            ConnectorStatusChanged(
                seq=self._seq,
                at=self._at,
                charge_point_id=cp,
                connector_id=connector_id,
                status=status,
                error_code=error_code,
                info=info,
                vendor_id=vendor_id,
                vendor_error_code=vendor_error_code,
                timestamp_ms=timestamp_ms,
            )
        )

    # -- transactions ------------------------------------------------------------------------

    def _start(
        self, cp: str, request: StartTransactionRequest, answer: StartTransactionResponse
    ) -> None:
        transaction_id = answer.transaction_id
        start_ms = self._charger_time(cp, "start", request.timestamp)
        connector = self.charger(cp).connector(request.connector_id)
        known = self.session_of(cp, transaction_id)
        if known is not None and _same_start(known, request, start_ms):
            # The gateway answers a start it already answered with the same id (its first, or
            # a second one it got when retransmitted): a reboot sent it again, perhaps after
            # its Stop. The transaction is the one it began.
            return
        current = self.state.sessions.get(connector.open) if connector.open else None
        if current is not None and _same_start(current, request, start_ms):
            # The charger sent its start again (it saw no answer before a reconnect) and got
            # a second id: one transaction, reachable by both ids.
            self.state.aliases[key(cp, transaction_id)] = connector.open
            self._flag(current, "retransmitted_start", transaction_id)
            return
        session = self._begin(cp, request.connector_id, transaction_id, start_ms, request.id_tag)
        session.meter_start = float(request.meter_start)
        self._started(session, answer.id_tag_info.status)
        self._remote_start_taken(session)

    def _begin(
        self,
        cp: str,
        connector_id: int,
        transaction_id: TransactionId,
        start_ms: int,
        id_tag: str,
    ) -> Session:
        """A transaction the charger started on ``connector_id``, named by its id: a newer
        start on a busy connector ends the transaction open there."""
        connector = self.charger(cp).connector(connector_id)
        current = self.state.sessions.get(connector.open) if connector.open else None
        if current is not None and current.ongoing and (current.start_ms or 0) <= start_ms:
            # A newer start on a busy connector: the charger restarted or lost the Stop.
            self._end(current, "superseded", f"superseded by {transaction_id}")
            connector.superseded = [
                *connector.superseded[1 - KEEP_SUPERSEDED :],
                (key(cp, current.session), start_ms),
            ]
        session = self._open(cp, str(transaction_id), transaction_id, start_ms)
        session.connector_id = connector_id
        session.id_tag = id_tag
        session.limits = self._limits_for(session)
        if current is None or not current.ongoing:
            connector.open, connector.open_changed_at = key(cp, transaction_id), self._at
        return session

    def _open(
        self, cp: str, name: str, transaction_id: TransactionId, start_ms: int | None
    ) -> Session:
        session = Session(
            charge_point_id=cp,
            session=name,
            transaction_id=transaction_id,
            start_ms=start_ms,
            opened_at=self._at,
            updated_at=self._at,
            last_meter_at=self._at,
        )
        session.tariff = tariff_for(self.state.tariffs, cp, start_ms or 0)
        session_key = key(cp, name)
        self.state.sessions[session_key] = session
        ongoing = self.charger(cp).ongoing
        ongoing.append(session_key)
        if len(ongoing) > MAX_ONGOING:
            # Real chargers have a few connectors; one that opens transaction after
            # transaction (ids nobody issued, no Stops) must not grow the state without end.
            self._end(self.state.sessions[ongoing[0]], "superseded", "too many open on the charger")
        return session

    def _limits_for(self, session: Session) -> list[Limits]:
        found = []
        if session.tariff.limits is not None:
            found.append(Limits(source="tariff", limits=session.tariff.limits))
        by_tag = self.state.id_tag_limits.get(ci(session.id_tag))
        if by_tag is not None:
            found.append(Limits(source="id_tag", limits=by_tag))
        return found

    def _started(self, session: Session, authorization: str = "") -> None:
        self._facts.append(
            TransactionStarted(
                seq=self._seq,
                at=self._at,
                charge_point_id=session.charge_point_id,
                session=session.session,
                connector_id=session.connector_id,
                transaction_id=session.transaction_id,
                id_tag=session.id_tag,
                start_ms=session.start_ms,
                meter_start_wh=session.meter_start,
                tariff_id=session.tariff.tariff_id,
                inferred=session.start_ms is None,
                authorization=authorization,
            )
        )

    def _flag(
        self, session: Session, flag: Flag, transaction_id: TransactionId | None = None
    ) -> None:
        session.updated_at = self._at
        if flag in session.flags:
            return
        session.flags.append(flag)
        self._facts.append(
            TransactionFlagged(
                seq=self._seq,
                at=self._at,
                charge_point_id=session.charge_point_id,
                session=session.session,
                flag=flag,
                transaction_id=transaction_id,
            )
        )

    def _resolve(
        self, cp: str, transaction_id: TransactionId, candidates: Sequence[str], at_ms: int
    ) -> Session | None:
        """The session an id as the charger sent it belongs to: by id, by alias, or the
        newest ongoing candidate that started before ``at_ms`` (an id the hub never issued)."""
        tx_key = key(cp, transaction_id)  # built once: this runs for every reading
        found = self._named(tx_key)
        if found is not None and (found.ongoing or tx_key in self.state.sessions):
            return found
        # An id that names a session by alias (-1, 0, ...) and the session is over: a charger
        # offline again stamps its next transaction with the same id. A message belongs to
        # the one that started last before it.
        best: tuple[str, Session] | None = None
        for candidate in candidates:
            session = self.state.sessions.get(candidate)
            if session is None or not session.ongoing:
                continue
            if session.start_ms is not None and session.start_ms > at_ms:
                continue
            if best is None or (session.start_ms or 0) >= (best[1].start_ms or 0):
                best = candidate, session
        if found is not None and (best is None or (best[1].start_ms or 0) < _began(found)):
            return found
        if best is None:
            return None
        self.state.aliases[tx_key] = best[0]
        self._flag(best[1], "unknown_transaction_id", transaction_id)
        return best[1]

    def _orphan(
        self, cp: str, connector_id: int, transaction_id: TransactionId, at_ms: int
    ) -> Session:
        """Messages for an id nobody knows, with nothing open to belong to: a transaction
        of its own, so their energy is not lost. It holds its connector like any other, so
        the next start there ends it if its Stop never comes."""
        session = self._open(cp, f"unknown-{self._seq}", transaction_id, None)
        session.connector_id = connector_id
        session.tariff = tariff_for(self.state.tariffs, cp, at_ms)
        session.flags = ["unknown_transaction_id", "no_start"]
        session_key = key(cp, session.session)
        self.state.aliases[key(cp, transaction_id)] = session_key
        connector = self.charger(cp).connector(connector_id)
        if connector_id and not connector.open:
            connector.open, connector.open_changed_at = session_key, self._at
        self._started(session)
        return session

    def _superseded_at(
        self, cp: str, connectors: Sequence[Connector], transaction_id: TransactionId, at_ms: int
    ) -> Session | None:
        """The transaction a newer start superseded that was open at ``at_ms``: where a
        message for an id the hub never issued belongs when it is older than what is open
        now (a rebooted charger flushes the old transaction's queue after the new start).
        Its interval ends where the newer one's begins, so no open transaction competes."""
        if key(cp, transaction_id) in self.state.sessions:
            return None  # an id the hub issued names its transaction
        for connector in connectors:
            for session_key, until_ms in reversed(connector.superseded):
                session = self.state.sessions.get(session_key)
                if session is None or session.start_ms is None:
                    continue
                if session.start_ms <= at_ms < until_ms:
                    self.state.aliases[key(cp, transaction_id)] = session_key
                    self._flag(session, "unknown_transaction_id", transaction_id)
                    return session
        return None

    def _transaction(
        self,
        cp: str,
        transaction_id: TransactionId,
        connectors: Sequence[Connector],
        at_ms: int,
        *,
        orphan_on: int,
    ) -> Session:
        """The session a message of the charger's at ``at_ms`` with ``transaction_id`` belongs
        to, looked for on ``connectors``: a transaction the id names or one it belongs to
        (``_superseded_at``, ``_resolve``), else one of its own on ``orphan_on``."""
        tx_key = key(cp, transaction_id)
        if tx_key not in self.state.aliases:
            issued = self.state.sessions.get(tx_key)
            if issued is not None:
                # An id the hub issued names its transaction, as nearly every message's does:
                # what the two searches below would find first, without them.
                return issued
        session = self._superseded_at(cp, connectors, transaction_id, at_ms)
        if session is None:
            candidates = [connector.open for connector in connectors if connector.open]
            session = self._resolve(cp, transaction_id, candidates, at_ms)
        if session is None:
            session = self._orphan(cp, orphan_on, transaction_id, at_ms)
        return session

    def _meter_values(self, cp: str, request: MeterValuesRequest) -> None:
        transaction_id = request.transaction_id if isinstance(request.transaction_id, int) else None
        times = self._times(cp, request.meter_value)
        session: Session | None = None
        if transaction_id is not None:
            at_ms = 0
            for at in times:
                if at is not None:
                    at_ms = at
                    break
            connector = self.charger(cp).connector(request.connector_id)
            session = self._transaction(
                cp, transaction_id, [connector], at_ms, orphan_on=request.connector_id
            )
        self._metered(cp, request.connector_id, transaction_id, session, request.meter_value, times)

    def _times(
        self, cp: str, values: Sequence[MeterValue | TransactionData | MeterValue2]
    ) -> list[int | None]:
        """Each sample set's time, None for one that does not parse (a problem)."""
        times: list[int | None] = []
        for meter_value in values:
            try:
                times.append(parse_ms(meter_value.timestamp))
            except (ValueError, OverflowError):
                self._problem(cp, f"meter value timestamp {_quote(meter_value.timestamp)}")
                times.append(None)
        return times

    def _metered(
        self,
        cp: str,
        connector_id: int,
        transaction_id: TransactionId | None,
        session: Session | None,
        values: Sequence[MeterValue | TransactionData | MeterValue2],
        times: list[int | None],
    ) -> None:
        samples, register = self._readings(cp, values, times)
        self._metered_as(cp, connector_id, transaction_id, session, samples, register)

    def _readings(
        self,
        cp: str,
        values: Sequence[MeterValue | TransactionData | MeterValue2],
        times: list[int | None],
    ) -> tuple[list[Sample], list[Point]]:
        """The samples of ``values``, and among them the energy register's readings."""
        samples: list[Sample] = []
        register: list[Point] = []
        problems: list[str] = []
        for meter_value, at_ms in zip(values, times, strict=True):
            if at_ms is None:
                continue
            reading = meter_values.readings(meter_value.sampled_value, at_ms, samples, problems)
            if reading is not None:
                register.append((at_ms, reading))
        for problem in problems:
            self._problem(cp, problem)
        return samples, register

    def _metered_as(
        self,
        cp: str,
        connector_id: int,
        transaction_id: TransactionId | None,
        session: Session | None,
        samples: list[Sample],
        register: list[Point],
    ) -> None:
        hours: energy.Hours = {}
        if session is not None:
            start, stop = session.bounds()
            if len(register) == 1:
                # A message's one reading, as most have: its change is the hours.
                hours = energy.place(session.points, start, stop, register[0])
            else:
                for point in register:
                    energy.apply(hours, energy.place(session.points, start, stop, point))
            session.updated_at = session.last_meter_at = self._at
        self._facts.append(
            TransactionMetered(
                seq=self._seq,
                at=self._at,
                charge_point_id=cp,
                session=session.session if session is not None else "",
                connector_id=connector_id,
                transaction_id=transaction_id,
                samples=tuple(samples),
                register=tuple(register),
                hours=hours,
            )
        )

    def _stop(self, cp: str, request: StopTransactionRequest) -> None:
        stop_ms = self._charger_time(cp, "stop", request.timestamp)
        tx = request.transaction_id
        connectors = list(self.charger(cp).connectors.values())
        session = self._transaction(cp, tx, connectors, stop_ms, orphan_on=0)
        reason = request.reason if isinstance(request.reason, str) else "Local"
        meter_stop = float(request.meter_stop)
        if _same_stop(session, stop_ms, meter_stop):
            return  # the same Stop again: the charger retried it
        if isinstance(request.id_tag, str) and not session.id_tag:
            session.id_tag = request.id_tag
        if isinstance(request.transaction_data, list):
            data = request.transaction_data
            times = self._times(cp, data)
            self._metered(cp, session.connector_id, tx, session, data, times)
        self._stopped(session, stop_ms, meter_stop, reason)

    def _stopped(
        self, session: Session, stop_ms: int, meter_stop: float | None, reason: str
    ) -> None:
        """The charger stopped the transaction; a Stop for one over already corrects it."""
        corrected = not session.ongoing
        session.stop_ms, session.meter_stop = stop_ms, meter_stop
        self._end(session, "stopped", reason, corrected=corrected)

    # -- OCPP 2.0.1 / 2.1 transactions -----------------------------------------------------

    def _transaction_event(
        self, cp: str, request: TransactionEvent2, answer: TransactionAnswer2
    ) -> None:
        """A TransactionEvent, once the hub answered it: the same facts as 1.6's Start,
        MeterValues and Stop (docs/events.md)."""
        tx = request.transaction_info.transaction_id
        session = self.session_of(cp, tx)
        if session is not None and _seen(session.seq_nos, request.seq_no):
            return  # the same event again: the charger retried it
        at_ms = self._charger_time(cp, "transaction event", request.timestamp)
        values = [] if isinstance(request.meter_value, UnsetType) else request.meter_value
        samples, register = self._readings(cp, values, self._times(cp, values))
        evse = None if isinstance(request.evse, UnsetType) else request.evse.id
        token = request.id_token
        id_tag = "" if isinstance(token, UnsetType) else token.id_token
        verdict = answer.id_token_info
        authorization = "" if isinstance(verdict, UnsetType) else verdict.status
        late_start = False
        if session is None:
            connector_id = evse if evse is not None else 0
            if request.event_type == "Started":
                session = self._begin(cp, connector_id, tx, at_ms, id_tag)
                # The register as the transaction began (context Transaction.Begin).
                session.meter_start = min(register)[1] if register else None
            else:
                # Its Started never reached the hub: a transaction of its own all the same.
                session = self._open(cp, tx, tx, None)
                session.connector_id, session.id_tag = connector_id, id_tag
                session.tariff = tariff_for(self.state.tariffs, cp, at_ms)
                session.limits = self._limits_for(session)
                session.flags = ["no_start"]
                connector = self.charger(cp).connector(connector_id)
                if connector_id and not connector.open:
                    connector.open, connector.open_changed_at = key(cp, tx), self._at
            self._started(session, authorization)
        elif request.event_type == "Started" and session.start_ms is None:
            # The Started came after later events (it was queued, or resent): its start is
            # known now, the transaction stays the one those events opened.
            session.start_ms = at_ms
            session.meter_start = min(register)[1] if register else session.meter_start
            late_start = True
        session.seq_nos = _noted(session.seq_nos, request.seq_no)
        if evse is not None and not session.connector_id:
            session.connector_id = evse
        if id_tag and not session.id_tag:
            session.id_tag = id_tag
        remote_start_id = request.transaction_info.remote_start_id
        if isinstance(remote_start_id, int) and session.remote_start_id is None and session.ongoing:
            # The event of the remote start's (K05): Started, or Updated when the
            # transaction began before the request (a cable plugged in first).
            session.remote_start_id = remote_start_id
            self._remote_start_taken(session)
        if request.event_type == "Ended" and _same_stop(
            session, at_ms, max(register)[1] if register else session.meter_stop
        ):
            return  # Ended again under another seqNo: the same end
        if samples or register:
            self._metered_as(cp, session.connector_id, tx, session, samples, register)
        if late_start and not session.ongoing:
            # Over already: its bounds moved, which consumers learn as a corrected end.
            reason = session.end_reason or "stopped"
            self._end(session, reason, session.stop_reason, corrected=True)
        if request.event_type != "Ended":
            return
        stopped_reason = request.transaction_info.stopped_reason
        # A reading of the register at the end (context Transaction.End), else the last one.
        last = max(register) if register else max(session.points, default=None)
        why = stopped_reason if isinstance(stopped_reason, str) else "Local"
        self._stopped(session, at_ms, last[1] if last is not None else session.meter_stop, why)

    def _end(
        self, session: Session, reason: EndReason, why: str, *, corrected: bool = False
    ) -> None:
        was_ongoing = session.ongoing
        session.state = "completed" if reason == "stopped" else "terminated"
        session.end_reason = reason
        session.stop_reason = why
        session.updated_at = self._at
        connector = self.charger(session.charge_point_id).connector(session.connector_id)
        session_key = key(session.charge_point_id, session.session)
        if connector.open == session_key:
            connector.open, connector.open_changed_at = "", self._at
        if was_ongoing:
            self.charger(session.charge_point_id).ongoing.remove(session_key)
            self._forget_later(session_key)
            self._transaction_profiles_end(session)
        self._facts.append(
            TransactionEnded(
                seq=self._seq,
                at=self._at,
                charge_point_id=session.charge_point_id,
                session=session.session,
                connector_id=session.connector_id,
                reason=reason,
                stop_ms=session.stop_ms,
                meter_stop_wh=session.meter_stop,
                charger_reason=why,
                corrected=corrected,
            )
        )

    # -- charging profiles -------------------------------------------------------------------

    def _hub_call(self, event: CommandRequested) -> None:
        cp = event.charge_point_id
        calls = self.state.hub_calls
        calls[key(cp, event.command_id)] = PendingCall(
            action=event.action,
            payload=bytes(event.payload).decode(),
            seq=self._seq,
            ocpp_version=self.charger(cp).ocpp_version or "1.6",
            at=self._at,
        )
        if len(calls) > MAX_PENDING:
            del calls[next(iter(calls))]

    def _hub_answer(
        self, cp: str, command_id: str, answer: msgspec.Raw | None, status: str = ""
    ) -> None:
        """The charger answered a CALL of the hub's (None: not with a result, ``status`` says
        what instead). The first answer counts: the CALLRESULT frame, then the command's
        finished event, say so twice."""
        call = self.state.hub_calls.pop(key(cp, command_id), None)
        if call is None:
            return
        if answer is None:
            if call.action == "SetChargingProfile":
                self._profile_refused(cp, command_id, call, status)
            return
        request = validate_call(call.ocpp_version, call.action, call.payload)
        response = validate_result(call.ocpp_version, call.action, answer)
        match request, response:
            case SetChargingProfileRequest(), SetChargingProfileResponse(status="Accepted"):
                self._profile_set(
                    cp, request.connector_id, request.cs_charging_profiles, command_id
                )
            case (
                v201.SetChargingProfileRequest() | v21.SetChargingProfileRequest(),
                v201.SetChargingProfileResponse(status="Accepted")
                | v21.SetChargingProfileResponse(status="Accepted"),
            ):
                # The EVSE is the domain's connector (0: the station).
                self._profile_set(cp, request.evse_id, request.charging_profile, command_id)
            case (
                ClearChargingProfileRequest()
                | v201.ClearChargingProfileRequest()
                | v21.ClearChargingProfileRequest(),
                ClearChargingProfileResponse()
                | v201.ClearChargingProfileResponse()
                | v21.ClearChargingProfileResponse(),
            ):
                reason: ClearReason = (
                    "cleared" if response.status == "Accepted" else "unknown_to_charger"
                )
                model = self.state.profiles.get(cp)
                if model is not None:
                    model.installed, removed = profiles.split(
                        model.installed, profiles.clear_of(request)
                    )
                    self._profiles_cleared(cp, removed, reason)
            case (
                RemoteStartTransactionRequest(),
                RemoteStartTransactionResponse(status="Accepted"),
            ) if not isinstance(request.charging_profile, UnsetType):
                connector = request.connector_id
                self._remote_start(
                    cp,
                    call,
                    command_id,
                    request.charging_profile,
                    connector if isinstance(connector, int) else None,
                    id_tag=ci(request.id_tag),
                )
            case (
                v201.RequestStartTransactionRequest() | v21.RequestStartTransactionRequest(),
                v201.RequestStartTransactionResponse(status="Accepted")
                | v21.RequestStartTransactionResponse(status="Accepted"),
            ) if not isinstance(request.charging_profile, UnsetType):
                evse = request.evse_id
                started = response.transaction_id
                self._remote_start(
                    cp,
                    call,
                    command_id,
                    request.charging_profile,
                    evse if isinstance(evse, int) else None,
                    remote_start_id=request.remote_start_id,
                    transaction_id=started if isinstance(started, str) else None,
                )
            case (
                v201.GetChargingProfilesRequest() | v21.GetChargingProfilesRequest(),
                v201.GetChargingProfilesResponse() | v21.GetChargingProfilesResponse(),
            ):
                model = self._profiles(cp)
                report = model.report
                if report is None or report.request_id != request.request_id:
                    report = profiles.Report(request_id=request.request_id)
                model.report = msgspec.structs.replace(
                    report,
                    criteria=profiles.criteria_of(request),
                    command_id=command_id,
                    asked_at=call.at,
                    # NoProfiles: it holds none that match, and no part will come.
                    complete=report.complete or response.status == "NoProfiles",
                    updated_at=self._at,
                )
            case GetConfigurationRequest(), GetConfigurationResponse():
                keys = response.configuration_key
                if isinstance(keys, list):
                    model = self._profiles(cp)
                    model.limits = profiles.limits_of(model.limits, keys)
            case (
                SetChargingProfileRequest()
                | v201.SetChargingProfileRequest()
                | v21.SetChargingProfileRequest(),
                SetChargingProfileResponse()
                | v201.SetChargingProfileResponse()
                | v21.SetChargingProfileResponse(),
            ):
                # Rejected, NotSupported: the charger holds what it held.
                self._profile_refused(cp, command_id, call, str(response.status))
            case (
                RemoteStartTransactionRequest()
                | v201.RequestStartTransactionRequest()
                | v21.RequestStartTransactionRequest(),
                RemoteStartTransactionResponse()
                | v201.RequestStartTransactionResponse()
                | v21.RequestStartTransactionResponse(),
            ):
                pass  # no profile, or refused: no profile waits for a transaction
            case _:
                self._problem(cp, f"{call.action}: undecodable")

    def _remote_start(
        self,
        cp: str,
        call: PendingCall,
        command_id: str,
        payload: profiles.AnyChargingProfile,
        connector_id: int | None,
        *,
        id_tag: str = "",
        remote_start_id: int | None = None,
        transaction_id: str | None = None,
    ) -> None:
        """The charger accepted a remote start with a profile: the TxProfile of the
        transaction it starts (1.6 §5.11, 2.x K05). Installed at once if that transaction
        already began (the answer names it, or its start came before the answer), else kept
        until it begins."""
        profile = self._readable(cp, "RemoteStart", payload)
        if profile is None:
            return
        waiting = profiles.AwaitingStart(
            profile=profile,
            connector_id=connector_id,
            id_tag=id_tag,
            remote_start_id=remote_start_id,
            at=call.at,
            command_id=command_id,
        )
        session = self.session_of(cp, transaction_id) if transaction_id is not None else None
        if session is None:
            for session_key in self.charger(cp).ongoing:
                begun = self.state.sessions.get(session_key)
                # 1.6's start names no remote start: one that began before the request is
                # not its. A 2.x transaction names it.
                if begun is None or (begun.remote_start_id is None and begun.opened_at < call.at):
                    continue
                _, taken = profiles.taken_by(
                    [waiting],
                    begun.opened_at,
                    connector_id=begun.connector_id,
                    id_tag=ci(begun.id_tag),
                    remote_start_id=begun.remote_start_id,
                )
                if taken is not None:
                    session = begun
                    break
        if session is not None and session.ongoing:
            self._install_for(session, waiting)
            return
        model = self._profiles(cp)
        model.awaiting = profiles.awaiting_added(model.awaiting, waiting)

    def _reported(
        self,
        cp: str,
        request: v201.ReportChargingProfilesRequest | v21.ReportChargingProfilesRequest,
    ) -> None:
        """One part of a station's report of the profiles it holds (K09): evidence kept
        beside the model, which it does not change (docs/smart-charging.md says why)."""
        part = []
        for given in request.charging_profile:
            profile = self._readable(cp, "ReportChargingProfiles", given)
            if profile is not None:
                part.append(
                    profiles.ReportedProfile(
                        connector_id=request.evse_id,
                        profile=profile,
                        source=request.charging_limit_source,
                    )
                )
        model = self._profiles(cp)
        model.report = profiles.report_part(
            model.report, request.request_id, part, last=request.tbc is not True, at=self._at
        )

    def _remote_start_taken(self, session: Session) -> None:
        """A transaction began: the profile of the remote start that asked for it, if one
        waits, is its TxProfile from now on."""
        model = self.state.profiles.get(session.charge_point_id)
        if model is None or not model.awaiting:
            return
        model.awaiting, taken = profiles.taken_by(
            model.awaiting,
            self._at,
            connector_id=session.connector_id,
            id_tag=ci(session.id_tag),
            remote_start_id=session.remote_start_id,
        )
        if taken is not None:
            self._install_for(session, taken)

    def _install_for(self, session: Session, waiting: profiles.AwaitingStart) -> None:
        # The transaction's id, unknown when the profile was sent, is known now.
        profile = msgspec.structs.replace(waiting.profile, transaction_id=session.transaction_id)
        self._put(
            session.charge_point_id,
            session.connector_id,
            profile,
            session.session,
            waiting.command_id,
        )

    def _profile_refused(self, cp: str, command_id: str, call: PendingCall, status: str) -> None:
        connector_id = msgspec.json.decode(call.payload, type=_Connector)
        self._facts.append(
            ProfileRefused(
                seq=self._seq,
                at=self._at,
                charge_point_id=cp,
                connector_id=connector_id.connector_id or connector_id.evse_id,
                command_id=command_id,
                status=status,
            )
        )

    def _profiles(self, cp: str) -> ChargerProfiles:
        found = self.state.profiles.get(cp)
        if found is None:
            found = self.state.profiles[cp] = ChargerProfiles()
        return found

    def _profile_set(
        self,
        cp: str,
        connector_id: int,
        payload: profiles.AnyChargingProfile,
        command_id: str,
    ) -> None:
        profile = self._readable(cp, "SetChargingProfile", payload)
        if profile is None:
            return
        session = ""
        if profile.purpose == "TxProfile":
            named = None
            if profile.transaction_id is not None:
                named = self.session_of(cp, profile.transaction_id)
            if named is None:
                open_key = self.charger(cp).connector(connector_id).open
                named = self.state.sessions.get(open_key) if open_key else None
            session = named.session if named is not None and named.ongoing else ""
        self._put(cp, connector_id, profile, session, command_id)

    def _readable(
        self, cp: str, action: str, payload: profiles.AnyChargingProfile
    ) -> profiles.Profile | None:
        """The model's profile, None (and a problem) if it says what the model cannot hold."""
        try:
            return profiles.profile_of(payload)
        except profiles.Unreadable as error:
            self._problem(cp, f"{action}: {error}")
            return None

    def _put(
        self, cp: str, connector_id: int, profile: profiles.Profile, session: str, command_id: str
    ) -> None:
        """The charger holds ``profile`` on ``connector_id`` now (a TxProfile: for ``session``)."""
        model = self._profiles(cp)
        new = Installed(
            connector_id=connector_id,
            profile=profile,
            session=session,
            installed_at=self._at,
            command_id=command_id,
        )
        model.installed, replaced = profiles.install(model.installed, new)
        if len(model.installed) > MAX_PROFILES:
            replaced.append(model.installed.pop(0))
        self._profiles_cleared(cp, replaced, "replaced")
        self._facts.append(
            ProfileInstalled(
                seq=self._seq,
                at=self._at,
                charge_point_id=cp,
                connector_id=connector_id,
                profile=profile,
                session=session,
                command_id=command_id,
            )
        )

    def _transaction_profiles_end(self, session: Session) -> None:
        cp = session.charge_point_id
        model = self.state.profiles.get(cp)
        if model is None:
            return
        model.installed, ended = profiles.transaction_over(
            model.installed, session.connector_id, session.session
        )
        self._profiles_cleared(cp, ended, "transaction_ended")

    def _profiles_cleared(self, cp: str, gone: list[Installed], reason: ClearReason) -> None:
        for old in gone:
            self._facts.append(
                ProfileCleared(
                    seq=self._seq,
                    at=self._at,
                    charge_point_id=cp,
                    connector_id=old.connector_id,
                    profile_id=old.profile.profile_id,
                    purpose=old.profile.purpose,
                    stack_level=old.profile.stack_level,
                    reason=reason,
                )
            )

    def _forget_later(self, session_key: str) -> None:
        ended = self.state.ended
        ended.append(session_key)
        # Trim in steps so the list is not shifted on every end.
        if len(ended) > KEEP_ENDED + 1000:
            for old in ended[:1000]:
                gone = self.state.sessions.pop(old, None)
                if gone is not None:
                    self.state.aliases.pop(key(gone.charge_point_id, gone.transaction_id), None)
            del ended[:1000]

    def _settled(self, event: WalletSettled | WalletAdjusted) -> None:
        session = self.session_of(event.charge_point_id, event.transaction_id)
        if session is None:
            self._problem(
                event.charge_point_id,
                f"settlement of an unknown or forgotten transaction {event.transaction_id}",
            )
            return
        settled = Settlement(
            held=event.held,
            refund=event.refund,
            shortfall=event.shortfall,
            platform_fee=event.platform_fee,
            operator_share=event.operator_share,
        )
        before = session.settlement
        if isinstance(event, WalletAdjusted):
            if before is None:
                self._problem(
                    event.charge_point_id,
                    f"adjustment of transaction {event.transaction_id}, never settled",
                )
                return
            # An adjustment moves the settlement by its figures.
            settled = Settlement(
                held=before.held,
                refund=_sum(before.refund, event.refund),
                shortfall=_sum(before.shortfall, event.shortfall),
                platform_fee=_sum(before.platform_fee, event.platform_fee),
                operator_share=_sum(before.operator_share, event.operator_share),
                adjustments=before.adjustments + 1,
            )
        session.settlement = settled
        session.updated_at = self._at
        self._facts.append(
            TransactionSettled(
                seq=self._seq,
                at=self._at,
                charge_point_id=event.charge_point_id,
                session=session.session,
                held=settled.held,
                refund=settled.refund,
                shortfall=settled.shortfall,
                platform_fee=settled.platform_fee,
                operator_share=settled.operator_share,
            )
        )

    def _moved(self, entries: list[LedgerEntry]) -> None:
        for entry in entries:
            self._facts.append(
                WalletMoved(
                    seq=self._seq, at=self._at, charge_point_id=entry.charge_point_id, entry=entry
                )
            )

    def _security_event(
        self,
        cp: str,
        request: SecurityEventNotificationRequest
        | v201.SecurityEventNotificationRequest
        | v21.SecurityEventNotificationRequest,
    ) -> None:
        self._facts.append(
            SecurityEventReported(
                seq=self._seq,
                at=self._at,
                charge_point_id=cp,
                type=request.type,
                timestamp_ms=self._charger_time(cp, "security event", request.timestamp),
                tech_info=_text(request.tech_info),
                critical=request.type in CRITICAL_SECURITY_EVENTS,
            )
        )

    def _charger_time(self, cp: str, what: str, timestamp: str) -> int:
        """A start's or stop's time as the charger gives it; one that does not parse (or
        lies beyond any calendar) is a problem, and the hub's time of the event stands in."""
        try:
            return parse_ms(timestamp)
        except (ValueError, OverflowError):
            self._problem(cp, f"{what} timestamp {_quote(timestamp)} is not a date-time")
            return self._at

    def _problem(self, cp: str, reason: str) -> None:
        self._facts.append(
            Problem(seq=self._seq, at=self._at, charge_point_id=cp, reason=reason[:1000])
        )


def _sum(first: str, second: str) -> str:
    return str(money(first) + money(second))


def _began(session: Session) -> int:
    """When a session began by the charger's clock: its start, else its first reading."""
    if session.start_ms is not None:
        return session.start_ms
    return session.points[0][0] if session.points else 0


def _same_start(session: Session, request: StartTransactionRequest, start_ms: int) -> bool:
    return (
        session.connector_id == request.connector_id
        and session.start_ms == start_ms
        and session.meter_start == float(request.meter_start)
        and session.id_tag == request.id_tag
    )


def _same_stop(session: Session, stop_ms: int, meter_stop: float | None) -> bool:
    return (
        session.state == "completed"
        and session.stop_ms == stop_ms
        and session.meter_stop == meter_stop
    )


def _seen(runs: list[tuple[int, int]], seq_no: int) -> bool:
    return any(first <= seq_no <= last for first, last in runs)


def _noted(runs: list[tuple[int, int]], seq_no: int) -> list[tuple[int, int]]:
    """``runs`` (sorted, apart) with ``seq_no`` in them; the lowest go beyond MAX_SEQ_RUNS."""
    merged: list[tuple[int, int]] = []
    first, last = seq_no, seq_no
    for run in runs:
        if run[1] < first - 1:
            merged.append(run)
        elif run[0] > last + 1:
            merged.append((first, last))
            first, last = run
        else:
            first, last = min(first, run[0]), max(last, run[1])
    merged.append((first, last))
    return merged[-MAX_SEQ_RUNS:]


def _quote(text: str) -> str:
    """What a charger sent, quoted and cut short enough for a log line or an error row."""
    return repr(text[:64]) + ("..." if len(text) > 64 else "")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(State)


def encode_state(state: State) -> bytes:
    return _encoder.encode(state)


def decode_state(data: bytes | str) -> State:
    return _decoder.decode(data)
