"""The gateway's pure core: one inbound WebSocket message in, the events to store and the reply
to send out. No I/O happens here; ``hub.gateway.connection`` does it, in that order."""

from __future__ import annotations

import hashlib
from typing import Final, Literal, NamedTuple

import msgspec

from hub.domain.redaction import DEFAULT_SECRET_KEYS, SecretKeys, redact_payload, redact_text
from hub.domain.security_profiles import ClientCertificate
from hub.gateway import frames, ocpp2, ocpp16
from hub.gateway.frames import Call, CallError, CallResult, CallResultError, Malformed, Send
from schemas import ocpp
from schemas.commands import MAX_COMMAND_ID_LENGTH, CommandReply, CommandRequest
from schemas.events import (
    ChargerConnected,
    ChargerDisconnected,
    ChargerReplaced,
    Direction,
    Event,
    FrameRejected,
    MessageType,
    OcppFrame,
    OcppVersion,
    SecurityProfile,
)
from schemas.ocpp.formats import check_formats

# What each version answers; any other CALL gets NotImplemented (_unhandled_action).
HANDLERS: Final[dict[OcppVersion, dict[str, ocpp16.Handler]]] = {
    "1.6": ocpp16.HANDLERS,
    "2.0.1": ocpp2.HANDLERS_201,
    "2.1": ocpp2.HANDLERS_21,
}

_encoder: Final = msgspec.json.Encoder()
_NO_DETAILS: Final = msgspec.Raw(b"{}")


class Link(msgspec.Struct, frozen=True, kw_only=True):
    """What every event of one connection shares."""

    charge_point_id: str
    connection_id: str
    gateway_id: str
    ocpp_version: OcppVersion
    # Configuration keys whose values no event may hold (hub.domain.redaction).
    secret_keys: SecretKeys = DEFAULT_SECRET_KEYS


class ValidCall(msgspec.Struct, frozen=True, gc=False):
    call: Call
    request: msgspec.Struct


class Signing(msgspec.Struct, frozen=True, gc=False):
    """A CSR the hub accepted to sign: the SignCertificate CALL ``unique_id`` at
    ``position`` on the connection. Signed once its answer is stored and sent."""

    csr: str
    unique_id: str
    position: int
    # A 2.1 SignCertificate's requestId, echoed in its CertificateSigned.
    request_id: int | None = None


class Exchange(msgspec.Struct, frozen=True, gc=False):
    """The outcome of one inbound message: store ``events``, then send ``reply`` if any,
    then sign ``signing`` if any."""

    events: list[Event]
    reply: bytes | None
    action: str
    unique_id: str
    outcome: str
    # The CALLRESULT payload in ``reply``: a retry of the CALL may be answered with it.
    answer: msgspec.Raw | None = None
    signing: Signing | None = None


Inbound = ValidCall | CallResult | CallError | CallResultError | Send | Malformed


class Received(NamedTuple):
    """A frame as it arrived: its bytes, the hub's time, and its place on the connection
    (1 for the connection's first frame, 2 for the next, ...)."""

    raw: bytes
    at: int
    position: int


def event_id(link: Link, kind: str, place: str) -> str:
    """The id of an event about the frame at ``place`` on ``link``'s connection.

    It names a receipt, not a content: storing the same receipt twice (the hub publishing
    again after a NATS reconnect) is one event, while a frame the charger sends again (a
    retry, a reboot's byte-identical BootNotification) arrives at another place, so it is
    recorded as the frame it is. ``kind`` (in, out, rejected) keeps a frame's events apart.
    """
    digest = hashlib.blake2b(digest_size=16, person=kind.encode()[:16])
    for part in (link.charge_point_id, link.connection_id, place):
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(4, "big"))
        digest.update(encoded)
    return digest.hexdigest()


def inspect(version: OcppVersion, data: bytes, *, max_frame_bytes: int) -> Inbound:
    try:
        return _inspect(version, data, max_frame_bytes)
    except Exception as error:  # a bug here must cost one frame, not the whole connection
        return Malformed("internal_error", "InternalError", f"{type(error).__name__}: {error}")


