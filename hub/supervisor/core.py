"""The supervisor's pure core: ``Supervisor.apply(seq, event) -> intents``.

It follows the stream and derives, deterministically, what the money and the integrity of
sessions call for:

- prepaid transactions: a hold on the wallet at start, the settlement at stop, and an
  adjustment when the bill moves after it (readings that came late, a corrected Stop);
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

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

import msgspec

from hub.domain.charging import Charging, Limits, Session
from hub.domain.charging import key as session_key
from hub.domain.facts import (
    CertificateKnown,
    Fact,
    TransactionEnded,
    TransactionMetered,
    TransactionStarted,
)
from hub.domain.load import Alert, LoadConfig, LoadManager, LoadState, command_id_for
from hub.domain.policy import Policy, parse_fee_rate
from hub.domain.tariffs import session_cost
from hub.domain.wallets import PLACES, Wallets, adjust, money, settle
from hub.domain.wallets import Settlement as Paid
from hub.supervisor import detectors
from hub.supervisor.model import CHARGING, Charger, Limit, OpenAnomaly, Transaction
from schemas.events import (
    AnomalyDetected,
    AnomalyKind,
    AnomalyResolved,
    ClockTick,
    CommandFinished,
    CommandRequested,
    DerivedEvent,
    Event,
    IntegrityAction,
    LimitReached,
    OcppFrame,
    TransactionId,
    WalletAdjusted,
    WalletHeld,
    WalletSettled,
    _DerivedEvent,
)

# Derived events the core made and the stream has not shown yet, at most this many.
MAX_UNCONFIRMED: Final = 100_000
# The actor of the commands the supervisor requests, and the actions they may have.
ACTOR: Final = "supervisor"
COMMAND_ACTIONS: Final = (
    "RemoteStopTransaction",
    "RequestStopTransaction",
    "TriggerMessage",
    "SetChargingProfile",
)


class Command(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    command_id: str
    charge_point_id: str
    action: str
    payload: bytes


class Intent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    event: DerivedEvent
    command: Command | None = None


class Supervisor:
    """Mutable, but changed only by :meth:`apply`, so it is a fold of the stream."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.fee_rate = parse_fee_rate(self.policy.platform_fee_rate)
        self.now = 0
        self.last_seq = 0
        # What the events mean (chargers, connectors, sessions, tariffs, wallets): the domain.
        self.charging = Charging()
        # What the supervisor adds to each transaction it watches, by session key.
        self.transactions: dict[str, Transaction] = {}
        self.anomalies: dict[str, OpenAnomaly] = {}
        # Each charger's newest certificate (issued by the hub, or presented at connect).
        self.certificates: dict[str, CertificateKnown] = {}
        # Derived events made here, by id, until the stream shows them: what to (re)publish.
        self.unconfirmed: dict[str, Intent] = {}
        # Commands of stored derived events not yet requested (no admin.command.requested).
        self.commands_due: dict[str, Command] = {}
        # Commands requested, but neither sent by a gateway (its CALL event) nor finished:
        # a supervisor that stored the request died before the gateway had it, or the
        # gateway has it still. The next holder of the lease sends them (the gateway sends
        # a CALL id once on a connection, so one it had already is not sent twice).
        self.unsent: dict[str, Command] = {}
        # Settled transactions whose bill may have moved since (session key -> seq of the
        # first change): adjusted at the next tick, so a burst of late readings makes one.
        self.moved_bills: dict[str, int] = {}
        # Site load management: the sites, the transactions below them, what was sent.
        self.load = LoadManager(load_config(self.policy))
        self._seq = 0
        self._out: list[Intent] = []

    # -- the fold ----------------------------------------------------------------------------

    def apply(self, seq: int, event: Event) -> list[Intent]:
        self._seq, self._out = seq, []
        self.now = max(self.now, event.received_at)
        if isinstance(event, _DerivedEvent) and self.unconfirmed.pop(event.id, None) is not None:
            # Derived here and applied when it was made: the stream only confirms it.
            pass
        else:
            facts = self.charging.apply(seq, event)
            self._react(facts)
            self._allocate(event, facts)
            match event:
                case ClockTick():
                    detectors.scan(self)
                    self._adjust_moved()
                case CommandRequested(command_id=command_id):
                    self.commands_due.pop(command_id, None)
                    if event.actor == ACTOR:
                        self.unsent[command_id] = Command(
                            command_id=command_id,
                            charge_point_id=event.charge_point_id,
                            action=event.action,
                            payload=bytes(event.payload),
                        )
                case CommandFinished(command_id=command_id):
                    self.unsent.pop(command_id, None)
                case OcppFrame(direction="out", message_type="CALL", unique_id=command_id):
                    self.unsent.pop(command_id, None)
                case _DerivedEvent():
                    # Stored by an earlier run whose state this one does not share: the
                    # stream is the truth, so it counts.
                    self._absorb(event)
        self.last_seq = max(self.last_seq, seq)
        return self._out

    @property
    def wallets(self) -> Wallets:
        return self.charging.state.wallets

    @property
    def chargers(self) -> dict[str, Charger]:
        return self.charging.state.chargers

    def session(self, transaction: Transaction) -> Session:
        return self.charging.state.sessions[transaction.key]

    def open_on(self, connector_key: str) -> Transaction | None:
        """The watched transaction a connector's ``open`` names, if any."""
        return self.transactions.get(connector_key) if connector_key else None

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

    def _absorb(self, event: DerivedEvent) -> None:
        match event:
            case WalletHeld() | WalletSettled() | WalletAdjusted() | IntegrityAction():
                # What they mean (money moved, a transaction closed) is the domain's to say.
                self._react(self.charging.apply(self._seq, event))
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

    # -- facts -----------------------------------------------------------------------------

    def _react(self, facts: list[Fact]) -> None:
        for fact in facts:
            match fact:
                case TransactionStarted(inferred=False):
                    self._open(fact)
                case TransactionMetered(session=name) if name:
                    metered = session_key(fact.charge_point_id, name)
                    found = self.transactions.get(metered)
                    if found is not None:
                        self._meter(found, fact)
                    elif self._settled(metered):
                        self.moved_bills.setdefault(metered, self._seq)
                case TransactionEnded(corrected=False):
                    found = self.transactions.get(session_key(fact.charge_point_id, fact.session))
                    if found is not None:
                        self._close(found, fact)
                case TransactionEnded(corrected=True):
                    # A later end: its bill is final now, so the wallet follows at once.
                    self._adjust(session_key(fact.charge_point_id, fact.session))
                case CertificateKnown(charge_point_id=cp):
                    self.certificates[cp] = fact

    def _open(self, fact: TransactionStarted) -> None:
        name = session_key(fact.charge_point_id, fact.session)
        transaction = Transaction(
            key=name,
            charge_point_id=fact.charge_point_id,
            connector_id=fact.connector_id,
            transaction_id=fact.transaction_id,
        )
        self.transactions[name] = transaction
        wallet = self.wallets.prepaid(fact.id_tag)
        if wallet is None:
            return
        held = self.wallets.hold_for(fact.id_tag)
        transaction.prepaid, transaction.held = True, held
        self.emit(
            WalletHeld(
                id=f"held:{transaction.charge_point_id}:{transaction.transaction_id}",
                received_at=fact.at,
                cause_seq=self._seq,
                id_tag=fact.id_tag,
                charge_point_id=transaction.charge_point_id,
                transaction_id=transaction.transaction_id,
                amount=str(held),
                currency=wallet.currency,
            )
        )

    def _meter(self, transaction: Transaction, fact: TransactionMetered) -> None:
        for point in fact.register:
            detectors.impossible_values(self, transaction, point)
        self.check_limits(transaction, fact.at)

    def bill(self, transaction: Transaction) -> Decimal:
        return _bill(self.session(transaction))

    def limits(self, transaction: Transaction) -> list[Limit]:
        """Every limit on the transaction: tariff, id tag and API ones, and the prepaid hold."""
        found = [
            limit for sourced in self.session(transaction).limits for limit in _limits(sourced)
        ]
        if transaction.prepaid:
            found.append(Limit("cost", transaction.held, "prepaid"))
        return found

    def check_limits(self, transaction: Transaction, at: int) -> None:
        if transaction.limit_reached:
            return
        values: dict[str, Decimal] = {}
        for limit in self.limits(transaction):
            if limit.kind not in values:
                values[limit.kind] = self._measure(transaction, limit.kind, at)
            value = values[limit.kind]
            if value >= limit.threshold:
                transaction.limit_reached = True
                cause = f"limit:{transaction.charge_point_id}:{transaction.transaction_id}"
                command = Command(
                    command_id=command_id_for(cause),
                    charge_point_id=transaction.charge_point_id,
                    action=stop_action(transaction.transaction_id),
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
        session = self.session(transaction)
        if kind == "cost":
            return self.bill(transaction)
        if kind == "duration":
            return Decimal((at - session.opened_at) // 1000)
        meter_start = session.meter_start or 0.0
        register = max((value for _, value in session.points), default=meter_start)
        return Decimal(repr(register - meter_start)).quantize(PLACES, ROUND_HALF_EVEN)

    def _close(self, transaction: Transaction, fact: TransactionEnded) -> None:
        """The transaction is over: settle its wallet, resolve what it was flagged for."""
        if fact.reason == "superseded":
            detectors.superseded(self, transaction, fact)
        if transaction.prepaid:
            cost = self.bill(transaction)
            settlement = settle(transaction.held, cost, self.fee_rate)
            wallet = self.wallets.prepaid(self.session(transaction).id_tag)
            self.emit(
                WalletSettled(
                    id=f"settled:{transaction.charge_point_id}:{transaction.transaction_id}",
                    received_at=self.now,
                    cause_seq=self._seq,
                    id_tag=self.session(transaction).id_tag,
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
        self.transactions.pop(transaction.key, None)
        resolution = {"stopped": "transaction stopped", "closed": "closed by the integrity policy"}
        detectors.transaction_over(
            self, transaction, resolution.get(fact.reason, fact.charger_reason)
        )

    # -- site load management ----------------------------------------------------------------

    def _allocate(self, event: Event, facts: list[Fact]) -> None:
        versions = {
            fact.charge_point_id: self.chargers[fact.charge_point_id].ocpp_version
            for fact in facts
            if fact.charge_point_id in self.chargers
        }
        outcome = self.load.apply(self._seq, event, facts, versions)
        for decision in outcome.decisions:
            send = decision.send
            command = None
            if send is not None:
                command = Command(
                    command_id=decision.event.command_id,
                    charge_point_id=send.charge_point_id,
                    action=send.action,
                    payload=send.payload,
                )
            self.emit(decision.event, command)
        for alert in outcome.alerts:
            self._load_alert(alert)

    def _load_alert(self, alert: Alert) -> None:
        cp, connector_id, tx = alert.charge_point_id, alert.connector_id, alert.transaction_id
        condition = detectors.condition_key("load_unmanaged", cp, connector_id, tx)
        anomaly = self.anomalies.get(condition)
        if alert.raised and anomaly is None:
            self.detect("load_unmanaged", cp, connector_id, tx, self.now, alert.detail)
        elif not alert.raised and anomaly is not None:
            self.resolve(condition, anomaly, "the allocator controls it again")

    # -- settlement adjustments -------------------------------------------------------------

    def _settled(self, name: str) -> bool:
        session = self.charging.state.sessions.get(name)
        return session is not None and session.settlement is not None

    def _adjust_moved(self) -> None:
        moved, self.moved_bills = self.moved_bills, {}
        for name in moved:
            self._adjust(name)

    def _adjust(self, name: str) -> None:
        """The bill of a settled transaction is the truth: if it moved from what the wallet
        paid, the wallet pays the difference (or gets it back)."""
        self.moved_bills.pop(name, None)
        session = self.charging.state.sessions.get(name)
        if session is None or session.settlement is None:
            return
        settled = session.settlement
        paid = Paid(
            refund=money(settled.refund),
            shortfall=money(settled.shortfall),
            platform_fee=money(settled.platform_fee),
            operator_share=money(settled.operator_share),
        )
        cost = _bill(session)
        amount = cost - paid.platform_fee - paid.operator_share
        if not amount:
            return
        change = adjust(money(settled.held), paid, cost, self.fee_rate)
        wallet = self.wallets.prepaid(session.id_tag)
        cp, tx = session.charge_point_id, session.transaction_id
        self.emit(
            WalletAdjusted(
                # The n-th adjustment, to this cost: a bill that moves back and forth
                # still gets a new id each time, and a replay derives the same ones.
                id=f"adjusted:{cp}:{tx}:{settled.adjustments + 1}:{cost}",
                received_at=self.now,
                cause_seq=self._seq,
                id_tag=session.id_tag,
                charge_point_id=cp,
                transaction_id=tx,
                currency=wallet.currency if wallet is not None else "",
                held=settled.held,
                cost=str(cost),
                amount=str(amount),
                refund=str(change.refund),
                shortfall=str(change.shortfall),
                platform_fee=str(change.platform_fee),
                operator_share=str(change.operator_share),
                fee_rate=str(self.fee_rate),
            )
        )

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
        transaction_id: TransactionId | None,
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
                action=stop_action(transaction_id),
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


def load_config(policy: Policy) -> LoadConfig:
    return LoadConfig(
        enabled=policy.load_management,
        stack_level=policy.load_stack_level,
        hysteresis_a=policy.load_hysteresis_a,
        min_interval_ms=round(policy.load_min_interval_s * 1000),
        reaction_allowance_ms=round(policy.load_reaction_allowance_s * 1000),
    )


def stop_action(transaction_id: TransactionId) -> str:
    """The CALL that asks a charger to stop a transaction: 1.6's for its integer ids, 2.x's
    for its string ids (both take ``{"transactionId": id}``)."""
    return "RemoteStopTransaction" if isinstance(transaction_id, int) else "RequestStopTransaction"


def _bill(session: Session) -> Decimal:
    return session_cost(session.tariff, session.curve()).total


def _limits(sourced: Limits) -> list[Limit]:
    limits, source = sourced.limits, sourced.source
    found: list[Limit] = []
    if limits.max_energy_wh is not None:
        found.append(Limit("energy", Decimal(repr(limits.max_energy_wh)), source))
    if limits.max_duration_s is not None:
        found.append(Limit("duration", Decimal(limits.max_duration_s), source))
    if limits.max_cost is not None:
        found.append(Limit("cost", Decimal(limits.max_cost), source))
    return found


__all__ = [
    "ACTOR",
    "CHARGING",
    "COMMAND_ACTIONS",
    "Command",
    "Intent",
    "LoadState",
    "Supervisor",
    "command_id_for",
]
