"""The command API's aiohttp shell: authorise, validate, audit, forward, answer.

Every request that passes authentication and validation is stored as an
``admin.command.requested`` event BEFORE the command goes to the gateway; the gateway's reply
is stored as ``admin.command.finished`` before the HTTP answer. Refusals (401/403) are
stored as ``admin.access.denied``.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog
from aiohttp import web

from hub.api.endpoints import ENDPOINTS, BadBody, Endpoint, payload_for
from hub.bus import Connection, EventRefused, EventStore, connect
from hub.commands import finished_event, send_requested
from hub.config import Settings
from hub.domain.command_tracking import CommandError, CommandView, Tracker, finished_view
from hub.domain.device_model import Reports, is_report_part, report_part
from hub.domain.facts import ReportPart
from hub.domain.redaction import (
    DEFAULT_SECRET_KEYS,
    SecretKeys,
    parse_secret_keys,
    redact_payload,
)
from hub.follower import Follower
from hub.subjects import COMMAND_WILDCARD
from hub.tokens import AuthError, Scope, Verifier
from schemas.commands import CommandReply
from schemas.events import (
    AccessDenied,
    CommandFinished,
    CommandRequested,
    Event,
    OcppFrame,
)

if TYPE_CHECKING:
    from hub.api.book import LiveFold

log = structlog.get_logger("hub.api")

# The NotifyReport CALLs 2.x stations send, which the API assembles into reports.
REPORT_PARTS: Final = "ev.cp.*.in.NotifyReport"

DEFAULT_TIMEOUT_S: Final = 30.0
MAX_TIMEOUT_S: Final = 300.0
# Commands answered 202 and still waiting for the charger; beyond this, 429.
MAX_BACKGROUND: Final = 1024
# Refusals are audited up to this rate (a burst of twice as many); an unauthenticated
# flood beyond it is counted and logged, not stored, so it cannot fill the stream.
AUDIT_PER_S: Final = 50.0
STORE_TIMEOUT_S: Final = 5.0
SHUTDOWN_GRACE_S: Final = 5.0
OPERATOR_ROLES: Final = frozenset({"operator", "admin"})

_json: Final = msgspec.json.Encoder()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A check of a command's payload against what the hub knows of the charger, before anything
# is stored or sent: the refusal (a 400), or None.
Check = Callable[[str, bytes], Awaitable["ErrorBody | None"]]


class CommandApi:
    """The API's state: the tracking fold, the event store, and the commands in flight."""

    def __init__(
        self,
        verifier: Verifier,
        known: Callable[[str], bool],
        secret_keys: SecretKeys = DEFAULT_SECRET_KEYS,
    ) -> None:
        self.verifier = verifier
        self.secret_keys = secret_keys  # configuration values never stored in clear
        self.known = known  # whether the hub has ever seen the charger (else 404)
        self.tracker = Tracker()
        self.reports = Reports()  # 2.x stations' device model reports (NotifyReport parts)
        self.connection: Connection | None = None
        self.store: EventStore | None = None
        self.background: set[asyncio.Task[CommandView]] = set()
        self.checks: dict[str, Check] = {}  # by OCPP action (hub/api/profiles.py's)
        self._audit_tokens = AUDIT_PER_S * 2
        self._audit_refilled = time.monotonic()
        self.audits_dropped = 0

    def apply(self, event: Event, seq: int) -> None:
        """Fold an event of the API's own or one the stream delivers (again): commands, and
        the NotifyReport parts that answer a GetBaseReport or GetReport."""
        if is_report_part(event):
            assert isinstance(event, OcppFrame)
            fact = report_part(seq, event)
            if isinstance(fact, ReportPart):
                self.reports.part(fact)
            return
        self.tracker.apply(event)
        if isinstance(event, CommandRequested):
            self.reports.requested(event)
        elif isinstance(event, CommandFinished):
            self.reports.finished(event)

    def audit_allowed(self) -> bool:
        now = time.monotonic()
        self._audit_tokens = min(
            AUDIT_PER_S * 2, self._audit_tokens + (now - self._audit_refilled) * AUDIT_PER_S
        )
        self._audit_refilled = now
        if self._audit_tokens < 1:
            self.audits_dropped += 1
            return False
        self._audit_tokens -= 1
        return True


