"""Charger credentials and acceptance over REST and ``hub chargers``: registration (a
password or key, and the security profile), password rotation, and accepting a charger the
``pending`` boot policy holds.

A rotation is events first, then the CALL: ``admin.charger.password.rotating`` (the new
password's PBKDF2 hash, never the password), then ChangeConfiguration AuthorizationKey (1.6)
or SetVariables SecurityCtrlr.BasicAuthPassword (2.x), as the version of the charger's latest
connection says (the gateway refuses the one not for the live connection's version before
the charger sees it, and the other is sent then) through the command path
(``admin.command.requested`` with the value redacted, the CALL, ``admin.command.finished``),
then ``admin.charger.password.rotated`` when the charger
refuses the key or does not answer. When it takes the key, the gateway records the end
(``completed``) as the charger logs in with it; until then both passwords log in.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Final, Literal

import msgspec
import structlog
from aiohttp import web
from nats.aio.client import Client as NatsClient

from hub.api.book import LIVE, Book
from hub.api.http import (
    API,
    _answering_errors,
    _authorise,
    _error,
    _timeout,
    json_response,
    now_ms,
)
from hub.api.money_rules import Origin
from hub.commands import finished_event, send_command
from hub.domain.charger_ids import id_problem
from hub.domain.credentials import (
    MAX_KEY_BYTES,
    BadSecret,
    Secret,
    key_secret,
    password_calls,
    password_secret,
    rotation_outcome,
    secret_of,
)
from hub.domain.ocpp_versions import parse_versions
from hub.domain.redaction import REDACTED
from hub.domain.security_profiles import BadRegistration, check_registration
from hub.passwords import hash_password
from hub.registry import Registry
from schemas.events import (
    ChargerAccepted,
    ChargerRegistered,
    CommandRequested,
    Event,
    OcppVersion,
    PasswordRotationEnded,
    PasswordRotationStarted,
    SecurityProfile,
)

log = structlog.get_logger("hub.api.credentials")

CHARGER_SUBJECTS: Final = ("ev.admin.charger.>",)

RotationState = Literal["accepted", "completed", "rejected", "timeout", "failed"]


class RegistrationBody(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    """``PUT /api/v1/chargers/{chargePointId}/registration``, and ``hub chargers add``: a
    ``password`` (16 to 40 printable characters) or a ``key`` (16 to 20 bytes, as hex), and
    the ``securityProfile`` it must connect with (0 to 3; none: by its password if it has
    one), and the ``ocppVersions`` it may connect with (of ``1.6``, ``2.0.1``, ``2.1``, within
    the gateway's; none: the gateway's). A registration replaces the charger's earlier one."""

    password: str | None = None
    key: str | None = None
    security_profile: SecurityProfile | None = None
    ocpp_versions: list[str] | None = None


