"""One JetStream stream, read in order over a raw NATS connection of its own (``hub replay``).

nats-py spends about 21 µs of CPU on every message it delivers (header parsing into a dict,
a ``Msg`` object, a queue and a task per subscription), which a bulk read pays for nothing
and which was most of replay's reading. So only the control plane stays on nats-py: the
ephemeral consumer is created and deleted through the hub's connection. The data plane is
a second TCP connection to the same server that speaks the NATS text protocol itself: pull
requests go out, and ``MSG``/``HMSG`` frames are cut out of one buffer by their byte counts,
about 5 µs a message.

As in ``hub.pull``, a pull request is outstanding while there is room, so the stream
keeps flowing while the caller folds, and at most ``batch_size`` messages wait in the
buffer. A disconnect loses and doubles nothing: messages are buffered only once their whole
frame has arrived, the reader knows the next seq it has not buffered, and it re-creates the
consumer from there on a new connection, with backoff, for as long as the outage lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Final, NamedTuple
from urllib.parse import ParseResult

import msgspec
import nats.errors
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hub.bus import Connection
from hub.pull import delivered, delivered_seq
from hub.subjects import EVENTS_WILDCARD

log = structlog.get_logger("projections.stream_reader")

_DEFAULT_PORT: Final = 4222
# How long an idle request waits on the server before it is renewed.
_REQUEST_EXPIRES_S: Final = 1.0
# A live server ends every request within its expiry; silent for longer (plus a round trip
# and a busy event loop) it is taken for gone, whatever TCP says.
_SILENCE_S: Final = 3.0
# After a refused request (409: too many waiting, leadership change...): not a tight loop.
_REFUSED_PAUSE_S: Final = 0.1
_FIRST_BACKOFF_S: Final = 0.25
_MAX_BACKOFF_S: Final = 5.0
_HANDSHAKE_S: Final = 5.0
# Large reads spread the cost of one over hundreds of messages; not larger, because the
# messages of one read are parsed in one go on a loop a running hub's gateway shares.
_READ_SIZE: Final = 1 << 18
# A control line the server sends is far shorter; past this the stream is not NATS.
_MAX_CONTROL_LINE: Final = 1 << 16
# Statuses that end a request because the consumer had nothing (more) to deliver.
_NOTHING_LEFT: Final = frozenset({b"404", b"408"})
# An idle heartbeat: the server is alive and the request goes on.
_HEARTBEAT: Final = b"100"
# No responders: the consumer is gone (deleted, or lost with a server's memory).
_NO_CONSUMER: Final = b"503"
# Byte 8 of a header block: "NATS/1.0\r\n" for a message, "NATS/1.0 408 ..." for a status.
_STATUS_MARK: Final = ord(" ")
# What ends a connection and starts an outage; anything else is a bug and reaches the caller.
_DISCONNECTS: Final = (OSError, EOFError, nats.errors.Error, msgspec.DecodeError)


class _Info(msgspec.Struct):
    tls_required: bool = False


class _Connect(msgspec.Struct, frozen=True, kw_only=True):
    verbose: bool = False
    pedantic: bool = False
    tls_required: bool
    headers: bool = True
    no_responders: bool = True
    protocol: int = 1
    lang: str = "python"
    name: str = "hub-stream-reader"
    user: str | msgspec.UnsetType = msgspec.UNSET
    password: str | msgspec.UnsetType = msgspec.field(default=msgspec.UNSET, name="pass")
    auth_token: str | msgspec.UnsetType = msgspec.UNSET


class _PullRequest(msgspec.Struct, frozen=True):
    batch: int
    expires: int  # ns


_encoder: Final = msgspec.json.Encoder()
_info_decoder: Final = msgspec.json.Decoder(_Info)


class ServerRefused(ConnectionError):
    """The server sent ``-ERR`` (bad credentials, slow consumer...): it closes the connection."""


class _Server(NamedTuple):
    host: str
    port: int
    tls: bool
    connect: _Connect


def _server(url: ParseResult) -> _Server:
    """Where the hub's connection is, and the credentials it used (from the URL only)."""
    if url.scheme not in ("nats", "tls"):
        raise ValueError(f"stream reader: {url.scheme}:// is not supported (nats:// or tls://)")
    tls = url.scheme == "tls"
    # As nats-py sends them (not percent-decoded): those are the ones the server accepted.
    user, password = url.username, url.password
    if user is not None and password is not None:
        connect = _Connect(tls_required=tls, user=user, password=password)
    elif user is not None:
        # nats://token@host: a lone user part is a token, as nats-py reads it.
        connect = _Connect(tls_required=tls, auth_token=user)
    else:
        connect = _Connect(tls_required=tls)
    return _Server(url.hostname or "127.0.0.1", url.port or _DEFAULT_PORT, tls, connect)