def _inspect(version: OcppVersion, data: bytes, max_frame_bytes: int) -> Inbound:
    parsed = frames.parse(data, version)
    if len(data) > max_frame_bytes:
        return _oversized(parsed, len(data), max_frame_bytes)
    if isinstance(parsed, Send):
        return _checked_send(version, parsed)
    if not isinstance(parsed, Call):
        return parsed
    handlers = HANDLERS[version]
    if parsed.action not in handlers:
        return _unhandled_action(version, parsed)
    request = ocpp.validate_call(version, parsed.action, parsed.payload)
    if isinstance(request, ocpp.PayloadError):
        return _violation(request, parsed)
    return ValidCall(parsed, request)


def _violation(error: ocpp.PayloadError, frame: Call | Send) -> Malformed:
    """A payload that breaks its action's schema; answered only if it was a CALL."""
    return Malformed(
        "schema_violation",
        error.code,
        error.description,
        unique_id=frame.unique_id,
        action=frame.action,
        answerable=isinstance(frame, Call),
    )


def _oversized(parsed: frames.Frame | Malformed, size: int, limit: int) -> Malformed:
    # Only a CALL waits for an answer; a result is never answered, even to refuse it.
    waits = isinstance(parsed, Call) or (isinstance(parsed, Malformed) and parsed.answerable)
    return Malformed(
        "oversized",
        "FormationViolation",
        f"frame is {size} bytes, the limit is {limit}",
        unique_id=parsed.unique_id,
        action=parsed.action if isinstance(parsed, Call | Send | Malformed) else "",
        answerable=waits,
    )


def _unhandled_action(version: OcppVersion, call: Call) -> Malformed:
    known = call.action in ocpp.known_actions(version)
    if version != "1.6":
        # A 2.x CALL the hub does not answer yet, whichever side sends it: NotImplemented
        # says the hub does not implement it, which a charger takes as final (no retries).
        what = "is not answered by this hub yet" if known else "is unknown"
        code, description = (
            "NotImplemented",
            f"OCPP {version} action {frames.quote(call.action)} {what}",
        )
    elif known:
        # A known action, but one only the central system sends (Reset, RemoteStart...).
        code, description = "NotSupported", f"{call.action} is not sent by a charger"
    else:
        code, description = "NotImplemented", f"unknown action {frames.quote(call.action)}"
    return Malformed(
        "unknown_action", code, description, unique_id=call.unique_id, action=call.action
    )


def _checked_send(version: OcppVersion, send: Send) -> Send | Malformed:
    """A SEND whose payload breaks its action's schema is refused (recorded, never answered).
    One whose action the version's types do not know is kept as sent: unconfirmed messages
    are for streams of data, and a type landing later must not turn them into refusals."""
    if send.action not in ocpp.known_actions(version):
        return send
    checked = ocpp.validate_call(version, send.action, send.payload)
    return _violation(checked, send) if isinstance(checked, ocpp.PayloadError) else send


def frame_event(
    link: Link,
    *,
    direction: Direction,
    message_type: MessageType,
    unique_id: str,
    action: str,
    payload: msgspec.Raw,
    place: str,
    received_at: int,
    error_code: str = "",
    error_description: str = "",
) -> OcppFrame:
    """The event of a frame; secret configuration values in its payload are redacted (the
    frame on the wire keeps them)."""
    return OcppFrame(
        id=event_id(link, direction, place),
        received_at=received_at,
        charge_point_id=link.charge_point_id,
        gateway_id=link.gateway_id,
        connection_id=link.connection_id,
        ocpp_version=link.ocpp_version,
        direction=direction,
        message_type=message_type,
        unique_id=unique_id,
        action=action,
        payload=stored_payload(link, action, payload),
        error_code=error_code,
        error_description=error_description,
    )


def stored_payload(link: Link, action: str, payload: msgspec.Raw) -> msgspec.Raw:
    """``payload`` as the stream may keep it: secret configuration values redacted."""
    redacted = redact_payload(action, payload, link.secret_keys)
    return payload if redacted is None else msgspec.Raw(redacted)


