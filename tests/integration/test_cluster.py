"""The hub on a real 3-node NATS JetStream cluster, the stream at R3: two gateways and the
projections, chargers running transactions, while the stream's leader node is killed and
later a follower. Nothing a charger was answered for is lost or doubled, the tables equal a
rebuild, and the longest answer a charger waited for during each failover is reported."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from ocpp.v16 import ChargePoint, call

from hub.config import Settings, StreamSettings
from hub.runtime import running_gateway
from projections.service import running_projections
from schemas.events import OcppFrame
from tests.conftest import with_gateway
from tests.integration.cluster import NatsCluster, nats_cluster
from tests.integration.helpers import ocpp_charger, stored_events
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
        """Transactions back to back: start, three meter values, stop."""
        await self.timed(
            charger, call.BootNotification(charge_point_model="M", charge_point_vendor="V")
        )
        for meter in itertools.count(step=400):
            if self.stop.is_set():
                return
            started = await self.timed(
                charger,
                call.StartTransaction(
                    connector_id=1, id_tag="TAG", meter_start=meter, timestamp=_now()
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


@pytest.mark.timeout(240)
async def test_failovers_lose_and_double_nothing(tmp_path: Path, settings: Settings) -> None:
    replicated = msgspec.structs.replace(
        settings, stream=StreamSettings(replicas=3, duplicate_window_s=120.0)
    )
    load = Load()
    waits: dict[str, float] = {}
    async with nats_cluster(tmp_path / "cluster") as cluster:
        async with (
            running_gateway(with_gateway(replicated, gateway_id="gw-a"), cluster.url) as a,
            running_gateway(with_gateway(replicated, gateway_id="gw-b"), cluster.url) as b,
            running_projections(replicated, cluster.url) as projections,
            contextlib.AsyncExitStack() as chargers,
        ):
            for index in range(CHARGERS_PER_GATEWAY):
                for gateway in (a, b):
                    name = f"CP-{gateway.gateway_id}-{index}"
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
            load.stop.set()
        # The chargers' tasks ended with the block: every call they made was answered.
        end = await last_seq(cluster.nodes[0].url)
        async with running_projections(replicated, cluster.url) as projections:
            await projections.runner.wait_for(end)
            projected = await dump(projections.backend)
            await replay_in(projections)
            rebuilt = await dump(projections.backend)
        events = [e for _, e in await stored_events(cluster.nodes[0].url)]
    frames = [e for e in events if isinstance(e, OcppFrame)]
    calls = Counter(f.charge_point_id for f in frames if f.message_type == "CALL")
    answers = Counter(f.charge_point_id for f in frames if f.message_type == "CALLRESULT")
    assert calls == load.sent, "every answered call is stored exactly once"
    assert answers == load.sent
    assert len({(f.charge_point_id, f.unique_id, f.direction) for f in frames}) == len(frames)
    assert projected == rebuilt
    assert projected["session_versions"], "the sessions reached the tables"
    quiet = sorted(took for _, took in load.calls)[len(load.calls) // 2]
    print(
        f"\ncluster failover: {len(load.calls)} calls, median answer {quiet * 1000:.1f} ms; "
        + ", ".join(f"{kind} killed: longest answer {took:.2f} s" for kind, took in waits.items())
    )
