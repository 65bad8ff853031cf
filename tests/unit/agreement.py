"""One stream, three consumers: a charger simulator for the agreement property test.

``Hub`` feeds each event, in stream order, to the supervisor, the projections and the
fan-out, and appends what the supervisor derives right after the event that caused it (as
its drain stores it). ``Charger`` behaves like real firmware: it loses answers and then
stamps its messages -1 or 0, retries calls under new message ids, replays its last frames
byte for byte after a reboot, sends readings late and out of order, starts again on a busy
connector when its Stop got lost. ``disagreements`` compares, for every transaction the
domain knows, what the three consumers say of its state, energy and cost, and that what
each prepaid transaction's wallet paid is its bill.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import msgspec

from hub.domain.charging import Session
from hub.domain.policy import Policy
from hub.fanout.live import Live
from hub.supervisor.core import Supervisor
from projections import fold
from projections.rows import BillingRow, Output, SessionRow
from projections.state import State
from schemas import ui
from schemas.events import (
    ChargerConnected,
    ChargerDisconnected,
    ClockTick,
    Event,
    OcppFrame,
    TariffBand,
    TariffSet,
    WalletAdjusted,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
    WalletSettled,
)

T0: Final = 1_795_000_000_000  # hub time of the first event, ms: 2026-11-18
CHARGERS: Final = ("CP-1", "CP-2", "CP-3")
# Chargers that speak OCPP 2.x (TransactionEvent), by version; the rest speak 1.6.
VERSION_OF: Final = {"CP-3": "2.0.1"}
CONNECTORS: Final = (1, 2)
# Tags: a postpaid one, a prepaid one with a fixed hold, one whose hold is its whole balance.
TAGS: Final = ("POST", "PRE", "PRE-ALL")
TARIFFS: Final = (
    {"per_kwh": "0.30", "per_minute": "0.01", "session_fee": "0.50"},
    {"per_kwh": "0.45", "per_minute": "0", "session_fee": "0"},
    {
        "per_kwh": "0.25",
        "per_minute": "0.02",
        "session_fee": "0.35",
        "bands": (TariffBand(start="18:00", end="23:00", per_kwh="0.55", per_minute="0.05"),),
    },
    {"per_kwh": "0.3333", "per_minute": "0.0117", "session_fee": "1.00"},
)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class Hub:
    """The stream and its three consumers."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.events: list[Event] = []
        self.supervisor = Supervisor(policy or Policy(actions={}))
        self.projections = State()
        self.out = Output()
        self.live = Live(history_per_charger=100_000)
        self.messages: list[ui.ChargerMessage] = []
        self.now = T0
        self._ids = itertools.count(1)
        # The gateway's transaction ids: one per start identity (hub.txids), while held.
        self.txids = itertools.count(101)
        self.start_ids: dict[tuple[Any, ...], int] = {}

    def event_id(self) -> str:
        return f"e{next(self._ids)}"

    def tick(self, seconds: float = 1) -> int:
        self.now += int(seconds * 1000)
        return self.now

    def add(self, event: Event) -> None:
        queue = [event]
        while queue:
            current = queue.pop(0)
            self.events.append(current)
            seq = len(self.events)
            intents = self.supervisor.apply(seq, current)
            fold.apply(self.projections, self.out, seq, current)
            self.messages.extend(self.live.fold(current, seq))
            # The supervisor's drain: what it derived goes into the stream next.
            queue[:0] = [intent.event for intent in intents]

    # -- admin --------------------------------------------------------------------------------

    def tariff(self, index: int, charge_point_id: str = "") -> None:
        self.add(
            TariffSet(
                id=self.event_id(),
                received_at=self.tick(),
                actor="t",
                tariff_id=f"t{index}-{len(self.events)}",
                charge_point_id=charge_point_id,
                **TARIFFS[index],  # type: ignore[arg-type]
            )
        )

    def wallet(self, id_tag: str, credit: str, hold: str = "") -> None:
        self.add(
            WalletConfigured(
                id=self.event_id(),
                received_at=self.tick(),
                actor="t",
                id_tag=id_tag,
                hold_amount=hold,
            )
        )
        self.add(
            WalletCredited(
                id=self.event_id(), received_at=self.tick(), actor="t", id_tag=id_tag, amount=credit
            )
        )

    def clock(self) -> None:
        self.add(ClockTick(id=self.event_id(), received_at=self.tick()))


