"""The gateway's I/O shell: the WebSocket server, handshakes, and which gateway holds which
charger."""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import uuid
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Final

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from hub.bus import Connection, EventStore
from hub.ca import CertificateAuthority, NoCa
from hub.clock import now_ms
from hub.config import GatewaySettings
from hub.domain.charger_ids import id_problem
from hub.domain.ocpp_versions import (
    SUBPROTOCOLS,
    allowed_versions,
    negotiate,
    parse_versions,
    spoken,
)
from hub.domain.redaction import parse_secret_keys
from hub.domain.security_profiles import ClientCertificate, judge, required_profile
from hub.gateway import certificates, ocpp16
from hub.gateway.connection import QUEUE_DEPTH, ChargerConnection
from hub.gateway.frames import CallError, CallResult, CallResultError, Malformed, Send
from hub.gateway.handshake import (
    BasicCredentials,
    basic_credentials,
    charge_point_id_from_path,
    client_certificate,
    clip,
    offered_subprotocols,
    peer_host,
    remote_address,
    websockets_logger,
)
from hub.gateway.lockout import AuthGuard, address_key
from hub.gateway.metrics import GatewayMetrics
from hub.gateway.protocol import (
    Exchange,
    Inbound,
    Link,
    Received,
    Signing,
    ValidCall,
    answer,
    connection_closed,
    connection_opened,
    connection_replaced,
    reject,
    unanswered,
)
from hub.logs import Throttle, suppressed_field
from hub.passwords import first_match
from hub.registry import ChargerRecord, Registry
from hub.subjects import decode_token, encode_token
from hub.txids import StartIdentity, TransactionIds
from schemas.commands import (
    COMMAND_SUBJECT_PREFIX,
)
from schemas.events import (
    ChargerAccepted,
    ConnectionRefused,
    Event,
    OcppVersion,
    PasswordRotationEnded,
    RefusalReason,
    SecurityProfile,
)
from schemas.ocpp import v16

log = structlog.get_logger("hub.gateway")

# Frames above this are refused by the WebSocket layer itself (close 1009): the event that
# records a frame has to fit in one NATS message (hub.config.MAX_EVENT_BYTES), and a
# connection may hold 16 frames in the gateway's queue and 16 in websockets' own.
HARD_FRAME_LIMIT: Final = 2 * 1024 * 1024
_CLAIM_SUBJECT: Final = "ctl.claim"
_TRIGGER_BOOT: Final = b'{"requestedMessage":"BootNotification"}'


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """How a handshake got in: what its connection.opened event records."""

    security_profile: SecurityProfile
    certificate: ClientCertificate | None = None
    # The OCPP versions it may speak: the gateway's, narrowed by its registration.
    versions: tuple[OcppVersion, ...] = ()


# Refusals answered 403: no password would help, so no Basic challenge either.
_FORBIDDEN: Final[frozenset[RefusalReason]] = frozenset(
    {"certificate_mismatch", "missing_certificate", "tls_required"}
)