def answer(link: Link, valid: ValidCall, received: Received, ctx: ocpp16.Context) -> Exchange:
    call = valid.call
    response = HANDLERS[link.ocpp_version][call.action](valid.request, ctx)
    payload = msgspec.Raw(_encoder.encode(response))
    return _answered(link, call, received, payload)


def repeat(
    link: Link, valid: ValidCall, received: Received, *, answer: msgspec.Raw | None
) -> Exchange:
    """A retry of a CALL the hub still holds.

    It is stored as the frame it is, under an id of its own even when it repeats the CALL
    byte for byte: the stream records every frame that arrived. It is answered only when
    ``answer`` is given: the held CALL's answer, under the retry's uniqueId.
    """
    call = valid.call
    if answer is not None:
        return _answered(link, call, received, answer)
    event = _call_event(link, call, received)
    return Exchange([event], None, call.action, call.unique_id, "retry")


def _answered(link: Link, call: Call, received: Received, payload: msgspec.Raw) -> Exchange:
    reply = frames.encode_result(call.unique_id, payload)
    events: list[Event] = [
        _call_event(link, call, received),
        frame_event(
            link,
            direction="out",
            message_type="CALLRESULT",
            unique_id=call.unique_id,
            action=call.action,
            payload=payload,
            place=str(received.position),
            received_at=received.at,
        ),
    ]
    return Exchange(events, reply, call.action, call.unique_id, "ok", payload)


def _call_event(link: Link, call: Call, received: Received) -> OcppFrame:
    return frame_event(
        link,
        direction="in",
        message_type="CALL",
        unique_id=call.unique_id,
        action=call.action,
        payload=call.payload,
        place=str(received.position),
        received_at=received.at,
    )


def unanswered(link: Link, inbound: Send | CallResultError, received: Received) -> Exchange:
    """Record a 2.1 SEND or CALLRESULTERROR: an ``ocpp.frame`` and nothing to send back."""
    kind: MessageType
    match inbound:
        case Send():
            kind, action, payload, code, description = (
                "SEND",
                inbound.action,
                inbound.payload,
                "",
                "",
            )
        case CallResultError():
            kind, action, payload = "CALLRESULTERROR", "", inbound.details
            code, description = inbound.error_code, inbound.error_description
    event = frame_event(
        link,
        direction="in",
        message_type=kind,
        unique_id=inbound.unique_id,
        action=action,
        payload=payload,
        place=str(received.position),
        received_at=received.at,
        error_code=code,
        error_description=description,
    )
    return Exchange([event], None, action, inbound.unique_id, code or kind.lower())


def reject(
    link: Link, malformed: Malformed, received: Received, *, raw_budget: int = frames.RAW_BUDGET
) -> Exchange:
    """Record the refused frame, and answer with a CALLERROR unless the charger sent a result.

    A CALLERROR must not answer a CALLRESULT or CALLERROR (OCPP-J §4.2.3), so a broken or
    unexpected result is only recorded.
    """
    malformed = msgspec.structs.replace(
        malformed,
        error_code=frames.rpc_code(link.ocpp_version, malformed.reason, malformed.error_code),
    )
    kept = frames.raw_text(received.raw, raw_budget)
    redacted = redact_text(kept.text, link.secret_keys)
    if redacted is not None:
        # The digest of a frame that holds a secret would let a short one be guessed.
        kept = frames.RawText(redacted, kept.truncated, kept.size, "")
    rejected = FrameRejected(
        id=event_id(link, "rejected", str(received.position)),
        received_at=received.at,
        charge_point_id=link.charge_point_id,
        gateway_id=link.gateway_id,
        connection_id=link.connection_id,
        ocpp_version=link.ocpp_version,
        reason=malformed.reason,
        error_code=malformed.error_code,
        error_description=malformed.description,
        raw=kept.text,
        unique_id=malformed.unique_id,
        action=malformed.action,
        raw_truncated=kept.truncated,
        raw_size=kept.size,
        raw_sha256=kept.sha256,
    )
    if not malformed.answerable:
        return Exchange([rejected], None, malformed.action, malformed.unique_id, malformed.reason)
    reply = frames.encode_refusal(malformed)
    error_event = frame_event(
        link,
        direction="out",
        message_type="CALLERROR",
        unique_id=malformed.unique_id,
        action=malformed.action,
        payload=_NO_DETAILS,
        place=str(received.position),
        received_at=received.at,
        error_code=malformed.error_code,
        error_description=malformed.description,
    )
    return Exchange(
        [rejected, error_event], reply, malformed.action, malformed.unique_id, malformed.error_code
    )