@dataclass
class Running:
    """A transaction as the charger sees it."""

    connector: int
    uses: int  # the id it puts in its messages: the hub's, or -1 / 0 if the answer was lost
    start_payload: dict[str, Any]
    start_at: int


@dataclass
class Charger:
    hub: Hub
    cp: str
    version: str = "1.6"
    connection: int = 0
    registers: dict[int, int] = field(default_factory=lambda: dict.fromkeys(CONNECTORS, 10_000))
    running: dict[int, Running] = field(default_factory=dict)
    # Every CALL and its answer, as stored: what a reboot sends again.
    sent: list[tuple[OcppFrame, OcppFrame]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)
    last_start: Running | None = None
    last_stop: dict[str, Any] | None = None
    _uids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def connection_id(self) -> str:
        return f"{self.cp}-c{self.connection}"

    def _stored(self) -> dict[str, Any]:
        """What the gateway stamps on each event of this charger's connection."""
        return {
            "id": self.hub.event_id(),
            "received_at": self.hub.tick(),
            "charge_point_id": self.cp,
            "gateway_id": "gw",
            "connection_id": self.connection_id,
        }

    def connect(self) -> None:
        self.connection += 1
        self.hub.add(
            ChargerConnected(
                **self._stored(),
                ocpp_version=self.version,  # type: ignore[arg-type]
                remote_address="10.0.0.1:1",
                security_profile=0,
            )
        )

    def disconnect(self) -> None:
        self.hub.add(
            ChargerDisconnected(
                **self._stored(),
                close_code=1006,
            )
        )

    def _frame(self, direction: str, kind: str, uid: str, action: str, body: bytes) -> OcppFrame:
        return OcppFrame(
            **self._stored(),
            ocpp_version=self.version,  # type: ignore[arg-type]
            direction=direction,  # type: ignore[arg-type]
            message_type=kind,  # type: ignore[arg-type]
            unique_id=uid,
            action=action,
            payload=msgspec.Raw(body),
        )

    def call(
        self, action: str, payload: dict[str, Any], answer: dict[str, Any], uid: str = ""
    ) -> str:
        uid = uid or f"{self.cp}-m{next(self._uids)}"
        request = self._frame("in", "CALL", uid, action, msgspec.json.encode(payload))
        self.hub.add(request)
        response = self._frame("out", "CALLRESULT", uid, action, msgspec.json.encode(answer))
        self.hub.add(response)
        self.sent.append((request, response))
        return uid

    def boot(self) -> None:
        self.call(
            "BootNotification",
            {"chargePointVendor": "Acme", "chargePointModel": "X1"},
            {"status": "Accepted", "currentTime": iso(self.hub.now), "interval": 300},
        )

    # -- transactions ---------------------------------------------------------------------------

    def start(self, connector: int, id_tag: str, lost: int | None) -> None:
        """Start on ``connector`` (busy or not); ``lost``: the answer never reached the
        charger, which stamps the transaction's messages with this id instead."""
        at = self.hub.tick(60)
        payload = {
            "connectorId": connector,
            "idTag": id_tag,
            "meterStart": self.registers[connector],
            "timestamp": iso(at),
        }
        tx = self.hub_id(payload)
        self.call("StartTransaction", payload, _start_answer(tx))
        running = Running(connector, tx if lost is None else lost, payload, at)
        self.running[connector] = self.last_start = running

    def hub_id(self, payload: dict[str, Any], *, fresh: bool = False) -> int:
        """The id the gateway answers a start with: the same for the same start while its
        bucket entry is held, a new one (``fresh``) once it is not."""
        identity = (self.cp, *sorted(payload.items()))
        ids = self.hub.start_ids
        if fresh or identity not in ids:
            ids[identity] = next(self.hub.txids)
        return ids[identity]

    def retry_start(self, *, held: bool) -> None:
        """The last start again under a new message id: it saw no answer in time. Held: the
        gateway finds the same start and answers the same id; else (after a reconnect, its
        entry expired) a new one, which the charger then uses."""
        running = self.last_start
        if running is None or self.running.get(running.connector) is not running:
            return
        if not held:
            self.disconnect()
            self.connect()
        tx = self.hub_id(running.start_payload, fresh=not held)
        self.call("StartTransaction", running.start_payload, _start_answer(tx))
        if running.uses > 0:
            running.uses = tx

    def meter(self, connector: int, wh: int, minutes: int, *, late: bool) -> None:
        """A reading ``minutes`` on; sent now, or held back (``late``) and sent later."""
        running = self.running.get(connector)
        at = self.hub.tick(minutes * 60)
        self.registers[connector] += wh
        payload: dict[str, Any] = {
            "connectorId": connector,
            "meterValue": [
                {
                    "timestamp": iso(at),
                    "sampledValue": [
                        {"value": str(self.registers[connector]), "unit": "Wh"},
                        {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                    ],
                }
            ],
        }
        if running is not None:
            payload["transactionId"] = running.uses
        if late:
            self.late.append(payload)
        else:
            self.call("MeterValues", payload, {})

    def stray(self, connector: int, transaction_id: int, wh: int) -> None:
        """A reading with an id the hub never issued, on a connector busy or not."""
        at = self.hub.tick(300)
        self.registers[connector] += wh
        self.call(
            "MeterValues",
            {
                "connectorId": connector,
                "transactionId": transaction_id,
                "meterValue": [
                    {
                        "timestamp": iso(at),
                        "sampledValue": [{"value": str(self.registers[connector])}],
                    }
                ],
            },
            {},
        )

    def flush(self) -> None:
        """Readings held back, newest first: late and out of order."""
        late, self.late = self.late, []
        for payload in reversed(late):
            self.call("MeterValues", payload, {})

    def stop(self, connector: int) -> None:
        running = self.running.pop(connector, None)
        if running is None:
            return
        at = self.hub.tick(60)
        self.last_stop = {
            "transactionId": running.uses,
            "meterStop": self.registers[connector],
            "timestamp": iso(at),
            "reason": "Local",
        }
        self.call("StopTransaction", self.last_stop, {"idTagInfo": {"status": "Accepted"}})

    def stray_stop(self, transaction_id: int) -> None:
        """A Stop for an id never issued (a charger's queue from before a reset)."""
        at = self.hub.tick(60)
        payload = {
            "transactionId": transaction_id,
            "meterStop": max(self.registers.values()),
            "timestamp": iso(at),
            "reason": "PowerLoss",
        }
        self.call("StopTransaction", payload, {"idTagInfo": {"status": "Accepted"}})

    def retry_stop(self) -> None:
        if self.last_stop is not None:
            self.call("StopTransaction", self.last_stop, {"idTagInfo": {"status": "Accepted"}})

    def reboot(self, frames: int) -> None:
        """A reboot: a new connection, a boot, and the last calls again byte for byte (same
        message ids, same payloads), each answered as before."""
        replay = self.sent[-frames:]
        self.disconnect()
        self.connect()
        self.boot()
        for request, response in replay:
            for frame in (request, response):
                self.hub.add(
                    msgspec.structs.replace(
                        frame,
                        id=self.hub.event_id(),
                        received_at=self.hub.tick(),
                        connection_id=self.connection_id,
                    )
                )


class Charger2(Charger):
    """A charging station that speaks OCPP 2.x: the same behaviour (lost answers aside: it
    names its transactions itself) through TransactionEvents, whose ``seqNo`` a retry,
    a reboot's replay and a late flush repeat or reorder."""

    def __init__(self, hub: Hub, cp: str, version: str) -> None:
        super().__init__(hub, cp, version)
        self.transactions = itertools.count(1)
        self.seq_nos: dict[str, itertools.count[int]] = {}
        self.last_event: dict[str, Any] | None = None

    def boot(self) -> None:
        self.call(
            "BootNotification",
            {"chargingStation": {"vendorName": "Acme", "model": "X1"}, "reason": "PowerUp"},
            {"status": "Accepted", "currentTime": iso(self.hub.now), "interval": 300},
        )

    def _event(
        self, kind: str, tx: str, at: int, connector: int, *, tag: str = "", offline: bool = False
    ) -> dict[str, Any]:
        seq_nos = self.seq_nos.setdefault(tx, itertools.count())
        register = {"value": self.registers[connector], "unitOfMeasure": {"unit": "Wh"}}
        power = {"value": 7.2, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW"}}
        trigger = {"Started": "Authorized", "Updated": "MeterValuePeriodic", "Ended": "EVDeparted"}
        payload: dict[str, Any] = {
            "eventType": kind,
            "timestamp": iso(at),
            "triggerReason": trigger[kind],
            "seqNo": next(seq_nos),
            "transactionInfo": {"transactionId": tx},
            "evse": {"id": connector, "connectorId": 1},
            "meterValue": [{"timestamp": iso(at), "sampledValue": [register, power]}],
        }
        if tag:
            payload["idToken"] = {"idToken": tag, "type": "ISO14443"}
        if offline:
            payload["offline"] = True
        return payload

    def _send(self, payload: dict[str, Any]) -> None:
        answer: dict[str, Any] = {}
        if "idToken" in payload:
            answer["idTokenInfo"] = {"status": "Accepted"}
        self.call("TransactionEvent", payload, answer)
        self.last_event = payload

    def start(self, connector: int, id_tag: str, lost: int | None) -> None:
        """``lost``: it was offline then (the hub sees ``offline: true``)."""
        at = self.hub.tick(60)
        tx = f"{self.cp}-t{next(self.transactions)}"
        self._send(self._event("Started", tx, at, connector, tag=id_tag, offline=lost is not None))
        running = Running(connector, 0, {"transactionId": tx}, at)
        self.running[connector] = self.last_start = running

    def retry_start(self, *, held: bool) -> None:
        """The last event again, under a new message id (after a reconnect unless held)."""
        if self.last_event is None:
            return
        if not held:
            self.disconnect()
            self.connect()
        self._send(self.last_event)

    def meter(self, connector: int, wh: int, minutes: int, *, late: bool) -> None:
        running = self.running.get(connector)
        at = self.hub.tick(minutes * 60)
        self.registers[connector] += wh
        if running is None:
            sampled = [{"value": self.registers[connector], "unitOfMeasure": {"unit": "Wh"}}]
            values = [{"timestamp": iso(at), "sampledValue": sampled}]
            self.call("MeterValues", {"evseId": connector, "meterValue": values}, {})
            return
        tx = running.start_payload["transactionId"]
        payload = self._event("Updated", tx, at, connector, offline=late)
        if late:
            self.late.append(payload)
        else:
            self._send(payload)

    def flush(self) -> None:
        """Events held back, newest first."""
        late, self.late = self.late, []
        for payload in reversed(late):
            self._send(payload)

    def stop(self, connector: int) -> None:
        running = self.running.pop(connector, None)
        if running is None:
            return
        at = self.hub.tick(60)
        payload = self._event("Ended", running.start_payload["transactionId"], at, connector)
        payload["transactionInfo"]["stoppedReason"] = "Local"
        self.last_stop = payload
        self._send(payload)

    def retry_stop(self) -> None:
        if self.last_stop is not None:
            self._send(self.last_stop)

    def stray(self, connector: int, transaction_id: int, wh: int) -> None:
        """An Updated of a transaction whose Started the hub never saw."""
        at = self.hub.tick(300)
        self.registers[connector] += wh
        tx = f"{self.cp}-stray{transaction_id}-{next(self.transactions)}"
        self._send(self._event("Updated", tx, at, connector))

    def stray_stop(self, transaction_id: int) -> None:
        """An Ended of a transaction the hub never saw begin."""
        at = self.hub.tick(60)
        tx = f"{self.cp}-stray{transaction_id}-{next(self.transactions)}"
        payload = self._event("Ended", tx, at, CONNECTORS[0])
        payload["transactionInfo"]["stoppedReason"] = "PowerLoss"
        self._send(payload)


def charger_for(hub: Hub, cp: str) -> Charger:
    version = VERSION_OF.get(cp)
    return Charger(hub, cp) if version is None else Charger2(hub, cp, version)


def _start_answer(tx: int) -> dict[str, Any]:
    return {"transactionId": tx, "idTagInfo": {"status": "Accepted"}}


# -- the comparison ---------------------------------------------------------------------------


@dataclass
class FanoutView:
    state: str  # ongoing, completed, terminated, or "" if the fan-out never showed it
    energy_wh: float | None
    total: Decimal | None


def _latest(rows: list[Any]) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for row in rows:
        found[(row.charge_point_id, row.session_id)] = row
    return found


def _opened(rows: list[SessionRow]) -> dict[tuple[str, str], int]:
    """The seq of each session's first version: the event that opened it."""
    found: dict[tuple[str, str], int] = {}
    for row in rows:
        found.setdefault((row.charge_point_id, row.session_id), row.seq)
    return found


def fanout_views(
    hub: Hub, sessions: list[Session], opened: dict[tuple[str, str], int]
) -> dict[tuple[str, str], FanoutView]:
    """What the fan-out told a UI of each session. A UI knows transactions by charger,
    transaction id and connector; of sessions sharing those (an offline charger's -1), each
    owns the messages from its opening to the next one's."""
    owners: dict[tuple[str, int | str, int], list[tuple[int, str]]] = defaultdict(list)
    for session in sessions:
        owner = (session.charge_point_id, session.transaction_id, session.connector_id)
        owners[owner].append((opened[(session.charge_point_id, session.session)], session.session))
    for runs in owners.values():
        runs.sort()
    stopped: dict[tuple[str, str], ui.TransactionStopped] = {}
    for message in hub.messages:
        if not isinstance(message, ui.TransactionStopped):
            continue
        runs = owners.get((message.charge_point_id, message.transaction_id, message.connector_id))
        if not runs:
            continue
        name = [name for seq, name in runs if seq <= message.seq][-1]
        stopped[(message.charge_point_id, name)] = message
    views: dict[tuple[str, str], FanoutView] = {}
    for cp in CHARGERS:
        snapshot = hub.live.snapshot(cp, hub.now)
        ongoing = {(t.transaction_id, t.connector_id): t for t in snapshot.transactions}
        for session in sessions:
            if session.charge_point_id != cp:
                continue
            view = ongoing.get((session.transaction_id, session.connector_id))
            runs = owners[(cp, session.transaction_id, session.connector_id)]
            if view is not None and runs[-1][1] == session.session:
                views[(cp, session.session)] = FanoutView("ongoing", view.energy_wh, None)
                continue
            message = stopped.get((cp, session.session))
            if message is None:
                views[(cp, session.session)] = FanoutView("", None, None)
                continue
            state = "completed" if message.ended_by == "stopped" else "terminated"
            total = Decimal(message.bill.total) if message.bill is not None else None
            views[(cp, session.session)] = FanoutView(state, message.energy_wh, total)
    return views


def disagreements(hub: Hub) -> list[str]:
    """Every way the three consumers disagree about a transaction, or about a hold."""
    problems: list[str] = []
    domain = hub.projections.domain.sessions
    for name, other in (("supervisor", hub.supervisor.charging), ("fan-out", hub.live.charging)):
        if msgspec.json.encode(other.state.sessions) != msgspec.json.encode(domain):
            problems.append(f"the {name}'s domain holds other sessions than the projections'")
    session_rows = [r for r in hub.out.rows["session_versions"] if isinstance(r, SessionRow)]
    bills = _latest(hub.out.rows["billing_versions"])
    rows = _latest(session_rows)
    opened = _opened(session_rows)
    sessions = list(domain.values())
    missing = [s.session for s in sessions if (s.charge_point_id, s.session) not in rows]
    if missing:
        return [*problems, f"sessions without a row: {missing}"]
    views = fanout_views(hub, sessions, opened)
    settled = _money(hub, problems)
    billed = {
        ((row.charge_point_id, row.session_id), row.seq): row
        for row in hub.out.rows["billing_versions"]
        if isinstance(row, BillingRow)
    }
    for session in sessions:
        ref = (session.charge_point_id, session.session)
        label = f"{session.charge_point_id}/{session.session} (tx {session.transaction_id})"
        row: SessionRow = rows[ref]
        bill: BillingRow = bills[ref]
        view = views[ref]
        watched = hub.supervisor.transactions.get(f"{ref[0]}\x1f{ref[1]}")
        if row.state != view.state:
            problems.append(f"{label}: projections say {row.state}, the fan-out {view.state!r}")
        if session.start_ms is not None and (watched is not None) != (row.state == "ongoing"):
            problems.append(
                f"{label}: projections say {row.state}, the supervisor "
                f"{'watches it' if watched is not None else 'does not watch it'}"
            )
        if view.energy_wh is not None and abs(row.energy_wh - view.energy_wh) > 1e-6:
            problems.append(
                f"{label}: energy {row.energy_wh} Wh in sessions, {view.energy_wh} in the fan-out"
            )
        if view.state not in ("", "ongoing"):
            priced = bool(session.tariff.tariff_id) and session.start_ms is not None
            if view.total is None and priced:
                problems.append(f"{label}: billed {bill.total}, the fan-out shows no bill")
            if view.total is not None and view.total != bill.total:
                problems.append(f"{label}: billed {bill.total}, the fan-out shows {view.total}")
        settlement = settled.get((session.charge_point_id, session.transaction_id))
        if settlement is not None:
            cost, seq = settlement
            then = billed[(ref, seq)]
            if cost != then.total:
                problems.append(f"{label}: billed {then.total}, the wallet settled {cost}")
    return [*problems, *unpaid_bills(hub)]


def unpaid_bills(hub: Hub) -> list[str]:
    """Prepaid transactions over whose wallet did not pay their bill: the settlement's cost
    plus every adjustment since (late readings, a corrected end) must be the billing row's
    total, to the cent, once a tick has come after the last change; the money moved (held
    less refunds plus shortfalls, fee plus share) must be what settling at it moves."""
    bills = _latest(hub.out.rows["billing_versions"])
    settled = {
        (e.charge_point_id, e.transaction_id): e for e in hub.events if isinstance(e, WalletSettled)
    }
    adjusted: dict[tuple[str, int | str], list[WalletAdjusted]] = defaultdict(list)
    for event in hub.events:
        if isinstance(event, WalletAdjusted):
            adjusted[(event.charge_point_id, event.transaction_id)].append(event)
    wrong: list[str] = []
    for ref in adjusted.keys() - settled.keys():
        wrong.append(f"{ref}: adjusted, never settled")
    for (cp, transaction_id), settlement in settled.items():
        session = hub.supervisor.charging.session_of(cp, transaction_id)
        if session is None:
            continue
        label = f"{cp}/{transaction_id}"
        total = bills[(cp, session.session)].total
        moves = [settlement, *adjusted[(cp, transaction_id)]]
        paid = Decimal(settlement.cost) + sum((Decimal(a.amount) for a in moves[1:]), Decimal(0))
        if paid != total:
            wrong.append(f"{label}: billed {total}, the wallet paid {paid}")
        if moves[-1].cost != str(paid):
            wrong.append(f"{label}: its last adjustment says {moves[-1].cost}, paid {paid}")
        held = Decimal(settlement.held)
        refund = sum((Decimal(m.refund) for m in moves), Decimal(0))
        shortfall = sum((Decimal(m.shortfall) for m in moves), Decimal(0))
        fee = sum((Decimal(m.platform_fee) for m in moves), Decimal(0))
        share = sum((Decimal(m.operator_share) for m in moves), Decimal(0))
        rate = Decimal(settlement.fee_rate)
        if (refund, shortfall) != (max(held - paid, 0), max(paid - held, 0)):
            wrong.append(f"{label}: held {held}, refunded {refund}, short {shortfall}, paid {paid}")
        if fee != (paid * rate).quantize(Decimal("0.0001")) or fee + share != paid:
            wrong.append(f"{label}: fee {fee} and share {share} of {paid}")
    return wrong


def _money(hub: Hub, problems: list[str]) -> dict[tuple[str, int | str], tuple[Decimal, int]]:
    """Each hold settled once, once its transaction is over; what each settlement cost, and
    the seq of its event."""
    held: dict[tuple[str, int | str], int] = defaultdict(int)
    settled: dict[tuple[str, int | str], list[tuple[Decimal, int]]] = defaultdict(list)
    for seq, event in enumerate(hub.events, start=1):
        if isinstance(event, WalletHeld):
            held[(event.charge_point_id, event.transaction_id)] += 1
        elif isinstance(event, WalletSettled):
            ref = (event.charge_point_id, event.transaction_id)
            settled[ref].append((Decimal(event.cost), seq))
    for ref, count in held.items():
        session = hub.supervisor.charging.session_of(*ref)
        over = session is not None and not session.ongoing
        if count != 1:
            problems.append(f"{ref}: held {count} times")
        if over and len(settled.get(ref, [])) != 1:
            problems.append(f"{ref}: over, settled {len(settled.get(ref, []))} times")
        if not over and ref in settled:
            problems.append(f"{ref}: settled while it goes on")
    for ref, costs in settled.items():
        if ref not in held:
            problems.append(f"{ref}: settled {costs} without a hold")
    for event in hub.events:
        if isinstance(event, WalletAdjusted):
            session = hub.supervisor.charging.session_of(
                event.charge_point_id, event.transaction_id
            )
            if session is None or session.ongoing:
                problems.append(f"{event.id}: adjusted while it goes on")
    return {ref: costs[0] for ref, costs in settled.items() if len(costs) == 1}
