"""nats-server freezes while chargers retry: every frame is stored, every CALL is answered once
and only after its events are stored, and no charger sees a CALLERROR.

Three chargers, raw frames for exact control, each with a 1.5 s CALL timeout:

- ``CP-SAME`` retries its MeterValues byte for byte, under the same uniqueId;
- ``CP-NEWID`` retries it under a new uniqueId each time and waits for the newest one;
- ``CP-EAGER`` behaves like MicroOcpp: it gives up on a StatusNotification without retrying,
  and takes any answer as the answer to the CALL it waits on, so the hub's late answers make
  it send its next CALL while the hub still holds the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import nats
from nats.js import JetStreamContext
from websockets.asyncio.client import ClientConnection

from hub.config import Settings
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from hub.subjects import charger_subject
from schemas.events import FrameRejected, OcppFrame
from tests.integration.helpers import raw_socket, stored_events

# The chargers' own timeout; the gateway's publish timeout is 1 s in tests.
CALL_TIMEOUT = 1.5
BOOT = '[2,"boot","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
START = (
    '[2,"start","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,'
    '"timestamp":"2026-11-22T10:00:00Z"}]'
)
METER = (
    '[2,"{id}","MeterValues",{{"connectorId":1,"transactionId":{tx},"meterValue":'
    '[{{"timestamp":"2026-11-22T10:05:00Z","sampledValue":[{{"value":"500"}}]}}]}}]'
)
STOP = (
    '[2,"{id}","StopTransaction",{{"meterStop":900,"transactionId":{tx},'
    '"timestamp":"2026-11-22T10:06:00Z"}}]'
)
STATUS = '[2,"{id}","StatusNotification",{{"connectorId":1,"errorCode":"NoError","status":"{s}"}}]'


class Wire:
    """A charger on a raw socket that notes every frame it sends and receives, and for each
    answer the stream's last sequence at the moment it arrived."""

    def __init__(self, ws: ClientConnection, js: JetStreamContext) -> None:
        self.ws = ws
        self.js = js
        self.sent: list[str] = []
        self.received: list[tuple[int, str]] = []
        self.stream_seq_at: dict[str, int] = {}
        self.payloads: dict[str, Any] = {}

    async def send(self, frame: str) -> None:
        self.sent.append(json.loads(frame)[1])
        await self.ws.send(frame)

    async def next(self, within: float) -> tuple[int, str] | None:
        """The next frame the hub sends, or None if the charger's timeout runs out first."""
        try:
            async with asyncio.timeout(within):
                data = await self.ws.recv()
        except TimeoutError:
            return None
        message_type, unique_id, payload = json.loads(data)[:3]
        self.payloads.setdefault(unique_id, payload)
        info = await self.js.stream_info("OCPP_EVENTS")
        self.stream_seq_at.setdefault(unique_id, info.state.last_seq)
        self.received.append((message_type, unique_id))
        return message_type, unique_id

    async def call(self, frame: str) -> None:
        """Send and read until the answer to this CALL's uniqueId comes (a strict charger)."""
        await self.send(frame)
        await self.wait_for(json.loads(frame)[1])

    async def wait_for(self, unique_id: str) -> None:
        while (answer := await self.next(20)) is not None and answer[1] != unique_id:
            pass

    async def read_in(self) -> None:
        """Returns once the hub has read everything sent so far: a WebSocket pong comes back
        only after the frames before its ping."""
        await (await self.ws.ping())


