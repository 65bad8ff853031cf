"""The raw-protocol stream reader against a real nats-server: the same messages as nats-py,
each once and in order across a server restart, with credentials and over TLS; and the
frames of a read cut at any byte."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
import trustme
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.projections import synthetic_stream
from hub.bus import Connection, connect
from hub.config import Settings
from hub.nats_server import EmbeddedNats
from hub.pull import Puller
from hub.subjects import EVENTS_WILDCARD
from projections.stream_reader import StreamReader
from schemas.events import Event, encode_event
from tests.projections.contract import store_events

STREAM = "OCPP_EVENTS"
BATCH = 1000


def stored(events: list[Event]) -> list[tuple[int, bytes]]:
    return [(seq, encode_event(event)) for seq, event in enumerate(events, 1)]


@pytest.fixture
async def connection(nats_server: EmbeddedNats) -> AsyncIterator[Connection]:
    connection = await connect(nats_server.url, name="test-stream-reader")
    yield connection
    await connection.close()


async def read_all(reader: StreamReader, total: int) -> list[tuple[int, bytes]]:
    read: list[tuple[int, bytes]] = []
    while len(read) < total:
        batch = await reader.take(BATCH, wait_s=10.0)
        assert batch, f"nothing more after {len(read)} of {total}"
        read += batch
    return read


async def read_with_puller(connection: Connection, total: int) -> list[tuple[int, bytes]]:
    info = await connection.js.add_consumer(
        STREAM,
        ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            filter_subject=EVENTS_WILDCARD,
            mem_storage=True,
        ),
    )
    puller = Puller(connection.client, STREAM, info.name, BATCH)
    await puller.start()
    read: list[tuple[int, bytes]] = []
    try:
        while len(read) < total:
            batch = await puller.next_batch(BATCH, linger_s=0.1, wait_s=10.0)
            assert batch.messages
            read += batch.messages
    finally:
        await puller.stop()
        await connection.js.delete_consumer(STREAM, info.name)
    return read


async def test_reads_what_nats_py_reads_in_order(
    settings: Settings, nats_server: EmbeddedNats, connection: Connection
) -> None:
    events = synthetic_stream(20_000)
    await store_events(settings, nats_server.url, events)
    reader = StreamReader(connection, STREAM, batch_size=BATCH)
    await reader.start()
    try:
        read = await read_all(reader, len(events))
        # Caught up: nothing more, and no second copy of anything.
        assert await reader.take(BATCH, wait_s=1.5) == []
    finally:
        await reader.close()
    # The ephemeral consumer is gone with the reader.
    assert await connection.js.consumers_info(STREAM) == []
    assert read == await read_with_puller(connection, len(events))
    assert read == stored(events)


async def test_starts_at_a_given_seq(
    settings: Settings, nats_server: EmbeddedNats, connection: Connection
) -> None:
    events = synthetic_stream(3000)
    await store_events(settings, nats_server.url, events)
    reader = StreamReader(connection, STREAM, batch_size=BATCH, start_seq=2501)
    await reader.start()
    try:
        assert await read_all(reader, 500) == stored(events)[2500:]
    finally:
        await reader.close()


async def test_server_restart_mid_read_loses_and_doubles_nothing(
    tmp_path: Path, settings: Settings
) -> None:
    store_dir = tmp_path / "restarting-nats"
    server = EmbeddedNats(store_dir)
    await server.start()
    events = synthetic_stream(20_000)
    try:
        await store_events(settings, server.url, events)
        connection = await connect(server.url, name="test-stream-reader")
        reader = StreamReader(connection, STREAM, batch_size=BATCH)
        try:
            await reader.start()
            read = [message for _ in range(3) for message in await reader.take(BATCH, wait_s=10)]
            await server.stop()
            # Whatever was buffered before the outage is still handed over, once.
            read += await reader.take(BATCH, wait_s=1.0)
            assert len(read) < len(events) - BATCH
            server = EmbeddedNats(store_dir, port=server.port)
            await server.start()
            read += await read_all(reader, len(events) - len(read))
            assert await reader.take(BATCH, wait_s=1.5) == []
        finally:
            await reader.close()
            await connection.close()
    finally:
        await server.stop()
    assert [seq for seq, _ in read] == list(range(1, len(events) + 1))
    assert read == stored(events)


async def read_everything_through(url: str, settings: Settings) -> None:
    events = synthetic_stream(2000)
    await store_events(settings, url, events)
    connection = await connect(url, name="test-stream-reader")
    reader = StreamReader(connection, STREAM, batch_size=BATCH)
    try:
        await reader.start()
        assert await read_all(reader, len(events)) == stored(events)
    finally:
        await reader.close()
        await connection.close()


async def test_reads_a_server_that_requires_credentials(tmp_path: Path, settings: Settings) -> None:
    extra = ("--user", "replay", "--pass", "s3cret")
    async with EmbeddedNats(tmp_path / "auth-nats", extra_args=extra) as server:
        # The reader's CONNECT carries the credentials of the hub's URL, or is refused.
        await read_everything_through(f"nats://replay:s3cret@{server.host}:{server.port}", settings)


async def test_reads_over_tls(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    authority.cert_pem.write_to_path(str(ca_file))
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    # The reader, like nats-py for a tls:// URL, trusts the default store: this CA, here.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    assert ssl.create_default_context().get_ca_certs()
    extra = ("--tls", "--tlscert", str(cert_file), "--tlskey", str(key_file))
    async with EmbeddedNats(tmp_path / "tls-nats", extra_args=extra) as server:
        await read_everything_through(f"tls://{server.host}:{server.port}", settings)


async def test_reads_messages_stored_without_headers(
    nats_server: EmbeddedNats, settings: Settings, connection: Connection
) -> None:
    await store_events(settings, nats_server.url, synthetic_stream(10))
    # Not the hub's way (it always sets Nats-Msg-Id), but the server then sends MSG, not HMSG.
    for n in range(5):
        await connection.js.publish(f"ev.clock.tick.{n}", b"plain %d" % n)
    reader = StreamReader(connection, STREAM, batch_size=BATCH)
    await reader.start()
    try:
        read = await read_all(reader, 15)
    finally:
        await reader.close()
    assert read[10:] == [(11 + n, b"plain %d" % n) for n in range(5)]


class _Writer:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _message(seq: int, pending: int, body: bytes, *, v2: bool = False) -> bytes:
    head = b"NATS/1.0\r\nNats-Msg-Id: m\r\n\r\n"
    # The ack subject as a server sends it, or in its v2 form (domain, account hash and a
    # token after the pending count).
    reply = b"$JS.ACK.%s.cons.1.%d.%d.1764691234567890123.%d" % (b"OCPP_EVENTS", seq, seq, pending)
    if v2:
        reply = reply.replace(b"$JS.ACK.", b"$JS.ACK.dom.hash.") + b".tok"
    size = len(head) + len(body)
    return b"HMSG ev.cp.X.in 1 %s %d %d\r\n%s%s\r\n" % (reply, len(head), size, head, body)


def test_frames_cut_at_any_byte_are_each_read_once_and_whole() -> None:
    """Whatever byte a read of the socket ends on: every message once, in order, its body
    exactly (also one holding CRLF, or none at all); a heartbeat or a PING between changes
    nothing but the PONG; what the consumer still holds is the last message's count."""
    status = b"NATS/1.0 100 Idle Heartbeat\r\n\r\n"
    heartbeat = b"HMSG _INBOX.x 1 %d %d\r\n%s\r\n" % (len(status), len(status), status)
    bodies = [b'{"a":1}', b"x\r\ny", b"", b"\xff" * 300]
    wire = (
        _message(7, 3, bodies[0])
        + heartbeat
        + _message(8, 2, bodies[1], v2=True)
        + b"PING\r\n"
        + _message(9, 1, bodies[2])
        + b"MSG ev.cp.X.in 1 $JS.ACK.OCPP_EVENTS.cons.1.10.10.17.0 300\r\n"
        + bodies[3]
        + b"\r\n"
    )
    for cut in range(1, len(wire)):
        reader = StreamReader(cast(Connection, None), STREAM, batch_size=10, start_seq=7)
        reader._expected = 10
        writer = _Writer()
        data = bytearray()
        for chunk in (wire[:cut], wire[cut:]):
            data += chunk
            del data[: reader._handle_frames(data, cast(asyncio.StreamWriter, writer))]
        assert reader._buffer == list(zip(range(7, 11), bodies, strict=True)), cut
        assert (bytes(data), writer.written) == (b"", [b"PONG\r\n"])
        assert reader._pending == 0 and reader._expected == 6
