"""Site load management, the pure core: how a site's power is split among the cars charging
below it, and which of those splits are worth telling the chargers.

A **site** is a tree of nodes (the grid connection, feeders or fuses below it), each with a
limit in A per phase or in W; connectors hang below nodes. ``allocate`` gives every
charging car a limit in A per phase such that, on every phase of every node, the cars below
it are offered no more than the node's limit:

1. **Admission.** A charger cannot charge below its minimum rate (6 A for most), so when the
   minimums of all cars do not fit, some must pause. Cars are admitted in priority order,
   then by who started first (a car that is charging keeps charging; the newcomer waits),
   each at its minimum, as long as every node above it has room on the car's phases.
   The rest get 0 A.
2. **Filling.** Within a priority class, in descending order, every admitted car is raised
   from its minimum by the same step until it reaches what it can use, or a node above it
   is full on one of its phases ("progressive filling": max-min fair in the increments,
   which is max-min fair outright when the minimums are equal, as they are for cars on one
   kind of charger). A higher class is filled before a lower one gets more than its minimum.
3. **What a car can use.** Its charger's and its cable's maximum. A car that draws
   clearly less than it was offered (offered 32 A, drawing 10 A: a full battery, a car that
   limits itself) is taken at its word: it is given what it draws and a margin, and the rest
   goes to the others. If it draws up to the margin again, it is offered more at the next
   allocation.

Phases: a three-phase car takes its current on L1, L2 and L3; a one-phase car on L1 (where
most one-phase cars sit when the installation's rotation is unknown, so the count is
conservative for L1 and may leave L2 and L3 underused). A node's limit in W is taken as
A per phase with its phases and voltage.

``changes`` decides which new limits are sent: lowering a limit at once (a site over its
limit is an emergency), raising one only if it moves by at least ``hysteresis_a`` and the
charger was last told something at least ``min_interval_ms`` ago;
``small_raises_that_add_up`` the raises below the hysteresis that go all the same (below a
node they add up to it). ``raises_that_fit`` which raises can take effect while cuts sent
before them may not have yet: a raise must fit with every other car at the most it may
still draw.

Limits are rounded down to tenths of an ampere, the precision OCPP limits carry.

Pure and deterministic: the same inputs give the same split, in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Final, Literal

import msgspec

DEFAULT_VOLTAGE: Final = 230.0
PHASES: Final = ("L1", "L2", "L3")
# Offered this much more than it draws, a car is taken to use only what it draws (plus
# the margin): below it, measurement noise and a car's own ramping look like a full battery.
SLACK_A: Final = 1.5
# What a car that limits itself is offered above its draw, so it can show it wants more.
# Above SLACK_A, so a car that keeps drawing the same is still taken at its word at the next
# allocation (with a margin below the slack it would be offered its maximum again, then cut
# again: a limit that swings every rate-limit interval).
MARGIN_A: Final = 2.0
# Capacity left unshared below this is rounding, not room.
_EPSILON: Final = 1e-9

Phase = Literal["L1", "L2", "L3"]
ConnectorKey = tuple[str, int]
# A phase of a node: where capacity is counted.
Cell = tuple[str, Phase]


class NodeLimit(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A node's limit: ``amount`` in ``unit`` (A per phase, or W over its ``phases``)."""

    amount: float
    unit: Literal["A", "W"] = "A"
    phases: int = 3
    voltage: float = DEFAULT_VOLTAGE

    @property
    def amps_per_phase(self) -> float:
        if self.unit == "A":
            return self.amount
        return self.amount / (self.voltage * self.phases)


