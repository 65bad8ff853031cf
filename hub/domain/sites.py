"""Sites as the operators describe them, folded from the admin events: nodes with their
static, daily and live limits, and the connectors assigned below them.

``Sites.site_at(now)`` is the tree the allocator (:mod:`hub.domain.allocation`) splits,
with each node's limit as it stands at that time: a live limit while one is set, else the
daily schedule's entry for the time of day (UTC), else the static one. ``check_*`` are the
rules the API refuses a change by (a 400 naming the field) before it is stored; the fold
itself takes whatever the stream holds, so a node whose parent is gone hangs below nothing
and a cycle is cut where it closes (:meth:`allocation.Site.path`).

Pure: no I/O, no clock read.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

from hub.domain.allocation import Node, NodeLimit, Site
from schemas.events import (
    DailyLimit,
    Event,
    SiteConnectorAssigned,
    SiteLimitSet,
    SiteNodeRemoved,
    SiteNodeSet,
)

LimitSource = Literal["static", "daily", "live"]
_DAY_MS: Final = 86_400_000
_HH_MM: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
MAX_ID: Final = 64
MAX_PHASES: Final = 3


class Invalid(ValueError):
    """A change the rules refuse: ``field`` (snake case, dotted, indexed) and ``problem``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{problem} (at {field})")
        self.field, self.problem = field, problem


