"""Two ``hub supervise`` processes on one stream: one active by the lease, the other a warm
standby. Killing the active one with SIGKILL mid-run hands over within seconds, and the
stream ends with what one supervisor alone would have derived: every derived event once,
every command requested once and sent to its charger once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import nats
import nats.errors
from nats.js.errors import KeyNotFoundError
from ocpp.v16 import call

from hub.bus import event_backbone
from hub.config import Settings, from_environment
from hub.gateway.server import Gateway
from hub.lease import BUCKET, LeaseValue
from hub.nats_server import EmbeddedNats
from hub.supervisor.core import Supervisor
from hub.supervisor.service import policy_from
from schemas.events import (
    CommandRequested,
    Event,
    LimitReached,
    OcppFrame,
    TariffSet,
    WalletConfigured,
    WalletCredited,
    _DerivedEvent,
)
from tests.integration.api_helpers import AnsweringCharger
from tests.integration.helpers import ocpp_charger, role_process, stored_events, wait_for_event

LEASE_KEY = "supervisor.OCPP_EVENTS"
SUPERVISOR_ENV = {
    "HUB_TICK_INTERVAL": "0.2",
    "HUB_STALE_AFTER": "1",
    "HUB_STREAM_DUPLICATE_WINDOW": "120",
    "HUB_LEASE_TTL": "3",
    "HUB_LEASE_RENEW": "1",
}
CHARGERS = 6
SESSIONS = 4


@contextlib.asynccontextmanager
async def supervisor(
    data_dir: Path, nats_url: str, env: Mapping[str, str] = SUPERVISOR_ENV
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``hub supervise`` with ``env``, ready (following the stream, active or standby);
    stopped at the end if the test has not killed it."""
    async with role_process("supervise", data_dir, nats_url, env=env) as (process, _):
        yield process


async def lease_holder_pid(nats_url: str) -> int | None:
    client = await nats.connect(nats_url)
    try:
        # On a cluster whose node just came back, the bucket may take a moment to answer.
        async with asyncio.timeout(30):
            while True:
                try:
                    kv = await client.jetstream().key_value(BUCKET)
                    entry = await kv.get(LEASE_KEY)
                    break
                except nats.errors.TimeoutError:
                    continue
    except KeyNotFoundError:
        return None
    finally:
        await client.close()
    value = msgspec.json.decode(entry.value or b"{}", type=LeaseValue)
    return int(value.holder.split(":")[1]) if value.holder else None


async def holder_becomes(nats_url: str, pid: int, within: float) -> float:
    """Seconds until the lease names ``pid``."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        while True:
            if await lease_holder_pid(nats_url) == pid:
                return time.monotonic() - started
            await asyncio.sleep(0.05)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def sessions(cp: AnsweringCharger, tag: str, count: int) -> None:
    """Prepaid sessions of 5 kWh on a hold worth 4 kWh: each is held, reaches its limit (a
    RemoteStop), stops and is settled."""
    start = datetime.now(UTC).replace(microsecond=0)
    for n in range(count):
        at = start + timedelta(hours=n)
        answer = await cp.call(
            call.StartTransaction(connector_id=1, id_tag=tag, meter_start=0, timestamp=iso(at))
        )
        tx = answer.transaction_id
        for kwh in range(1, 6):
            await cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[
                        {
                            "timestamp": iso(at + timedelta(minutes=kwh)),
                            "sampledValue": [{"value": str(kwh * 1000)}],
                        }
                    ],
                )
            )
        await cp.call(
            call.StopTransaction(
                transaction_id=tx, meter_stop=5000, timestamp=iso(at + timedelta(minutes=6))
            )
        )


def settings_of() -> Settings:
    """The supervisors' settings, as they read them from their environment."""
    return from_environment(SUPERVISOR_ENV)


def one_supervisor(
    events: list[tuple[int, Event]], settings: Settings
) -> tuple[set[str], Supervisor]:
    """What one supervisor folding this stream derives (ids), and the fold itself: what it
    derived and the stream does not hold stays in its ``unconfirmed``."""
    core = Supervisor(policy_from(settings.supervisor))
    derived: set[str] = set()
    for seq, event in events:
        derived.update(intent.event.id for intent in core.apply(seq, event))
    return derived, core