async def _handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: _Server
) -> None:
    line = await reader.readline()
    if not line.startswith(b"INFO "):
        raise ConnectionError("stream reader: no INFO from the server")
    tls = server.tls or _info_decoder.decode(line[5:]).tls_required
    if tls:
        await writer.start_tls(ssl.create_default_context(), server_hostname=server.host)
    connect = msgspec.structs.replace(server.connect, tls_required=tls)
    # The PONG says CONNECT was accepted; a refused one gets -ERR instead.
    writer.write(b"CONNECT " + _encoder.encode(connect) + b"\r\nPING\r\n")
    await writer.drain()
    while (line := await reader.readline()) != b"PONG\r\n":
        if not line:
            raise ConnectionError("stream reader: closed during the handshake")
        if line.startswith(b"-ERR"):
            raise ServerRefused(line[5:].strip().decode(errors="replace"))


class _Session(NamedTuple):
    """One data-plane connection and the consumer it reads."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    consumer: str
    # "PUB <request subject> <inbox> ": a pull request is this, its size and its JSON.
    pull_prefix: bytes


class StreamReader:
    """Every message of one stream from ``start_seq`` on, each once and in order."""

    def __init__(
        self, connection: Connection, stream: str, *, batch_size: int, start_seq: int = 1
    ) -> None:
        self.connection = connection
        self.stream = stream
        self.batch_size = batch_size
        self._url: ParseResult | None = None
        self._task: asyncio.Task[None] | None = None
        self._consumer = ""
        self._buffer: list[tuple[int, bytes]] = []
        # The seq after the last buffered message: where a new consumer starts.
        self._next_seq = start_seq
        # What the consumer still held after the last message; -1 until one arrived.
        self._pending = -1
        # Messages the outstanding request may still bring, and the status that ended it.
        self._expected = 0
        self._status = b""
        self._request_over = asyncio.Event()
        self._asked_at = 0.0
        self._heard_at = 0.0
        self._want = 1
        self._arrived = asyncio.Event()
        self._taken = asyncio.Event()

    async def start(self) -> None:
        """Connects once; a failure here (a refused login, say) is the caller's to see."""
        self._url = self.connection.client.connected_url
        if self._url is None:
            raise ConnectionError("stream reader: the NATS connection is not connected")
        session = await self._connect()
        self._task = asyncio.create_task(self._run(session), name="projections-stream-reader")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._delete_consumer()

    async def take(self, size: int, *, wait_s: float) -> list[tuple[int, bytes]]:
        """Up to ``size`` (at most ``batch_size``) messages: at once when that many are
        buffered or the consumer had nothing more after the last one, else what has come
        within ``wait_s``."""
        self._raise_if_stopped()
        self._want = size
        if not self._ready():
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._arrived.wait()
            self._raise_if_stopped()
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        self._taken.set()
        return taken

    @property
    def drained(self) -> bool:
        """Nothing buffered, and the consumer said it had nothing more: every message it
        could deliver was taken."""
        return not self._buffer and self._pending == 0

    def _ready(self) -> bool:
        return len(self._buffer) >= self._want or (bool(self._buffer) and self._pending == 0)

    def _raise_if_stopped(self) -> None:
        if self._task is None:
            raise RuntimeError("stream reader: not started")
        if self._task.done():
            # The reader died of a bug: the caller must not wait forever for it.
            self._task.result()

    async def _run(self, session: _Session) -> None:
        try:
            while True:
                error = await self._serve(session)
                session.writer.close()
                log.warning(
                    "projections.stream_reader_disconnected",
                    stream=self.stream,
                    consumer=session.consumer,
                    next_seq=self._next_seq,
                    error=error,
                )
                session = await self._reconnect()
                log.info(
                    "projections.stream_reader_reconnected",
                    stream=self.stream,
                    consumer=session.consumer,
                    next_seq=self._next_seq,
                )
        finally:
            session.writer.close()

    async def _reconnect(self) -> _Session:
        """A new session from the next unread seq, however long the outage lasts."""
        backoff = _FIRST_BACKOFF_S
        while True:
            await asyncio.sleep(backoff)
            with contextlib.suppress(*_DISCONNECTS):
                return await self._connect()
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _serve(self, session: _Session) -> str:
        """Reads and pulls until the connection fails; what failed."""
        self._heard_at = time.monotonic()
        self._expected = 0
        failure = "?"
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._receive(session))
                tasks.create_task(self._keep_pulling(session))
        except* _DISCONNECTS as outage:
            error = outage.exceptions[0]
            failure = str(error) or type(error).__name__
        return failure

    async def _connect(self) -> _Session:
        # A server that is down fails the socket at once, before a JetStream request waits
        # out its timeout.
        reader, writer = await self._open()
        try:
            await self._delete_consumer()
            info = await self.connection.js.add_consumer(
                self.stream,
                ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=self._next_seq,
                    ack_policy=AckPolicy.NONE,
                    filter_subject=EVENTS_WILDCARD,
                    inactive_threshold=60.0,
                    mem_storage=True,
                ),
            )
            self._consumer = info.name
            inbox = self.connection.client.new_inbox()
            # Sid 1: the connection's only subscription.
            writer.write(f"SUB {inbox} 1\r\n".encode())
            await writer.drain()
        except BaseException:
            writer.close()
            raise
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{info.name}"
        return _Session(reader, writer, info.name, f"PUB {subject} {inbox} ".encode())

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection past INFO, TLS and CONNECT, which the server has accepted."""
        # The server may have changed since start (a cluster); the last known one otherwise.
        self._url = self.connection.client.connected_url or self._url
        assert self._url is not None
        server = _server(self._url)
        # Also a server that accepts nothing (a dropped route) fails within the time limit.
        async with asyncio.timeout(_HANDSHAKE_S):
            reader, writer = await asyncio.open_connection(
                server.host, server.port, limit=_READ_SIZE
            )
            try:
                await _handshake(reader, writer, server)
            except BaseException:
                writer.close()
                raise
        return reader, writer

    async def _delete_consumer(self) -> None:
        consumer, self._consumer = self._consumer, ""
        if consumer:
            # Gone with its server after a restart, else removed by its inactive_threshold.
            with contextlib.suppress(Exception):
                await self.connection.js.delete_consumer(self.stream, consumer)

    async def _keep_pulling(self, session: _Session) -> None:
        while True:
            room = await self._room()
            self._expected = room
            self._status = b""
            self._request_over.clear()
            request = _encoder.encode(_PullRequest(room, int(_REQUEST_EXPIRES_S * 1e9)))
            session.writer.write(b"%b%d\r\n%b\r\n" % (session.pull_prefix, len(request), request))
            await session.writer.drain()
            self._asked_at = time.monotonic()
            await self._answered()
            if self._status and self._status not in _NOTHING_LEFT:
                await asyncio.sleep(_REFUSED_PAUSE_S)

    async def _room(self) -> int:
        """How many messages the buffer can take, once it can take any (the caller took)."""
        while (room := self.batch_size - len(self._buffer)) <= 0:
            self._taken.clear()
            await self._taken.wait()
        return room

    async def _answered(self) -> None:
        """Until the outstanding request is over."""
        while not self._request_over.is_set():
            silent = time.monotonic() - max(self._asked_at, self._heard_at)
            if silent >= _SILENCE_S:
                raise ConnectionError(f"stream reader: no answer for {silent:.1f} s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_SILENCE_S - silent):
                    await self._request_over.wait()

    async def _receive(self, session: _Session) -> None:
        data = bytearray()
        while chunk := await session.reader.read(_READ_SIZE):
            self._heard_at = time.monotonic()
            data += chunk
            try:
                # A frame cut by the read stays for the next one; a disconnect drops it.
                del data[: self._handle_frames(data, session.writer)]
            finally:
                # Also when a frame ended the connection: what came before it is the caller's.
                if self._ready():
                    self._arrived.set()
            if len(data) > _MAX_CONTROL_LINE and data.find(b"\r\n") < 0:
                raise ConnectionError("stream reader: not the NATS protocol")
        raise ConnectionError("stream reader: closed by the server")

    def _handle_frames(self, data: bytearray, writer: asyncio.StreamWriter) -> int:
        """Handles every whole frame at the start of ``data``; how many bytes they took."""
        end = len(data)
        pos = 0
        # Looked up once, and the seqs kept in locals until the end: this loop runs for
        # every message of a replay, on the loop a running hub's gateway shares.
        find, startswith, keep = data.find, data.startswith, self._buffer.append
        next_seq = self._next_seq
        # The ack subject of the last message: what the consumer still holds is read from
        # it once, not from each message's.
        last = b""
        messages = 0
        try:
            # Slices of a memoryview copy once, into the bytes the caller keeps.
            with memoryview(data) as view:
                # A control line ends with "\r\n": a one-byte search is the faster, and
                # int() takes the "\r" that ends the line's last number.
                while (eol := find(b"\n", pos)) >= 0:
                    hmsg = startswith(b"HMSG ", pos)
                    if hmsg or startswith(b"MSG ", pos):
                        # HMSG <subject> <sid> <reply> <header bytes> <total bytes>, or
                        # MSG <subject> <sid> <reply> <bytes> for a message without headers:
                        # split from the end, the subject's tokens left whole, as bytes (a
                        # bytearray's pieces cost two allocations each).
                        if hmsg:
                            _, reply, head, size = view[pos:eol].tobytes().rsplit(b" ", 3)
                        else:
                            _, reply, size = view[pos:eol].tobytes().rsplit(b" ", 2)
                        body = eol + 1
                        after = body + int(size)
                        if after + 2 > end:
                            break
                        if hmsg and data[body + 8] == _STATUS_MARK:
                            if last:
                                self._pending, last = delivered(last).pending, b""
                            self._on_status(view[body + 9 : body + 12].tobytes())
                        else:
                            # The stream seq alone: the pending count is read of the
                            # last message's.
                            seq = delivered_seq(reply)
                            last = reply
                            if seq >= next_seq:
                                start = body + int(head) if hmsg else body
                                keep((seq, view[start:after].tobytes()))
                                next_seq = seq + 1
                            messages += 1
                        pos = after + 2
                    elif startswith(b"PING", pos):
                        writer.write(b"PONG\r\n")
                        pos = eol + 1
                    elif startswith(b"-ERR", pos):
                        raise ServerRefused(
                            bytes(view[pos + 4 : eol]).strip().decode(errors="replace")
                        )
                    else:
                        # +OK, PONG, INFO (cluster changes): nothing for a reader to do.
                        pos = eol + 1
        finally:
            # Also when a frame ended the connection: what came before it was buffered.
            self._next_seq = next_seq
            if last:
                self._pending = delivered(last).pending
        if messages:
            self._expected -= messages
            if self._expected <= 0:
                self._request_over.set()
        return pos

    def _on_status(self, code: bytes) -> None:
        if code == _HEARTBEAT:
            return
        if code == _NO_CONSUMER:
            # Asking again would be refused forever: a new consumer, on a new connection.
            raise ConnectionError("stream reader: the consumer is gone")
        # 404 nothing stored, 408 expired, 409 refused...: each ends the request it answers.
        if code in _NOTHING_LEFT:
            self._pending = 0
        self._status = code
        self._expected = 0
        self._request_over.set()
