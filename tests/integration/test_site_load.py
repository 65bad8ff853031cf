"""Site load management end to end: sites over REST, the supervisor's allocator, the gateway,
and ocpp-library chargers that keep the profiles they accept (docs/smart-charging.md)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import msgspec
from ocpp.routing import on
from ocpp.v16 import call

from hub.api.money_state import iso
from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from schemas.events import AllocationDecided, AnomalyDetected, AnomalyResolved
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


SITE: Final[dict[str, dict[str, Any]]] = {"site": {"limit": 40, "unit": "A"}}


async def configure_site(
    api: Api,
    nodes: dict[str, dict[str, Any]] = SITE,
    node_id: str = "site",
    cps: tuple[str, ...] = CPS,
) -> None:
    """The ``nodes`` (by id, the body of their PUT, parents first) and chargers ``cps`` on
    ``node_id``; by default a site of 40 A and the three chargers below it."""
    for name, node in nodes.items():
        status, answer = await api.call("PUT", f"/api/v1/sites/nodes/{name}", node)
        assert status == 200, answer
    for cp in cps:
        body = {"nodeId": node_id, "minA": 6, "maxA": 32}
        status, answer = await api.call("PUT", f"/api/v1/chargers/{cp}/connectors/1/site", body)
        assert status == 200, answer


@contextlib.asynccontextmanager
async def connected(gateway: Gateway, ui_port: int, cp: str) -> AsyncIterator[LoadCharger]:
    async with online(gateway.port, ui_port, cp, LoadCharger) as charger:
        assert isinstance(charger, LoadCharger)
        # The conservative default first: nothing until the allocator decides on its car.
        await charger.until(lambda c: c.limit("TxDefaultProfile") == 0.0)
        yield charger


async def start(charger: LoadCharger) -> int:
    started = await charger.call(
        call.StartTransaction(connector_id=1, id_tag="T", meter_start=0, timestamp=now_iso())
    )
    return int(started.transaction_id)


@contextlib.asynccontextmanager
async def site_of_three(
    gateway: Gateway, ui_port: int, api: Api
) -> AsyncIterator[tuple[list[LoadCharger], list[int]]]:
    """A site of 40 A and three chargers below it, each charging."""
    async with charging_below(gateway, ui_port, api, SITE, "site", CPS) as charging:
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
    """The ``nodes`` and chargers ``cps`` on ``node_id`` (see ``configure_site``), each
    charging: the chargers and their transaction ids."""
    await configure_site(api, nodes, node_id, cps)
    async with contextlib.AsyncExitStack() as stack:
        chargers = [await stack.enter_async_context(connected(gateway, ui_port, cp)) for cp in cps]
        yield chargers, [await start(charger) for charger in chargers]


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


def offered_sums(decided: list[AllocationDecided]) -> list[float]:
    """After each decision, the sum of the limits the site's cars were last given."""
    last: dict[tuple[str, int], float] = {}
    sums = []
    for decision in decided:
        if decision.session:
            last[decision.charge_point_id, decision.connector_id] = decision.limit_a
            sums.append(sum(last.values()))
    return sums


async def boot(charger: LoadCharger) -> None:
    await charger.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))


async def test_a_charger_that_reboots_mid_session_is_told_again_and_the_site_holds(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway, ui_port: int
) -> None:
    """CP-L2 reboots twice while charging: it loses its connection and its profiles. The
    first time it resumes its transaction, the second it starts a new one (the old ends
    without a StopTransaction). Each time it is told the default and its limit again, its
    alert is raised while it is out of control and cleared once it is back under it, and
    the site's 40 A hold at every decision."""
    quick = fast(settings, load_min_interval_s=0.5)
    async with supervised(quick, nats_server.url), api_client(ui_port) as api:
        await configure_site(api)
        async with (
            connected(gateway, ui_port, "CP-L1") as first,
            connected(gateway, ui_port, "CP-L3") as third,
        ):
            async with connected(gateway, ui_port, "CP-L2") as second:
                transactions = [await start(c) for c in (first, second, third)]
                await all_until([first, second, third], lambda c: c.limit() == 13.3)
            # A reboot: the connection drops; the hub counts it at the 13.3 A it accepted.
            dropped = await wait_for_event(
                nats_server.url,
                "ev.integrity.detected",
                lambda e: isinstance(e, AnomalyDetected) and e.charge_point_id == "CP-L2",
            )
            async with connected(gateway, ui_port, "CP-L2") as back:
                # A new charger object: its profiles went with the reboot.
                await boot(back)
                await back.until(lambda c: c.limit() == 13.3)
                await wait_for_event(
                    nats_server.url,
                    "ev.integrity.resolved",
                    lambda e: isinstance(e, AnomalyResolved) and e.charge_point_id == "CP-L2",
                )
                await amps(back, transactions[1], 13.3)
            await wait_for_event(
                nats_server.url,
                "ev.integrity.detected",
                lambda e: (
                    isinstance(e, AnomalyDetected)
                    and e.charge_point_id == "CP-L2"
                    and e.id != dropped.id
                ),
            )
            async with connected(gateway, ui_port, "CP-L2") as again:
                await boot(again)
                renewed = await start(again)
                await again.until(lambda c: c.limit() == 13.3 and tx_of(c) == renewed)
                decided = [
                    e for _, e in await stored_events(nats_server.url, "ev.allocation.>")
                    if isinstance(e, AllocationDecided)
                ]  # fmt: skip
                alerts = [
                    e for _, e in await stored_events(nats_server.url, "ev.integrity.>")
                    if isinstance(e, AnomalyDetected | AnomalyResolved)
                    and (e.kind, e.charge_point_id) == ("load_unmanaged", "CP-L2")
                ]  # fmt: skip
    on_second = [(d.session, d.reason) for d in decided if d.charge_point_id == "CP-L2"]
    # The old transaction ends (superseded), and the new one is decided on as a start.
    ended = on_second.index((str(transactions[1]), "end"))
    assert on_second[ended + 1] == (str(renewed), "start")
    sums = offered_sums(decided)
    assert sums and max(sums) <= 40 + 1e-9, sums
    # Raised at each drop, cleared each time it is back under control.
    assert [type(e).__name__ for e in alerts] == ["AnomalyDetected", "AnomalyResolved"] * 2


def tx_of(charger: LoadCharger) -> int | None:
    for installed in charger.installed:
        if installed.profile.purpose == "TxProfile":
            return installed.profile.transaction_id
    return None
