"""The hub on a real 3-node NATS JetStream cluster, the stream at R3: two gateways, the
projections and two supervisors (one active by the lease), chargers running prepaid
transactions, while the stream's leader node is killed, later a follower, and then the
active supervisor. Nothing a charger was answered for is lost or doubled, every hold is
settled once, what the supervisors derived is what one supervisor derives from the stream,
the tables equal a rebuild, and the longest answer a charger waited for during each failover
is reported."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from ocpp.v16 import ChargePoint, call

from hub.bus import event_backbone
from hub.config import Settings, StreamSettings, from_environment
from hub.runtime import running_gateway
from projections.service import running_projections
from schemas.events import (
    Event,
    OcppFrame,
    TariffSet,
    WalletConfigured,
    WalletCredited,
    _DerivedEvent,
)
from tests.conftest import with_gateway
from tests.integration.cluster import NatsCluster, nats_cluster
from tests.integration.helpers import ocpp_charger, stored_events
from tests.integration.test_supervisor_failover import (
    SUPERVISOR_ENV,
    holder_becomes,
    lease_holder_pid,
    one_supervisor,
    supervisor,
)
from tests.projections.helpers import dump, last_seq, replay_in

CHARGERS_PER_GATEWAY = 3
STREAM = "OCPP_EVENTS"


@dataclass
class Load:
    """Every call the chargers made: when it was sent and how long its answer took."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[tuple[float, float]] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)

    async def timed(self, charger: ChargePoint, request: Any) -> Any:
        sent = time.monotonic()
        answer = await charger.call(request, suppress=False)
        self.calls.append((sent, time.monotonic() - sent))
        self.sent[charger.id] += 1
        return answer

    async def run(self, charger: ChargePoint) -> None:
        """Prepaid transactions back to back: start (a hold), three meter values, stop (the
        settlement)."""
        await self.timed(
            charger, call.BootNotification(charge_point_model="M", charge_point_vendor="V")
        )
        for meter in itertools.count(step=400):
            if self.stop.is_set():
                return
            started = await self.timed(
                charger,
                call.StartTransaction(
                    connector_id=1, id_tag=tag_of(charger.id), meter_start=meter, timestamp=_now()
                ),
            )
            for step in (100, 200, 300):
                await self.timed(
                    charger,
                    call.MeterValues(
                        connector_id=1,
                        transaction_id=started.transaction_id,
                        meter_value=[
                            {
                                "timestamp": _now(),
                                "sampled_value": [{"value": str(meter + step)}],
                            }
                        ],
                    ),
                )
            await self.timed(
                charger,
                call.StopTransaction(
                    transaction_id=started.transaction_id, meter_stop=meter + 400, timestamp=_now()
                ),
            )

    def longest_wait(self, since: float, until: float) -> float:
        return max((took for sent, took in self.calls if since <= sent <= until), default=0.0)