class ChargerLink(msgspec.Struct, kw_only=True):
    """A live connection and what the gateway tracks about it."""

    link: Link
    websocket: ServerConnection
    # Sends the hub's own CALLs on this connection; set as soon as it exists.
    calls: ChargerConnection | None = None


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        connection: Connection,
        store: EventStore,
        txids: TransactionIds,
        registry: Registry,
        *,
        ca: CertificateAuthority | None = None,
    ) -> None:
        self.settings = settings
        # Signs chargers' CSRs (SignCertificate); without one they are refused.
        self.ca: CertificateAuthority = ca or NoCa()
        self.gateway_id = settings.gateway_id
        self.versions = parse_versions(settings.ocpp_versions)
        self._nats = connection
        self._store = store
        self._txids = txids
        self.registry = registry
        self.connections: dict[str, ChargerLink] = {}
        self._server: Server | None = None
        # websockets owns the connection tasks; a shutdown that runs out of patience cancels them.
        self._handlers: set[asyncio.Task[None]] = set()
        self.auth_guard = AuthGuard()
        # From the handshake's check to its connection handler; a handshake that fails in
        # between leaves nothing behind.
        self._admissions: weakref.WeakKeyDictionary[ServerConnection, Admission] = (
            weakref.WeakKeyDictionary()
        )
        registry.listeners.append(self._registry_changed)
        # Refusals and failed handshakes are logged through this: a flood of bad requests
        # costs a bounded number of lines.
        self.log_throttle = Throttle()
        self.metrics = GatewayMetrics()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, host: str, port: int) -> Server:
        await self._nats.client.subscribe(f"{_CLAIM_SUBJECT}.*", cb=self._on_claim)
        self._server = await serve(
            self._handle,
            host,
            port,
            subprotocols=[
                Subprotocol(name) for name, v in SUBPROTOCOLS.items() if v in self.versions
            ],
            select_subprotocol=self._select_subprotocol,
            process_request=self._process_request,
            max_size=HARD_FRAME_LIMIT,
            max_queue=QUEUE_DEPTH,
            compression=None,
            ping_interval=self.settings.ping_interval_s,
            ping_timeout=self.settings.ping_timeout_s,
            close_timeout=self.settings.close_timeout_s,
            ssl=self._tls_context(),
            server_header=None,
            logger=websockets_logger(self.log_throttle),
        )
        return self._server

    def _tls_context(self) -> ssl.SSLContext | None:
        settings = self.settings
        if not settings.tls_cert:
            if settings.tls_client_ca:
                raise ValueError("a client CA (--tls-client-ca) needs --tls-cert and --tls-key")
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # OCPP security profiles 2 and 3 require TLS 1.2 or newer.
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(settings.tls_cert, settings.tls_key or None)
        if settings.tls_client_ca:
            # Profile 3. Requested, not required: profile-2 chargers (Basic over TLS) share
            # the port. A certificate that is presented must chain to this CA and be within
            # its validity, or the TLS handshake fails.
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(cafile=settings.tls_client_ca)
        return context

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self, grace: float = 10.0) -> None:
        """Drain: accept no more chargers, answer what each connected one has sent, then
        close it with 1001 so that it reconnects to another gateway.

        With NATS gone those stores could wait forever: after half of ``grace`` the chargers
        still waiting are closed with 1001 anyway, and after ``grace`` the gateway stops.
        Whatever was not stored was not answered either, so chargers send it again.
        """
        if self._server is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # Not listening any more: a load balancer sends new connections to another gateway.
        self._server.server.close()
        draining = [link.calls.drain() for link in self.connections.values() if link.calls]
        log.info("gateway.draining", connections=len(draining), grace_s=grace)
        try:
            async with asyncio.timeout(grace / 2):
                await asyncio.gather(*draining, return_exceptions=True)
        except TimeoutError:
            log.warning("gateway.drain_overdue", connections=len(self.connections))
        # 1001 to whoever is still connected, then wait for every connection's last events.
        self._server.close()
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await self._server.wait_closed()
        except TimeoutError:
            log.warning("gateway.closed_with_unstored_events", connections=len(self._handlers))
            # Until each is gone: a handler cancelled while storing its frames goes on to
            # store its connection.closed, which waits as long as NATS does.
            while self._handlers:
                for handler in self._handlers:
                    handler.cancel()
                await asyncio.wait(self._handlers, timeout=0.1)
            await self._server.wait_closed()
        for kind, count in self.log_throttle.drain():
            log.info("log.suppressed", kind=kind, suppressed=count)

    # -- handshake ---------------------------------------------------------------------------

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        # OCPP-J §3.1.2: with no common subprotocol, complete the handshake without one and
        # close right after, which _serve does; websockets' default would answer 400 instead.
        # websockets asks this after _process_request admitted the handshake.
        chosen = negotiate(offered, self._versions_of(connection))
        return Subprotocol(chosen) if chosen else None

    def _versions_of(self, connection: ServerConnection) -> tuple[OcppVersion, ...]:
        admission = self._admissions.get(connection)
        return admission.versions if admission is not None else self.versions

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        remote = remote_address(connection)
        charge_point_id = charge_point_id_from_path(request.path)
        if charge_point_id is None:
            problem: str | None = "not percent-encoded UTF-8"
        elif self.registry.is_known(charge_point_id):
            problem = None  # registered before the id rule existed, or under it: either way
        else:
            problem = id_problem(charge_point_id)
        if charge_point_id is None or problem is not None:
            await self._refuse(
                "invalid_charge_point_id", request.path, remote, request, problem=problem or ""
            )
            return connection.respond(
                HTTPStatus.BAD_REQUEST, f"invalid charge point id: {problem}\n"
            )
        address = address_key(peer_host(connection))
        certificate = client_certificate(connection)
        refusal, profile = await self._authenticate(
            charge_point_id, request.headers, address, certificate
        )
        if refusal is None:
            record = self.registry.chargers.get(charge_point_id)
            self._admissions[connection] = Admission(
                security_profile=profile,
                certificate=certificate if profile == 3 else None,
                versions=allowed_versions(self.versions, record.ocpp_versions if record else ()),
            )
            return None
        if refusal == "locked_out":
            retry_after = math.ceil(self.auth_guard.retry_after(charge_point_id, address))
            await self._refuse(refusal, charge_point_id, remote, request, retry_after=retry_after)
            response = connection.respond(
                HTTPStatus.TOO_MANY_REQUESTS, "too many failed logins; try again later\n"
            )
            response.headers["Retry-After"] = str(retry_after)
            return response
        if refusal in _FORBIDDEN:
            details = {} if certificate is None else _certificate_details(certificate)
            await self._refuse(refusal, charge_point_id, remote, request, **details)
            return connection.respond(HTTPStatus.FORBIDDEN, f"{refusal.replace('_', ' ')}\n")
        await self._refuse(refusal, charge_point_id, remote, request)
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "authentication required\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response

    async def _authenticate(
        self,
        charge_point_id: str,
        headers: Headers,
        address: str,
        certificate: ClientCertificate | None,
    ) -> tuple[RefusalReason | None, SecurityProfile]:
        """Why the handshake is refused, or else the security profile it got in on."""
        record = self.registry.chargers.get(charge_point_id)
        credentials = basic_credentials(headers)
        tls = bool(self.settings.tls_cert)
        verdict = judge(
            charge_point_id,
            registered=record is not None,
            required=required_profile(
                record.security_profile if record else None,
                bool(record and record.password_hash),
            ),
            allow_unknown=self.settings.allow_unknown_chargers,
            tls=tls,
            certificate=certificate,
            basic_sent=credentials is not None,
        )
        if verdict.refusal is not None or not verdict.check_password:
            return verdict.refusal, verdict.profile
        assert record is not None
        return await self._check_password(charge_point_id, record, credentials, address), (
            2 if tls else 1
        )

    async def _check_password(
        self,
        charge_point_id: str,
        record: ChargerRecord,
        credentials: BasicCredentials | None,
        address: str,
    ) -> RefusalReason | None:
        if credentials is None:
            return "missing_credentials"
        if credentials.user != charge_point_id:
            return "bad_credentials"
        # Checked before the password, so a locked-out guesser costs no PBKDF2 either.
        if not self.auth_guard.admit(charge_point_id, address):
            return "locked_out"
        # PBKDF2 is deliberately slow, so it must not run on the event loop.
        matched = await asyncio.to_thread(first_match, credentials.password, record.password_hashes)
        if matched is None:
            return "bad_credentials"
        self.auth_guard.succeeded(charge_point_id, address)
        if matched == 1:
            await self._rotation_completed(charge_point_id, record)
        return None

    async def _rotation_completed(self, charge_point_id: str, record: ChargerRecord) -> None:
        """The charger logged in with the password it is being rotated to: from now on that
        one alone. Stored before the handshake is answered; the id makes two gateways (or two
        connections) record it once."""
        ended = PasswordRotationEnded(
            id=f"{record.rotation_id}:ended",
            received_at=now_ms(),
            actor=f"gateway:{self.gateway_id}",
            charge_point_id=charge_point_id,
            rotation_id=record.rotation_id,
            outcome="completed",
        )
        await self._store.store([ended])
        log.info(
            "password.rotated", charge_point_id=charge_point_id, rotation_id=record.rotation_id
        )

    def _registry_changed(self, event: Event) -> None:
        """An operator accepted a Pending charger this gateway holds: ask it for the
        BootNotification that will be answered Accepted (TriggerMessage, OCPP 1.6 §5.17).
        Folded first, so the answer cannot find the registry behind."""
        if not isinstance(event, ChargerAccepted) or self.settings.boot_policy != "pending":
            return
        charger = self.connections.get(event.charge_point_id)
        if charger is not None and charger.calls is not None:
            charger.calls.send_own("TriggerMessage", _TRIGGER_BOOT)

    async def _refuse(
        self,
        reason: RefusalReason,
        charge_point_id: str,
        remote: str,
        request: Request,
        **details: str | int,
    ) -> None:
        received_at = now_ms()
        event = ConnectionRefused(
            id=uuid.uuid4().hex,
            received_at=received_at,
            charge_point_id=charge_point_id,
            gateway_id=self.gateway_id,
            reason=reason,
            remote_address=remote,
            path=request.path,
            offered_subprotocols=offered_subprotocols(request.headers),
        )
        await self._store.store([event])
        suppressed = self.log_throttle.admit(f"connection.refused:{reason}")
        if suppressed is not None:
            log.info(
                "connection.refused",
                charge_point_id=clip(charge_point_id),
                reason=reason,
                remote=remote,
                **suppressed_field(suppressed),
                **details,
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
        remote = remote_address(websocket)
        subprotocol = websocket.subprotocol
        admission = self._admissions.pop(websocket, None)
        assert admission is not None  # _process_request admitted it
        version = SUBPROTOCOLS.get(subprotocol) if subprotocol else None
        if (
            version is None
            and not subprotocol
            and not self.settings.require_subprotocol
            and "1.6" in admission.versions
        ):
            version = "1.6"
        if version is None:
            offered = request.headers.get("Sec-WebSocket-Protocol")
            reason: RefusalReason = (
                "missing_subprotocol" if not offered else "unsupported_subprotocol"
            )
            await self._refuse(reason, charge_point_id, remote, request)
            speaks = spoken(admission.versions) or "no OCPP version"
            await websocket.close(1002, f"{reason.replace('_', ' ')}; this hub speaks {speaks}")
            return
        link = Link(
            charge_point_id=charge_point_id,
            connection_id=uuid.uuid4().hex,
            gateway_id=self.gateway_id,
            ocpp_version=version,
            secret_keys=parse_secret_keys(self.settings.secret_config_keys),
        )
        bound = log.bind(charge_point_id=charge_point_id, connection_id=link.connection_id)
        charger = ChargerLink(link=link, websocket=websocket)
        connection = charger.calls = ChargerConnection(self, charger, bound)
        # Listening for commands before the connection is announced means anyone who saw
        # the charger connect can already reach it. A queue group: while an old and a new
        # connection overlap during a replacement, a command still goes to only one of them.
        commands = await self._nats.client.subscribe(
            f"{COMMAND_SUBJECT_PREFIX}.{encode_token(charge_point_id)}",
            queue="holder",
            cb=connection.on_command,
        )
        # While NATS is away the subscription waits in the client and is made on reconnect.
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._nats.client.flush(timeout=1)
        opened = connection_opened(
            link,
            remote=remote,
            security_profile=admission.security_profile,
            certificate=admission.certificate,
            at=now_ms(),
        )
        await self._store.store([opened])
        bound.info(
            "connection.opened",
            remote=remote,
            ocpp_version=version,
            security_profile=admission.security_profile,
        )
        previous = self.connections.get(charge_point_id)
        self.connections[charge_point_id] = charger
        if previous is not None:
            await self._replace(previous, link)
        await self._announce(link)
        try:
            await connection.run()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await commands.unsubscribe()
            if self.connections.get(charge_point_id) is charger:
                del self.connections[charge_point_id]
            close_code, close_reason = _close_of(websocket)
            closed = connection_closed(link, code=close_code, reason=close_reason, at=now_ms())
            await self._store.store([closed])
            bound.info("connection.closed", code=close_code)

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

    async def exchange(self, link: Link, inbound: Inbound, received: Received) -> Exchange:
        match inbound:
            case ValidCall():
                ctx = await self._context(link, inbound)
                exchange = answer(link, inbound, received, ctx)
                request = inbound.request
                if ctx.certificate is not None and isinstance(request, certificates.SignRequest):
                    exchange = certificates.judged(
                        link, exchange, ctx.certificate, request, received
                    )
                return exchange
            case Malformed():
                return reject(link, inbound, received)
            case Send() | CallResultError():
                return unanswered(link, inbound, received)
            case CallResult() | CallError():
                # No server-initiated CALL is outstanding (the command API issue adds them).
                unexpected = Malformed(
                    "unexpected_result",
                    "ProtocolError",
                    "no CALL with this unique id is outstanding",
                    unique_id=inbound.unique_id,
                    answerable=False,
                )
                return reject(link, unexpected, received)

    async def _context(self, link: Link, valid: ValidCall) -> ocpp16.Context:
        transaction_id = 0
        certificate = None
        request = valid.request
        charger = self.connections.get(link.charge_point_id)
        if isinstance(request, certificates.SignRequest) and (
            charger is not None and charger.calls is not None and charger.calls.signing
        ):
            # One CSR at a time per charger: a flood of them costs no more signings.
            certificate = certificates.BUSY
        elif isinstance(request, certificates.SignRequest):
            certificate = await asyncio.to_thread(
                certificates.verdict,
                self.ca,
                self.registry.is_known(link.charge_point_id),
                link.charge_point_id,
                request,
            )
        elif isinstance(request, v16.StartTransactionRequest):
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
            certificate=certificate,
        )

    def sign(self, connection: ChargerConnection, link: Link, signing: Signing) -> None:
        """Sign a CSR whose ``Accepted`` is sent, and deliver the chain; off the loop."""
        # Set at once: the charger's next frame is processed before the task first runs.
        connection.signing = True
        actor = f"gateway:{self.gateway_id}"
        connection.spawn(
            certificates.deliver(self.ca, self._store, connection, link, signing, actor=actor)
        )

    @property
    def storage_stalled(self) -> bool:
        return self._store.stalled

    @property
    def nats_client(self) -> NatsClient:
        return self._nats.client

    async def store_new(self, event: Event) -> bool:
        """Store ``event``; whether the stream did not hold it already (by its id)."""
        [stored] = await self._store.store_acked([event])
        return not stored.duplicate

    async def store(self, exchange: Exchange) -> list[int]:
        return await self._store.store(exchange.events)


def _certificate_details(certificate: ClientCertificate) -> dict[str, str | int]:
    """What a refusal's log line says of the certificate presented: public facts."""
    return {
        "certificate_cn": clip(certificate.common_name),
        "certificate_serial": certificate.serial,
    }


# Close codes that refuse what the charger sent (RFC 6455 §7.4.1): a protocol error, data of
# a kind not accepted, text that is not UTF-8, a message too big.
_REFUSING_CLOSES: Final = frozenset({1002, 1003, 1007, 1009})


def _close_of(websocket: ServerConnection) -> tuple[int | None, str]:
    """The close code and reason the charger sent. When the gateway closed the connection over
    what the charger sent, websockets reads nothing after its own close if it failed the
    connection (text that is not UTF-8, a frame too large), so it has none (1006): the close
    the gateway sent says why."""
    protocol = websocket.protocol
    sent = protocol.close_sent
    if protocol.close_rcvd is None and sent is not None and sent.code in _REFUSING_CLOSES:
        return sent.code, sent.reason
    return websocket.close_code, websocket.close_reason or ""
