"""NATS plumbing: the connection, the event stream, and storing events with at-most-once effect."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final, NamedTuple

import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError
from nats.protocol.parser import PERMISSIONS_ERR as _PERMISSIONS_ERR

from hub.config import Settings, StreamSettings
from hub.metrics import Histogram
from hub.nats_server import redacted, servers
from hub.subjects import EVENTS_WILDCARD, subject_for
from schemas.events import Event, encode_event

log = structlog.get_logger("hub.bus")

_MSG_ID: Final = "Nats-Msg-Id"
_STATUS: Final = "Status"
# nats-server's default max_control_line: a PUB line longer than this is a protocol error.
MAX_CONTROL_LINE: Final = 4096
# Room in a PUB line for the verb, the sizes and the spaces between them.
_CONTROL_OVERHEAD: Final = 64
# Room in a message for the header block around the Nats-Msg-Id line.
_HEADER_OVERHEAD: Final = 64
# JetStream's PubAck error: the message exceeds the stream's max_msg_size.
_JS_MESSAGE_TOO_LARGE: Final = 10054


# A direct subscription's handler: (subject, reply, data, status), status being the code of
# a status message the server sent ("404", "408", "503", ...), "" for any other message.
Handler = Callable[[str, str, bytes, str], None]
# A header block starts "NATS/1.0"; a status message's goes on " 503", any other's "\r\n".
_HEADER_LINE: Final = len(b"NATS/1.0")
_STATUS_CODE: Final = slice(_HEADER_LINE + 1, _HEADER_LINE + 4)


def status_of(headers: bytes | None) -> str:
    """The status code a message's raw header block carries, "" if it carries none."""
    if not headers or headers[_HEADER_LINE : _HEADER_LINE + 1] != b" ":
        return ""
    code = headers[_STATUS_CODE]
    return code.decode() if code.isdigit() else ""


class _Client(NatsClient):
    """nats-py closes a connection for good on any ``-ERR`` from the server, reconnects or
    not; the server itself has by then closed the socket after a protocol error. One
    charger's unstorable frame must not cut every charger off NATS, so this client
    reconnects instead, as it does when the socket breaks, unless the error came while
    connecting (bad credentials must fail the connect).

    It also hands the messages of a ``subscribe_direct`` subscription to their handler as
    they are parsed: nats-py parses each message's headers into a dict (about 5 µs for a
    stream event's one ``Nats-Msg-Id``), makes a ``Msg`` of it and queues it for a task of
    the subscription's own, a hop through the event loop per message: most of what taking
    one in costs. Those are the hot ones: every event a fold pulls, two PubAcks per frame a
    gateway stores.
    """

    def __init__(self) -> None:
        super().__init__()
        self._direct: dict[int, Handler] = {}

    async def subscribe_direct(self, subject: str, handler: Handler) -> Subscription:
        """Subscribe ``handler``, called in the read loop for each message in order; it must
        not block (nor raise: an error is logged and costs that message alone)."""
        subscription = await self.subscribe(subject)
        self._direct[subscription._id] = handler
        return subscription

    def _remove_sub(self, sid: int, max_msgs: int = 0) -> None:
        super()._remove_sub(sid, max_msgs)
        self._direct.pop(sid, None)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        handler = self._direct.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        try:
            handler(subject.decode(), reply.decode(), data, status_of(headers))
        except Exception as error:  # one message's bug must not break the read loop
            log.error("nats.handler_failed", subject=subject.decode(), error=repr(error))

    async def _process_err(self, err_msg: str) -> None:
        if self.is_connecting or self.is_closed or _PERMISSIONS_ERR in err_msg:
            await super()._process_err(err_msg)
            return
        error = nats.errors.Error(f"nats: {err_msg.strip(chr(39))}")
        await self._error_cb(error)
        await self._process_op_err(error)


async def subscribe_direct(client: NatsClient, subject: str, handler: Handler) -> Subscription:
    """``handler`` for every message on ``subject``, called as the message is read
    (``_Client.subscribe_direct``); through nats-py's own queue on another client."""
    if isinstance(client, _Client):
        return await client.subscribe_direct(subject, handler)

    async def queued(msg: Msg) -> None:
        handler(msg.subject, msg.reply, msg.data, (msg.headers or {}).get(_STATUS, ""))

    return await client.subscribe(subject, cb=queued, pending_msgs_limit=1_000_000)


class Connection:
    """A NATS connection that never gives up reconnecting, and knows whether it is up."""

    def __init__(self, client: NatsClient, connected: asyncio.Event) -> None:
        self.client = client
        self.js: JetStreamContext = client.jetstream()
        self.connected = connected
        self.closing = False

    async def close(self, grace: float = 5.0) -> None:
        """Drain what is in flight, but never hang a shutdown on a NATS that is gone."""
        self.closing = True
        if self.client.is_connected:
            with contextlib.suppress(TimeoutError, nats.errors.Error):
                async with asyncio.timeout(grace):
                    await self.client.drain()
        if not self.client.is_closed:
            with contextlib.suppress(OSError, nats.errors.Error):
                await self.client.close()


