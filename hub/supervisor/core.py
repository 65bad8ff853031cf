"""The supervisor's pure core: ``Supervisor.apply(seq, event) -> intents``.

It follows the stream and derives, deterministically, what the money and the integrity of
sessions call for:

- prepaid transactions: a hold on the wallet at start, the settlement at stop;
- limits (tariff, id tag, API, prepaid amount): a stop when one is crossed;
- anomalies (orphaned, ghost, duplicate start, stale, impossible values): detected and
  resolved, and acted on as the policy says.

An intent is a derived event to store, perhaps with a command to send once it is stored.
The core applies each intent to its own state at once, and recognises the event when it
comes back through the stream, so a restart that folds the stream again re-derives the
same intents and finds them already stored: nothing is emitted twice, nothing lost (see
:attr:`Supervisor.unconfirmed`). Timers run on ``clock.tick`` events and event times,
never on a clock read.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

import msgspec

from hub.domain import energy
from hub.domain.meter_values import register_points
from hub.domain.policy import Policy, parse_fee_rate
from hub.domain.tariffs import Tariff, TariffEntry, session_cost, tariff_for
from hub.domain.timeutil import parse_ms
from hub.domain.wallets import PLACES, Wallets, settle
from hub.supervisor import detectors
from hub.supervisor.model import CHARGING, Charger, Limit, OpenAnomaly, Transaction, key
from schemas.events import (
    AnomalyDetected,
    AnomalyKind,
    AnomalyResolved,
    ChargerConnected,
    ChargerDisconnected,
    ClockTick,
    CommandRequested,
    DerivedEvent,
    Event,
    IdTagRemoved,
    IdTagUpserted,
    IntegrityAction,
    LimitReached,
    OcppFrame,
    SessionLimits,
    SessionLimitsSet,
    TariffSet,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
    WalletSettled,
    _DerivedEvent,
)
from schemas.ocpp import PayloadError, validate_call, validate_result
from schemas.ocpp.v16 import (
    MeterValue,
    MeterValuesRequest,
    StartTransactionRequest,
    StartTransactionResponse,
    StatusNotificationRequest,
    StopTransactionRequest,
    TransactionData,
)

# Deterministic command ids (OCPP-J unique ids, at most 36 characters) from their cause.
_COMMANDS: Final = uuid.UUID("6d1f4f0e-7a53-4d0b-9a36-0c6f1bb1d2a4")
# Derived events the core made and the stream has not shown yet, at most this many.
MAX_UNCONFIRMED: Final = 100_000
# StartTransaction requests waiting for the hub's answer, at most this many.
MAX_PENDING_STARTS: Final = 10_000


class Command(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    command_id: str
    charge_point_id: str
    action: str
    payload: bytes


class Intent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    event: DerivedEvent
    command: Command | None = None


def command_id_for(cause: str) -> str:
    return uuid.uuid5(_COMMANDS, cause).hex


class Supervisor:
    """Mutable, but changed only by :meth:`apply`, so it is a fold of the stream."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.fee_rate = parse_fee_rate(self.policy.platform_fee_rate)
        self.now = 0
        self.last_seq = 0
        self.chargers: dict[str, Charger] = {}
        self.transactions: dict[str, Transaction] = {}
        self.pending_starts: dict[str, StartTransactionRequest] = {}
        self.tariffs: list[TariffEntry] = []
        self.id_tag_limits: dict[str, SessionLimits] = {}
        self.wallets = Wallets()
        self.anomalies: dict[str, OpenAnomaly] = {}
        # Derived events made here, by id, until the stream shows them: what to (re)publish.
        self.unconfirmed: dict[str, Intent] = {}
        # Commands of stored derived events not yet requested (no admin.command.requested).
        self.commands_due: dict[str, Command] = {}
        self._seq = 0
        self._out: list[Intent] = []

    # -- the fold ----------------------------------------------------------------------------

    def apply(self, seq: int, event: Event) -> list[Intent]:
        self._seq, self._out = seq, []
        self.now = max(self.now, event.received_at)
        match event:
            case OcppFrame():
                self._frame(event)
            case ClockTick():
                detectors.scan(self)
            case ChargerConnected(charge_point_id=cp) | ChargerDisconnected(charge_point_id=cp):
                charger = self.charger(cp)
                charger.connected = isinstance(event, ChargerConnected)
                charger.connected_changed_at = event.received_at
            case TariffSet():
                self.tariffs.append(
                    TariffEntry(
                        charge_point_id=event.charge_point_id,
                        effective_from=event.effective_from or event.received_at,
                        tariff=Tariff.from_event(event),
                    )
                )
            case IdTagUpserted(id_tag=tag, limits=limits):
                if limits is None:
                    self.id_tag_limits.pop(tag, None)
                else:
                    self.id_tag_limits[tag] = limits
            case IdTagRemoved(id_tag=tag):
                self.id_tag_limits.pop(tag, None)
            case SessionLimitsSet():
                found = self.transactions.get(key(event.charge_point_id, event.transaction_id))
                if found is not None:
                    found.limits = [*found.limits, *_limits(event.limits, "api")]
            case WalletConfigured() | WalletCredited():
                self.wallets.apply(event)
            case CommandRequested(command_id=command_id):
                self.commands_due.pop(command_id, None)
            case _DerivedEvent():
                self._stored(event)
        self.last_seq = max(self.last_seq, seq)
        return self._out

    def charger(self, cp: str) -> Charger:
        found = self.chargers.get(cp)
        if found is None:
            found = self.chargers[cp] = Charger()
        return found

    def emit(self, event: DerivedEvent, command: Command | None = None) -> None:
        """Derive ``event``: apply it here now, and hand it out to be stored."""
        intent = Intent(event=event, command=command)
        if command is not None:
            self.commands_due[command.command_id] = command
        if len(self.unconfirmed) < MAX_UNCONFIRMED:
            self.unconfirmed[event.id] = intent
        self._out.append(intent)
        # After it is queued: what applying it derives in turn (a settlement when a session
        # is closed, say) follows it in the stream.
        self._absorb(event)

    def _stored(self, event: DerivedEvent) -> None:
        if self.unconfirmed.pop(event.id, None) is None:
            # Stored by an earlier run whose state this one does not share: the stream is
            # the truth, so it counts.
            self._absorb(event)

    def _absorb(self, event: DerivedEvent) -> None:
        match event:
            case WalletHeld() | WalletSettled():
                self.wallets.apply(event)
            case AnomalyDetected():
                condition = detectors.condition_key(
                    event.kind, event.charge_point_id, event.connector_id, event.transaction_id
                )
                self.anomalies[condition] = OpenAnomaly(
                    event.anomaly_id,
                    event.kind,
                    event.charge_point_id,
                    event.connector_id,
                    event.transaction_id,
                )
            case AnomalyResolved():
                condition = detectors.condition_key(
                    event.kind, event.charge_point_id, event.connector_id, event.transaction_id
                )
                self.anomalies.pop(condition, None)
            case IntegrityAction(action="close_session", transaction_id=int() as tx):
                found = self.transactions.get(key(event.charge_point_id, tx))
                if found is not None:
                    self._close(found, None, "closed by the integrity policy")

    # -- frames ------------------------------------------------------------------------------

    def _frame(self, frame: OcppFrame) -> None:
        cp = frame.charge_point_id
        if frame.direction == "in" and frame.message_type == "CALL":
            if frame.action not in _READ:
                return
            request = validate_call(frame.ocpp_version, frame.action, frame.payload)
            match request:
                case StartTransactionRequest():
                    self.pending_starts[key(cp, frame.unique_id)] = request
                    if len(self.pending_starts) > MAX_PENDING_STARTS:
                        del self.pending_starts[next(iter(self.pending_starts))]
                case StatusNotificationRequest():
                    connector = self.charger(cp).connector(request.connector_id)
                    if connector.status != request.status:
                        connector.status, connector.status_at = request.status, frame.received_at
                case MeterValuesRequest(transaction_id=int() as tx):
                    found = self.transactions.get(key(cp, tx))
                    if found is not None:
                        self._meter(found, frame.received_at, request.meter_value)
                case StopTransactionRequest():
                    found = self.transactions.get(key(cp, request.transaction_id))
                    if found is not None:
                        if isinstance(request.transaction_data, list):
                            self._meter(found, frame.received_at, request.transaction_data)
                        self._close(
                            found, (parse_ms(request.timestamp), float(request.meter_stop)), ""
                        )
                case PayloadError():
                    pass
            return
        if frame.direction == "out" and frame.action == "StartTransaction":
            pending = self.pending_starts.pop(key(cp, frame.unique_id), None)
            if frame.message_type != "CALLRESULT":
                return
            answer = validate_result(frame.ocpp_version, "StartTransaction", frame.payload)
            if isinstance(pending, StartTransactionRequest) and isinstance(
                answer, StartTransactionResponse
            ):
                self._open(cp, frame.received_at, pending, answer.transaction_id)

    def _open(
        self, cp: str, at: int, request: StartTransactionRequest, transaction_id: int
    ) -> None:
        if key(cp, transaction_id) in self.transactions:
            return
        start_ms = parse_ms(request.timestamp)
        tariff = tariff_for(self.tariffs, cp, start_ms)
        transaction = Transaction(
            charge_point_id=cp,
            connector_id=request.connector_id,
            transaction_id=transaction_id,
            id_tag=request.id_tag,
            start_ms=start_ms,
            meter_start=float(request.meter_start),
            opened_at=at,
            last_meter_at=at,
            tariff=tariff,
            limits=[
                *_limits(tariff.limits, "tariff"),
                *_limits(self.id_tag_limits.get(request.id_tag), "id_tag"),
            ],
            last_register=(start_ms, float(request.meter_start)),
        )
        connector = self.charger(cp).connector(request.connector_id)
        previous = self.transactions.get(connector.open) if connector.open else None
        self.transactions[transaction.key] = transaction
        connector.open, connector.open_changed_at = transaction.key, at
        if previous is not None:
            detectors.duplicate_start(self, previous, transaction)
        if self.wallets.prepaid(request.id_tag) is not None:
            transaction.prepaid = True
            held = self.wallets.hold_for(request.id_tag)
            wallet = self.wallets.prepaid(request.id_tag)
            assert wallet is not None
            transaction.limits.append(Limit("cost", held, "prepaid"))
            self.emit(
                WalletHeld(
                    id=f"held:{transaction.charge_point_id}:{transaction.transaction_id}",
                    received_at=at,
                    cause_seq=self._seq,
                    id_tag=request.id_tag,
                    charge_point_id=cp,
                    transaction_id=transaction_id,
                    amount=str(held),
                    currency=wallet.currency,
                )
            )
            transaction.held = held

    def _meter(
        self, transaction: Transaction, at: int, values: list[MeterValue] | list[TransactionData]
    ) -> None:
        transaction.last_meter_at = at
        for point in register_points(values):
            transaction.points.append(point)
            detectors.impossible_values(self, transaction, point)
        self.check_limits(transaction, at)

    def bill(self, transaction: Transaction, stop: tuple[int, float] | None) -> Decimal:
        start = (transaction.start_ms, transaction.meter_start)
        curve = energy.curve(transaction.points, start, stop)
        return session_cost(transaction.tariff, curve).total

    def check_limits(self, transaction: Transaction, at: int) -> None:
        if transaction.limit_reached or not transaction.limits:
            return
        values: dict[str, Decimal] = {}
        for limit in transaction.limits:
            if limit.kind not in values:
                values[limit.kind] = self._measure(transaction, limit.kind, at)
            value = values[limit.kind]
            if value >= limit.threshold:
                transaction.limit_reached = True
                cause = f"limit:{transaction.charge_point_id}:{transaction.transaction_id}"
                command = Command(
                    command_id=command_id_for(cause),
                    charge_point_id=transaction.charge_point_id,
                    action="RemoteStopTransaction",
                    payload=msgspec.json.encode({"transactionId": transaction.transaction_id}),
                )
                self.emit(
                    LimitReached(
                        id=cause,
                        received_at=at,
                        cause_seq=self._seq,
                        charge_point_id=transaction.charge_point_id,
                        connector_id=transaction.connector_id,
                        transaction_id=transaction.transaction_id,
                        limit=limit.kind,
                        source=limit.source,
                        threshold=str(limit.threshold),
                        value=str(value),
                        command_id=command.command_id,
                    ),
                    command,
                )
                return

    def _measure(self, transaction: Transaction, kind: str, at: int) -> Decimal:
        if kind == "cost":
            return self.bill(transaction, None)
        if kind == "duration":
            return Decimal((at - transaction.opened_at) // 1000)
        register = max((value for _, value in transaction.points), default=transaction.meter_start)
        return Decimal(repr(register - transaction.meter_start)).quantize(PLACES, ROUND_HALF_EVEN)

    def _close(self, transaction: Transaction, stop: tuple[int, float] | None, reason: str) -> None:
        """The transaction is over: settle its wallet, resolve what it was flagged for."""
        self.transactions.pop(transaction.key, None)
        connector = self.charger(transaction.charge_point_id).connector(transaction.connector_id)
        if connector.open == transaction.key:
            connector.open, connector.open_changed_at = "", self.now
        if transaction.prepaid:
            cost = self.bill(transaction, stop)
            settlement = settle(transaction.held, cost, self.fee_rate)
            wallet = self.wallets.prepaid(transaction.id_tag)
            self.emit(
                WalletSettled(
                    id=f"settled:{transaction.charge_point_id}:{transaction.transaction_id}",
                    received_at=self.now,
                    cause_seq=self._seq,
                    id_tag=transaction.id_tag,
                    charge_point_id=transaction.charge_point_id,
                    transaction_id=transaction.transaction_id,
                    currency=wallet.currency if wallet is not None else "",
                    held=str(transaction.held),
                    cost=str(cost),
                    refund=str(settlement.refund),
                    shortfall=str(settlement.shortfall),
                    platform_fee=str(settlement.platform_fee),
                    operator_share=str(settlement.operator_share),
                    fee_rate=str(self.fee_rate),
                )
            )
        detectors.transaction_over(self, transaction, reason or "transaction stopped")

    def resolve(self, condition: str, anomaly: OpenAnomaly, resolution: str) -> None:
        self.emit(
            AnomalyResolved(
                id=f"{anomaly.anomaly_id}:resolved",
                received_at=self.now,
                cause_seq=self._seq,
                anomaly_id=anomaly.anomaly_id,
                kind=anomaly.kind,
                charge_point_id=anomaly.charge_point_id,
                connector_id=anomaly.connector_id,
                transaction_id=anomaly.transaction_id,
                resolution=resolution,
            )
        )

    def detect(
        self,
        kind: AnomalyKind,
        cp: str,
        connector_id: int,
        transaction_id: int | None,
        since: int,
        detail: str,
    ) -> None:
        anomaly_id = f"{detectors.condition_key(kind, cp, connector_id, transaction_id)}:{since}"
        self.emit(
            AnomalyDetected(
                id=f"{anomaly_id}:detected",
                received_at=self.now,
                cause_seq=self._seq,
                anomaly_id=anomaly_id,
                kind=kind,
                charge_point_id=cp,
                connector_id=connector_id,
                transaction_id=transaction_id,
                observed_at=since,
                detail=detail,
            )
        )
        action = self.policy.actions.get(kind)
        if action is None:
            return
        command: Command | None = None
        if action == "trigger_status":
            payload = {"requestedMessage": "StatusNotification"}
            if connector_id:
                payload["connectorId"] = connector_id  # type: ignore[assignment]
            command = Command(
                command_id=command_id_for(f"{anomaly_id}:{action}"),
                charge_point_id=cp,
                action="TriggerMessage",
                payload=msgspec.json.encode(payload),
            )
        elif action == "remote_stop":
            if transaction_id is None:
                return
            command = Command(
                command_id=command_id_for(f"{anomaly_id}:{action}"),
                charge_point_id=cp,
                action="RemoteStopTransaction",
                payload=msgspec.json.encode({"transactionId": transaction_id}),
            )
        elif transaction_id is None:
            return
        self.emit(
            IntegrityAction(
                id=f"{anomaly_id}:{action}",
                received_at=self.now,
                cause_seq=self._seq,
                anomaly_id=anomaly_id,
                action=action,
                charge_point_id=cp,
                connector_id=connector_id,
                transaction_id=transaction_id,
                command_id=command.command_id if command is not None else "",
            ),
            command,
        )


_READ: Final = frozenset(
    {"StartTransaction", "StatusNotification", "MeterValues", "StopTransaction"}
)


def _limits(limits: SessionLimits | None, source: str) -> list[Limit]:
    if limits is None:
        return []
    found: list[Limit] = []
    if limits.max_energy_wh is not None:
        found.append(Limit("energy", Decimal(repr(limits.max_energy_wh)), source))  # type: ignore[arg-type]
    if limits.max_duration_s is not None:
        found.append(Limit("duration", Decimal(limits.max_duration_s), source))  # type: ignore[arg-type]
    if limits.max_cost is not None:
        found.append(Limit("cost", Decimal(limits.max_cost), source))  # type: ignore[arg-type]
    return found


__all__ = ["CHARGING", "Command", "Intent", "Supervisor", "command_id_for"]