API: Final = web.AppKey("command_api", CommandApi)


def setup(
    app: web.Application,
    settings: Settings,
    verifier: Verifier,
    known: Callable[[str], bool],
    nats_url: str,
    live: LiveFold,
) -> None:
    """Register the command API on an aiohttp app (the fan-out's, whose fold is ``live``)."""
    from hub.api import credentials, money, openapi, profiles, sites
    from hub.api.book import LIVE

    app[API] = CommandApi(verifier, known, parse_secret_keys(settings.gateway.secret_config_keys))
    app[LIVE] = live
    app.cleanup_ctx.append(_backbone(settings, nats_url))
    for endpoint in ENDPOINTS:
        app.router.add_route(
            endpoint.method,
            f"/api/v1/chargers/{{charge_point_id}}/{endpoint.name}",
            _command_handler(endpoint),
        )
    app.router.add_get("/api/v1/commands/{command_id}", _answering_errors(_get_command))
    app.router.add_get(
        "/api/v1/chargers/{charge_point_id}/reports/{request_id}", _answering_errors(_get_report)
    )
    money.setup(app, settings.stream.name)
    credentials.setup(app, settings.stream.name)
    profiles.setup(app)
    sites.setup(app, settings.stream.name)
    openapi.add_routes(app)


# -- the stream --------------------------------------------------------------------------------


def _backbone(
    settings: Settings, nats_url: str
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application) -> AsyncIterator[None]:
        api = app[API]
        connection = await connect(nats_url, name="hub-command-api")
        try:
            store = EventStore(connection, timeout=settings.gateway.publish_timeout_s)
            await store.start()
            async with Follower(
                connection,
                settings.stream.name,
                (COMMAND_WILDCARD, REPORT_PARTS),
                api.apply,
                name="commands",
            ):
                api.connection, api.store = connection, store
                try:
                    yield
                finally:
                    # Commands answered 202 get a moment to record their outcome; the rest
                    # stay pending in the tracker (their CALL and answer are in the stream
                    # regardless).
                    if api.background:
                        await asyncio.wait(list(api.background), timeout=SHUTDOWN_GRACE_S)
                    for task in list(api.background):
                        task.cancel()
                    await asyncio.gather(*api.background, return_exceptions=True)
        finally:
            await connection.close()

    return run


async def _store(api: CommandApi, event: Event) -> int:
    """Store ``event`` and return its stream sequence (the first copy's, for a duplicate)."""
    if api.store is None:
        raise _error(503, "unavailable", "the command API is starting")
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            [seq] = await api.store.store([event])
    except TimeoutError:
        raise _error(503, "unavailable", "the event store did not acknowledge in time") from None
    api.apply(event, seq)
    return seq


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- responses ---------------------------------------------------------------------------------


def json_response(body: object, status: int = 200, **headers: str) -> web.Response:
    return web.Response(
        body=_json.encode(body), status=status, content_type="application/json", headers=headers
    )


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    error: str
    message: str
    command_id: str = ""
    rule: str = ""  # the smart-charging rule a profile breaks (docs/smart-charging.md)