async def connect(url: str, *, name: str) -> Connection:
    connected = asyncio.Event()
    connection: Connection | None = None
    last_error = ""
    shown = redacted(url)

    async def on_disconnect() -> None:
        connected.clear()
        if connection is None or not connection.closing:
            log.warning("nats.disconnected", url=shown)

    async def on_reconnect() -> None:
        nonlocal last_error
        last_error = ""
        connected.set()
        log.info("nats.reconnected", url=shown)

    async def on_error(error: Exception) -> None:
        # The client reports every failed reconnect attempt, several a second during an
        # outage; one line per distinct error keeps the log readable.
        nonlocal last_error
        if str(error) != last_error:
            last_error = str(error)
            log.warning("nats.error", error=last_error, kind=type(error).__name__)

    backoff = 0.25
    while True:
        try:
            client = _Client()
            await client.connect(
                servers(url),
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,  # type: ignore[arg-type]  # seconds; typed int, used as float
                allow_reconnect=True,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                error_cb=on_error,
                # Publishes made while disconnected wait here and go out on reconnect; the
                # store's retries are deduplicated, so a copy flushed late is harmless.
                pending_size=8 * 1024 * 1024,
            )
            break
        except (OSError, nats.errors.NoServersError, nats.errors.TimeoutError) as error:
            # A NATS that is not up yet is waited for, as one that goes away later is.
            log.warning("nats.unreachable", url=shown, error=str(error), retry_in_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    connected.set()
    connection = Connection(client, connected)
    return connection


def stream_config(settings: StreamSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.name,
        subjects=[EVENTS_WILDCARD],
        storage=StorageType.FILE if settings.storage == "file" else StorageType.MEMORY,
        num_replicas=settings.replicas,
        max_age=settings.max_age_s or None,
        max_bytes=settings.max_bytes,
        duplicate_window=settings.duplicate_window_s,
        max_msg_size=settings.max_msg_size,
        discard=DiscardPolicy.OLD,
        allow_direct=True,
    )


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> None:
    """Create the event stream, or bring an existing one to the configured limits."""
    config = stream_config(settings)
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
    log.info("stream.ready", stream=settings.name, replicas=settings.replicas)


class StoreError(Exception):
    """JetStream refused an event (as opposed to not answering); retried like an outage."""


class EventRefused(Exception):
    """NATS would refuse this event however often it is sent (it exceeds the server's or the
    stream's size limits); it is not sent, or not retried, so the refusal costs one event."""


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_ack_decoder: Final = msgspec.json.Decoder(_PubAck)


class Stored(NamedTuple):
    seq: int
    duplicate: bool


class EventStore:
    """Stores events on JetStream and returns only once every one of them is acknowledged.

    Each event's ``id`` is its ``Nats-Msg-Id``, so the retries this class makes while NATS is
    down or slow never store anything twice. Events of one call are sent back to back on one
    connection, which keeps their order, and their acks are awaited together.
    """

    def __init__(self, connection: Connection, *, timeout: float = 2.0) -> None:
        self._connection = connection
        self._timeout = timeout
        self._inbox = f"_HUB.acks.{secrets.token_hex(8)}"
        self._pending: dict[str, asyncio.Future[_PubAck]] = {}
        self._counter = 0
        self._stalled_batches = 0
        self.retries = 0
        # For the metrics: how long each batch waited for its acks, and for how long in all
        # some batch waited for NATS to come back.
        self.puback_wait = Histogram()
        self._stall_seconds = 0.0
        self._stall_began = 0.0

    @property
    def stalled(self) -> bool:
        """True while NATS is known to be away or some batch is waiting for it to come back."""
        return self._stalled_batches > 0 or not self._connection.connected.is_set()

    @property
    def stall_seconds(self) -> float:
        """Seconds during which some batch waited for NATS, the current stall included."""
        ongoing = time.monotonic() - self._stall_began if self._stalled_batches else 0.0
        return self._stall_seconds + ongoing

    async def start(self) -> None:
        await subscribe_direct(self._connection.client, f"{self._inbox}.*", self._on_ack)

    def _on_ack(self, subject: str, reply: str, data: bytes, status: str) -> None:
        del reply
        future = self._pending.pop(subject.rpartition(".")[2], None)
        if future is None or future.done():
            return
        if status == "503":
            future.set_exception(StoreError("no JetStream responders"))
            return
        try:
            future.set_result(_ack_decoder.decode(data))
        except msgspec.DecodeError as error:
            future.set_exception(StoreError(f"undecodable ack: {error}"))

    async def store(self, events: Sequence[Event]) -> list[int]:
        """Store ``events`` in order and return their stream sequences; retries until stored.

        Raises ``EventRefused``, before sending any of them, if one of them is beyond what
        NATS accepts: sent, it would make the server drop the connection, again on every retry.
        """
        return [ack.seq for ack in await self._store(events)]

    async def store_acked(self, events: Sequence[Event]) -> list[Stored]:
        """:meth:`store`, saying of each event whether the stream had its id already (an
        earlier copy within the duplicate window, whoever published it; its ``seq`` is then
        that copy's)."""
        return [Stored(ack.seq, ack.duplicate) for ack in await self._store(events)]

    async def _store(self, events: Sequence[Event]) -> list[_PubAck]:
        messages = [self._message(event) for event in events]
        backoff = 0.05
        attempts = 0
        # A stall counts from the start of the attempt that failed, its wait for acks included.
        began = time.monotonic()
        while True:
            try:
                acks = await self._store_once(messages)
            except (
                TimeoutError,
                StoreError,
                nats.errors.OutboundBufferLimitError,
                nats.errors.ConnectionReconnectingError,
            ) as error:
                attempts += 1
                self.retries += 1
                # One line per stalled batch, not per attempt: an outage must stay readable.
                if attempts == 1:
                    if not self._stalled_batches:
                        self._stall_began = began
                    self._stalled_batches += 1
                    log.warning(
                        "store.stalled",
                        first_event=events[0].id,
                        events=len(events),
                        error=str(error) or type(error).__name__,
                    )
            else:
                if attempts:
                    self._stalled_batches -= 1
                    if not self._stalled_batches:
                        self._stall_seconds += time.monotonic() - self._stall_began
                    log.info("store.recovered", first_event=events[0].id, attempts=attempts + 1)
                return acks
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            await self._connection.connected.wait()

    def _message(self, event: Event) -> tuple[str, bytes, str]:
        subject, data = subject_for(event), encode_event(event)
        # The reply subject is the inbox plus a counter: 20 digits cover any counter.
        line = len(subject) + len(self._inbox) + 21 + _CONTROL_OVERHEAD
        if line > MAX_CONTROL_LINE:
            raise EventRefused(f"subject of {len(subject)} bytes is too long for NATS")
        size = len(data) + len(event.id) + len(_MSG_ID) + _HEADER_OVERHEAD
        limit = self._connection.client.max_payload
        if size > limit:
            raise EventRefused(f"event of {size} bytes exceeds NATS max_payload {limit}")
        return subject, data, event.id

    async def _store_once(self, messages: Sequence[tuple[str, bytes, str]]) -> list[_PubAck]:
        client = self._connection.client
        futures: list[asyncio.Future[_PubAck]] = []
        tokens: list[str] = []
        loop = asyncio.get_running_loop()
        published = loop.time()
        try:
            for subject, data, event_id in messages:
                self._counter += 1
                token = str(self._counter)
                future: asyncio.Future[_PubAck] = loop.create_future()
                self._pending[token] = future
                futures.append(future)
                tokens.append(token)
                await client.publish(
                    subject, data, reply=f"{self._inbox}.{token}", headers={_MSG_ID: event_id}
                )
            # One timer for the batch: cheaper than asyncio.timeout on this per-frame path.
            deadline = loop.call_later(self._timeout, _expire, futures)
            try:
                acks = [await future for future in futures]
            except BaseException:
                _resolve_acks(futures)
                raise
            finally:
                deadline.cancel()
        finally:
            for token in tokens:
                self._pending.pop(token, None)
        for ack in acks:
            if ack.error is not None:
                description = ack.error.get("description", "JetStream error")
                if ack.error.get("err_code") == _JS_MESSAGE_TOO_LARGE:
                    raise EventRefused(description)
                raise StoreError(description)
        self.puback_wait.observe(loop.time() - published)
        return acks


def _resolve_acks(futures: list[asyncio.Future[_PubAck]]) -> None:
    """After the first failure, the others must not linger as never-retrieved exceptions."""
    for future in futures:
        if future.done() and not future.cancelled():
            future.exception()
        else:
            future.cancel()


def _expire(futures: list[asyncio.Future[_PubAck]]) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(TimeoutError("no PubAck in time"))


@contextlib.asynccontextmanager
async def event_backbone(
    settings: Settings, url: str, *, name: str
) -> AsyncIterator[tuple[Connection, EventStore]]:
    connection = await connect(url, name=name)
    try:
        await ensure_stream(connection.js, settings.stream)
        store = EventStore(connection, timeout=settings.gateway.publish_timeout_s)
        await store.start()
        yield connection, store
    finally:
        await connection.close()