# What of the frame the fallback below keeps: small enough for any NATS server's limit.
REFUSED_RAW_BUDGET: Final = 4096
REFUSED_ACTION_LIMIT: Final = 256


def unstorable(link: Link, inbound: Inbound, received: Received, why: str) -> Exchange:
    """The exchange to store instead of one NATS refused to store (too large for its limits):
    the frame, cut short, as rejected with InternalError, answered if the charger waits."""
    match inbound:
        case ValidCall(call=call):
            unique_id, action, waits = call.unique_id, call.action, True
        case Malformed():
            unique_id, action, waits = inbound.unique_id, inbound.action, inbound.answerable
        case Send():
            unique_id, action, waits = inbound.unique_id, inbound.action, False
        case CallResult() | CallError() | CallResultError():
            unique_id, action, waits = inbound.unique_id, "", False
    failure = Malformed(
        "internal_error",
        "InternalError",
        f"the frame's event could not be stored: {why}",
        unique_id=unique_id,
        action=action[:REFUSED_ACTION_LIMIT],
        answerable=waits,
        echo=inbound.echo if isinstance(inbound, Malformed) else b"",
    )
    return reject(link, failure, received, raw_budget=REFUSED_RAW_BUDGET)


class HeldCall(msgspec.Struct, kw_only=True):
    """A CALL from the charger that the hub has not answered yet."""

    action: str
    # What a retry repeats; None for a frame the hub refuses, which is never retried.
    request: msgspec.Struct | None
    since_ms: float  # when its first frame arrived, on a monotonic clock
    reply_to: str  # the uniqueId the charger waits on: that of its newest frame
    frames: int = 1  # its first frame and every retry of it
    answer: msgspec.Raw | None = None  # once stored
    answered: bool = False


class Admission(msgspec.Struct, frozen=True, gc=False):
    """An inbound frame and the held CALL it is (``nth`` 1) or retries (``nth`` 2 and up)."""

    inbound: Inbound
    held: HeldCall | None = None  # None: not a CALL, or one refused as a second CALL
    nth: int = 1


