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
from projections.state import Amps, Below, NodeLoad, SiteLoad
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
# A row's ``cause`` for a change of the sites (the other events and facts name their own).
_CAUSES: Final[dict[type[Event], str]] = {
    SiteNodeSet: "node",
    SiteNodeRemoved: "node",
    SiteLimitSet: "live",
    SiteConnectorAssigned: "assignment",
}
_ZERO: Final[Amps] = (0.0, 0.0, 0.0)


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
            self.cause = _CAUSES[type(event)]
            self._touch(self.state.sites.nodes, self.cause)
            self._removed(out, seq)
        if self.dirty:
            self._write(out, seq)

    # -- what moved ------------------------------------------------------------------------

    def _started(self, fact: TransactionStarted) -> None:
        cp, connector_id = fact.charge_point_id, fact.connector_id
        assigned = self.sites.assignment(cp, connector_id)
        if assigned is None:
            return
        records = self.state.below.setdefault(self._site_of(assigned.node_id), {})
        records[assignment_key(cp, connector_id)] = Below(
            charge_point_id=cp, connector_id=connector_id, session=fact.session
        )
        self._touch(self._path(assigned.node_id), "start")

    def _metered(self, fact: TransactionMetered) -> None:
        cp, connector_id = fact.charge_point_id, fact.connector_id
        assigned = self.sites.assignment(cp, connector_id)
        if assigned is None or not fact.session:
            return
        drawn = drawn_by_phase(fact.samples, assigned.phases)
        if drawn is None:
            return
        name = assignment_key(cp, connector_id)
        records = self.state.below.setdefault(self._site_of(assigned.node_id), {})
        found = records.get(name)
        if found is None or found.session != fact.session:
            # Late readings of a transaction that ended are no load now.
            if not self._ongoing(cp, connector_id, fact.session):
                return
            found = records[name] = Below(
                charge_point_id=cp, connector_id=connector_id, session=fact.session
            )
        found.measured = drawn
        self._touch(self._path(assigned.node_id), "meter")

    def _ended(self, fact: TransactionEnded) -> None:
        found = self._running(fact.charge_point_id, fact.connector_id, fact.session)
        if found is None:
            return
        records, name, node_id = found
        del records[name]
        self._touch(self._path(node_id), "end")

    def _allocated(self, event: AllocationDecided) -> None:
        found = self._running(event.charge_point_id, event.connector_id, event.session)
        if found is None:
            return
        records, name, node_id = found
        records[name].allocated_a = event.limit_a
        self._touch(self._path(node_id), "allocation")

    def _running(
        self, cp: str, connector_id: int, session: str
    ) -> tuple[dict[str, Below], str, str] | None:
        """The records of the site a connector is assigned in, its key there and its node,
        if ``session`` is the transaction running on it."""
        assigned = self.sites.assignment(cp, connector_id)
        if assigned is None or not session:
            return None
        records = self.state.below.get(self._site_of(assigned.node_id))
        name = assignment_key(cp, connector_id)
        found = records.get(name) if records is not None else None
        if records is None or found is None or found.session != session:
            return None
        return records, name, assigned.node_id

    def _regroup(self) -> None:
        """The sites changed: every transaction goes to the site its connector now hangs in
        (or leaves), and those already running on a connector just assigned join."""
        regrouped: dict[str, dict[str, Below]] = {}
        for records in self.state.below.values():
            for name, found in records.items():
                assigned = self.sites.assignment(found.charge_point_id, found.connector_id)
                if assigned is not None:
                    regrouped.setdefault(self._site_of(assigned.node_id), {})[name] = found
        for cp, connector_id in self._assigned_connectors():
            assigned = self.sites.assignment(cp, connector_id)
            name = assignment_key(cp, connector_id)
            session = self._open_on(cp, connector_id)
            if assigned is None or not session:
                continue
            records = regrouped.setdefault(self._site_of(assigned.node_id), {})
            if name not in records:
                records[name] = Below(
                    charge_point_id=cp, connector_id=connector_id, session=session
                )
        self.state.below = {site: records for site, records in regrouped.items() if records}

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

    def _site_of(self, node_id: str) -> str:
        path = self._path(node_id)
        return path[-1] if path else node_id

    def _write(self, out: Output, seq: int) -> None:
        written = self.state.written
        for node_id, load in sorted(self._loads().items()):
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

    def _loads(self) -> dict[str, NodeLoad]:
        """The values of every node touched, from the transactions of their sites."""
        nodes = self.state.sites.nodes
        touched = [node_id for node_id in self.dirty if node_id in nodes]
        allocated = {node_id: [0.0, 0.0, 0.0] for node_id in touched}
        measured = {node_id: [0.0, 0.0, 0.0] for node_id in touched}
        counts = {node_id: [0, 0] for node_id in touched}
        for site in sorted({self._site_of(node_id) for node_id in touched}):
            for found in self.state.below.get(site, {}).values():
                assigned = self.sites.assignment(found.charge_point_id, found.connector_id)
                if assigned is None:
                    continue
                given = found.allocated_a or 0.0
                phases = 3 if assigned.phases >= 3 else 1
                for node_id in self._path(assigned.node_id):
                    if node_id not in counts:
                        continue
                    for phase in range(phases):
                        allocated[node_id][phase] += given
                    if found.measured is not None:
                        for phase, amps in enumerate(found.measured):
                            measured[node_id][phase] += amps
                    counts[node_id][0] += 1
                    counts[node_id][1] += found.measured is not None
        loads: dict[str, NodeLoad] = {}
        for node_id in touched:
            limit, source = self.sites.limit_at(node_id, self.now)
            path = self._path(node_id)
            loads[node_id] = NodeLoad(
                site_id=path[-1],
                parent=path[1] if len(path) > 1 else "",
                limit_a=round(limit.amps_per_phase, 3),
                limit_source=source,
                allocated=_rounded(allocated[node_id]),
                measured=_rounded(measured[node_id]),
                transactions=counts[node_id][0],
                metered=counts[node_id][1],
            )
        return loads

    def _row(self, seq: int, node_id: str, load: NodeLoad, *, removed: bool) -> SiteLoadRow:
        return SiteLoadRow(
            seq=seq,
            received_at=ch_time(self.now),
            site_id=load.site_id,
            node_id=node_id,
            parent=load.parent,
            cause=self.cause,
            limit_a=load.limit_a,
            limit_source=load.limit_source,
            allocated_l1=load.allocated[0],
            allocated_l2=load.allocated[1],
            allocated_l3=load.allocated[2],
            measured_l1=load.measured[0],
            measured_l2=load.measured[1],
            measured_l3=load.measured[2],
            transactions=load.transactions,
            metered=load.metered,
            removed=removed,
        )


def _rounded(amps: list[float]) -> Amps:
    # Sums of tenths are not tenths in binary (13.3 * 3 = 39.900000000000006).
    l1, l2, l3 = (round(value, 3) for value in amps)
    return l1, l2, l3