class RegistrationView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``securityProfile`` null: by its password if it has one (1 or 2), else none (0).
    ``ocppVersions`` empty: whatever the gateway negotiates."""

    charge_point_id: str
    event_id: str
    actor: str
    registered_at: int
    security_profile: SecurityProfile | None
    has_password: bool
    ocpp_versions: list[OcppVersion]


class RotationBody(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    """``POST /api/v1/chargers/{chargePointId}/password-rotation``: the new ``password``
    (16 to 40 printable characters), or ``key`` (16 to 20 bytes, as hex); with neither, the
    hub generates a 20-byte key and answers it once."""

    password: str | None = None
    key: str | None = None


class RotationView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """``state`` ``accepted``: the charger took the key; both passwords log in until it logs
    in with the new one. ``key``: the generated key, in this answer only."""

    rotation_id: str
    charge_point_id: str
    command_id: str
    state: RotationState
    detail: str = ""
    actor: str = ""
    key: str = ""


class AcceptanceView(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    charge_point_id: str
    event_id: str
    actor: str
    accepted_at: int


class NotRegistered(LookupError):
    """A rotation for a charger the hub has no password for (404 over REST, exit 1)."""


class Busy(Exception):
    """A rotation that would cut another one short (409)."""


def registration(charge_point_id: str, body: RegistrationBody, origin: Origin) -> ChargerRegistered:
    """The event that registers a charger as ``body`` asks; the one rule set REST and CLI
    share. Raises BadRegistration (the id, the profile) or BadSecret (the password or key).
    Hashes the password: slow on purpose, so not on an event loop."""
    if problem := id_problem(charge_point_id):
        raise BadRegistration("charge_point_id", f"invalid charge point id: {problem}")
    if body.password is not None and body.key is not None:
        raise BadSecret("key", "give a password or a key, not both")
    secret: Secret | None = None
    if body.password is not None:
        secret = password_secret(body.password)
    elif body.key is not None:
        secret = key_secret(body.key)
    check_registration(body.security_profile, secret is not None)
    versions = parse_versions(body.ocpp_versions) if body.ocpp_versions is not None else ()
    return ChargerRegistered(
        id=origin.event_id,
        received_at=origin.received_at,
        actor=origin.actor,
        charge_point_id=charge_point_id,
        password_hash=hash_password(secret.raw) if secret is not None else "",
        security_profile=body.security_profile,
        ocpp_versions=versions,
    )


def registration_view(event: ChargerRegistered) -> RegistrationView:
    return RegistrationView(
        charge_point_id=event.charge_point_id,
        event_id=event.id,
        actor=event.actor,
        registered_at=event.received_at,
        security_profile=event.security_profile,
        has_password=bool(event.password_hash),
        ocpp_versions=list(event.ocpp_versions),
    )


def rotation_secret(
    registry: Registry, charge_point_id: str, body: RotationBody
) -> tuple[Secret, bool]:
    """The new secret a rotation request asks for, and whether the hub generated it (then
    the operator is shown it); the one check REST and CLI share.

    Raises BadSecret, NotRegistered or Busy. A second rotation while one goes on is refused:
    dropping a key the charger may already hold would lock it out."""
    record = registry.chargers.get(charge_point_id)
    if record is None:
        raise NotRegistered(f"charger {charge_point_id!r} is not registered")
    if not record.password_hash and record.security_profile == 3:
        raise NotRegistered(
            f"charger {charge_point_id!r} authenticates with its client certificate "
            "(security profile 3): it has no password to rotate"
        )
    if not record.password_hash:
        raise NotRegistered(
            f"charger {charge_point_id!r} has no password (security profile 0): "
            "register one with hub chargers add"
        )
    if record.rotation_id:
        raise Busy(
            f"a password rotation of {charge_point_id!r} is under way ({record.rotation_id}); "
            "it ends when the charger logs in with the new password"
        )
    return secret_of(body.password, body.key, secrets.token_bytes(MAX_KEY_BYTES))


async def rotate(
    client: NatsClient,
    store: Callable[[Event], Awaitable[int]],
    charge_point_id: str,
    secret: Secret,
    origin: Origin,
    *,
    ocpp_version: str,
    timeout_s: float,
    show_key: bool,
) -> RotationView:
    """Record the rotation, send the key through the command path, record what came of it.
    ``ocpp_version``: of the charger's latest connection as the hub knows it, which picks
    the call ("": unknown)."""
    rotation_id, command_id = origin.event_id, uuid.uuid4().hex
    password_hash = await asyncio.to_thread(hash_password, secret.raw)
    await store(
        PasswordRotationStarted(
            id=rotation_id,
            received_at=origin.received_at,
            actor=origin.actor,
            charge_point_id=charge_point_id,
            rotation_id=rotation_id,
            password_hash=password_hash,
            command_id=command_id,
        )
    )
    # The charger's OCPP version decides the call. The gateway refuses a call not for the
    # live connection's version (wrong_version) before anything reaches the charger: one
    # that reconnected with another version since is sent the other call.
    for attempt, call in enumerate(password_calls(ocpp_version)):
        if attempt:
            command_id = uuid.uuid4().hex
        requested = CommandRequested(
            id=f"{command_id}:requested",
            received_at=now_ms(),
            actor=origin.actor,
            command_id=command_id,
            charge_point_id=charge_point_id,
            action=call.action,
            payload=msgspec.Raw(call.payload(REDACTED)),
            timeout_s=timeout_s,
        )
        await store(requested)
        reply = await send_command(
            client,
            charge_point_id,
            call.action,
            call.payload(secret.configured),
            command_id=command_id,
            timeout_s=timeout_s,
            versions=call.versions,
        )
        await store(finished_event(requested, reply, now_ms()))
        if reply.status != "wrong_version":
            break
    outcome, detail = rotation_outcome(reply.status, bytes(reply.payload))
    if outcome is not None:
        await store(
            PasswordRotationEnded(
                id=f"{rotation_id}:ended",
                received_at=now_ms(),
                actor=origin.actor,
                charge_point_id=charge_point_id,
                rotation_id=rotation_id,
                outcome=outcome,
                detail=detail,
            )
        )
    log.info(
        "password.rotation",
        charge_point_id=charge_point_id,
        rotation_id=rotation_id,
        state=outcome or "accepted",
        actor=origin.actor,
    )
    return RotationView(
        rotation_id=rotation_id,
        charge_point_id=charge_point_id,
        command_id=command_id,
        state=outcome or "accepted",
        detail=detail,
        actor=origin.actor,
        key=secret.configured if show_key else "",
    )


def charger_accepted(charge_point_id: str, origin: Origin) -> ChargerAccepted:
    return ChargerAccepted(
        id=origin.event_id,
        received_at=origin.received_at,
        actor=origin.actor,
        charge_point_id=charge_point_id,
    )


def acceptance_view(event: ChargerAccepted) -> AcceptanceView:
    return AcceptanceView(
        charge_point_id=event.charge_point_id,
        event_id=event.id,
        actor=event.actor,
        accepted_at=event.received_at,
    )


# -- REST --------------------------------------------------------------------------------------


class CredentialsApi(Book):
    """The charger registry, folded for the app's life."""

    def __init__(self) -> None:
        self.registry = Registry()
        super().__init__("credentials", CHARGER_SUBJECTS, self.registry.apply)


