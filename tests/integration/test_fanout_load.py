"""The fan-out under load: a slow client, a thousand subscribers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from ocpp.v16 import call

from hub.config import Settings
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from tests.integration.fanout_helpers import next_message, token, ui_socket, with_fanout
from tests.integration.helpers import ocpp_charger
from tools.simulator import raise_nofile_limit


@contextlib.asynccontextmanager
async def stalled_socket(port: int, path: str) -> AsyncIterator[socket.socket]:
    """A WebSocket client that completes the handshake and then never reads: its tiny
    receive buffer fills at once, as a phone on a bad network would."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    try:
        yield sock
    finally:
        sock.close()


async def read_frames(sock: socket.socket, within: float) -> list[tuple[int, bytes]]:
    """Every frame the server sent, until it closed: (opcode, payload)."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(within):
        while chunk := await loop.sock_recv(sock, 1 << 20):
            data += chunk
    frames, position = [], 0
    while position + 2 <= len(data):
        opcode, length = data[position] & 0x0F, data[position + 1] & 0x7F
        position += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, position)
            position += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, position)
            position += 8
        frames.append((opcode, bytes(data[position : position + length])))
        position += length
    return frames


async def test_a_slow_client_neither_delays_a_fast_one_nor_grows_without_bound(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings
) -> None:
    transfers = 150
    blob = "x" * 40_000  # ~6 MB in all: far more than the stalled client's buffers hold
    async with running_fanout(
        with_fanout(settings, client_queue=16, compress=False), nats_server.url
    ) as port:
        path = f"/ws/chargers/CP-1?token={token()}"
        async with stalled_socket(port, path) as slow:
            async with ui_socket(
                port, "/ws/chargers/CP-1", token_value=token(), max_msg_size=1 << 20
            ) as fast:
                assert (await next_message(fast))["type"] == "snapshot"
                sent_at: dict[int, float] = {}
                lags: list[float] = []

                async def read_fast() -> None:
                    while len(lags) < transfers:
                        message = await next_message(fast)
                        if message["type"] == "data_transfer":
                            index = int(message["transfer"]["messageId"])
                            lags.append(time.perf_counter() - sent_at[index])

                async with ocpp_charger(gateway.port, "CP-1", max_size=1 << 20) as cp:
                    reader = asyncio.create_task(read_fast())
                    for index in range(transfers):
                        sent_at[index] = time.perf_counter()
                        await cp.call(
                            call.DataTransfer(vendor_id="bulk", message_id=str(index), data=blob)
                        )
                    async with asyncio.timeout(20):
                        await reader
            frames = await read_frames(slow, within=20)
    assert len(lags) == transfers
    # Generous for a shared CI core; a fast client tied to the stalled one would never finish.
    assert max(lags) < 2.0, max(lags)
    opcode, payload = frames[-1]
    assert opcode == 0x8  # the server closed the slow client...
    code = struct.unpack("!H", payload[:2])[0]
    assert code == 4000 and b"resume with since=" in payload
    # ...having sent it far fewer messages than the fast client got: its queue was bounded.
    assert sum(1 for op, _ in frames if op == 0x1) < transfers


async def test_a_thousand_subscribers_all_get_the_message(
    gateway: Gateway, fanout_port: int
) -> None:
    raise_nofile_limit()
    subscribers = 1000
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"http://127.0.0.1:{fanout_port}/ws/chargers/CP-1"
        semaphore = asyncio.Semaphore(100)

        async def open_one(index: int) -> aiohttp.ClientWebSocketResponse:
            # Half negotiate permessage-deflate (sent through their queues), half do not (the
            # shared frame written straight to their sockets): both must get everything.
            async with semaphore:
                ws = await session.ws_connect(
                    url, params={"token": token(["CP-1"])}, compress=15 if index % 2 else 0
                )
                assert (await next_message(ws))["type"] == "snapshot"
                return ws

        sockets = await asyncio.gather(*(open_one(index) for index in range(subscribers)))
        try:
            async with ocpp_charger(gateway.port, "CP-1") as cp:
                await cp.call(
                    call.StatusNotification(connector_id=1, error_code="NoError", status="Faulted")
                )

                async def status_of(ws: aiohttp.ClientWebSocketResponse) -> str:
                    while (message := await next_message(ws))["type"] != "status":
                        pass
                    return str(message["status"])

                statuses = await asyncio.gather(*(status_of(ws) for ws in sockets))
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))
    assert statuses == ["Faulted"] * subscribers


@pytest.fixture
async def fanout_port(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[int]:
    async with running_fanout(with_fanout(settings), nats_server.url) as port:
        yield port
