"""Site load management, the decisions: which car below which node gets what, when, and
which charging profile tells it so.

``LoadManager.apply(seq, event, facts, versions)`` takes in each event (the sites' admin
events, ``clock.tick``) with the charging domain's facts about it (transactions started,
metered and ended, chargers connected and gone, profiles installed and refused) and
returns the :class:`Decision` s it calls for: an ``allocation.decided`` event each, with
the SetChargingProfile to send, and the :class:`Alert` s to raise or clear. The split
itself is :func:`hub.domain.allocation.allocate`'s; what is sent, :func:`changes`'.

When it decides (the ``reason`` of each decision):

- ``start``, ``end``, ``meter``: a transaction on an assigned connector started, ended, or
  sent readings (which say what a car draws, so what it wants);
- ``limit``: a node, a live limit or an assignment changed;
- ``tick``: a ``clock.tick``: a daily limit moved on, an increase held back by the rate
  limit is due, or a car's draw moved by the hysteresis since it was last decided on (so
  the record of measured load follows the cars without an event per reading);
- ``connect``: a charger of a site connected: each of its assigned connectors gets a
  TxDefaultProfile at 0 A (a car waits until the allocator decides on it) and a running
  transaction its TxProfile again (a charger that rebooted lost its profiles);
- ``rejected``: a charger refused a profile, did not answer, or went offline. Its connector
  is no longer controlled: its load counts at the last limit it accepted (else its maximum),
  ahead of every other car, and an alert (``load_unmanaged``) is raised; it is cleared when
  the charger accepts a profile again (after it reconnects) or the transaction ends.

Lowering a limit is sent at once; raising one (a newcomer's first limit too) only when it
fits with every other car counted at its ceiling, the highest limit it may still draw: its
last limit in effect for sure (accepted by its charger, the reaction allowance ago) or any
told since. So a car is never given room before the cuts that make it have taken effect.

Only decisions that matter become events: a limit worth sending (:func:`changes`: every
decrease at once, an increase by the hysteresis and no sooner than the interval after the
last word to that connector), a car admitted or paused, a transaction's end, a refusal.
Event ids and command ids come from the cause (``allocation:<charger>:<connector>:<seq>``),
so folding the same stream again decides the same, with the same ids.

Pure: no I/O, no clock read; time is the events' ``received_at``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Final, Literal

import msgspec

from hub.domain.allocation import (
    Allocation,
    Demand,
    Sent,
    Site,
    allocate,
    changes,
    raises_that_fit,
    small_raises_that_add_up,
)
from hub.domain.facts import (
    ChargerConnected,
    ChargerDisconnected,
    Fact,
    ProfileInstalled,
    ProfileRefused,
    Sample,
    TransactionEnded,
    TransactionMetered,
    TransactionStarted,
)
from hub.domain.sites import Assignment, Sites, SitesState, assignment_key
from schemas.events import (
    AllocationDecided,
    AllocationReason,
    ClockTick,
    Event,
    SiteConnectorAssigned,
    SiteLimitSet,
    SiteNodeRemoved,
    SiteNodeSet,
    TransactionId,
)

# An uncontrolled connector is admitted ahead of every car the allocator controls: its load
# is there whatever the allocator says.
UNCONTROLLED_PRIORITY: Final = 1 << 30
# chargingProfileId of the allocator's profiles: per connector, so one connector's does not
# replace another's (ids are the charger's, across connectors).
TX_PROFILE_ID: Final = 7_100_000
TX_DEFAULT_PROFILE_ID: Final = 7_200_000
# Profiles sent and not yet answered, at most this many (the oldest is forgotten).
MAX_PENDING: Final = 10_000
_VOLTAGE: Final = 230.0
_COMMANDS: Final = uuid.UUID("6d1f4f0e-7a53-4d0b-9a36-0c6f1bb1d2a4")


class LoadConfig(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    enabled: bool = True
    stack_level: int = 1
    hysteresis_a: float = 1.0
    min_interval_ms: int = 10_000
    # How long after a charger confirmed a cut its car may still draw the old limit (its
    # control loop's reaction): a raise that needs the room waits this long after the answer.
    reaction_allowance_ms: int = 2_000


# What a connector of a site is allowed before the allocator has decided on its car: nothing.
# Any other default is unsafe when the cars below a node arrive at once, or when the cars
# already charging were given the room a default would take.
DEFAULT_LIMIT_A: Final = 0.0


class Told(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A limit sent to a connector and not yet in effect for sure: until its charger confirmed
    it (and the reaction allowance after), the car may still draw what it was told before."""

    command_id: str
    limit_a: float
    confirmed_at: int | None = None