class ApiError(Exception):
    """Ends a request early with this JSON answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _error(status: int, error: str, message: str, **headers: str) -> ApiError:
    return ApiError(json_response(ErrorBody(error=error, message=message), status, **headers))


def _answering_errors(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return error.response

    return handle


# -- authorisation -----------------------------------------------------------------------------


def _bearer(request: web.Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def _refuse(
    request: web.Request, status: int, reason: str, actor: str = "", charge_point_id: str = ""
) -> ApiError:
    api = request.app[API]
    if api.audit_allowed():
        await _store(
            api,
            AccessDenied(
                id=uuid.uuid4().hex,
                received_at=now_ms(),
                actor=actor,
                method=request.method,
                path=request.path,
                http_status=status,
                reason=reason,
                charge_point_id=charge_point_id,
            ),
        )
    elif api.audits_dropped in (1, 100, 10_000) or api.audits_dropped % 100_000 == 0:
        log.warning("api.audit_dropped", dropped=api.audits_dropped)
    log.info("api.refused", status=status, actor=actor, charge_point_id=charge_point_id)
    if status == 401:
        return _error(
            401, "unauthorized", reason, **{"WWW-Authenticate": 'Bearer realm="ocpp-hub"'}
        )
    return _error(403, "forbidden", reason)


async def _authorise(
    request: web.Request, charge_point_id: str, *, command: bool, doing: str = "send commands"
) -> Scope:
    token = _bearer(request)
    if not token:
        raise await _refuse(
            request,
            401,
            "missing token: send 'Authorization: Bearer <jwt>'",
            charge_point_id=charge_point_id,
        )
    try:
        scope = request.app[API].verifier.verify(token)
    except AuthError as error:
        raise await _refuse(request, 401, str(error), charge_point_id=charge_point_id) from None
    if command and scope.role not in OPERATOR_ROLES:
        raise await _refuse(
            request,
            403,
            f"role {scope.role!r} may not {doing}",
            scope.subject,
            charge_point_id,
        )
    if charge_point_id and not scope.allows(charge_point_id):
        raise await _refuse(
            request,
            403,
            f"charger {charge_point_id!r} is outside the token's scope",
            scope.subject,
            charge_point_id,
        )
    return scope


# -- handlers ----------------------------------------------------------------------------------


def _wait_flag(request: web.Request) -> bool:
    raw = request.query.get("wait", "true").lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise _error(400, "bad_request", f"wait: expected true or false, got {raw!r}")


def _timeout(request: web.Request) -> float:
    raw = request.query.get("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= MAX_TIMEOUT_S:
        raise _error(
            400,
            "bad_request",
            f"timeout: expected seconds from 0.1 to {MAX_TIMEOUT_S:g}, got {raw!r}",
        )
    return value


def _command_handler(endpoint: Endpoint) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await _command(request, endpoint)

    handle.__name__ = f"command_{endpoint.action}"
    return _answering_errors(handle)


async def _command(request: web.Request, endpoint: Endpoint) -> web.Response:
    api = request.app[API]
    charge_point_id = request.match_info["charge_point_id"]
    scope = await _authorise(request, charge_point_id, command=True)
    if not api.known(charge_point_id):
        raise _error(404, "not_found", f"no charger {charge_point_id!r}")
    wait = _wait_flag(request)
    timeout_s = _timeout(request)
    body = await request.read() if endpoint.has_body else b""
    try:
        payload = payload_for(endpoint, body, request.query.getall("key", []))
    except BadBody as error:
        raise _error(400, "bad_request", str(error)) from None
    check = api.checks.get(endpoint.action)
    if check is not None and (refused := await check(charge_point_id, payload)) is not None:
        raise ApiError(json_response(refused, 400))
    if len(api.background) >= MAX_BACKGROUND and not wait:
        raise _error(429, "busy", "too many commands waiting for answers", **{"Retry-After": "1"})
    requested = await requested_command(
        api, scope, charge_point_id, endpoint.action, payload, timeout_s
    )
    command_id = requested.command_id
    if not wait:
        task = asyncio.create_task(
            _finish(api, requested, payload, endpoint.versions), name=f"api.command.{command_id}"
        )
        api.background.add(task)
        task.add_done_callback(_forget(api))
        view = api.tracker.get(command_id)
        return json_response(view, status=202, Location=f"/api/v1/commands/{command_id}")
    view = await _finish(api, requested, payload, endpoint.versions)
    return json_response(view, status=HTTP_STATUS[view.outcome])


async def requested_command(
    api: CommandApi,
    scope: Scope,
    charge_point_id: str,
    action: str,
    payload: bytes,
    timeout_s: float,
) -> CommandRequested:
    """Store the command's ``admin.command.requested``, before anything is sent."""
    command_id = uuid.uuid4().hex
    # The audit event keeps secret configuration values redacted; the charger gets them.
    stored = redact_payload(action, payload, api.secret_keys)
    requested = CommandRequested(
        id=f"{command_id}:requested",
        received_at=now_ms(),
        actor=scope.subject,
        command_id=command_id,
        charge_point_id=charge_point_id,
        action=action,
        payload=msgspec.Raw(payload if stored is None else stored),
        timeout_s=timeout_s,
    )
    try:
        await _store(api, requested)
    except EventRefused as error:
        # Nothing is sent that could not be recorded first.
        raise _error(413, "payload_too_large", f"the command cannot be recorded: {error}") from None
    log.info(
        "api.command",
        command_id=command_id,
        charge_point_id=charge_point_id,
        action=action,
        actor=scope.subject,
    )
    return requested