class LiveLimit(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    limit: float
    unit: Literal["A", "W"] = "A"


class Assignment(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A connector below a node, with what the allocator needs to know of its charger."""

    node_id: str
    priority: int = 0
    min_a: float = 6.0
    max_a: float = 32.0
    phases: int = 3


class SitesState(msgspec.Struct, kw_only=True):
    nodes: dict[str, SiteNodeSet] = {}
    live: dict[str, LiveLimit] = {}
    # "<charger>\x1f<connector>" -> its assignment; connector 0: the charger's default.
    assignments: dict[str, Assignment] = {}


def assignment_key(charge_point_id: str, connector_id: int) -> str:
    return f"{charge_point_id}\x1f{connector_id}"


def minute_of(text: str) -> int:
    """``HH:MM`` -> minutes after midnight; ValueError for anything else."""
    found = _HH_MM.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is no time of day HH:MM")
    return int(found[1]) * 60 + int(found[2])


def daily_limit(daily: tuple[DailyLimit, ...], now: int) -> float | None:
    """The schedule's limit at ``now`` (Unix ms): the entry with the latest time of day
    not after now's, else (before the first) the day's last one, which runs over midnight."""
    if not daily:
        return None
    minute = (now % _DAY_MS) // 60_000
    ordered = sorted(daily, key=lambda entry: minute_of(entry.start))
    current = ordered[-1]
    for entry in ordered:
        if minute_of(entry.start) <= minute:
            current = entry
    return current.limit


class Sites:
    """The fold; ``apply`` is its only mutator."""

    def __init__(self, state: SitesState | None = None) -> None:
        self.state = state or SitesState()

    def apply(self, event: Event) -> bool:
        """Take in ``event``; whether it changed the sites."""
        state = self.state
        match event:
            case SiteNodeSet(node_id=node_id):
                state.nodes[node_id] = event
            case SiteNodeRemoved(node_id=node_id):
                state.nodes.pop(node_id, None)
                state.live.pop(node_id, None)
            case SiteLimitSet(node_id=node_id, limit=None):
                state.live.pop(node_id, None)
            case SiteLimitSet(node_id=node_id, limit=float() as limit):
                state.live[node_id] = LiveLimit(limit=limit, unit=event.unit)
            case SiteConnectorAssigned():
                name = assignment_key(event.charge_point_id, event.connector_id)
                if event.node_id:
                    state.assignments[name] = Assignment(
                        node_id=event.node_id,
                        priority=event.priority,
                        min_a=event.min_a,
                        max_a=event.max_a,
                        phases=event.phases,
                    )
                else:
                    state.assignments.pop(name, None)
            case _:
                return False
        return True

    def assignment(self, charge_point_id: str, connector_id: int) -> Assignment | None:
        """The connector's own assignment, else its charger's (connector 0); only below a
        node that exists."""
        assignments = self.state.assignments
        found = assignments.get(assignment_key(charge_point_id, connector_id))
        if found is None and connector_id:
            found = assignments.get(assignment_key(charge_point_id, 0))
        return found if found is not None and found.node_id in self.state.nodes else None

    def charger_assigned(self, charge_point_id: str) -> list[int]:
        """The connector ids assigned on a charger (0 for the charger as a whole)."""
        prefix = f"{charge_point_id}\x1f"
        return sorted(
            int(name[len(prefix) :])
            for name, found in self.state.assignments.items()
            if name.startswith(prefix) and found.node_id in self.state.nodes
        )

    def limit_at(self, node_id: str, now: int) -> tuple[NodeLimit, LimitSource]:
        node = self.state.nodes[node_id]
        live = self.state.live.get(node_id)
        if live is not None:
            amount, unit, source = live.limit, live.unit, "live"
        else:
            scheduled = daily_limit(node.daily, now)
            unit = node.unit
            amount, source = (node.limit, "static") if scheduled is None else (scheduled, "daily")
        limit = NodeLimit(amount=amount, unit=unit, phases=node.phases, voltage=node.voltage)
        return limit, source  # type: ignore[return-value]

    def site_at(self, now: int) -> Site:
        """Every node, with its limit at ``now``; a parent that is gone reads as none."""
        nodes = self.state.nodes
        return Site(
            nodes={
                node_id: Node(
                    node_id=node_id,
                    limit=self.limit_at(node_id, now)[0],
                    parent=node.parent if node.parent in nodes else "",
                )
                for node_id, node in sorted(nodes.items())
            }
        )


# -- the rules the API refuses a change by -------------------------------------------------


def _check_id(field: str, value: str) -> None:
    if not value or len(value) > MAX_ID or not value.isprintable() or "\x1f" in value:
        raise Invalid(field, f"must be 1 to {MAX_ID} printable characters")


def _check_limit(field: str, limit: float) -> None:
    if not limit > 0 or limit == float("inf"):
        raise Invalid(field, "must be a number above 0")


def check_node(state: SitesState, event: SiteNodeSet) -> None:
    """A node: an id, a parent that exists and is not below it, limits above 0, 1 or 3
    phases, a plausible voltage, and a daily schedule of distinct times of day."""
    _check_id("node_id", event.node_id)
    if event.parent:
        if event.parent == event.node_id:
            raise Invalid("parent", "a node cannot be its own parent")
        if event.parent not in state.nodes:
            raise Invalid("parent", f"no node {event.parent!r}")
        above = event.parent
        seen: set[str] = set()
        while above and above not in seen:
            if above == event.node_id:
                raise Invalid("parent", f"{event.parent!r} is below {event.node_id!r}: a cycle")
            seen.add(above)
            above = state.nodes[above].parent if above in state.nodes else ""
    _check_limit("limit", event.limit)
    if event.phases not in (1, MAX_PHASES):
        raise Invalid("phases", "must be 1 or 3")
    if not 100 <= event.voltage <= 1000:
        raise Invalid("voltage", "must be from 100 to 1000 (V)")
    starts: set[int] = set()
    for index, entry in enumerate(event.daily):
        try:
            minute = minute_of(entry.start)
        except ValueError as error:
            raise Invalid(f"daily[{index}].from", str(error)) from None
        if minute in starts:
            raise Invalid(f"daily[{index}].from", f"{entry.start} comes twice")
        starts.add(minute)
        _check_limit(f"daily[{index}].limit", entry.limit)


def check_removal(state: SitesState, node_id: str) -> None:
    """A node may go once nothing hangs below it: no node, no connector."""
    if node_id not in state.nodes:
        raise LookupError(f"no node {node_id!r}")
    children = sorted(n for n, node in state.nodes.items() if node.parent == node_id)
    if children:
        raise Invalid("node_id", f"nodes {', '.join(children)} hang below it")
    if any(found.node_id == node_id for found in state.assignments.values()):
        raise Invalid("node_id", "connectors are assigned to it")


def check_live(state: SitesState, event: SiteLimitSet) -> None:
    if event.node_id not in state.nodes:
        raise LookupError(f"no node {event.node_id!r}")
    if event.limit is not None:
        _check_limit("limit", event.limit)


def check_assignment(state: SitesState, event: SiteConnectorAssigned) -> None:
    if event.connector_id < 0:
        raise Invalid("connector_id", "must be 0 (every connector) or above")
    if event.node_id and event.node_id not in state.nodes:
        raise Invalid("node_id", f"no node {event.node_id!r}")
    if event.phases not in (1, MAX_PHASES):
        raise Invalid("phases", "must be 1 or 3")
    if event.min_a < 0:
        raise Invalid("min_a", "must be 0 or above")
    if not event.max_a > 0 or event.max_a < event.min_a:
        raise Invalid("max_a", "must be above 0 and not below minA")


__all__ = [
    "Assignment",
    "Invalid",
    "LimitSource",
    "LiveLimit",
    "Sites",
    "SitesState",
    "assignment_key",
    "check_assignment",
    "check_live",
    "check_node",
    "check_removal",
    "daily_limit",
]