async def test_retries_and_early_calls_after_a_stall_get_one_answer_each_and_no_callerror(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    names = ("CP-SAME", "CP-NEWID", "CP-EAGER")
    async with (
        running_gateway(settings, nats_server.url) as gateway,
        contextlib.AsyncExitStack() as stack,
    ):
        client = await nats.connect(nats_server.url)
        stack.push_async_callback(client.close)
        js = client.jetstream()
        wires: dict[str, Wire] = {}
        transactions: dict[str, int] = {}
        for name in names:
            wire = Wire(await stack.enter_async_context(raw_socket(gateway.port, name)), js)
            await wire.call(BOOT)
            await wire.call(START)
            transactions[name] = wire.payloads["start"]["transactionId"]
            wires[name] = wire
        retried = {name: asyncio.Event() for name in names}

        async def retrying(wire: Wire, tx: int, name: str, attempts: list[str]) -> None:
            """A strict charger: it retries MeterValues under ``attempts`` and waits for the
            answer to the last one before it stops the transaction."""
            for attempt in attempts[:-1]:
                await wire.send(METER.format(id=attempt, tx=tx))
                assert await wire.next(CALL_TIMEOUT) is None
            await wire.send(METER.format(id=attempts[-1], tx=tx))
            await wire.read_in()
            retried[name].set()
            await wire.wait_for(attempts[-1])
            await wire.call(STOP.format(id="stop", tx=tx))
            await wire.call(STATUS.format(id="st-fin", s="Finishing"))
            await wire.call('[2,"final","Heartbeat",{}]')

        async def eager(wire: Wire, tx: int) -> None:
            await wire.send(STATUS.format(id="st-1", s="Charging"))
            assert await wire.next(CALL_TIMEOUT) is None  # StatusNotification is not retried
            meter = METER.format(id="mv-1", tx=tx)
            await wire.send(meter)
            assert await wire.next(CALL_TIMEOUT) is None
            await wire.send(meter)
            await wire.read_in()
            retried["CP-EAGER"].set()
            # Whatever comes next is taken as the answer to the CALL it waits on.
            for frame in (
                STOP.format(id="stop-1", tx=tx),
                STATUS.format(id="st-2", s="Finishing"),
                '[2,"final","Heartbeat",{}]',
            ):
                assert await wire.next(20) is not None
                await wire.send(frame)
            await wire.wait_for("final")

        with frozen(nats_server) as resume:
            async with asyncio.TaskGroup() as tasks:
                for name, attempts in (
                    ("CP-SAME", ["mv"] * 3),
                    ("CP-NEWID", ["mv-1", "mv-2", "mv-3"]),
                ):
                    tasks.create_task(retrying(wires[name], transactions[name], name, attempts))
                tasks.create_task(eager(wires["CP-EAGER"], transactions["CP-EAGER"]))
                async with asyncio.timeout(20):
                    for event in retried.values():
                        await event.wait()
                resume()

    boot_and_start = [(3, "boot"), (3, "start")]
    assert wires["CP-SAME"].received == [
        *boot_and_start,
        (3, "mv"),
        (3, "stop"),
        (3, "st-fin"),
        (3, "final"),
    ]
    assert wires["CP-NEWID"].received == [
        *boot_and_start,
        (3, "mv-3"),
        (3, "stop"),
        (3, "st-fin"),
        (3, "final"),
    ]
    assert wires["CP-EAGER"].received == [
        *boot_and_start,
        (3, "st-1"),
        (3, "mv-1"),
        (3, "stop-1"),
        (3, "st-2"),
        (3, "final"),
    ]
    for name, wire in wires.items():
        stored = await stored_events(nats_server.url, charger_subject(name))
        frames = [(seq, e) for seq, e in stored if isinstance(e, OcppFrame)]
        assert not [e for _, e in stored if isinstance(e, FrameRejected)]
        # Every frame the charger sent is in the stream, byte-identical repeats included.
        calls = [e.unique_id for _, e in frames if e.direction == "in"]
        assert calls == wire.sent, name
        answers = {
            e.unique_id: seq
            for seq, e in frames
            if e.direction == "out" and e.message_type == "CALLRESULT"
        }
        assert not [e for _, e in frames if e.message_type == "CALLERROR"]
        # Each answer's event was in the stream before the charger had the answer.
        for _, unique_id in wire.received:
            assert answers[unique_id] <= wire.stream_seq_at[unique_id], (name, unique_id)


@contextlib.contextmanager
def frozen(server: EmbeddedNats) -> Iterator[Callable[[], None]]:
    """nats-server stopped in its tracks with SIGSTOP: its connections stay open and nothing
    is answered until ``resume`` (or the end of the block) sends SIGCONT."""
    process = server._process  # the fixture's child; EmbeddedNats exposes no handle on it
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    stopped = True

    def resume() -> None:
        nonlocal stopped
        if stopped:
            os.kill(process.pid, signal.SIGCONT)
            stopped = False

    try:
        yield resume
    finally:
        resume()