def _forget(api: CommandApi) -> Callable[[asyncio.Task[CommandView]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        api.background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("api.command_failed", task=task.get_name(), error=repr(error))

    return done


# The HTTP status of each gateway reply (docs/command-api.md).
HTTP_STATUS: Final[dict[str, int]] = {
    "answered": 200,
    "callerror": 502,
    "invalid_answer": 502,
    "timeout": 504,
    "offline": 409,
    "wrong_version": 409,
    "busy": 429,
    "invalid": 400,
}


async def _finish(
    api: CommandApi,
    requested: CommandRequested,
    payload: bytes,
    versions: tuple[str, ...] = (),
) -> CommandView:
    """Send the command (``payload``: the CALL's, secrets and all) to a charger connected with
    one of ``versions``, store what became of it, and return the tracked view."""
    assert api.connection is not None
    reply = await send_requested(api.connection.client, requested, payload, versions)
    finished = finished_event(requested, reply, now_ms(), api.secret_keys)
    try:
        await _store(api, finished)
    except EventRefused as error:
        # The answer is too large for NATS to store twice; the gateway stored it as an
        # ocpp.frame event, and this one says so instead of failing the request.
        too_large = CommandReply(
            command_id=requested.command_id,
            status="invalid_answer",
            error_code="AnswerTooLarge",
            error_description=f"the answer could not be stored with this command: {error}; "
            "it is in the stream as an ocpp.frame event",
        )
        finished = finished_event(requested, too_large, now_ms())
        await _store(api, finished)
    log.info("api.command_finished", command_id=requested.command_id, status=reply.status)
    view = api.tracker.get(requested.command_id)
    return view if view is not None else finished_view(finished)


async def _get_command(request: web.Request) -> web.Response:
    api = request.app[API]
    command_id = request.match_info["command_id"]
    view = api.tracker.get(command_id)
    scope = await _authorise(request, "", command=False)
    if view is None:
        raise _error(404, "not_found", f"no command {command_id!r} (unknown, or evicted)")
    if not scope.allows(view.charge_point_id):
        raise await _refuse(
            request,
            403,
            f"charger {view.charge_point_id!r} is outside the token's scope",
            scope.subject,
            view.charge_point_id,
        )
    return json_response(view)


# A report's HTTP status: 202 while parts are missing, 409 when none will come.
REPORT_STATUS: Final = {"complete": 200, "pending": 202, "refused": 409}


async def _get_report(request: web.Request) -> web.Response:
    api = request.app[API]
    charge_point_id = request.match_info["charge_point_id"]
    await _authorise(request, charge_point_id, command=False)
    raw = request.match_info["request_id"]
    try:
        request_id = int(raw)
    except ValueError:
        raise _error(400, "bad_request", f"requestId: expected an integer, got {raw!r}") from None
    view = api.reports.get(charge_point_id, request_id)
    if view is None:
        raise _error(
            404,
            "not_found",
            f"no report {request_id} of {charge_point_id!r}: never asked for nor sent (or evicted)",
        )
    return json_response(view, status=REPORT_STATUS[view.status])


__all__ = ["API", "HTTP_STATUS", "CommandApi", "CommandError", "ErrorBody", "setup"]