class HeldCalls:
    """The CALLs a charger sent that the hub has not answered yet, and what a new one gets.

    OCPP-J §4.1.1 lets a charger send its next CALL once the previous one is answered or has
    timed out. So a CALL that arrives while another is held is

    - a retry when it repeats a held CALL's action and payload under the same uniqueId, or
      under a new one while the hub is late: recorded, and not answered on its own. The
      held CALL is answered once, under the newest uniqueId, the one the charger waits on;
    - queued, and answered in order, when the hub is late;
    - refused with ProtocolError otherwise: the charger did not wait.

    The hub is late once storage is stalled while a CALL is held, or a CALL has waited
    ``late_after_ms`` or more: the charger may have timed out and moved on. It stays late
    until nothing has been held for another ``late_after_ms``, because a charger that takes
    any answer as the one it waits on is put one answer behind by a late answer, and sends
    each next CALL early until it falls quiet.

    No I/O: the connection admits frames as it reads them, asks ``reply`` once an
    exchange's events are stored, and says ``done`` once the reply is sent. Every held
    CALL has a frame in the connection's bounded queue, so this list is bounded too.
    """

    def __init__(self, *, late_after_ms: float) -> None:
        self._late_after_ms = late_after_ms
        self._held: list[HeldCall] = []  # oldest first
        self._late = False
        self._idle_since_ms = 0.0  # when the last held CALL was answered

    def admit(self, inbound: ValidCall | Malformed, *, now_ms: float, stalled: bool) -> Admission:
        if isinstance(inbound, ValidCall):
            unique_id, action = inbound.call.unique_id, inbound.call.action
            request: msgspec.Struct | None = inbound.request
        else:
            unique_id, action, request = inbound.unique_id, inbound.action, None
        if self._held:
            waited = now_ms - self._held[0].since_ms
            self._late = self._late or stalled or waited >= self._late_after_ms
            retried = self._retried(unique_id, action, request)
            if retried is not None:
                retried.frames += 1
                retried.reply_to = unique_id
                return Admission(inbound, retried, retried.frames)
            if not self._late:
                return Admission(_second_call(unique_id, action))
        elif now_ms - self._idle_since_ms >= self._late_after_ms:
            self._late = False
        held = HeldCall(action=action, request=request, since_ms=now_ms, reply_to=unique_id)
        self._held.append(held)
        return Admission(inbound, held)

    def _retried(
        self, unique_id: str, action: str, request: msgspec.Struct | None
    ) -> HeldCall | None:
        if request is None:
            return None
        for held in reversed(self._held):
            if held.action != action or held.request != request:
                continue
            # The same uniqueId is the same CALL even while its answer is on its way out.
            if held.reply_to == unique_id or (self._late and not held.answered):
                return held
        return None

    @staticmethod
    def answer_for(admission: Admission) -> msgspec.Raw | None:
        """The answer a retry carries: the held CALL's, if it is still owed and this retry
        is its newest frame."""
        held = admission.held
        if held is None or held.answered or admission.nth != held.frames:
            return None
        return held.answer

    @staticmethod
    def reply(admission: Admission, exchange: Exchange) -> bytes | None:
        """The frame to send now that ``exchange`` is stored, if any."""
        held = admission.held
        if held is None:
            return exchange.reply
        if held.answered:
            return None
        if held.answer is None:
            held.answer = exchange.answer
        if exchange.reply is None or exchange.unique_id != held.reply_to:
            # The charger retried under a newer uniqueId meanwhile; that frame gets the answer.
            return None
        held.answered = True
        return exchange.reply

    def done(self, admission: Admission, *, now_ms: float) -> None:
        held = admission.held
        if held is None or not held.answered:
            return
        remaining = [other for other in self._held if other is not held]
        if len(remaining) == len(self._held):
            return  # released by an earlier frame of the same CALL
        self._held = remaining
        self._late = self._late or now_ms - held.since_ms >= self._late_after_ms
        if not self._held:
            self._idle_since_ms = now_ms


def _second_call(unique_id: str, action: str) -> Malformed:
    return Malformed(
        "call_outstanding",
        "ProtocolError",
        "the previous CALL is still being answered; OCPP-J allows one outstanding CALL",
        unique_id=unique_id,
        action=action,
    )


def connection_opened(
    link: Link,
    *,
    remote: str,
    security_profile: SecurityProfile,
    at: int,
    certificate: ClientCertificate | None = None,
) -> ChargerConnected:
    """``certificate``: the client certificate it authenticated with (profile 3)."""
    return ChargerConnected(
        id=f"{link.connection_id}:opened",
        received_at=at,
        charge_point_id=link.charge_point_id,
        gateway_id=link.gateway_id,
        connection_id=link.connection_id,
        ocpp_version=link.ocpp_version,
        remote_address=remote,
        security_profile=security_profile,
        certificate_serial=certificate.serial if certificate else "",
        certificate_not_after=certificate.not_after if certificate else "",
    )


def connection_closed(link: Link, *, code: int | None, reason: str, at: int) -> ChargerDisconnected:
    return ChargerDisconnected(
        id=f"{link.connection_id}:closed",
        received_at=at,
        charge_point_id=link.charge_point_id,
        gateway_id=link.gateway_id,
        connection_id=link.connection_id,
        close_code=code,
        close_reason=reason,
    )


def connection_replaced(old: Link, new: Link, *, at: int) -> ChargerReplaced:
    return ChargerReplaced(
        id=f"{old.connection_id}:replaced",
        received_at=at,
        charge_point_id=old.charge_point_id,
        gateway_id=old.gateway_id,
        connection_id=old.connection_id,
        new_connection_id=new.connection_id,
        new_gateway_id=new.gateway_id,
    )


