"""Asking the gateway that holds a charger to send it a CALL, over NATS request/reply."""

from __future__ import annotations

import uuid

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient

from hub.domain.redaction import DEFAULT_SECRET_KEYS, SecretKeys, redact_payload
from hub.subjects import encode_token
from schemas.commands import (
    COMMAND_SUBJECT_PREFIX,
    CommandReply,
    CommandRequest,
    reply_decoder,
    request_encoder,
)
from schemas.events import CommandFinished, CommandRequested

# How much longer than the charger's own deadline to wait for the gateway's reply, which
# also covers storing the CALL and queueing behind earlier commands for the same charger.
_GATEWAY_GRACE_S = 5.0


def command_subject(charge_point_id: str) -> str:
    return f"{COMMAND_SUBJECT_PREFIX}.{encode_token(charge_point_id)}"


async def send_command(
    client: NatsClient,
    charge_point_id: str,
    action: str,
    payload: bytes | msgspec.Raw,
    *,
    command_id: str | None = None,
    timeout_s: float = 30.0,
    versions: tuple[str, ...] = (),
) -> CommandReply:
    """The charger's answer, or why there is none (offline, timeout, invalid, busy, and
    wrong_version for a charger connected with none of ``versions``)."""
    request = CommandRequest(
        command_id=command_id or uuid.uuid4().hex,
        action=action,
        payload=payload if isinstance(payload, msgspec.Raw) else msgspec.Raw(payload),
        timeout_s=timeout_s,
        versions=versions,
    )
    try:
        msg = await client.request(
            command_subject(charge_point_id),
            request_encoder.encode(request),
            timeout=timeout_s + _GATEWAY_GRACE_S,
        )
    except nats.errors.NoRespondersError:
        return CommandReply(
            command_id=request.command_id,
            status="offline",
            error_description=f"no gateway holds a connection from {charge_point_id!r}",
        )
    except nats.errors.TimeoutError:
        return CommandReply(
            command_id=request.command_id,
            status="timeout",
            error_description="the gateway did not reply in time",
        )
    return reply_decoder.decode(msg.data)


def finished_event(
    requested: CommandRequested,
    reply: CommandReply,
    received_at: int,
    secret_keys: SecretKeys = DEFAULT_SECRET_KEYS,
) -> CommandFinished:
    """The audit event of what became of a requested command; secret configuration values
    in the charger's answer are redacted (the gateway's reply should have none already)."""
    redacted = redact_payload(requested.action, reply.payload, secret_keys)
    return CommandFinished(
        id=f"{requested.command_id}:finished",
        received_at=received_at,
        actor=requested.actor,
        command_id=requested.command_id,
        charge_point_id=requested.charge_point_id,
        action=requested.action,
        status=reply.status,
        payload=reply.payload if redacted is None else msgspec.Raw(redacted),
        error_code=reply.error_code,
        error_description=reply.error_description,
    )


async def send_requested(
    client: NatsClient,
    requested: CommandRequested,
    payload: bytes | None = None,
    versions: tuple[str, ...] = (),
) -> CommandReply:
    """Send a requested command: its stored payload, or ``payload`` when the stored one had
    secrets redacted (the charger gets the real value); ``versions`` as for send_command."""
    return await send_command(
        client,
        requested.charge_point_id,
        requested.action,
        requested.payload if payload is None else payload,
        command_id=requested.command_id,
        timeout_s=requested.timeout_s,
        versions=versions,
    )
