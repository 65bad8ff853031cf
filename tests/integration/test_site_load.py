"""Site load management end to end: sites over REST, the supervisor's allocator, the gateway,
and ocpp-library chargers that keep the profiles they accept (docs/smart-charging.md)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from ocpp.routing import on
from ocpp.v16 import call

from hub.api.money_state import iso
from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from schemas.events import AllocationDecided, AnomalyDetected
from tests.integration.api_helpers import Api, api_client, online
from tests.integration.helpers import stored_events, wait_for_event
from tests.integration.test_smart_charging_api import SmartCharger, ui_port
from tests.integration.test_supervisor import fast, supervised

__all__ = ["ui_port"]  # the fixture, shared
CPS = ("CP-L1", "CP-L2", "CP-L3")


class LoadCharger(SmartCharger):
    """Tells a waiting test whenever its profiles change."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed = asyncio.Condition()

    @on("SetChargingProfile")
    async def on_set(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        answer = await SmartCharger.on_set(self, connector_id, cs_charging_profiles)
        async with self.changed:
            self.changed.notify_all()
        return answer

    def limit(self, purpose: str = "TxProfile") -> float | None:
        for installed in self.installed:
            if installed.connector_id == 1 and installed.profile.purpose == purpose:
                return installed.profile.schedule.periods[0].limit
        return None

    async def until(self, check: Callable[[LoadCharger], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(lambda: check(self))


async def all_until(
    chargers: list[LoadCharger], check: Callable[[LoadCharger], bool], within: float = 15.0
) -> None:
    await asyncio.gather(*(charger.until(check, within) for charger in chargers))


def now_iso() -> str:
    return iso(time.time_ns() // 1_000_000)


async def amps(charger: LoadCharger, transaction_id: int, current: float) -> None:
    await currents(charger, transaction_id, x=current)


async def currents(charger: LoadCharger, transaction_id: int, **phases: float) -> None:
    """A MeterValues of Current.Import per phase (``x``: one reading that names none)."""
    sampled = [
        {"value": f"{amps:g}", "measurand": "Current.Import", "unit": "A"}
        | ({} if phase == "x" else {"phase": phase})
        for phase, amps in phases.items()
    ]
    await charger.call(
        call.MeterValues(
            connector_id=1,
            transaction_id=transaction_id,
            meter_value=[{"timestamp": now_iso(), "sampled_value": sampled}],
        )
    )


@contextlib.asynccontextmanager
async def site_of_three(
    gateway: Gateway, ui_port: int, api: Api
) -> AsyncIterator[tuple[list[LoadCharger], list[int]]]:
    """A site of 40 A and three chargers below it, each charging."""
    nodes = {"site": {"limit": 40, "unit": "A"}}
    async with charging_below(gateway, ui_port, api, nodes, "site", CPS) as charging:
        yield charging


@contextlib.asynccontextmanager
async def charging_below(
    gateway: Gateway,
    ui_port: int,
    api: Api,
    nodes: dict[str, dict[str, Any]],
    node_id: str,
    cps: tuple[str, ...],
) -> AsyncIterator[tuple[list[LoadCharger], list[int]]]:
    """The ``nodes`` (by id, the body of their PUT, parents first) and chargers ``cps`` on
    ``node_id``, each charging: the chargers and their transaction ids."""
    for name, node in nodes.items():
        status, answer = await api.call("PUT", f"/api/v1/sites/nodes/{name}", node)
        assert status == 200, answer
    for cp in cps:
        body = {"nodeId": node_id, "minA": 6, "maxA": 32}
        status, answer = await api.call("PUT", f"/api/v1/chargers/{cp}/connectors/1/site", body)
        assert status == 200, answer
    async with contextlib.AsyncExitStack() as stack:
        chargers: list[LoadCharger] = []
        for cp in cps:
            charger = await stack.enter_async_context(
                online(gateway.port, ui_port, cp, LoadCharger)
            )
            assert isinstance(charger, LoadCharger)
            chargers.append(charger)
        # The conservative default first, at each charger's minimum.
        await all_until(chargers, lambda c: c.limit("TxDefaultProfile") == 6.0)
        transactions = []
        for charger in chargers:
            start = await charger.call(
                call.StartTransaction(
                    connector_id=1, id_tag="T", meter_start=0, timestamp=now_iso()
                )
            )
            transactions.append(start.transaction_id)
        yield chargers, transactions


async def test_a_site_of_40_a_is_shared_by_three_chargers_and_follows_draws_and_live_limits(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway, ui_port: int
) -> None:
    quick = fast(settings, load_min_interval_s=0.5)
    async with (
        supervised(quick, nats_server.url),
        api_client(ui_port) as api,
        site_of_three(gateway, ui_port, api) as (chargers, transactions),
    ):
        await all_until(chargers, lambda c: c.limit() == 13.3)
        assert sum(c.limit() or 0 for c in chargers) <= 40
        # The first car draws 4 A: it gets its draw and a margin, the others what it leaves.
        await amps(chargers[0], transactions[0], 4.0)
        await chargers[0].until(lambda c: c.limit() == 6.0)
        await all_until(chargers[1:], lambda c: c.limit() == 17.0)
        # An EMS halves the site: every limit falls at once, with no wait for the rate limit.
        status, _ = await api.call("PUT", "/api/v1/sites/nodes/site/limit", {"limit": 20})
        assert status == 200
        await all_until(chargers[1:], lambda c: c.limit() == 7.0)
        assert chargers[0].limit() == 6.0
        status, view = await api.call("GET", "/api/v1/sites")
    assert status == 200
    [node] = view["nodes"]
    assert (node["nodeId"], node["limitA"], node["source"]) == ("site", 20.0, "live")
    assert node["allocatedA"] == {"L1": 20.0, "L2": 20.0, "L3": 20.0}
    connectors = {c["chargePointId"]: c for c in view["connectors"]}
    assert connectors["CP-L1"]["drawnA"] == 4.0 and connectors["CP-L1"]["limitA"] == 6.0
    decided = [e for _, e in await stored_events(nats_server.url, "ev.allocation.>")]
    reasons = {e.reason for e in decided if isinstance(e, AllocationDecided)}
    assert {"connect", "start", "meter", "tick", "limit"} <= reasons


async def test_a_rejected_profile_raises_the_alert(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway, ui_port: int
) -> None:
    quick = fast(settings, load_min_interval_s=0.5)
    async with (
        supervised(quick, nats_server.url),
        api_client(ui_port) as api,
        site_of_three(gateway, ui_port, api) as (chargers, transactions),
    ):
        await all_until(chargers, lambda c: c.limit() == 13.3)
        chargers[1].reject = True
        assert (await api.call("PUT", "/api/v1/sites/nodes/site/limit", {"limit": 30}))[0] == 200
        alert = await wait_for_event(
            nats_server.url,
            "ev.integrity.detected",
            lambda e: isinstance(e, AnomalyDetected) and e.kind == "load_unmanaged",
        )
        # CP-L2 still runs at the 13.3 A it accepted: the others share the 16.7 A left.
        await all_until([chargers[0], chargers[2]], lambda c: c.limit() == 8.3)
    assert isinstance(alert, AnomalyDetected)
    assert (alert.charge_point_id, alert.transaction_id) == ("CP-L2", transactions[1])
    assert msgspec.json.decode(msgspec.json.encode(alert))["detail"] == "not controlled: Rejected"