class CallOutcome(msgspec.Struct, frozen=True, gc=False):
    """How the charger answered a CALL the hub sent it."""

    status: Literal["answered", "callerror", "invalid_answer"]
    payload: msgspec.Raw
    error_code: str = ""
    error_description: str = ""


def outbound_call(
    link: Link, unique_id: str, action: str, payload: msgspec.Raw, *, at: int
) -> tuple[OcppFrame, bytes]:
    """The event recording a CALL the hub sends, and the frame itself."""
    frame = frames.encode_call(unique_id, action, payload)
    event = frame_event(
        link,
        direction="out",
        message_type="CALL",
        unique_id=unique_id,
        action=action,
        payload=payload,
        place=f"call:{unique_id}",
        received_at=at,
    )
    return event, frame


def record_answer(
    link: Link, action: str, inbound: CallResult | CallError, received: Received
) -> tuple[Exchange, CallOutcome]:
    """Record the charger's answer to our CALL for ``action`` and say what it was."""
    if isinstance(inbound, CallError):
        event = frame_event(
            link,
            direction="in",
            message_type="CALLERROR",
            unique_id=inbound.unique_id,
            action=action,
            payload=inbound.details,
            place=str(received.position),
            received_at=received.at,
            error_code=inbound.error_code,
            error_description=inbound.error_description,
        )
        outcome = CallOutcome(
            "callerror", inbound.details, inbound.error_code, inbound.error_description
        )
        return Exchange([event], None, action, inbound.unique_id, inbound.error_code), outcome
    result = ocpp.validate_result(link.ocpp_version, action, inbound.payload)
    if isinstance(result, ocpp.PayloadError):
        broken = Malformed(
            "schema_violation",
            result.code,
            result.description,
            unique_id=inbound.unique_id,
            action=action,
            answerable=False,
        )
        outcome = CallOutcome(
            "invalid_answer",
            stored_payload(link, action, inbound.payload),
            result.code,
            result.description,
        )
        return reject(link, broken, received), outcome
    event = frame_event(
        link,
        direction="in",
        message_type="CALLRESULT",
        unique_id=inbound.unique_id,
        action=action,
        payload=inbound.payload,
        place=str(received.position),
        received_at=received.at,
    )
    # Whoever asked gets the answer as the stream keeps it: secrets redacted.
    return Exchange([event], None, action, inbound.unique_id, "ok"), CallOutcome(
        "answered", event.payload
    )


def refused_answer(
    link: Link, action: str, malformed: Malformed, received: Received
) -> tuple[Exchange, CallOutcome]:
    """Record an answer to our CALL for ``action`` that the hub cannot take (too large, not a
    result), and say so: whoever sent the command learns why at once, not by timing out."""
    refused = msgspec.structs.replace(malformed, action=action, answerable=False)
    outcome = CallOutcome(
        "invalid_answer", _NO_DETAILS, malformed.error_code, malformed.description
    )
    return reject(link, refused, received), outcome


def check_command(link: Link, request: CommandRequest) -> CommandReply | None:
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
    if request.versions and version not in request.versions:
        return CommandReply(
            command_id=request.command_id,
            status="wrong_version",
            error_description=f"{link.charge_point_id!r} is connected with OCPP {version}; "
            f"{request.action} here is for OCPP {', '.join(request.versions)}",
        )
    charger_sends = HANDLERS[version].keys() - {"DataTransfer"}
    if request.action not in ocpp.known_actions(version) or request.action in charger_sends:
        return invalid(f"{request.action!r} is not an OCPP {version} command to a charger")
    if not request.timeout_s > 0:
        return invalid("timeout_s must be positive")
    checked = ocpp.validate_call(version, request.action, request.payload)
    if isinstance(checked, ocpp.PayloadError):
        return invalid(checked.description, checked.code)
    misformatted = check_formats(version, "request", request.action, request.payload)
    if misformatted is not None:
        return invalid(misformatted.description, misformatted.code)
    return None