def tag_of(charge_point_id: str) -> str:
    return f"PRE-{charge_point_id}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class PatientCharger(ChargePoint):  # type: ignore[misc]  # the ocpp library ships no type hints
    """Waits longer than any failover for an answer, so every call is answered once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, response_timeout=60, **kwargs)


@contextlib.asynccontextmanager
async def charging(port: int, charge_point_id: str, load: Load) -> AsyncIterator[None]:
    async with ocpp_charger(port, charge_point_id, charger_class=PatientCharger) as charger:
        task = asyncio.create_task(load.run(charger))
        try:
            yield
        finally:
            load.stop.set()
            await task


async def until_leader_is_not(cluster: NatsCluster, gone: str, within: float = 30.0) -> str:
    async with asyncio.timeout(within):
        while True:
            with contextlib.suppress(Exception):
                leader, _ = await cluster.leader_of(STREAM)
                if leader != gone:
                    return leader
            await asyncio.sleep(0.2)


async def under_load(seconds: float) -> None:
    # The chargers run meanwhile; this is the length of a phase of the run, not a wait
    # for something to happen.
    await asyncio.sleep(seconds)


async def prepaid(settings: Settings, url: str, chargers: list[str]) -> None:
    """A tariff, and a prepaid wallet for each charger's tag: every start holds, every stop
    settles, so the supervisors have work in every transaction."""
    now = int(time.time() * 1000)
    async with event_backbone(settings, url, name="test") as (_, store):
        await store.store(
            [
                TariffSet(id="tariff", received_at=now, actor="t", tariff_id="t", per_kwh="0.50"),
                *(
                    event
                    for name in chargers
                    for event in (
                        WalletConfigured(
                            id=f"w-{name}",
                            received_at=now,
                            actor="t",
                            id_tag=tag_of(name),
                            hold_amount="2",
                        ),
                        WalletCredited(
                            id=f"c-{name}",
                            received_at=now,
                            actor="t",
                            id_tag=tag_of(name),
                            amount="1000000",
                        ),
                    )
                ),
            ]
        )


async def all_derived(url: str, settings: Settings) -> list[tuple[int, Event]]:
    """The stream, once it holds all that one supervisor derives from it."""
    async with asyncio.timeout(60):
        while True:
            events = await stored_events(url)
            _, core = one_supervisor(events, settings)
            if not core.unconfirmed:
                return events
            await asyncio.sleep(0.2)


@pytest.mark.timeout(300)
async def test_failovers_lose_and_double_nothing(tmp_path: Path, settings: Settings) -> None:
    replicated = msgspec.structs.replace(
        settings, stream=StreamSettings(replicas=3, duplicate_window_s=120.0)
    )
    supervisors_env = {**SUPERVISOR_ENV, "HUB_STREAM_REPLICAS": "3"}
    load = Load()
    waits: dict[str, float] = {}
    names = [f"CP-{g}-{i}" for i in range(CHARGERS_PER_GATEWAY) for g in ("gw-a", "gw-b")]
    async with nats_cluster(tmp_path / "cluster") as cluster:
        await prepaid(replicated, cluster.url, names)
        async with (
            running_gateway(with_gateway(replicated, gateway_id="gw-a"), cluster.url) as a,
            running_gateway(with_gateway(replicated, gateway_id="gw-b"), cluster.url) as b,
            running_projections(replicated, cluster.url),
            supervisor(tmp_path / "s1", cluster.url, supervisors_env) as first,
            supervisor(tmp_path / "s2", cluster.url, supervisors_env) as second,
            contextlib.AsyncExitStack() as chargers,
        ):
            for name in names:
                gateway = a if "gw-a" in name else b
                await chargers.enter_async_context(charging(gateway.port, name, load))
            await under_load(2)
            for failover in ("leader", "follower"):
                leader, followers = await cluster.leader_of(STREAM)
                victim = leader if failover == "leader" else followers[0]
                killed_at = time.monotonic()
                cluster.kill(victim)
                if failover == "leader":
                    await until_leader_is_not(cluster, victim)
                await under_load(3)
                await cluster.restart(victim)
                await under_load(3)
                waits[failover] = load.longest_wait(killed_at - 1, killed_at + 6)
            active_pid = await lease_holder_pid(cluster.nodes[0].url)
            active, standby = (first, second) if active_pid == first.pid else (second, first)
            active.send_signal(signal.SIGKILL)
            await active.wait()
            waits["supervisor handover"] = await holder_becomes(
                cluster.nodes[0].url, standby.pid, within=15
            )
            await under_load(3)
            # The chargers finish the call they are in: every call they made was answered.
            await chargers.aclose()
            # The supervisors still run: until the stream holds all that they derive.
            events = await all_derived(cluster.nodes[0].url, from_environment(supervisors_env))
        end = await last_seq(cluster.nodes[0].url)
        async with running_projections(replicated, cluster.url) as projections:
            await projections.runner.wait_for(end)
            projected = await dump(projections.backend)
            await replay_in(projections)
            rebuilt = await dump(projections.backend)
    frames = [e for _, e in events if isinstance(e, OcppFrame)]
    calls = Counter(f.charge_point_id for f in frames if f.message_type == "CALL")
    answers = Counter(f.charge_point_id for f in frames if f.message_type == "CALLRESULT")
    assert calls == load.sent, "every answered call is stored exactly once"
    assert answers == load.sent
    assert len({(f.charge_point_id, f.unique_id, f.direction) for f in frames}) == len(frames)
    derived, _ = one_supervisor(events, from_environment(supervisors_env))
    in_stream = Counter(e.id for _, e in events if isinstance(e, _DerivedEvent))
    assert set(in_stream) == derived, "what one supervisor derives, nothing more or less"
    starts = sum(f.action == "StartTransaction" for f in frames if f.message_type == "CALL")
    kinds = Counter(e.__struct_config__.tag for _, e in events if isinstance(e, _DerivedEvent))
    assert kinds["wallet.held"] == kinds["wallet.settled"] == starts, "each hold settled once"
    assert projected == rebuilt
    assert projected["session_versions"], "the sessions reached the tables"
    quiet = sorted(took for _, took in load.calls)[len(load.calls) // 2]
    print(
        f"\ncluster failover: {len(load.calls)} calls, {starts} transactions, median answer "
        f"{quiet * 1000:.1f} ms; longest answer with the stream leader killed "
        f"{waits['leader']:.2f} s, with a follower killed {waits['follower']:.2f} s; "
        f"supervisor handover {waits['supervisor handover']:.2f} s"
    )