# Limits told and not yet in effect for sure, per connector, at most this many (beyond, the
# two oldest are merged into one at the higher limit: counted as more, never less).
MAX_TOLD: Final = 8


class Running(msgspec.Struct, kw_only=True):
    """A transaction on an assigned connector, as the allocator follows it."""

    charge_point_id: str
    connector_id: int
    session: str
    transaction_id: TransactionId
    started_at: int
    drawn_a: float | None = None
    sent: Sent | None = None  # the limit last sent, and when
    accepted_a: float | None = None  # the limit the charger last accepted
    # Why it is not controlled ("" while it is): the charger's answer, or "offline".
    unmanaged: str = ""
    # Its load_unmanaged alert is raised: from when it went out of control until its charger
    # accepted a profile again (a reconnected charger is told again at once, but is back
    # under control only once it says so) or the transaction ended.
    alerted: bool = False
    # What the last decision said, so a tick can tell what moved since.
    decided_a: float | None = None
    decided_drawn_a: float | None = None
    admitted: bool = True
    # The limit in effect for sure (``settled_a``), and those told since (``told``): the car
    # may draw up to the highest of them (its ceiling), what raises of the others count it at.
    settled_a: float = DEFAULT_LIMIT_A
    told: list[Told] = []
    # Its last limit was its draw and a margin (it limited itself), not its share.
    held_at_draw: bool = False
    # Its last limit was what fitted while others' cuts took effect, less than its share.
    short: bool = False
    # What its car may draw whatever it was told, until a limit of its own takes effect:
    # its maximum if it started where the 0 A default was not in effect for sure (refused,
    # unanswered, a start right after a reboot). Such a car is told 0 A first (a cut), and
    # its share once that holds; the others count it at this meanwhile.
    floor_a: float = 0.0