async def test_killing_the_active_supervisor_hands_over_within_seconds_doubling_and_losing_nothing(
    tmp_path: Path, nats_server: EmbeddedNats, settings: Settings, gateway: Gateway
) -> None:
    url = nats_server.url
    async with event_backbone(settings, url, name="test") as (_, store):
        now = int(time.time() * 1000)
        await store.store(
            [
                TariffSet(
                    id="tariff", received_at=now, actor="test", tariff_id="t", per_kwh="0.50"
                ),
                *(
                    event
                    for n in range(CHARGERS)
                    for event in (
                        WalletConfigured(
                            id=f"w{n}",
                            received_at=now,
                            actor="t",
                            id_tag=f"PRE-{n}",
                            hold_amount="2",
                        ),
                        WalletCredited(
                            id=f"c{n}", received_at=now, actor="t", id_tag=f"PRE-{n}", amount="100"
                        ),
                    )
                ),
            ]
        )
    async with (
        supervisor(tmp_path / "first", url) as first,
        supervisor(tmp_path / "second", url) as second,
        contextlib.AsyncExitStack() as stack,
    ):
        active_pid = await lease_holder_pid(url)
        assert active_pid in (first.pid, second.pid)
        active, standby = (first, second) if active_pid == first.pid else (second, first)
        chargers = [
            await stack.enter_async_context(
                ocpp_charger(gateway.port, f"CP-{n}", charger_class=AnsweringCharger)
            )
            for n in range(CHARGERS)
        ]
        quiet = await stack.enter_async_context(
            ocpp_charger(gateway.port, "CP-QUIET", charger_class=AnsweringCharger)
        )
        # A session that sends nothing: stale after a second, resolved when it stops.
        await quiet.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Charging")
        )
        quiet_tx = (
            await quiet.call(
                call.StartTransaction(
                    connector_id=1, id_tag="ANY", meter_start=0, timestamp=iso(datetime.now(UTC))
                )
            )
        ).transaction_id
        workload = asyncio.gather(
            *(sessions(cp, f"PRE-{n}", SESSIONS) for n, cp in enumerate(chargers))
        )
        # Mid-run: once the active one has stopped a few sessions by their limit.
        async with asyncio.timeout(30):
            while True:
                if len(await stored_events(url, "ev.session.limit_reached")) >= 3:
                    break
                await asyncio.sleep(0.05)
        active.send_signal(signal.SIGKILL)
        await active.wait()
        handover = await holder_becomes(url, standby.pid, within=15)
        await workload
        # The quiet session went stale on the new active's ticks: alerted, then resolved.
        await wait_for_event(url, "ev.integrity.detected", lambda e: True, within=15)
        await quiet.call(
            call.StopTransaction(
                transaction_id=quiet_tx, meter_stop=0, timestamp=iso(datetime.now(UTC))
            )
        )
        # Until the stream holds all that one supervisor derives from it, and a gateway has
        # sent every command it asked for.
        async with asyncio.timeout(30):
            while True:
                events = await stored_events(url)
                derived, core = one_supervisor(events, settings_of())
                requested = Counter(
                    e.command_id for _, e in events if isinstance(e, CommandRequested)
                )
                commands = {e.command_id for _, e in events if isinstance(e, LimitReached)}
                calls = Counter(
                    e.unique_id
                    for _, e in events
                    if isinstance(e, OcppFrame)
                    and (e.direction, e.message_type, e.action)
                    == ("out", "CALL", "RemoteStopTransaction")
                )
                if not core.unconfirmed and commands <= set(requested) and commands <= set(calls):
                    break
                await asyncio.sleep(0.2)

    assert handover < 6.0, f"the standby took over after {handover:.1f} s"
    in_stream = Counter(e.id for _, e in events if isinstance(e, _DerivedEvent))
    assert set(in_stream) == derived, "what one supervisor derives, nothing more or less"
    assert max(in_stream.values()) == 1
    kinds = Counter(e.__struct_config__.tag for _, e in events if isinstance(e, _DerivedEvent))
    assert kinds["wallet.held"] == kinds["wallet.settled"] == CHARGERS * SESSIONS
    assert kinds["session.limit_reached"] == CHARGERS * SESSIONS
    assert kinds["integrity.detected"] == kinds["integrity.resolved"] == 1
    # Each command once: requested once, one CALL out of the gateway, one at the charger.
    assert set(requested) == commands and len(commands) == CHARGERS * SESSIONS
    assert max(requested.values()) == 1
    assert set(calls) == commands and max(calls.values()) == 1
    received = Counter(
        (cp.id, payload["transaction_id"])
        for cp in chargers
        for action, payload in cp.received
        if action == "RemoteStopTransaction"
    )
    assert len(received) == CHARGERS * SESSIONS and max(received.values()) == 1
