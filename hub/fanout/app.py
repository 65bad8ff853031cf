"""The fan-out's aiohttp shell: WebSockets, REST reads, the dashboard, and the stream follower.

The follower is an ordered JetStream consumer on ``ev.>`` (the stream is the only source; no
database is read). At startup it replays a bounded window of the stream into memory and the
server accepts clients only once that replay has caught up with the stream's last sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

import msgspec
import nats.errors
import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Handler

from hub.api.book import LIVE, LiveFold
from hub.api.profile_state import PROFILE_SUBJECTS, ProfileBook, changes_profiles
from hub.bus import Connection, connect, ensure_stream
from hub.config import Settings
from hub.domain.refusals import Refused
from hub.fanout.broker import Broker, Forbidden
from hub.fanout.clients import Client
from hub.fanout.live import Live
from hub.fanout.metrics import families
from hub.fanout.translate import iso
from hub.follower import Follower, fold_once
from hub.gc_policy import gc_policy
from hub.ops import Ops
from hub.subjects import MEANINGFUL
from hub.tokens import AuthError, Scope, Verifier, ensure_secret
from schemas.events import Event
from schemas.ui import Error, Subscribe, Unsubscribe, decode_client

log = structlog.get_logger("hub.fanout")

STATIC: Final = Path(__file__).resolve().parent / "static"
POLICY_VIOLATION: Final = 1008
# A client may exceed its message rate by this many messages before it is closed as abusive.
MAX_STRIKES: Final = 20
CLOSE_TIMEOUT_S: Final = 5.0

SETTINGS: Final = web.AppKey("settings", Settings)
NATS_URL: Final = web.AppKey("nats_url", str)
BROKER: Final = web.AppKey("broker", Broker)
VERIFIER: Final = web.AppKey("verifier", Verifier)
READY: Final = web.AppKey("ready", asyncio.Event)
# The stream's last sequence, looked up when a client resumes past what the fold reached.
StreamEnd = Callable[[], Awaitable[int]]
STREAM_END: Final[web.AppKey[StreamEnd]] = web.AppKey("stream_end")
# The process's metrics and readiness (hub.ops), when it serves them.
OPS: Final = web.AppKey("ops", Ops)

_json: Final = msgspec.json.Encoder()


def verifier_for(settings: Settings) -> Verifier:
    fanout = settings.fanout
    if fanout.jwt_algorithm == "RS256":
        if not fanout.jwt_public_key:
            raise ValueError("HUB_JWT_PUBLIC_KEY: RS256 needs a PEM public key file")
        return Verifier("RS256", Path(fanout.jwt_public_key).read_text())
    return Verifier("HS256", fanout.jwt_secret or ensure_secret(settings.data_dir))


def signing_key(settings: Settings) -> str:
    fanout = settings.fanout
    if fanout.jwt_algorithm == "RS256":
        if not fanout.jwt_private_key:
            raise ValueError("HUB_JWT_PRIVATE_KEY: minting RS256 tokens needs the private key")
        return Path(fanout.jwt_private_key).read_text()
    return fanout.jwt_secret or ensure_secret(settings.data_dir)


def create_app(settings: Settings, nats_url: str) -> web.Application:
    app = web.Application(middlewares=[answer_http_errors_without_cycles])
    app[SETTINGS] = settings
    app[NATS_URL] = nats_url
    app[BROKER] = Broker(
        Live(history_per_charger=settings.fanout.history_per_charger),
        client_queue=settings.fanout.client_queue,
    )
    app[VERIFIER] = verifier_for(settings)
    app[READY] = asyncio.Event()
    app.cleanup_ctx.append(_follow_stream)
    app.on_shutdown.append(_close_clients)
    app.router.add_get("/", _index)
    app.router.add_get("/ws", _ws_multi)
    app.router.add_get("/ws/chargers/{charge_point_id}", _ws_single)
    app.router.add_get("/api/v1/chargers", _rest_list)
    app.router.add_get("/api/v1/refusals", _rest_refusals)
    app.router.add_get("/api/v1/chargers/{charge_point_id}", _rest_one)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    # The command API (hub/api) shares this app, its token verifier and its live state.
    from hub.api.http import setup as setup_command_api

    broker = app[BROKER]
    known = broker.live.chargers.__contains__  # a charger the stream has shown: else 404
    # The API reads the fan-out's charging domain (profiles, OCPP versions); no copy of its own.
    live = LiveFold(broker.live.charging)
    setup_command_api(app, settings, app[VERIFIER], known, nats_url, live)
    return app


@web.middleware
async def answer_http_errors_without_cycles(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Answer an ``HTTPException`` a handler raised with a plain copy of it.

    aiohttp (3.14) sends a raised ``HTTPException`` itself as the response, held in a local of
    the frame that caught it, which the exception's own traceback references: a reference
    cycle through every frame of the request. For a body refused with 413 those frames hold
    the request, the 1 MiB read so far and the rest still buffered, ~2 MB in all. Only the
    cyclic collector frees a cycle, and ``gc_policy`` freezes it first, watching a heap size
    that buffers this large are no part of: each refused body stayed for good. A copy has no
    traceback, and the exception dies with this frame's ``except`` block.

    A 4xx becomes a JSON error body, as every other refusal of the API and the REST reads is
    (``{"error": "request_entity_too_large", "message": ...}``): clients parse one format.
    """
    try:
        return await handler(request)
    except web.HTTPException as error:
        if not 400 <= error.status < 500:
            return web.Response(
                status=error.status, reason=error.reason, body=error.body, headers=error.headers
            )
        headers = {
            name: value
            for name, value in error.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        return _json_response(
            {
                "error": error.reason.lower().replace(" ", "_"),
                "message": error.text or error.reason,
            },
            status=error.status,
            **headers,
        )


# -- the stream --------------------------------------------------------------------------------


async def _stream_end(connection: Connection, stream: str) -> int:
    info = await connection.js.stream_info(stream)
    return int(info.state.last_seq)


async def _learn_end(app: web.Application, since: int | None) -> None:
    """A client resumes after a sequence the fold has not reached: the stream may hold it
    (an answer the follower does not read, or an event it has not read yet), which one
    look at the stream tells; nothing else asks NATS on a client's behalf."""
    live = app[BROKER].live
    if since is None or since <= max(live.seq, live.stream_end) or STREAM_END not in app:
        return
    with contextlib.suppress(nats.errors.Error, TimeoutError):
        live.stream_end = max(live.stream_end, await app[STREAM_END]())


async def _follow_stream(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    fanout = settings.fanout
    broker = app[BROKER]
    connection = await connect(app[NATS_URL], name="hub-fanout")
    try:
        js = connection.js
        await ensure_stream(js, settings.stream)
        info = await js.stream_info(settings.stream.name)
        last = info.state.last_seq
        start = max(info.state.first_seq, last - fanout.rebuild_max_events + 1, 1)
        cutoff_ms = (
            (time.time() - fanout.rebuild_max_age_s) * 1000 if fanout.rebuild_max_age_s else 0.0
        )
        started = time.perf_counter()
        # The profiles the API answers from need the whole stream; what the window leaves
        # out goes into the same charging domain, as far as it changes profiles.
        profiles = ProfileBook(broker.live.charging)
        if start > 1:

            def before_window(event: Event, seq: int) -> None:
                if seq < start:
                    profiles.apply(event, seq)

            stream = settings.stream.name
            await fold_once(connection, stream, PROFILE_SUBJECTS, before_window, name="profiles")

        def on_event(event: Event, seq: int) -> None:
            # Within the rebuild, events older than the time bound are skipped.
            if follower.caught_up.is_set() or event.received_at >= cutoff_ms:
                broker.on_event(event, seq)
            else:
                broker.live.skipped(seq)
                if changes_profiles(event):
                    profiles.apply(event, seq)

        follower = Follower(
            connection, settings.stream.name, MEANINGFUL, on_event, name="fanout", start_seq=start
        )
        app[LIVE].follower = follower
        if OPS in app:
            app[OPS].follow(follower)
        stream_end: StreamEnd = functools.partial(_stream_end, connection, settings.stream.name)
        app[STREAM_END] = stream_end
        await follower.start()
        try:
            log.info(
                "fanout.rebuilt",
                from_seq=start,
                to_seq=last,
                chargers=len(broker.live.chargers),
                seconds=round(time.perf_counter() - started, 3),
            )
            app[READY].set()
            yield
        finally:
            await follower.close()
    finally:
        await connection.close()


async def _close_clients(app: web.Application) -> None:
    # All at once: one by one, 10,000 clients that each take a moment to answer the close
    # would hold up shutdown for minutes.
    async def close(client: Client) -> None:
        with contextlib.suppress(Exception):
            await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await asyncio.gather(*(close(client) for client in list(app[BROKER].clients)))


# -- authentication ----------------------------------------------------------------------------


def _token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token", "")


def _authenticate(request: web.Request) -> Scope:
    token = _token(request)
    if not token:
        raise AuthError("missing token: send 'Authorization: Bearer <jwt>' or ?token=<jwt>")
    return request.app[VERIFIER].verify(token)


# -- REST --------------------------------------------------------------------------------------


def _json_response(body: object, status: int = 200, **headers: str) -> web.Response:
    return web.Response(
        body=_json.encode(body), status=status, content_type="application/json", headers=headers
    )


def _rest_scope(request: web.Request) -> Scope | web.Response:
    try:
        return _authenticate(request)
    except AuthError as error:
        return _json_response(
            {"error": "unauthorized", "message": str(error)},
            status=401,
            **{"WWW-Authenticate": 'Bearer realm="ocpp-hub"'},
        )


async def _rest_list(request: web.Request) -> web.Response:
    scope = _rest_scope(request)
    if isinstance(scope, web.Response):
        return scope
    live = request.app[BROKER].live
    received_at = int(time.time() * 1000)
    chargers = [live.snapshot(cp, received_at) for cp in sorted(live.chargers) if scope.allows(cp)]
    return _json_response({"seq": live.seq, "chargers": chargers})


async def _rest_one(request: web.Request) -> web.Response:
    scope = _rest_scope(request)
    if isinstance(scope, web.Response):
        return scope
    charge_point_id = request.match_info["charge_point_id"]
    if not scope.allows(charge_point_id):
        return _json_response(
            {
                "error": "forbidden",
                "message": f"charger {charge_point_id!r} is outside the token's scope",
            },
            status=403,
        )
    live = request.app[BROKER].live
    if charge_point_id not in live.chargers:
        body: dict[str, object] = {"error": "not_found"}
        message = f"no charger {charge_point_id!r}"
        if (refused := live.refusals.get(charge_point_id)) is not None:
            # Known only for being turned away: say why, so the operator need not search.
            message += f": its connections are refused ({refused.reason})"
            body["refused"] = refusal_view(refused)
        return _json_response({**body, "message": message}, status=404)
    return _json_response(live.snapshot(charge_point_id, int(time.time() * 1000)))


def refusal_view(refused: Refused) -> dict[str, object]:
    return {
        "chargePointId": refused.charge_point_id,
        "reason": refused.reason,
        "lastAttemptAt": iso(refused.last_attempt_at),
        "remoteAddress": refused.remote_address,
        "offeredSubprotocols": refused.offered_subprotocols,
        "attempts": refused.attempts,
    }


async def _rest_refusals(request: web.Request) -> web.Response:
    """Chargers whose last attempt to connect was refused, latest first, within the
    rebuild window (a charger that connects leaves the list)."""
    scope = _rest_scope(request)
    if isinstance(scope, web.Response):
        return scope
    refusals = request.app[BROKER].live.refusals.latest_first()
    return _json_response(
        {"refused": [refusal_view(r) for r in refusals if scope.allows(r.charge_point_id)]}
    )


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


# -- WebSockets --------------------------------------------------------------------------------


def _websocket(request: web.Request) -> web.WebSocketResponse:
    fanout = request.app[SETTINGS].fanout
    return web.WebSocketResponse(
        heartbeat=fanout.heartbeat_s,
        compress=fanout.compress,
        max_msg_size=fanout.max_client_message_bytes,
    )


async def _refuse(ws: web.WebSocketResponse, reason: str) -> web.WebSocketResponse:
    # Close reasons are limited to 123 bytes by RFC 6455.
    await ws.close(code=POLICY_VIOLATION, message=reason.encode()[:123])
    return ws


def _since(request: web.Request, client: Client) -> int | None:
    raw = request.query.get("since")
    if raw is None:
        return None
    try:
        since = int(raw)
    except ValueError:
        since = -1
    if since < 0:
        client.push(
            Error(code="bad_request", message=f"since: expected a sequence >= 0, got {raw!r}")
        )
        return None
    return since


async def _ws_single(request: web.Request) -> web.WebSocketResponse:
    return await _serve(request, request.match_info["charge_point_id"])


async def _ws_multi(request: web.Request) -> web.WebSocketResponse:
    return await _serve(request, None)


async def _serve(request: web.Request, charge_point_id: str | None) -> web.WebSocketResponse:
    ws = _websocket(request)
    await ws.prepare(request)
    try:
        scope = _authenticate(request)
    except AuthError as error:
        return await _refuse(ws, str(error))
    broker = request.app[BROKER]
    client = Client(ws, scope, capacity=broker.client_queue, transport=request.transport)
    broker.add(client)
    try:
        since = _since(request, client)
        await _learn_end(request.app, since)
        if charge_point_id is not None:
            try:
                broker.subscribe(client, [charge_point_id], since)
            except Forbidden as error:
                return await _refuse(ws, str(error))
            since = None
        client.start()
        await _read(request, client, broker, since)
    finally:
        broker.remove(client)
        await client.stopped()
        if not ws.closed:
            await ws.close()
    return ws


async def _read(
    request: web.Request, client: Client, broker: Broker, since_default: int | None
) -> None:
    """Client requests, rate-limited; garbage is answered with an error, abuse closes."""
    ws = client.ws
    rate = request.app[SETTINGS].fanout.client_messages_per_s
    burst = max(1.0, rate * 2)
    tokens, refilled = burst, time.monotonic()
    strikes = 0
    while True:
        remaining = client.scope.expires_at - time.time()
        if remaining <= 0:
            await _refuse(ws, "token expired")
            return
        try:
            async with asyncio.timeout(remaining):
                message = await ws.receive()
        except TimeoutError:
            continue
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return
        if message.type == WSMsgType.ERROR:
            return
        now = time.monotonic()
        tokens = min(burst, tokens + (now - refilled) * rate)
        refilled = now
        if tokens < 1:
            strikes += 1
            if strikes > MAX_STRIKES:
                await _refuse(ws, "too many messages")
                return
            if strikes == 1:
                client.push(
                    Error(code="rate_limited", message=f"at most {rate:g} messages per second")
                )
            continue
        tokens -= 1
        if message.type != WSMsgType.TEXT:
            strikes += 1
            client.push(Error(code="bad_request", message="expected a JSON text message"))
            continue
        try:
            request_message = decode_client(message.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            strikes += 1
            if strikes > MAX_STRIKES:
                await _refuse(ws, "too many bad messages")
                return
            client.push(Error(code="bad_request", message=str(error)))
            continue
        strikes = 0
        match request_message:
            case Subscribe(chargers=chargers, since=since):
                await _learn_end(request.app, since)
                try:
                    broker.subscribe(
                        client, chargers, since if since is not None else since_default
                    )
                except Forbidden as error:
                    await _refuse(ws, str(error))
                    return
                since_default = None
            case Unsubscribe(chargers=chargers):
                broker.unsubscribe(client, chargers)


# -- running it --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_fanout(
    settings: Settings, nats_url: str, *, ops: Ops | None = None
) -> AsyncIterator[int]:
    """Serve the fan-out until the block ends; yields the port it listens on. Its metrics
    and readiness go to ``ops``."""
    app = create_app(settings, nats_url)
    if ops is not None:
        app[OPS] = ops
        ops.collect(functools.partial(families, app[BROKER]))
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=5.0,
        # aiohttp rounds timers longer than this up to the whole second, which makes every
        # client that connected within the same second get its heartbeat ping at the same
        # instant: 10,000 clients gave bursts of hundreds of pings and pongs, and 150-200 ms
        # of latency for the messages queued behind them.
        timeout_ceil_threshold=settings.fanout.heartbeat_s * 2,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.fanout.host, settings.fanout.port)
        await site.start()
        port = int(runner.addresses[0][1])
        log.info("fanout.listening", url=f"http://{settings.fanout.host}:{port}/")
        async with gc_policy():
            yield port
    finally:
        await runner.cleanup()