class Pending(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    key: str
    limit_a: float
    purpose: Literal["TxProfile", "TxDefaultProfile"]


class LoadState(msgspec.Struct, kw_only=True):
    sites: SitesState = msgspec.field(default_factory=SitesState)
    running: dict[str, Running] = {}
    pending: dict[str, Pending] = {}
    offline: dict[str, bool] = {}
    # Per assigned connector, when its charger accepted the 0 A default of its current
    # connection (absent: not accepted, or not yet).
    defaults: dict[str, int] = {}


class Send(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A SetChargingProfile to send once its decision is stored."""

    cause: str  # what the command id derives from
    charge_point_id: str
    action: str
    payload: bytes


class Decision(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    event: AllocationDecided
    send: Send | None = None


class Alert(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``raised``: a connector went out of control (``detail`` says how); else it is back."""

    raised: bool
    charge_point_id: str
    connector_id: int
    transaction_id: TransactionId
    detail: str = ""


class Outcome(msgspec.Struct, kw_only=True):
    decisions: list[Decision] = []
    alerts: list[Alert] = []


def drawn_a(samples: Iterable[Sample], phases: int, voltage: float = _VOLTAGE) -> float | None:
    """What a car draws per phase (A), the highest phase: Current.Import if the readings
    have it, else Power.Active.Import spread over its phases at ``voltage``."""
    currents = [s.value for s in samples if s.measurand == "Current.Import"]
    if currents:
        return max(currents)
    powers = [s.value for s in samples if s.measurand == "Power.Active.Import" and not s.phase]
    if powers:
        return max(powers) / (voltage * max(1, phases))
    per_phase = [s.value for s in samples if s.measurand == "Power.Active.Import"]
    if per_phase:
        return max(per_phase) / voltage
    return None


def drawn_by_phase(
    samples: Sequence[Sample], phases: int, voltage: float = _VOLTAGE
) -> tuple[float, float, float] | None:
    """What a car draws on L1, L2 and L3 (A): the readings' own Current.Import per phase
    when they give one for every phase the car uses, else :func:`drawn_a` on each phase it
    uses, as the allocator counts it (a three-phase car on all three, a one-phase car on L1).
    The charger's phases are taken as the site's: the hub does not know the rotation."""
    # Once per reading of every car of a site, in every replay: one plain pass.
    found: dict[str, float] = {}
    for sample in samples:
        if sample.measurand == "Current.Import":
            phase, value = sample.phase, sample.value
            if phase not in found or value > found[phase]:
                found[phase] = value
    three = phases >= 3
    l1 = found.get("L1")
    if l1 is not None and not three:
        return l1, 0.0, 0.0
    l2, l3 = found.get("L2"), found.get("L3")
    if l1 is not None and l2 is not None and l3 is not None:
        return l1, l2, l3
    drawn = drawn_a(samples, phases, voltage)
    if drawn is None:
        return None
    return (drawn, drawn, drawn) if three else (drawn, 0.0, 0.0)


def tx_profile(
    version: str,
    connector_id: int,
    transaction_id: TransactionId,
    limit_a: float,
    phases: int,
    stack_level: int,
) -> bytes:
    return _profile(
        version, connector_id, "TxProfile", limit_a, phases, stack_level, transaction_id
    )


def tx_default_profile(
    version: str, connector_id: int, limit_a: float, phases: int, stack_level: int
) -> bytes:
    return _profile(version, connector_id, "TxDefaultProfile", limit_a, phases, stack_level, None)


def _profile(
    version: str,
    connector_id: int,
    purpose: Literal["TxProfile", "TxDefaultProfile"],
    limit_a: float,
    phases: int,
    stack_level: int,
    transaction_id: TransactionId | None,
) -> bytes:
    base = TX_PROFILE_ID if purpose == "TxProfile" else TX_DEFAULT_PROFILE_ID
    period = {"startPeriod": 0, "limit": limit_a, "numberPhases": phases}
    profile: dict[str, object] = {
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
    }
    if version == "1.6":
        profile["chargingProfileId"] = base + connector_id
        if transaction_id is not None:
            profile["transactionId"] = transaction_id
        profile["chargingSchedule"] = {"chargingRateUnit": "A", "chargingSchedulePeriod": [period]}
        return msgspec.json.encode({"connectorId": connector_id, "csChargingProfiles": profile})
    profile["id"] = base + connector_id
    if transaction_id is not None:
        profile["transactionId"] = str(transaction_id)
    profile["chargingSchedule"] = [
        {"id": base + connector_id, "chargingRateUnit": "A", "chargingSchedulePeriod": [period]}
    ]
    return msgspec.json.encode({"evseId": connector_id, "chargingProfile": profile})


class LoadManager:
    """The fold and its decisions; ``apply`` is its only mutator."""

    def __init__(self, config: LoadConfig | None = None, state: LoadState | None = None) -> None:
        self.config = config or LoadConfig()
        self.state = state or LoadState()
        self.sites = Sites(self.state.sites)
        self._seq = 0
        self._now = 0
        self._out = Outcome()

    # -- the fold ----------------------------------------------------------------------------

    def apply(
        self, seq: int, event: Event, facts: Sequence[Fact], versions: dict[str, str]
    ) -> Outcome:
        """``versions``: each charger's OCPP version (the profiles differ)."""
        self._seq, self._now, self._out = seq, event.received_at, Outcome()
        self._versions = versions
        roots: dict[str, AllocationReason] = {}
        for fact in facts:
            self._fact(fact, roots)
        match event:
            case SiteNodeSet() | SiteNodeRemoved() | SiteLimitSet() | SiteConnectorAssigned():
                self.sites.apply(event)
                self._reattach()
                for root in self._roots():
                    roots.setdefault(root, "limit")
            case ClockTick():
                for root in self._roots():
                    roots.setdefault(root, "tick")
        if self.config.enabled:
            for root, reason in sorted(roots.items()):
                self._decide(root, reason)
        return self._out

    def _fact(self, fact: Fact, roots: dict[str, AllocationReason]) -> None:
        running = self.state.running
        match fact:
            case TransactionStarted(charge_point_id=cp, connector_id=connector_id):
                assigned = self.sites.assignment(cp, connector_id)
                if assigned is None:
                    return
                name = assignment_key(cp, connector_id)
                running[name] = Running(
                    charge_point_id=cp,
                    connector_id=connector_id,
                    session=fact.session,
                    transaction_id=fact.transaction_id,
                    started_at=fact.at,
                    unmanaged="offline" if self.state.offline.get(cp) else "",
                    floor_a=0.0 if self._default_holds(name) else assigned.max_a,
                )
                self._touch(assigned, roots, "start")
            case TransactionMetered(charge_point_id=cp, connector_id=connector_id):
                found = running.get(assignment_key(cp, connector_id))
                assigned = self.sites.assignment(cp, connector_id)
                if found is None or assigned is None or found.session != fact.session:
                    return
                drawn = drawn_a(fact.samples, assigned.phases)
                if drawn is not None:
                    found.drawn_a = drawn
                    self._touch(assigned, roots, "meter")
            case TransactionEnded(charge_point_id=cp, connector_id=connector_id):
                name = assignment_key(cp, connector_id)
                found = running.get(name)
                if found is None or found.session != fact.session:
                    return
                del running[name]
                assigned = self.sites.assignment(cp, connector_id)
                if found.alerted:
                    self._out.alerts.append(self._alert(found, raised=False))
                if assigned is not None and self.config.enabled:
                    self._record(found, assigned, "end", limit_a=0.0, admitted=False, wants_a=0.0)
                    self._touch(assigned, roots, "end")
            case ChargerConnected(charge_point_id=cp):
                self.state.offline.pop(cp, None)
                self._connected(cp, roots)
            case ChargerDisconnected(charge_point_id=cp):
                self.state.offline[cp] = True
                for connector_id in self.sites.charger_assigned(cp):
                    self.state.defaults.pop(assignment_key(cp, connector_id), None)
                for found in self._on_charger(cp):
                    self._lost(found, "offline", roots)
            case ProfileInstalled(command_id=command_id) if command_id:
                pending = self.state.pending.pop(command_id, None)
                if pending is not None and pending.purpose == "TxDefaultProfile":
                    self.state.defaults[pending.key] = self._now
                found = running.get(pending.key) if pending is not None else None
                if pending is not None and found is not None and pending.purpose == "TxProfile":
                    found.accepted_a = pending.limit_a
                    found.told = [
                        msgspec.structs.replace(told, confirmed_at=self._now)
                        if told.command_id == command_id
                        else told
                        for told in found.told
                    ]
                    if not self.state.offline.get(found.charge_point_id):
                        found.unmanaged = ""
                        if found.alerted:
                            found.alerted = False
                            self._out.alerts.append(self._alert(found, raised=False))
            case ProfileRefused(command_id=command_id):
                pending = self.state.pending.pop(command_id, None)
                found = running.get(pending.key) if pending is not None else None
                if found is not None:
                    self._lost(found, fact.status, roots)

    def _connected(self, cp: str, roots: dict[str, AllocationReason]) -> None:
        """A charger of a site (re)connected: the conservative default on each assigned
        connector, and its running transactions under control again."""
        if not self.config.enabled:
            return
        for connector_id in self.sites.charger_assigned(cp):
            assigned = self.sites.assignment(cp, connector_id)
            assert assigned is not None
            name = assignment_key(cp, connector_id)
            payload = tx_default_profile(
                self._version(cp),
                connector_id,
                DEFAULT_LIMIT_A,
                assigned.phases,
                self.config.stack_level,
            )
            cause = f"allocation:default:{cp}:{connector_id}:{self._seq}"
            self.state.defaults.pop(name, None)
            self._pend(cause, name, DEFAULT_LIMIT_A, "TxDefaultProfile")
            self._out.decisions.append(
                Decision(
                    event=self._event(
                        cp,
                        connector_id,
                        "",
                        assigned,
                        "connect",
                        DEFAULT_LIMIT_A,
                        False,
                        DEFAULT_LIMIT_A,
                        None,
                        cause,
                    ),
                    send=Send(
                        cause=cause,
                        charge_point_id=cp,
                        action="SetChargingProfile",
                        payload=payload,
                    ),
                )
            )
        for found in self._on_charger(cp):
            assigned = self.sites.assignment(cp, found.connector_id)
            if assigned is None:
                continue
            if found.unmanaged:
                # Back: told again what to do. A charger that rebooted lost its profiles:
                # until it confirms its new limit, its car may draw up to its maximum (the
                # others' raises wait), and its alert stays.
                found.settled_a = max(ceiling(found), assigned.max_a)
                found.unmanaged, found.sent, found.told = "", None, []
            self._touch(assigned, roots, "connect")

    def _default_holds(self, name: str) -> bool:
        accepted = self.state.defaults.get(name)
        return accepted is not None and self._now - accepted >= self.config.reaction_allowance_ms

    def _lost(self, found: Running, why: str, roots: dict[str, AllocationReason]) -> None:
        if found.unmanaged:
            return
        found.unmanaged = why
        if not found.alerted:
            found.alerted = True
            self._out.alerts.append(self._alert(found, raised=True))
        assigned = self.sites.assignment(found.charge_point_id, found.connector_id)
        if assigned is not None and self.config.enabled:
            load = self._uncontrolled(found, assigned)
            self._record(found, assigned, "rejected", limit_a=load, admitted=True, wants_a=load)
            self._touch(assigned, roots, "rejected")

    def _reattach(self) -> None:
        """Sites changed: transactions on connectors no longer assigned leave the allocator."""
        for name, found in list(self.state.running.items()):
            if self.sites.assignment(found.charge_point_id, found.connector_id) is None:
                del self.state.running[name]

    # -- deciding ----------------------------------------------------------------------------

    def _touch(self, assigned: Assignment, roots: dict[str, AllocationReason], why: str) -> None:
        root = self._root(assigned.node_id)
        # The first cause in an event names the decision (a start before the readings in it),
        # but for a start: a newer start ends the transaction it supersedes first.
        if why == "start" and roots.get(root) == "end":
            del roots[root]
        roots.setdefault(root, why)  # type: ignore[arg-type]

    def _root(self, node_id: str) -> str:
        return self._site().path(node_id)[-1]

    def _roots(self) -> set[str]:
        return {self._root(node_id) for node_id in self.state.sites.nodes}

    def _site(self) -> Site:
        return self.sites.site_at(self._now)

    def _uncontrolled(self, found: Running, assigned: Assignment) -> float:
        return found.accepted_a if found.accepted_a is not None else assigned.max_a

    def _decide(self, root: str, reason: AllocationReason) -> None:
        site = self._site()
        below: list[tuple[Running, Assignment, Demand]] = []
        for found in self.state.running.values():
            assigned = self.sites.assignment(found.charge_point_id, found.connector_id)
            if assigned is None or site.path(assigned.node_id)[-1] != root:
                continue
            self._settle(found)
            below.append((found, assigned, self._demand(site, found, assigned)))
        if not below:
            return
        demands = [demand for _, _, demand in below]
        allocations = allocate(site, demands)
        managed = {
            demand.connector: found.sent
            for found, _, demand in below
            if not found.unmanaged and found.sent is not None
        }
        controlled = [
            (found, assigned, demand, allocation)
            for (found, assigned, demand), allocation in zip(below, allocations, strict=True)
            if not found.unmanaged
        ]
        due = {
            allocation.connector
            for allocation in changes(
                (allocation for *_, allocation in controlled),
                managed,
                self._now,
                hysteresis_a=self.config.hysteresis_a,
                min_interval_ms=self.config.min_interval_ms,
                prompt={
                    demand.connector
                    for found, _, demand, allocation in controlled
                    if found.short or (found.held_at_draw and allocation.wants_a >= demand.max_a)
                },
            )
        }
        due |= small_raises_that_add_up(
            site,
            demands,
            (allocation for *_, allocation in controlled),
            managed,
            self._now,
            hysteresis_a=self.config.hysteresis_a,
            min_interval_ms=self.config.min_interval_ms,
        )
        sending = [
            (found, assigned, allocation)
            for found, assigned, demand, allocation in controlled
            if demand.connector in due or allocation.admitted != found.admitted
        ]
        ceilings = {demand.connector: self._ceiling(found, demand) for found, _, demand in below}
        raising = [a for found, _, a in sending if a.limit_a > ceiling(found) and not found.floor_a]
        fit = {a.connector: a for a in raises_that_fit(site, demands, ceilings, raising)}
        for found, assigned, allocation in sending:
            if found.floor_a:
                if not found.told:  # 0 A first; its share once that holds
                    nothing = msgspec.structs.replace(allocation, limit_a=0.0, admitted=False)
                    self._send(found, assigned, nothing, reason)
            elif allocation.limit_a <= ceiling(found):
                self._send(found, assigned, allocation, reason)
            elif allocation.connector in fit:
                fitted = fit[allocation.connector]
                self._send(found, assigned, fitted, reason)
                found.short = fitted.limit_a < allocation.limit_a
        tried = {allocation.connector for _, _, allocation in sending}
        for found, assigned, demand, allocation in controlled:
            if demand.connector not in tried and reason == "tick" and self._moved(found):
                self._record(
                    found,
                    assigned,
                    "tick",
                    limit_a=found.decided_a or 0.0,
                    admitted=found.admitted,
                    wants_a=allocation.wants_a,
                )

    def _settle(self, found: Running) -> None:
        """A cut its charger confirmed, the reaction allowance ago, has taken effect."""
        # Chargers take their CALLs in order: once one is in effect, so are those before it.
        for index in range(len(found.told) - 1, -1, -1):
            at = found.told[index].confirmed_at
            if at is not None and self._now - at >= self.config.reaction_allowance_ms:
                found.settled_a = found.told[index].limit_a
                found.floor_a = 0.0
                found.told = found.told[index + 1 :]
                return

    def _ceiling(self, found: Running, demand: Demand) -> float:
        # An uncontrolled car's load is what it is counted at; a controlled one may draw up
        # to its ceiling until its cut has taken effect.
        return demand.max_a if found.unmanaged else max(ceiling(found), found.floor_a)

    def _demand(self, site: Site, found: Running, assigned: Assignment) -> Demand:
        connector = (found.charge_point_id, found.connector_id)
        if found.unmanaged:
            # Its load is there whatever is decided; capped by the nodes above it so that
            # it is always counted (admitted first), never left out for want of room.
            room = min(site.nodes[n].limit.amps_per_phase for n in site.path(assigned.node_id))
            load = min(self._uncontrolled(found, assigned), room)
            return Demand(
                connector=connector,
                node_id=assigned.node_id,
                phases=assigned.phases,
                min_a=load,
                max_a=load,
                priority=UNCONTROLLED_PRIORITY,
                started_at=found.started_at,
            )
        return Demand(
            connector=connector,
            node_id=assigned.node_id,
            phases=assigned.phases,
            min_a=assigned.min_a,
            max_a=assigned.max_a,
            priority=assigned.priority,
            started_at=found.started_at,
            offered_a=found.sent.limit_a if found.sent is not None else None,
            drawn_a=found.drawn_a,
        )

    def _moved(self, found: Running) -> bool:
        if found.drawn_a is None:
            return False
        last = found.decided_drawn_a
        return last is None or abs(found.drawn_a - last) >= self.config.hysteresis_a

    def _send(
        self, found: Running, assigned: Assignment, allocation: Allocation, reason: str
    ) -> None:
        cp, connector_id = found.charge_point_id, found.connector_id
        cause = f"allocation:{cp}:{connector_id}:{self._seq}"
        payload = tx_profile(
            self._version(cp),
            connector_id,
            found.transaction_id,
            allocation.limit_a,
            assigned.phases,
            self.config.stack_level,
        )
        found.sent = Sent(limit_a=allocation.limit_a, at=self._now)
        found.held_at_draw = allocation.wants_a < assigned.max_a
        found.short = False
        told = [*found.told, Told(command_id=command_id_for(cause), limit_a=allocation.limit_a)]
        if len(told) > MAX_TOLD:
            first, second, *rest = told
            told = [msgspec.structs.replace(second, limit_a=max(first.limit_a, second.limit_a))]
            told += rest
        found.told = told
        self._pend(cause, assignment_key(cp, connector_id), allocation.limit_a, "TxProfile")
        self._record(
            found,
            assigned,
            reason,
            limit_a=allocation.limit_a,
            admitted=allocation.admitted,
            wants_a=allocation.wants_a,
            send=Send(
                cause=cause, charge_point_id=cp, action="SetChargingProfile", payload=payload
            ),
        )

    def _pend(
        self,
        cause: str,
        name: str,
        limit_a: float,
        purpose: Literal["TxProfile", "TxDefaultProfile"],
    ) -> None:
        pending = self.state.pending
        pending[command_id_for(cause)] = Pending(key=name, limit_a=limit_a, purpose=purpose)
        if len(pending) > MAX_PENDING:
            del pending[next(iter(pending))]

    def _record(
        self,
        found: Running,
        assigned: Assignment,
        reason: str,
        *,
        limit_a: float,
        admitted: bool,
        wants_a: float,
        send: Send | None = None,
    ) -> None:
        found.decided_a, found.decided_drawn_a, found.admitted = limit_a, found.drawn_a, admitted
        cause = send.cause if send is not None else ""
        event = self._event(
            found.charge_point_id,
            found.connector_id,
            found.session,
            assigned,
            reason,
            limit_a,
            admitted,
            wants_a,
            found.drawn_a,
            cause,
        )
        self._out.decisions.append(Decision(event=event, send=send))

    def _event(
        self,
        cp: str,
        connector_id: int,
        session: str,
        assigned: Assignment,
        reason: str,
        limit_a: float,
        admitted: bool,
        wants_a: float,
        drawn: float | None,
        cause: str,
    ) -> AllocationDecided:
        return AllocationDecided(
            id=cause or f"allocation:{reason}:{cp}:{connector_id}:{self._seq}",
            received_at=self._now,
            cause_seq=self._seq,
            charge_point_id=cp,
            connector_id=connector_id,
            session=session,
            limit_a=limit_a,
            admitted=admitted,
            wants_a=wants_a,
            drawn_a=None if drawn is None else round(drawn, 3),
            node_id=assigned.node_id,
            reason=reason,  # type: ignore[arg-type]
            command_id=command_id_for(cause) if cause else "",
        )

    def _alert(self, found: Running, *, raised: bool) -> Alert:
        return Alert(
            raised=raised,
            charge_point_id=found.charge_point_id,
            connector_id=found.connector_id,
            transaction_id=found.transaction_id,
            detail=f"not controlled: {found.unmanaged}" if raised else "",
        )

    def _on_charger(self, cp: str) -> list[Running]:
        return [found for found in self.state.running.values() if found.charge_point_id == cp]

    def _version(self, cp: str) -> str:
        return self._versions.get(cp) or "1.6"


def ceiling(found: Running) -> float:
    """The most a controlled car may draw now: the highest limit that may be in effect."""
    return max([found.settled_a, *(told.limit_a for told in found.told)])


def command_id_for(cause: str) -> str:
    """A deterministic command id (an OCPP-J unique id, at most 36 characters) from its
    cause: the supervisor's commands, and the profiles the allocator sends."""
    return uuid.uuid5(_COMMANDS, cause).hex


__all__ = [
    "Alert",
    "Decision",
    "LoadConfig",
    "LoadManager",
    "LoadState",
    "Outcome",
    "Send",
    "command_id_for",
    "drawn_a",
    "drawn_by_phase",
    "tx_default_profile",
    "tx_profile",
]