CREDENTIALS: Final = web.AppKey("credentials_api", CredentialsApi)


def setup(app: web.Application, stream: str) -> None:
    """Register the routes; call after the command API's backbone (whose connection it uses)."""
    app[CREDENTIALS] = state = CredentialsApi()
    state.follow(app, stream)
    route = app.router.add_route
    route(
        "PUT",
        "/api/v1/chargers/{charge_point_id}/registration",
        _answering_errors(_register),
    )
    route(
        "POST",
        "/api/v1/chargers/{charge_point_id}/password-rotation",
        _answering_errors(_rotate),
    )
    route("POST", "/api/v1/chargers/{charge_point_id}/accept", _answering_errors(_accept))


def _origin(subject: str) -> Origin:
    return Origin(uuid.uuid4().hex, now_ms(), subject)


# HTTP status of each state: the charger's verdict is an answer; no answer is the gateway's.
_ROTATION_STATUS: Final[dict[RotationState, int]] = {
    "accepted": 200,
    "completed": 200,
    "rejected": 200,
    "timeout": 504,
    "failed": 409,
}


async def _rotate(request: web.Request) -> web.Response:
    api, state = request.app[API], request.app[CREDENTIALS]
    charge_point_id = request.match_info["charge_point_id"]
    scope = await _authorise(request, charge_point_id, command=True, doing="rotate passwords")
    timeout_s = _timeout(request)
    raw = await request.read()
    try:
        body = msgspec.json.decode(raw or b"{}", type=RotationBody)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise _error(400, "bad_request", str(error)) from None
    try:
        secret, generated = rotation_secret(state.registry, charge_point_id, body)
    except BadSecret as error:
        raise _error(400, "bad_request", f"{error.problem} - at `$.{error.field}`") from None
    except NotRegistered as error:
        raise _error(404, "not_found", str(error)) from None
    except Busy as error:
        raise _error(409, "conflict", str(error)) from None
    assert api.connection is not None
    live = request.app[LIVE]
    await live.settled()  # a charger that just connected: its version is known
    view = await rotate(
        api.connection.client,
        lambda event: state.stored(api, event),
        charge_point_id,
        secret,
        _origin(scope.subject),
        ocpp_version=live.ocpp_version(charge_point_id),
        timeout_s=timeout_s,
        show_key=generated,
    )
    return json_response(view, status=_ROTATION_STATUS[view.state])


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


async def _register(request: web.Request) -> web.Response:
    state = request.app[CREDENTIALS]
    charge_point_id = request.match_info["charge_point_id"]
    scope = await _authorise(request, charge_point_id, command=True, doing="register chargers")
    try:
        body = msgspec.json.decode(await request.read() or b"{}", type=RegistrationBody)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise _error(400, "bad_request", str(error)) from None
    try:
        event = await asyncio.to_thread(registration, charge_point_id, body, _origin(scope.subject))
    except (BadSecret, BadRegistration) as error:
        where = "the path" if error.field == "charge_point_id" else f"`$.{_camel(error.field)}`"
        raise _error(400, "bad_request", f"{error.problem} - at {where}") from None
    await state.stored(request.app[API], event)
    log.info(
        "api.charger_registered",
        charge_point_id=charge_point_id,
        security_profile=event.security_profile,
        actor=event.actor,
    )
    return json_response(registration_view(event))


async def _accept(request: web.Request) -> web.Response:
    api, state = request.app[API], request.app[CREDENTIALS]
    charge_point_id = request.match_info["charge_point_id"]
    scope = await _authorise(request, charge_point_id, command=True, doing="accept chargers")
    if not api.known(charge_point_id) and not state.registry.is_known(charge_point_id):
        raise _error(404, "not_found", f"no charger {charge_point_id!r}")
    event = charger_accepted(charge_point_id, _origin(scope.subject))
    await state.stored(api, event)
    log.info("api.charger_accepted", charge_point_id=charge_point_id, actor=event.actor)
    return json_response(acceptance_view(event))


__all__ = [
    "CREDENTIALS",
    "AcceptanceView",
    "Busy",
    "NotRegistered",
    "RegistrationBody",
    "RegistrationView",
    "RotationBody",
    "RotationView",
    "charger_accepted",
    "registration",
    "registration_view",
    "rotate",
    "rotation_secret",
    "setup",
]
