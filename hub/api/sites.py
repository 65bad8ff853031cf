"""Sites, live limits and connector assignments over REST (docs/smart-charging.md, "Site load
management"), in the command API's app and on its rules.

Writes need role operator (or admin): nodes and live limits concern every charger, so a
token for all chargers ('*'); an assignment, a token whose scope has the charger. Each
change is an admin event stored before the answer, checked first by the sites' rules
(:mod:`hub.domain.sites`: a 400 naming the field). ``GET /api/v1/sites`` answers from a fold
of the site events and the allocator's decisions (``allocation.decided``) held in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Final, Literal

import msgspec
import structlog
from aiohttp import web

from hub.api.book import Book
from hub.api.http import (
    API,
    ApiError,
    _answering_errors,
    _authorise,
    _error,
    _refuse,
    json_response,
    now_ms,
)
from hub.api.money import _decode, json_path
from hub.domain.allocation import PHASES, Demand, load_by_node
from hub.domain.sites import (
    Invalid,
    Sites,
    assignment_key,
    check_assignment,
    check_live,
    check_node,
    check_removal,
)
from hub.tokens import Scope
from schemas.events import (
    AllocationDecided,
    DailyLimit,
    Event,
    SiteConnectorAssigned,
    SiteLimitSet,
    SiteNodeRemoved,
    SiteNodeSet,
)

log = structlog.get_logger("hub.api.sites")

SITE_SUBJECTS: Final = ("ev.admin.site.>", "ev.allocation.>")
_PATH: Final = {"node_id": "nodeId", "charge_point_id": "chargePointId"}

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Amount = Annotated[float, msgspec.Meta(gt=0, le=1e9)]
Amps = Annotated[float, msgspec.Meta(ge=0, le=1000)]
Unit = Literal["A", "W"]


class DailyBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename={"start": "from"}):
    start: Annotated[str, msgspec.Meta(pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    limit: Amount


class NodeBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A node: its parent ("" for a site's root), its limit in A per phase or in W, and a
    daily schedule (from each time of day, UTC, that limit)."""

    limit: Amount
    parent: Annotated[str, msgspec.Meta(max_length=64)] = ""
    unit: Unit = "A"
    phases: Literal[1, 3] = 3
    voltage: Annotated[float, msgspec.Meta(ge=100, le=1000)] = 230.0
    daily: Annotated[list[DailyBody], msgspec.Meta(max_length=96)] = []


class LiveBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A live limit that overrides the node's static and daily one; null clears it."""

    limit: Amount | None
    unit: Unit = "A"


