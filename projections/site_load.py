"""The ``site_load`` table: each node of each site over time, its limit in force against
what the transactions below it are allocated and what they draw, per phase.

A node's row shows (docs/projections.md):

- its limit in A per phase as the allocator takes it: the live limit while one is set, else
  the daily schedule's, else the static one (``Sites.limit_at``), and which of them;
- ``allocated``: every transaction running on a connector below it counts the limit of the
  allocator's latest ``allocation.decided`` on its session, on each phase it uses;
- ``measured``: every such transaction counts its latest reading
  (:func:`hub.domain.load.drawn_by_phase`, the readings the allocator itself counts);
- how many transactions run below it, and how many of them have a reading yet.

Each node keeps these summed in mA (whole numbers): a reading, start, end or decision takes
its transaction's old share back from the nodes above it and adds the new one, so an event
costs the depth of the tree, not the size of the site; a change of the sites sums again.

A row is written for a node at each event that changes any of these: a reading, a start or
an end of a transaction below it, a decision on one, a change of the sites, and a
``clock.tick`` at which its daily limit moved on. An event that changes nothing a node shows
(a reading equal to the one before) writes no row.

Pure: the sites come from their admin events, transactions from the charging domain's facts,
allocations from ``allocation.decided``; time is the events' ``received_at``. So the rows
are a function of the stream, and a replay writes the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from hub.domain import charging
from hub.domain.facts import Fact, TransactionEnded, TransactionMetered, TransactionStarted
from hub.domain.load import drawn_by_phase
from hub.domain.sites import Sites, assignment_key
from hub.domain.timeutil import ch_time
from projections.rows import Output, SiteLoadRow
from projections.state import Below, MilliAmps, NodeLoad, SiteLoad, Totals
from schemas.events import (
    AllocationDecided,
    ClockTick,
    Event,
    SiteConnectorAssigned,
    SiteLimitSet,
    SiteNodeRemoved,
    SiteNodeSet,
)

# The events this projection reads besides the charging domain's facts.
SITE_EVENTS: Final = (SiteNodeSet, SiteNodeRemoved, SiteLimitSet, SiteConnectorAssigned)
EVENTS: Final = (*SITE_EVENTS, ClockTick, AllocationDecided)
SITE_EVENT_TYPES: Final = frozenset(SITE_EVENTS)
_EVENT_TYPES: Final = frozenset(EVENTS)
_FACT_TYPES: Final = frozenset({TransactionStarted, TransactionMetered, TransactionEnded})
# A row's ``cause`` for a change of the sites (the other events and facts name their own).
_CAUSES: Final[dict[type[Event], str]] = {
    SiteNodeSet: "node",
    SiteNodeRemoved: "node",
    SiteLimitSet: "live",
    SiteConnectorAssigned: "assignment",
}
_ZERO: Final[MilliAmps] = (0, 0, 0)


def site_load(
    state: SiteLoad,
    domain: charging.State,
    out: Output,
    seq: int,
    event: Event,
    facts: Sequence[Fact],
) -> None:
    """Take in ``event`` and the facts the charging domain made of it; write the rows of
    the nodes whose values changed."""
    if type(event) not in _EVENT_TYPES:
        for fact in facts:
            if type(fact) in _FACT_TYPES:
                break
        else:
            return  # most events when a site exists: a status, an answer, a heartbeat
    _Fold(state, domain, event.received_at).apply(out, seq, event, facts)


class _Fold:
    def __init__(self, state: SiteLoad, domain: charging.State, now: int) -> None:
        self.state, self.domain, self.now = state, domain, now
        self.sites = Sites(state.sites)
        self.dirty: set[str] = set()
        self.cause = ""
        self._paths: dict[str, list[str]] = {}

    def apply(self, out: Output, seq: int, event: Event, facts: Sequence[Fact]) -> None:
        for fact in facts:
            if type(fact) is TransactionMetered:
                self._metered(fact)
            elif type(fact) is TransactionStarted:
                self._started(fact)
            elif type(fact) is TransactionEnded:
                self._ended(fact)
        if type(event) is AllocationDecided:
            self._allocated(event)
        elif type(event) is ClockTick:
            nodes = self.state.sites.nodes
            self._touch((node_id for node_id, node in nodes.items() if node.daily), "tick")
        elif type(event) in SITE_EVENT_TYPES:
            self.sites.apply(event)
            self._paths.clear()
            self._regroup()
            self._sum()
            self.cause = _CAUSES[type(event)]
            self._touch(self.state.sites.nodes, self.cause)
            self._removed(out, seq)
        if self.dirty:
            self._write(out, seq)

    # -- what moved ------------------------------------------------------------------------

    def _started(self, fact: TransactionStarted) -> None:
        cp, connector_id = fact.charge_point_id, fact.connector_id
        if self.sites.assignment(cp, connector_id) is None:
            return
        name = assignment_key(cp, connector_id)
        before = self.state.below.get(name)
        if before is not None:
            if before.session == fact.session:
                return  # known already (from its readings, or its connector's assignment)
            self._count(before, -1)
        self._count(
            self._below(
                name, Below(charge_point_id=cp, connector_id=connector_id, session=fact.session)
            ),
            1,
            "start",
        )

    def _metered(self, fact: TransactionMetered) -> None:
        cp, connector_id = fact.charge_point_id, fact.connector_id
        assigned = self.sites.assignment(cp, connector_id)
        if assigned is None or not fact.session:
            return
        drawn = drawn_by_phase(fact.samples, assigned.phases)
        if drawn is None:
            return
        measured = _milliamps(drawn)
        name = assignment_key(cp, connector_id)
        found = self.state.below.get(name)
        if found is None or found.session != fact.session:
            # Late readings of a transaction that ended are no load now.
            if not self._ongoing(cp, connector_id, fact.session):
                return
            if found is not None:
                self._count(found, -1)
            new = Below(charge_point_id=cp, connector_id=connector_id, session=fact.session)
            found = self._below(name, new)
            self._count(found, 1)
        if found.measured != measured:
            self._count(found, -1)
            found.measured = measured
            self._count(found, 1, "meter")

    def _ended(self, fact: TransactionEnded) -> None:
        found = self._running(fact.charge_point_id, fact.connector_id, fact.session)
        if found is not None:
            self._count(found, -1, "end")
            del self.state.below[assignment_key(found.charge_point_id, found.connector_id)]

    def _allocated(self, event: AllocationDecided) -> None:
        found = self._running(event.charge_point_id, event.connector_id, event.session)
        given = round(event.limit_a * 1000)
        if found is not None and found.allocated != given:
            self._count(found, -1)
            found.allocated = given
            self._count(found, 1, "allocation")

    def _below(self, name: str, found: Below) -> Below:
        self.state.below[name] = found
        return found

    def _running(self, cp: str, connector_id: int, session: str) -> Below | None:
        """The transaction ``session`` if it runs on a connector below a node."""
        found = self.state.below.get(assignment_key(cp, connector_id))
        if found is None or not session or found.session != session:
            return None
        return found if self.sites.assignment(cp, connector_id) is not None else None

    def _count(self, found: Below, sign: int, cause: str = "") -> None:
        """Add a transaction's share to (``sign`` -1: take it from) every node above it."""
        assigned = self.sites.assignment(found.charge_point_id, found.connector_id)
        if assigned is None:
            return
        path = self._path(assigned.node_id)
        totals = self.state.totals
        phases = range(3 if assigned.phases >= 3 else 1)
        for node_id in path:
            summed = totals.get(node_id)
            if summed is None:
                summed = totals[node_id] = Totals()
            summed.transactions += sign
            if found.allocated is not None:
                for phase in phases:
                    summed.allocated[phase] += sign * found.allocated
            if found.measured is not None:
                summed.metered += sign
                for phase, amps in enumerate(found.measured):
                    summed.measured[phase] += sign * amps
        if cause:
            self._touch(path, cause)

    def _regroup(self) -> None:
        """The sites changed: a transaction on a connector no longer assigned leaves, and
        one already running on a connector just assigned joins."""
        below = {
            name: found
            for name, found in self.state.below.items()
            if self.sites.assignment(found.charge_point_id, found.connector_id) is not None
        }
        for cp, connector_id in self._assigned_connectors():
            name = assignment_key(cp, connector_id)
            session = self._open_on(cp, connector_id)
            if name in below or not session:
                continue
            if self.sites.assignment(cp, connector_id) is not None:
                below[name] = Below(charge_point_id=cp, connector_id=connector_id, session=session)
        self.state.below = below

    def _sum(self) -> None:
        self.state.totals = {node_id: Totals() for node_id in self.state.sites.nodes}
        for found in self.state.below.values():
            self._count(found, 1)

    def _assigned_connectors(self) -> list[tuple[str, int]]:
        """Every connector an assignment names; connector 0's, each the domain knows of its
        charger."""
        found: list[tuple[str, int]] = []
        for name in self.state.sites.assignments:
            cp, _, connector = name.partition("\x1f")
            if int(connector):
                found.append((cp, int(connector)))
                continue
            charger = self.domain.chargers.get(cp)
            connectors = sorted(charger.connectors) if charger is not None else []
            found += [(cp, connector_id) for connector_id in connectors if connector_id]
        return found

    def _open_on(self, cp: str, connector_id: int) -> str:
        """The session running on a connector, as the domain knows it ("" if none)."""
        charger = self.domain.chargers.get(cp)
        connector = charger.connectors.get(connector_id) if charger is not None else None
        session = self.domain.sessions.get(connector.open) if connector is not None else None
        return session.session if session is not None and session.ongoing else ""

    def _ongoing(self, cp: str, connector_id: int, name: str) -> bool:
        session = self.domain.sessions.get(charging.key(cp, name))
        return session is not None and session.ongoing and session.connector_id == connector_id

    # -- the rows --------------------------------------------------------------------------

    def _touch(self, nodes: Iterable[str], cause: str) -> None:
        # The first cause in an event names its rows (a start before the readings in it).
        before = len(self.dirty)
        self.dirty.update(nodes)
        if len(self.dirty) > before and not self.cause:
            self.cause = cause

    def _path(self, node_id: str) -> list[str]:
        """The node and every node above it (a parent that is gone ends it; a cycle is cut
        where it closes, as ``allocation.Site.path`` cuts it)."""
        found = self._paths.get(node_id)
        if found is None:
            nodes = self.state.sites.nodes
            found, current = [], node_id
            while current in nodes and current not in found:
                found.append(current)
                current = nodes[current].parent
            self._paths[node_id] = found
        return found

    def _write(self, out: Output, seq: int) -> None:
        written, nodes = self.state.written, self.state.sites.nodes
        for node_id in sorted(self.dirty):
            if node_id not in nodes:
                continue
            load = self._load(node_id)
            if written.get(node_id) != load:
                written[node_id] = load
                out.add(self._row(seq, node_id, load, removed=False))

    def _removed(self, out: Output, seq: int) -> None:
        """A node that is gone gets a last row, ``removed``, with nothing in it."""
        written, nodes = self.state.written, self.state.sites.nodes
        for node_id in sorted(set(written) - set(nodes)):
            last = written.pop(node_id)
            gone = NodeLoad(
                site_id=last.site_id,
                parent=last.parent,
                limit_a=0.0,
                limit_source="",
                allocated=_ZERO,
                measured=_ZERO,
                transactions=0,
                metered=0,
            )
            out.add(self._row(seq, node_id, gone, removed=True))

    def _load(self, node_id: str) -> NodeLoad:
        limit, source = self.sites.limit_at(node_id, self.now)
        path = self._path(node_id)
        summed = self.state.totals.get(node_id) or Totals()
        allocated, measured = summed.allocated, summed.measured
        return NodeLoad(
            site_id=path[-1],
            parent=path[1] if len(path) > 1 else "",
            limit_a=round(limit.amps_per_phase, 3),
            limit_source=source,
            allocated=(allocated[0], allocated[1], allocated[2]),
            measured=(measured[0], measured[1], measured[2]),
            transactions=summed.transactions,
            metered=summed.metered,
        )

    def _row(self, seq: int, node_id: str, load: NodeLoad, *, removed: bool) -> SiteLoadRow:
        allocated, measured = load.allocated, load.measured
        return SiteLoadRow(
            seq=seq,
            received_at=ch_time(self.now),
            site_id=load.site_id,
            node_id=node_id,
            parent=load.parent,
            cause=self.cause,
            limit_a=load.limit_a,
            limit_source=load.limit_source,
            allocated_l1=allocated[0] / 1000,
            allocated_l2=allocated[1] / 1000,
            allocated_l3=allocated[2] / 1000,
            measured_l1=measured[0] / 1000,
            measured_l2=measured[1] / 1000,
            measured_l3=measured[2] / 1000,
            transactions=load.transactions,
            metered=load.metered,
            removed=removed,
        )


def _milliamps(amps: tuple[float, float, float]) -> MilliAmps:
    return round(amps[0] * 1000), round(amps[1] * 1000), round(amps[2] * 1000)
