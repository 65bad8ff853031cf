"""Stopping a gateway drains it: no new chargers, every frame already read is stored and
answered, then each charger is closed with 1001 and reconnects to another gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator

import msgspec
import nats

from hub.commands import send_command
from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from schemas.events import ChargerDisconnected, OcppFrame
from tests.integration.helpers import charger_events, raw_socket
from tests.integration.test_commands import until_held


async def until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    """A count inside the gateway has no event to wait for: poll it."""
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {within} s")


@contextlib.contextmanager
def paused(server: EmbeddedNats) -> Iterator[None]:
    """NATS frozen (SIGSTOP): stores wait for their PubAck until it thaws."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


def unanswered(gateway: Gateway, charge_point_id: str) -> int:
    link = gateway.connections.get(charge_point_id)
    return link.calls.unanswered if link is not None and link.calls is not None else 0


async def refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:  # refused, or reset from the closed listener's backlog
        return True
    writer.close()
    return False


async def test_a_stopping_gateway_answers_what_it_read_then_closes_with_1001(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    async with running_gateway(settings, nats_server.url, close_grace=30.0) as gateway:
        port = gateway.port
        async with raw_socket(port, "CP-DRAIN") as ws:
            await ws.send('[2, "boot", "Heartbeat", {}]')
            assert json.loads(await ws.recv())[:2] == [3, "boot"]
            # An answer goes out just before its frame stops counting as unanswered.
            await until(lambda: unanswered(gateway, "CP-DRAIN") == 0)
            with paused(nats_server):
                # Read by the gateway, its events waiting on a NATS that does not answer.
                await ws.send('[2, "last", "Heartbeat", {}]')
                await until(lambda: unanswered(gateway, "CP-DRAIN") == 1)
                closing = asyncio.create_task(gateway.close(grace=30.0))
                # The drain stops listening before its first await: new chargers go elsewhere.
                await asyncio.sleep(0)
                assert await refuses_connections(port)
            # NATS is back: the frame is stored, answered, and only then the charger told.
            async with asyncio.timeout(20):
                assert json.loads(await ws.recv())[:2] == [3, "last"]
                await ws.wait_closed()
            assert ws.close_code == 1001
            async with asyncio.timeout(20):
                await closing
    events = await charger_events(nats_server.url, "CP-DRAIN")
    frames = [(e.unique_id, e.message_type) for e in events if isinstance(e, OcppFrame)]
    assert frames == [
        ("boot", "CALL"),
        ("boot", "CALLRESULT"),
        ("last", "CALL"),
        ("last", "CALLRESULT"),
    ]
    [closed] = [e for e in events if isinstance(e, ChargerDisconnected)]
    assert closed.close_code == 1001


async def test_every_connected_charger_is_closed_with_1001_within_the_grace(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    chargers = 3
    async with running_gateway(settings, nats_server.url) as gateway:
        async with contextlib.AsyncExitStack() as stack:
            sockets = [
                await stack.enter_async_context(raw_socket(gateway.port, f"CP-{index}"))
                for index in range(chargers)
            ]
            for ws in sockets:
                await ws.send('[2, "hb", "Heartbeat", {}]')
                assert json.loads(await ws.recv())[:2] == [3, "hb"]
            # An answer goes out just before its frame stops counting as unanswered.
            names = [f"CP-{index}" for index in range(chargers)]
            await until(lambda: not any(unanswered(gateway, name) for name in names))
            with paused(nats_server):
                # One charger's frame cannot be stored: the others are not held up by it,
                # and it is closed anyway once half the grace is over.
                await sockets[0].send('[2, "stuck", "Heartbeat", {}]')
                await until(lambda: unanswered(gateway, "CP-0") == 1)
                loop = asyncio.get_running_loop()
                started = loop.time()
                closing = asyncio.create_task(gateway.close(grace=2.0))
                for ws in sockets[1:]:
                    await ws.wait_closed()
                    assert ws.close_code == 1001
                await sockets[0].wait_closed()
                assert sockets[0].close_code == 1001
                async with asyncio.timeout(10):
                    await closing
                assert loop.time() - started < 5.0


async def test_a_draining_gateway_waits_for_the_answer_to_a_command_it_sent(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    client = await nats.connect(nats_server.url)
    try:
        async with running_gateway(settings, nats_server.url, close_grace=30.0) as gateway:
            port = gateway.port
            async with raw_socket(port, "CP-CMD") as ws:
                await until_held(client, "CP-CMD")
                command = asyncio.create_task(
                    send_command(client, "CP-CMD", "Reset", b'{"type": "Soft"}', timeout_s=20)
                )
                sent = json.loads(await ws.recv())
                assert sent[:3] == [2, sent[1], "Reset"]
                closing = asyncio.create_task(gateway.close(grace=30.0))
                await asyncio.sleep(0)
                assert await refuses_connections(port)
                # The charger is still connected: its answer reaches the operator.
                await ws.send(json.dumps([3, sent[1], {"status": "Accepted"}]))
                async with asyncio.timeout(20):
                    reply = await command
                    await ws.wait_closed()
                    await closing
                assert reply.status == "answered"
                assert msgspec.json.decode(reply.payload) == {"status": "Accepted"}
                assert ws.close_code == 1001
    finally:
        await client.close()
