"""The gateway's I/O shell: WebSocket handshakes, one reader and one processor per charger."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ssl
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Final
from urllib.parse import unquote, urlsplit

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from hub.bus import Connection, EventStore
from hub.config import GatewaySettings
from hub.gateway import frames, ocpp16
from hub.gateway.frames import CallError, CallResult, Malformed
from hub.gateway.session import (
    HANDLERS,
    SUBPROTOCOLS,
    CallOutcome,
    Exchange,
    Inbound,
    Link,
    ValidCall,
    answer,
    connection_closed,
    connection_opened,
    connection_replaced,
    inspect,
    outbound_call,
    reject,
    settle,
)
from hub.passwords import verify_password
from hub.registry import Registry
from hub.subjects import decode_token, encode_token
from hub.txids import StartIdentity, TransactionIds
from schemas import ocpp
from schemas.commands import (
    COMMAND_SUBJECT_PREFIX,
    MAX_COMMAND_ID_LENGTH,
    CommandReply,
    CommandRequest,
    request_decoder,
    request_encoder,
)
from schemas.events import (
    ConnectionRefused,
    Event,
    RefusalReason,
    SecurityProfile,
)
from schemas.ocpp import v16

log = structlog.get_logger("hub.gateway")

MAX_CHARGE_POINT_ID_LENGTH: Final = 48
# Frames above this are refused by the WebSocket layer itself (close 1009): the event that
# records a frame has to fit in one NATS message, whose default limit is 1 MiB.
HARD_FRAME_LIMIT: Final = 256 * 1024
_QUEUE_DEPTH: Final = 16
# Commands for one charger wait in order for the one outstanding CALL; more are refused busy.
_COMMAND_QUEUE_DEPTH: Final = 32
_CLAIM_SUBJECT: Final = "ctl.claim"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def charge_point_id_from_path(path: str) -> str | None:
    """The last path segment, percent-decoded; chargers are provisioned with many URL styles
    (``/ocpp/CP1``, ``/steve/websocket/CentralSystemService/CP1``, ``/CP1``)."""
    last_segment = urlsplit(path).path.rpartition("/")[2]
    try:
        candidate = unquote(last_segment, errors="strict")
    except UnicodeDecodeError:
        return None
    if not 0 < len(candidate) <= MAX_CHARGE_POINT_ID_LENGTH:
        return None
    # ':' would make HTTP Basic credentials ambiguous (OCPP 2.0.1 forbids it for the same reason).
    if ":" in candidate or not candidate.isprintable():
        return None
    return candidate


def _basic_credentials(headers: Headers) -> tuple[str, str] | None:
    value = headers.get("Authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return username, password


class ChargerLink(msgspec.Struct, kw_only=True):
    """A live connection and what the gateway tracks about it."""

    link: Link
    websocket: ServerConnection


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        connection: Connection,
        store: EventStore,
        txids: TransactionIds,
        registry: Registry,
    ) -> None:
        self.settings = settings
        self.gateway_id = settings.gateway_id
        self._nats = connection
        self._store = store
        self._txids = txids
        self.registry = registry
        self.connections: dict[str, ChargerLink] = {}
        self._server: Server | None = None
        # websockets owns the connection tasks; a shutdown that runs out of patience cancels them.
        self._handlers: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, host: str, port: int) -> Server:
        await self._nats.client.subscribe(f"{_CLAIM_SUBJECT}.*", cb=self._on_claim)
        self._server = await serve(
            self._handle,
            host,
            port,
            subprotocols=[Subprotocol(name) for name in SUBPROTOCOLS],
            select_subprotocol=self._select_subprotocol,
            process_request=self._process_request,
            max_size=HARD_FRAME_LIMIT,
            max_queue=_QUEUE_DEPTH,
            compression=None,
            ping_interval=self.settings.ping_interval_s,
            ping_timeout=self.settings.ping_timeout_s,
            close_timeout=self.settings.close_timeout_s,
            ssl=self._tls_context(),
            server_header=None,
        )
        return self._server

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls_cert:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # OCPP security profile 2 requires TLS 1.2 or newer.
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key or None)
        return context

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self, grace: float = 10.0) -> None:
        """Close every charger connection with 1001 and let their last events be stored.

        With NATS gone those stores could wait forever; after ``grace`` the gateway stops
        anyway. Whatever was not stored was not answered either, so chargers send it again.
        """
        if self._server is None:
            return
        self._server.close()
        try:
            async with asyncio.timeout(grace):
                await self._server.wait_closed()
        except TimeoutError:
            log.warning("gateway.closed_with_unstored_events", connections=len(self._handlers))
            for handler in self._handlers:
                handler.cancel()
            await self._server.wait_closed()

    # -- handshake ---------------------------------------------------------------------------

    @staticmethod
    def _select_subprotocol(
        connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        # OCPP-J §3.1.2: with no common subprotocol, complete the handshake without one and
        # close right after, which _handle does; websockets' default would answer 400 instead.
        for name in SUBPROTOCOLS:
            if name in offered:
                return Subprotocol(name)
        return None

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        remote = _remote(connection)
        charge_point_id = charge_point_id_from_path(request.path)
        if charge_point_id is None:
            await self._refuse("invalid_charge_point_id", request.path, remote, request.path)
            return connection.respond(HTTPStatus.BAD_REQUEST, "invalid charge point id\n")
        refusal = await self._authenticate(charge_point_id, request.headers)
        if refusal is None:
            return None
        await self._refuse(refusal, charge_point_id, remote, request.path)
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "authentication required\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response

    async def _authenticate(self, charge_point_id: str, headers: Headers) -> RefusalReason | None:
        record = self.registry.chargers.get(charge_point_id)
        credentials = _basic_credentials(headers)
        if record is None:
            return None if self.settings.allow_unknown_chargers else "unknown_charger"
        if not record.password_hash:
            return None
        if credentials is None:
            return "missing_credentials"
        username, password = credentials
        if username != charge_point_id:
            return "bad_credentials"
        # PBKDF2 is deliberately slow, so it must not run on the event loop.
        valid = await asyncio.to_thread(verify_password, password, record.password_hash)
        return None if valid else "bad_credentials"

    async def _refuse(
        self, reason: RefusalReason, charge_point_id: str, remote: str, path: str
    ) -> None:
        received_at = now_ms()
        event = ConnectionRefused(
            id=uuid.uuid4().hex,
            received_at=received_at,
            charge_point_id=charge_point_id,
            gateway_id=self.gateway_id,
            reason=reason,
            remote_address=remote,
            path=path,
        )
        await self._store.store([event])
        log.info(
            "connection.refused", charge_point_id=charge_point_id, reason=reason, remote=remote
        )

    # -- connection --------------------------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(websocket)
        finally:
            self._handlers.discard(task)

    async def _serve(self, websocket: ServerConnection) -> None:
        request = websocket.request
        assert request is not None
        charge_point_id = charge_point_id_from_path(request.path)
        assert charge_point_id is not None  # _process_request refused anything else
        remote = _remote(websocket)
        subprotocol = websocket.subprotocol
        version = SUBPROTOCOLS.get(subprotocol) if subprotocol else None
        if version is None and not subprotocol and not self.settings.require_subprotocol:
            version = "1.6"
        if version is None:
            offered = request.headers.get("Sec-WebSocket-Protocol")
            reason: RefusalReason = (
                "missing_subprotocol" if not offered else "unsupported_subprotocol"
            )
            await self._refuse(reason, charge_point_id, remote, request.path)
            await websocket.close(1002, f"{reason.replace('_', ' ')}; this hub speaks ocpp1.6")
            return
        link = Link(
            charge_point_id=charge_point_id,
            connection_id=uuid.uuid4().hex,
            gateway_id=self.gateway_id,
            ocpp_version=version,
        )
        bound = log.bind(charge_point_id=charge_point_id, connection_id=link.connection_id)
        charger = ChargerLink(link=link, websocket=websocket)
        session = _ChargerSession(self, charger, bound)
        # Listening for commands before the connection is announced means anyone who saw
        # the charger connect can already reach it. A queue group: while an old and a new
        # connection overlap during a replacement, a command still goes to only one of them.
        commands = await self._nats.client.subscribe(
            f"{COMMAND_SUBJECT_PREFIX}.{encode_token(charge_point_id)}",
            queue="holder",
            cb=session.on_command,
        )
        # While NATS is away the subscription waits in the client and is made on reconnect.
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._nats.client.flush(timeout=1)
        opened = connection_opened(
            link,
            remote=remote,
            security_profile=self._security_profile(request.headers),
            at=now_ms(),
        )
        await self._store.store([opened])
        bound.info("connection.opened", remote=remote, ocpp_version=version)
        previous = self.connections.get(charge_point_id)
        self.connections[charge_point_id] = charger
        if previous is not None:
            await self._replace(previous, link)
        await self._announce(link)
        try:
            await session.run()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await commands.unsubscribe()
            if self.connections.get(charge_point_id) is charger:
                del self.connections[charge_point_id]
            closed = connection_closed(
                link, code=websocket.close_code, reason=websocket.close_reason or "", at=now_ms()
            )
            await self._store.store([closed])
            bound.info("connection.closed", code=websocket.close_code)

    def _security_profile(self, headers: Headers) -> SecurityProfile:
        has_password = _basic_credentials(headers) is not None
        if self.settings.tls_cert:
            return 2 if has_password else 0
        return 1 if has_password else 0

    async def _announce(self, link: Link) -> None:
        """Tell every other gateway that this one now holds the charger."""
        claim = msgspec.json.encode(
            {"connection_id": link.connection_id, "gateway_id": link.gateway_id}
        )
        await self._nats.client.publish(
            f"{_CLAIM_SUBJECT}.{encode_token(link.charge_point_id)}", claim
        )

    async def _on_claim(self, msg: Msg) -> None:
        claim = msgspec.json.decode(msg.data, type=dict[str, str])
        charge_point_id = decode_token(msg.subject.rpartition(".")[2])
        current = self.connections.get(charge_point_id)
        if current is None or current.link.connection_id == claim["connection_id"]:
            return
        if claim["gateway_id"] == self.gateway_id:
            return  # a local replacement is handled synchronously in _handle
        del self.connections[charge_point_id]
        new = Link(
            charge_point_id=charge_point_id,
            connection_id=claim["connection_id"],
            gateway_id=claim["gateway_id"],
            ocpp_version=current.link.ocpp_version,
        )
        await self._replace(current, new)

    async def _replace(self, old: ChargerLink, new: Link) -> None:
        await self._store.store([connection_replaced(old.link, new, at=now_ms())])
        log.info(
            "connection.replaced",
            charge_point_id=old.link.charge_point_id,
            connection_id=old.link.connection_id,
            by=new.connection_id,
        )
        await old.websocket.close(1000, "replaced by a newer connection")

    # -- exchanges ---------------------------------------------------------------------------

    async def exchange(
        self, link: Link, inbound: Inbound, raw: bytes, received_at: int
    ) -> Exchange:
        match inbound:
            case ValidCall():
                ctx = await self._context(link, inbound)
                return answer(link, inbound, raw, ctx, received_at)
            case Malformed():
                return reject(link, inbound, raw, received_at)
            case CallResult() | CallError():
                # No server-initiated CALL is outstanding (the command API issue adds them).
                unexpected = Malformed(
                    "unexpected_result",
                    "ProtocolError",
                    "no CALL with this unique id is outstanding",
                    unique_id=inbound.unique_id,
                    answerable=False,
                )
                return reject(link, unexpected, raw, received_at)

    async def _context(self, link: Link, valid: ValidCall) -> ocpp16.Context:
        transaction_id = 0
        request = valid.request
        if isinstance(request, v16.StartTransactionRequest):
            transaction_id = await self._txids.allocate(
                StartIdentity(
                    link.charge_point_id,
                    request.connector_id,
                    request.id_tag,
                    request.timestamp,
                    request.meter_start,
                )
            )
        return ocpp16.Context(
            charge_point_id=link.charge_point_id,
            now=datetime.now(UTC),
            settings=self.settings,
            registry=self.registry,
            transaction_id=transaction_id,
        )

    @property
    def storage_stalled(self) -> bool:
        return self._store.stalled

    @property
    def nats_client(self) -> NatsClient:
        return self._nats.client

    async def store_events(self, events: list[Event]) -> list[int]:
        return await self._store.store(events)

    def check_command(self, link: Link, request: CommandRequest) -> CommandReply | None:
        """Refuse a command the charger must never see; None if it may be sent."""

        def invalid(description: str, code: str = "") -> CommandReply:
            return CommandReply(
                command_id=request.command_id,
                status="invalid",
                error_code=code,
                error_description=description,
            )

        if not 0 < len(request.command_id) <= MAX_COMMAND_ID_LENGTH:
            return invalid(f"command_id must have 1 to {MAX_COMMAND_ID_LENGTH} characters")
        version = link.ocpp_version
        charger_sends = HANDLERS[version].keys() - {"DataTransfer"}
        if request.action not in ocpp.known_actions(version) or request.action in charger_sends:
            return invalid(f"{request.action!r} is not an OCPP {version} command to a charger")
        if not request.timeout_s > 0:
            return invalid("timeout_s must be positive")
        checked = ocpp.validate_call(version, request.action, request.payload)
        if isinstance(checked, ocpp.PayloadError):
            return invalid(checked.description, checked.code)
        return None

    async def store(self, exchange: Exchange) -> list[int]:
        return await self._store.store(exchange.events)


class _ChargerSession:
    """One reader and one processor per connection, joined by a bounded queue.

    The reader keeps reading while the processor waits on JetStream, which is how a second
    CALL sent before the first was answered (OCPP-J §4.1.1) is seen and refused. The queue's
    bound pushes back on the charger through TCP when storage is slow.
    """

    def __init__(
        self, gateway: Gateway, charger: ChargerLink, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        self._gateway = gateway
        self._charger = charger
        self._link = charger.link
        self._websocket = charger.websocket
        self._log = log
        self._queue: asyncio.Queue[tuple[bytes, int, Inbound, bool] | None] = asyncio.Queue(
            _QUEUE_DEPTH
        )
        self._calls_unanswered = 0
        self._call_lock = asyncio.Lock()
        self._commands_waiting = 0
        self._awaiting: _AwaitedAnswer | None = None
        # The session owns its command tasks: run() waits for every one before it returns.
        self._command_tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._process(), name=f"process-{self._link.connection_id}")
            try:
                await self._read()
            finally:
                if self._awaiting is not None and not self._awaiting.future.done():
                    self._awaiting.future.set_result(None)
                # Frames already read are stored even though the socket is gone.
                await self._queue.put(None)
        # Commands still queued find the connection closed and answer "offline" at once.
        await asyncio.gather(*self._command_tasks, return_exceptions=True)

    # -- commands: CALLs the hub sends --------------------------------------------------------

    async def on_command(self, msg: Msg) -> None:
        try:
            request = request_decoder.decode(msg.data)
        except msgspec.DecodeError as error:
            await _respond(
                msg,
                CommandReply(
                    command_id="",
                    status="invalid",
                    error_description=f"bad command request: {error}",
                ),
            )
            return
        problem = self._gateway.check_command(self._link, request)
        if problem is not None:
            await _respond(msg, problem)
            return
        task = asyncio.get_running_loop().create_task(self._answer_command(msg, request))
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    async def _answer_command(self, msg: Msg, request: CommandRequest) -> None:
        reply = await self.call(request)
        self._log.info(
            "ocpp.command",
            action=request.action,
            unique_id=request.command_id,
            outcome=reply.status,
            error_code=reply.error_code or None,
        )
        await _respond(msg, reply)

    async def call(self, request: CommandRequest) -> CommandReply:
        """Send one CALL to the charger and wait for its answer, one CALL at a time."""
        if self._commands_waiting >= _COMMAND_QUEUE_DEPTH:
            return CommandReply(
                command_id=request.command_id,
                status="busy",
                error_description=f"{_COMMAND_QUEUE_DEPTH} commands already wait for this charger",
            )
        self._commands_waiting += 1
        try:
            async with self._call_lock:
                return await self._call_locked(request)
        finally:
            self._commands_waiting -= 1

    async def _call_locked(self, request: CommandRequest) -> CommandReply:
        event, frame = outbound_call(
            self._link, request.command_id, request.action, request.payload, at=now_ms()
        )
        future: asyncio.Future[CallOutcome | None] = asyncio.get_running_loop().create_future()
        self._awaiting = _AwaitedAnswer(request.command_id, request.action, future)
        try:
            # Persist, then send: the CALL is in the stream before the charger sees it.
            await self._gateway.store_events([event])
            try:
                await self._websocket.send(frame, text=True)
            except ConnectionClosed:
                future.set_result(None)
            try:
                async with asyncio.timeout(request.timeout_s):
                    outcome = await future
            except TimeoutError:
                return CommandReply(
                    command_id=request.command_id,
                    status="timeout",
                    error_description=f"no answer within {request.timeout_s} s",
                )
        finally:
            self._awaiting = None
        if outcome is None:
            return CommandReply(
                command_id=request.command_id,
                status="offline",
                error_description="the charger disconnected before answering",
            )
        return CommandReply(
            command_id=request.command_id,
            status=outcome.status,
            payload=outcome.payload,
            error_code=outcome.error_code,
            error_description=outcome.error_description,
        )

    async def _read(self) -> None:
        settings = self._gateway.settings
        with contextlib.suppress(ConnectionClosed):
            while True:
                data = await self._websocket.recv(decode=False)
                received_at = now_ms()
                inbound = inspect(
                    self._link.ocpp_version, data, max_frame_bytes=settings.max_frame_bytes
                )
                counted = False
                if isinstance(inbound, ValidCall) or (
                    isinstance(inbound, Malformed)
                    and inbound.answerable
                    and inbound.unique_id != frames.UNREADABLE_ID
                ):
                    inbound, counted = self._admit_call(inbound)
                await self._queue.put((data, received_at, inbound, counted))

    def _admit_call(self, inbound: ValidCall | Malformed) -> tuple[Inbound, bool]:
        """Count a CALL the charger now waits on, or refuse it if another one is unanswered."""
        if self._calls_unanswered == 0 or self._gateway.storage_stalled:
            # While storage is stalled the gateway holds its answers, so the charger times out
            # and retries; refusing the retry would make it count a failed attempt (OCPP 1.6
            # §3.7) and eventually drop a transaction message. The retry waits in the queue.
            self._calls_unanswered += 1
            return inbound, True
        if isinstance(inbound, ValidCall):
            unique_id, action = inbound.call.unique_id, inbound.call.action
        else:
            unique_id, action = inbound.unique_id, inbound.action
        refusal = Malformed(
            "call_outstanding",
            "ProtocolError",
            "the previous CALL is still being answered; OCPP-J allows one outstanding CALL",
            unique_id=unique_id,
            action=action,
        )
        return refusal, False

    async def _process(self) -> None:
        while (item := await self._queue.get()) is not None:
            data, received_at, inbound, counted = item
            started = time.perf_counter()
            awaited = self._awaiting
            outcome: CallOutcome | None = None
            if (
                isinstance(inbound, CallResult | CallError)
                and awaited is not None
                and awaited.unique_id == inbound.unique_id
            ):
                exchange, outcome = settle(self._link, awaited.action, inbound, data, received_at)
            else:
                exchange = await self._gateway.exchange(self._link, inbound, data, received_at)
            sequences = await self._gateway.store(exchange)
            if outcome is not None and awaited is not None and not awaited.future.done():
                awaited.future.set_result(outcome)
            if exchange.reply is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._websocket.send(exchange.reply, text=True)
            if counted:
                self._calls_unanswered -= 1
            self._log.info(
                "ocpp.exchange",
                action=exchange.action,
                unique_id=exchange.unique_id,
                outcome=exchange.outcome,
                seq=sequences[0] if sequences else None,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )


class _AwaitedAnswer(msgspec.Struct):
    unique_id: str
    action: str
    # None: the connection closed before the charger answered.
    future: asyncio.Future[CallOutcome | None]


async def _respond(msg: Msg, reply: CommandReply) -> None:
    if msg.reply:
        await msg.respond(request_encoder.encode(reply))


def _remote(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