class AssignBody(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    """The node the connector hangs below ("" unassigns), and its charger's rates."""

    node_id: Annotated[str, msgspec.Meta(max_length=64)]
    priority: Annotated[int, msgspec.Meta(ge=-1000, le=1000)] = 0
    min_a: Amps = 6.0
    max_a: Amps = 32.0
    phases: Literal[1, 3] = 3


class NodeView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A node as it stands: its effective limit in A per phase and where it comes from, the
    load the cars below it draw (as of their last decisions) and what they are allocated."""

    node_id: str
    parent: str
    limit_a: float
    source: Literal["static", "daily", "live"]
    load_a: dict[str, float]
    allocated_a: dict[str, float]
    limit: float
    unit: Unit
    phases: int
    voltage: float
    daily: list[DailyBody]
    live_limit: float | None = None
    live_unit: Unit | None = None


class ConnectorView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A connector of a site and the allocator's last word on it (none yet: no session)."""

    charge_point_id: str
    connector_id: int
    node_id: str
    priority: int
    min_a: float
    max_a: float
    phases: int
    session: str = ""
    limit_a: float | None = None
    admitted: bool | None = None
    wants_a: float | None = None
    drawn_a: float | None = None
    reason: str = ""


class SitesView(msgspec.Struct, frozen=True, kw_only=True):
    nodes: list[NodeView]
    connectors: list[ConnectorView]


class SiteChange(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What a write stored: the event's type and id, and who made it."""

    type: str
    event_id: str
    actor: str


class SitesBook:
    """The sites, and the allocator's last decision per connector with a session."""

    def __init__(self) -> None:
        self.sites = Sites()
        self.decided: dict[str, AllocationDecided] = {}

    def apply(self, event: Event, seq: int) -> None:
        del seq
        if isinstance(event, AllocationDecided):
            name = assignment_key(event.charge_point_id, event.connector_id)
            if event.reason == "end":
                self.decided.pop(name, None)
            elif event.session:
                self.decided[name] = event
        else:
            self.sites.apply(event)

    def view(self, now: int, visible: Callable[[str], bool]) -> SitesView:
        state, site = self.sites.state, self.sites.site_at(now)
        connectors: list[ConnectorView] = []
        demands: list[Demand] = []
        drawn: dict[tuple[str, int], float] = {}
        allocated: dict[tuple[str, int], float] = {}
        for name, assigned in sorted(state.assignments.items()):
            cp, _, connector = name.partition("\x1f")
            decided = self.decided.get(name)
            if not visible(cp):
                continue
            connectors.append(
                ConnectorView(
                    charge_point_id=cp,
                    connector_id=int(connector),
                    node_id=assigned.node_id,
                    priority=assigned.priority,
                    min_a=assigned.min_a,
                    max_a=assigned.max_a,
                    phases=assigned.phases,
                    session=decided.session if decided else "",
                    limit_a=decided.limit_a if decided else None,
                    admitted=decided.admitted if decided else None,
                    wants_a=decided.wants_a if decided else None,
                    drawn_a=decided.drawn_a if decided else None,
                    reason=decided.reason if decided else "",
                )
            )
        # Connector 0 stands for the charger's connectors: the decisions name each one.
        for decided in self.decided.values():
            found = self.sites.assignment(decided.charge_point_id, decided.connector_id)
            if found is None or decided.node_id not in site.nodes:
                continue
            key = (decided.charge_point_id, decided.connector_id)
            demands.append(Demand(connector=key, node_id=decided.node_id, phases=found.phases))
            allocated[key] = decided.limit_a
            drawn[key] = decided.drawn_a or 0.0
        loads = load_by_node(site, demands, drawn)
        given = load_by_node(site, demands, allocated)
        nodes = []
        for node_id, node in site.nodes.items():
            stored = state.nodes[node_id]
            live = state.live.get(node_id)
            nodes.append(
                NodeView(
                    node_id=node_id,
                    parent=node.parent,
                    limit_a=round(node.limit.amps_per_phase, 1),
                    source=self.sites.limit_at(node_id, now)[1],
                    load_a={phase: round(loads[node_id][phase], 1) for phase in PHASES},
                    allocated_a={phase: round(given[node_id][phase], 1) for phase in PHASES},
                    limit=stored.limit,
                    unit=stored.unit,
                    phases=stored.phases,
                    voltage=stored.voltage,
                    daily=[DailyBody(start=d.start, limit=d.limit) for d in stored.daily],
                    live_limit=live.limit if live else None,
                    live_unit=live.unit if live else None,
                )
            )
        return SitesView(nodes=nodes, connectors=connectors)


class SitesApi(Book):
    def __init__(self) -> None:
        self.book = SitesBook()
        super().__init__("sites", SITE_SUBJECTS, self.book.apply)


SITES: Final = web.AppKey("sites_api", SitesApi)


def setup(app: web.Application, stream: str) -> None:
    app[SITES] = sites = SitesApi()
    sites.follow(app, stream)
    route = app.router.add_route
    route("GET", "/api/v1/sites", _answering_errors(_get_sites))
    route("PUT", "/api/v1/sites/nodes/{node_id}", _answering_errors(_put_node))
    route("DELETE", "/api/v1/sites/nodes/{node_id}", _answering_errors(_delete_node))
    route("PUT", "/api/v1/sites/nodes/{node_id}/limit", _answering_errors(_put_live))
    route(
        "PUT",
        "/api/v1/chargers/{charge_point_id}/connectors/{connector_id}/site",
        _answering_errors(_put_assignment),
    )


def _invalid(error: Invalid) -> ApiError:
    parameter = _PATH.get(error.field)
    where = f"path parameter `{parameter}`" if parameter else f"`{json_path(error.field)}`"
    return _error(400, "bad_request", f"{error.problem} - at {where}")


async def _everything(request: web.Request, scope: Scope) -> None:
    if not scope.everything:
        raise await _refuse(
            request,
            403,
            "sites concern every charger: the token must be for all chargers ('*')",
            scope.subject,
        )


async def _stored(request: web.Request, event: Event, actor: str) -> web.Response:
    await request.app[SITES].stored(request.app[API], event)
    kind = type(event).__struct_config__.tag
    log.info("api.site_changed", type=kind, event_id=event.id, actor=actor)
    return json_response(SiteChange(type=str(kind), event_id=event.id, actor=actor))


def _node_id(request: web.Request) -> str:
    node_id = request.match_info["node_id"]
    if not 1 <= len(node_id) <= 64:
        raise _error(400, "bad_request", "1 to 64 characters - at path parameter `nodeId`")
    return node_id


async def _get_sites(request: web.Request) -> web.Response:
    scope = await _authorise(request, "", command=False)
    return json_response(request.app[SITES].book.view(now_ms(), scope.allows))


async def _put_node(request: web.Request) -> web.Response:
    scope = await _authorise(request, "", command=True, doing="change sites")
    await _everything(request, scope)
    body = _decode(await request.read(), NodeBody)
    event = SiteNodeSet(
        id=uuid.uuid4().hex,
        received_at=now_ms(),
        actor=scope.subject,
        node_id=_node_id(request),
        parent=body.parent,
        limit=body.limit,
        unit=body.unit,
        phases=body.phases,
        voltage=body.voltage,
        daily=tuple(DailyLimit(start=d.start, limit=d.limit) for d in body.daily),
    )
    try:
        check_node(request.app[SITES].book.sites.state, event)
    except Invalid as error:
        raise _invalid(error) from None
    return await _stored(request, event, scope.subject)


async def _delete_node(request: web.Request) -> web.Response:
    scope = await _authorise(request, "", command=True, doing="change sites")
    await _everything(request, scope)
    node_id = _node_id(request)
    try:
        check_removal(request.app[SITES].book.sites.state, node_id)
    except LookupError as error:
        raise _error(404, "not_found", str(error.args[0])) from None
    except Invalid as error:
        raise _error(409, "conflict", error.problem) from None
    event = SiteNodeRemoved(
        id=uuid.uuid4().hex, received_at=now_ms(), actor=scope.subject, node_id=node_id
    )
    return await _stored(request, event, scope.subject)


async def _put_live(request: web.Request) -> web.Response:
    scope = await _authorise(request, "", command=True, doing="change sites")
    await _everything(request, scope)
    body = _decode(await request.read(), LiveBody)
    event = SiteLimitSet(
        id=uuid.uuid4().hex,
        received_at=now_ms(),
        actor=scope.subject,
        node_id=_node_id(request),
        limit=body.limit,
        unit=body.unit,
    )
    try:
        check_live(request.app[SITES].book.sites.state, event)
    except LookupError as error:
        raise _error(404, "not_found", str(error.args[0])) from None
    except Invalid as error:
        raise _invalid(error) from None
    return await _stored(request, event, scope.subject)


async def _put_assignment(request: web.Request) -> web.Response:
    charge_point_id = request.match_info["charge_point_id"]
    scope = await _authorise(request, charge_point_id, command=True, doing="assign connectors")
    raw = request.match_info["connector_id"]
    if not raw.isdigit() or int(raw) > 1000:
        raise _error(400, "bad_request", "0 to 1000 - at path parameter `connectorId`")
    body = _decode(await request.read(), AssignBody)
    event = SiteConnectorAssigned(
        id=uuid.uuid4().hex,
        received_at=now_ms(),
        actor=scope.subject,
        charge_point_id=charge_point_id,
        connector_id=int(raw),
        node_id=body.node_id,
        priority=body.priority,
        min_a=body.min_a,
        max_a=body.max_a,
        phases=body.phases,
    )
    try:
        check_assignment(request.app[SITES].book.sites.state, event)
    except Invalid as error:
        raise _invalid(error) from None
    return await _stored(request, event, scope.subject)


SITE_TYPES: Final = (NodeBody, LiveBody, AssignBody, SitesView, SiteChange)

__all__ = ["SITES", "SITE_TYPES", "SitesApi", "SitesBook", "setup"]