class Node(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A site's node; ``parent`` is empty for the grid connection at the root."""

    node_id: str
    limit: NodeLimit
    parent: str = ""


class Demand(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A car charging on a connector below ``node_id``, as the allocator sees it.

    ``max_a``: the most its charger, cable and car allow per phase; ``min_a``: the least its
    charger charges at. ``offered_a``: the limit it was last given (None: none yet);
    ``drawn_a``: what it draws now per phase, the highest of its phases (None: no reading yet).
    ``started_at``: when its transaction began (ms), which orders admission.
    """

    connector: ConnectorKey
    node_id: str
    phases: int = 3
    min_a: float = 6.0
    max_a: float = 32.0
    priority: int = 0
    started_at: int = 0
    offered_a: float | None = None
    drawn_a: float | None = None

    @property
    def used_phases(self) -> tuple[Phase, ...]:
        return PHASES if self.phases >= 3 else ("L1",)

    @property
    def wants_a(self) -> float:
        """What it can use: its maximum, unless it draws clearly less than it is offered."""
        if (
            self.offered_a is not None
            and self.drawn_a is not None
            and self.drawn_a < self.offered_a - SLACK_A
        ):
            return max(self.min_a, min(self.max_a, self.drawn_a + MARGIN_A))
        return self.max_a


class Site(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A tree of nodes, by id."""

    nodes: Mapping[str, Node]

    def path(self, node_id: str) -> list[str]:
        """The node and every node above it, to the root."""
        found: list[str] = []
        current = node_id
        while current and current not in found:
            found.append(current)
            current = self.nodes[current].parent if current in self.nodes else ""
        return found


class Allocation(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A car's limit, and why: ``admitted`` false means there was no room for its minimum."""

    connector: ConnectorKey
    limit_a: float
    admitted: bool
    wants_a: float


def allocate(site: Site, demands: Sequence[Demand]) -> list[Allocation]:
    """Every car's limit in A per phase (ordered as ``demands``); see the module's text."""
    room: dict[Cell, float] = {
        (node_id, phase): node.limit.amps_per_phase
        for node_id, node in site.nodes.items()
        for phase in PHASES
    }
    paths = {demand.connector: site.path(demand.node_id) for demand in demands}

    def cells(demand: Demand) -> list[Cell]:
        return [(node, phase) for node in paths[demand.connector] for phase in demand.used_phases]

    order = sorted(demands, key=lambda d: (-d.priority, d.started_at, d.connector))
    given: dict[ConnectorKey, float] = {}
    for demand in order:
        if all(room[cell] + _EPSILON >= demand.min_a for cell in cells(demand)):
            given[demand.connector] = demand.min_a
            for cell in cells(demand):
                room[cell] -= demand.min_a
    for priority in sorted({d.priority for d in demands}, reverse=True):
        rising = [d for d in order if d.priority == priority and d.connector in given]
        _fill(rising, given, room, cells)
    return [
        Allocation(
            connector=demand.connector,
            limit_a=_tenths(given.get(demand.connector, 0.0)),
            admitted=demand.connector in given,
            wants_a=demand.wants_a,
        )
        for demand in demands
    ]


def _fill(
    rising: list[Demand],
    given: dict[ConnectorKey, float],
    room: dict[Cell, float],
    cells: Callable[[Demand], list[Cell]],
) -> None:
    """Raise every car in ``rising`` by equal steps until each is full or blocked."""
    while rising:
        sharing: dict[Cell, int] = {}
        for demand in rising:
            for cell in cells(demand):
                sharing[cell] = sharing.get(cell, 0) + 1
        step = min(
            min(demand.wants_a - given[demand.connector] for demand in rising),
            min(max(room[cell], 0.0) / count for cell, count in sharing.items()),
        )
        for demand in rising:
            given[demand.connector] += step
            for cell in cells(demand):
                room[cell] -= step
        full = {cell for cell in sharing if room[cell] <= _EPSILON}
        rising = [
            demand
            for demand in rising
            if demand.wants_a - given[demand.connector] > _EPSILON
            and not full.intersection(cells(demand))
        ]


def _tenths(amps: float) -> float:
    # OCPP limits take at most one decimal (1.6 §7.13, "at most one digit fraction"), and
    # rounding up could put a node over its limit.
    return math.floor(amps * 10 + 1e-6) / 10


class Sent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The limit a connector was last told, and when (ms)."""

    limit_a: float
    at: int


def changes(
    allocations: Iterable[Allocation],
    sent: Mapping[ConnectorKey, Sent],
    now: int,
    *,
    hysteresis_a: float = 1.0,
    min_interval_ms: int = 10_000,
    prompt: Collection[ConnectorKey] = (),
) -> list[Allocation]:
    """The allocations worth sending now: every decrease, and increases that matter and are
    not too soon after the last word to that connector (``prompt``: connectors whose
    increase goes at once, a car that was held at its draw and now draws up to its cap)."""
    due = []
    for allocation in allocations:
        last = sent.get(allocation.connector)
        if last is None or allocation.limit_a < last.limit_a - _EPSILON:
            due.append(allocation)
            continue
        moved_enough = allocation.limit_a - last.limit_a >= hysteresis_a
        soon = allocation.connector in prompt or now - last.at >= min_interval_ms
        if moved_enough and soon:
            due.append(allocation)
    return due


def small_raises_that_add_up(
    site: Site,
    demands: Sequence[Demand],
    allocations: Iterable[Allocation],
    sent: Mapping[ConnectorKey, Sent],
    now: int,
    *,
    hysteresis_a: float = 1.0,
    min_interval_ms: int = 10_000,
) -> set[ConnectorKey]:
    """Raises below the hysteresis (and not too soon) that go all the same: those below a
    node where together they add up to the hysteresis on a phase. A car leaving 7 A to 40
    others is 0.2 A each, none worth a message alone, but 7 A left unused if none is sent."""
    small: dict[ConnectorKey, float] = {}
    for allocation in allocations:
        last = sent.get(allocation.connector)
        if last is None or now - last.at < min_interval_ms:
            continue
        step = allocation.limit_a - last.limit_a
        if _EPSILON < step < hysteresis_a:
            small[allocation.connector] = step
    if not small:
        return set()
    load = load_by_node(site, demands, small)
    crowded = {
        node_id
        for node_id, phases in load.items()
        if max(phases.values()) >= hysteresis_a - _EPSILON
    }
    return {
        demand.connector
        for demand in demands
        if demand.connector in small and crowded.intersection(site.path(demand.node_id))
    }


def raises_that_fit(
    site: Site,
    demands: Sequence[Demand],
    ceilings: Mapping[ConnectorKey, float],
    raises: Iterable[Allocation],
) -> list[Allocation]:
    """The raises (in order) that can take effect now without any phase of any node going
    over its limit, while every car may still draw up to its ceiling (``ceilings``: the most
    each may draw now, a cut its charger has not yet confirmed not counting). A raise that
    does not fit waits: a car sent more before the others' cuts take effect would put the
    node over its limit until they do. A car not charging yet (its ceiling below its
    minimum) gets what fits if that is at least its minimum (charging now at less than its
    share beats waiting for it), its ``limit_a`` lowered to that."""
    load = load_by_node(site, demands, ceilings)
    by_connector = {demand.connector: demand for demand in demands}
    fitting = []
    for allocation in raises:
        demand = by_connector[allocation.connector]
        ceiling = ceilings.get(allocation.connector, 0.0)
        cells = [
            (node_id, phase)
            for node_id in site.path(demand.node_id)
            for phase in demand.used_phases
        ]
        room = min(
            site.nodes[node_id].limit.amps_per_phase - load[node_id][phase]
            for node_id, phase in cells
        )
        limit = allocation.limit_a
        if room + _EPSILON < limit - ceiling:
            if ceiling >= demand.min_a or _tenths(ceiling + room) < demand.min_a:
                continue
            limit = _tenths(ceiling + room)
            allocation = msgspec.structs.replace(allocation, limit_a=limit)
        fitting.append(allocation)
        for node_id, phase in cells:
            load[node_id][phase] += max(limit - ceiling, 0.0)
    return fitting


def load_by_node(
    site: Site, demands: Sequence[Demand], amps: Mapping[ConnectorKey, float]
) -> dict[str, dict[Phase, float]]:
    """The current per phase that ``amps`` (a limit or a reading per connector) puts on every
    node: what the limit is compared with, in the API and the tables."""
    load: dict[str, dict[Phase, float]] = {
        node_id: dict.fromkeys(PHASES, 0.0) for node_id in site.nodes
    }
    for demand in demands:
        current = amps.get(demand.connector, 0.0)
        for node_id in site.path(demand.node_id):
            for phase in demand.used_phases:
                load[node_id][phase] += current
    return load
