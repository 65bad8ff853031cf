"""The site_load table end to end: a grid connection with a feeder below it and two
ocpp-library chargers on the feeder that keep the profiles the allocator sends and report
their current; sites over REST, the supervisor's allocator, the gateway and the projections
(chDB) all real. What an analyst queries, and a replay that writes the same rows."""

from __future__ import annotations

from typing import Any

from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from projections.service import Projections, running_projections
from tests.integration.api_helpers import api_client
from tests.integration.test_site_load import all_until, charging_below, currents
from tests.integration.test_smart_charging_api import ui_port
from tests.integration.test_supervisor import fast, supervised
from tests.projections.helpers import last_seq, replay_in, rows

__all__ = ["ui_port"]  # the fixture, shared
CPS = ("CP-F1", "CP-F2")
# A grid connection of 40 A, a feeder of 20 A below it: both chargers hang on the feeder.
NODES = {"grid": {"limit": 40}, "feeder": {"limit": 20, "parent": "grid"}}
LATEST = (
    "SELECT node_id, site_id, parent, limit_a, limit_source, cause,"
    " [allocated_l1, allocated_l2, allocated_l3] AS allocated,"
    " [measured_l1, measured_l2, measured_l3] AS measured, transactions, metered"
    " FROM ocpp.site_load_latest ORDER BY node_id"
)


async def caught_up(projections: Projections, nats_url: str) -> None:
    await projections.runner.wait_for(await last_seq(nats_url))


async def test_an_analyst_sees_each_nodes_limit_against_its_allocation_and_measured_load(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway, ui_port: int
) -> None:
    quick = fast(settings, load_min_interval_s=0.5)
    async with (
        supervised(quick, nats_server.url),
        running_projections(settings, nats_server.url) as projections,
        api_client(ui_port) as api,
        charging_below(gateway, ui_port, api, NODES, "feeder", CPS) as (chargers, transactions),
    ):
        # The feeder's 20 A split in two; each car draws close to its limit, so wants more.
        await all_until(chargers, lambda c: c.limit() == 10.0)
        await currents(chargers[0], transactions[0], L1=9.5, L2=9.0, L3=8.5)
        await currents(chargers[1], transactions[1], x=9.0)
        await caught_up(projections, nats_server.url)
        latest = await rows(projections.backend, LATEST)
        assert latest == [
            node("feeder", "grid", 20.0, "static", [20.0] * 3, [18.5, 18.0, 17.5], cause="meter"),
            node("grid", "", 40.0, "static", [20.0] * 3, [18.5, 18.0, 17.5], cause="meter"),
        ]
        # An EMS cuts the grid connection to 16 A: every limit falls at once, before the
        # cars do.
        status, _ = await api.call("PUT", "/api/v1/sites/nodes/grid/limit", {"limit": 16})
        assert status == 200
        await all_until(chargers, lambda c: c.limit() == 8.0)
        await currents(chargers[0], transactions[0], L1=7.9, L2=7.8, L3=7.7)
        await currents(chargers[1], transactions[1], x=7.5)
        await caught_up(projections, nats_server.url)
        latest = await rows(projections.backend, LATEST)
        assert latest[1] == node(
            "grid", "", 16.0, "live", [16.0] * 3, [15.4, 15.3, 15.2], cause="meter"
        )
        # When was the grid connection loaded beyond its limit, and by what?
        over = await rows(
            projections.backend,
            "SELECT cause, limit_a, greatest(measured_l1, measured_l2, measured_l3) AS load"
            " FROM ocpp.site_load WHERE node_id = 'grid'"
            " AND greatest(measured_l1, measured_l2, measured_l3) > limit_a ORDER BY seq",
        )
        assert over[0] == {"cause": "live", "limit_a": 16.0, "load": 18.5}
        assert {row["cause"] for row in over} <= {"live", "allocation", "tick", "meter"}
        assert over[-1]["cause"] == "meter"  # the first car's lower reading: still over
        # The allocator never offered a node more than its limit once its round was done:
        # the last row at each instant (decisions carry their cause's time).
        offered = await rows(
            projections.backend,
            "SELECT node_id, received_at, limit_a,"
            " greatest(allocated_l1, allocated_l2, allocated_l3) AS allocated"
            " FROM ocpp.site_load ORDER BY seq DESC LIMIT 1 BY node_id, received_at",
        )
        assert offered and all(row["allocated"] <= row["limit_a"] for row in offered)
        history = await rows(projections.backend, "SELECT * FROM ocpp.site_load ORDER BY seq")
        # A replay of the table writes it again, row for row.
        await replay_in(projections, "site_load")
        assert await rows(projections.backend, "SELECT * FROM ocpp.site_load ORDER BY seq") == (
            history
        )
        assert await rows(projections.backend, LATEST) == latest


def node(
    node_id: str,
    parent: str,
    limit_a: float,
    source: str,
    allocated: list[float],
    measured: list[float],
    *,
    cause: str,
) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "site_id": "grid",
        "parent": parent,
        "limit_a": limit_a,
        "limit_source": source,
        "cause": cause,
        "allocated": allocated,
        "measured": measured,
        "transactions": 2,
        "metered": 2,
    }
