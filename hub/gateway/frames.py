"""OCPP-J RPC framing (1.6, 2.0.1 and 2.1): bytes in, typed frames or a rejection out.

The envelope is the same in every version; what differs is which message types exist (2.1
adds CALLRESULTERROR and SEND) and the names of the error codes (``rpc_code``)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final

import msgspec

from schemas.events import OcppVersion, RejectionReason
from schemas.ocpp.errors import error_code

CALL: Final = 2
CALLRESULT: Final = 3
CALLERROR: Final = 4
# OCPP 2.1 (OCPP-J 2.1 §4.2.4, §4.2.5): an error answer to a CALLRESULT, and an unconfirmed
# message. Neither is ever answered.
CALLRESULTERROR: Final = 5
SEND: Final = 6
MAX_UNIQUE_ID_LENGTH: Final = 36
UNREADABLE_ID: Final = "-1"
# Both sides of RFC 6455 §7.4.1: 1003 refuses data of a kind the endpoint does not accept.
UNSUPPORTED_DATA: Final = 1003
# What of a refused frame's text an event keeps, in encoded JSON bytes: every frame up to the
# WebSocket limit (2 MiB) of ordinary JSON fits, while the worst case (bytes that are not
# UTF-8, escaped to 5 bytes each) is cut, so the event stays below the hub's 4 MiB
# (hub.config.MAX_EVENT_BYTES).
RAW_BUDGET: Final = 3 * 1024 * 1024
# Descriptions quote what the charger sent; a CALLERROR should not echo a whole frame back.
QUOTE_LIMIT: Final = 64


class Call(msgspec.Struct, frozen=True, gc=False):
    unique_id: str
    action: str
    payload: msgspec.Raw


class CallResult(msgspec.Struct, frozen=True, gc=False):
    unique_id: str
    payload: msgspec.Raw


class CallError(msgspec.Struct, frozen=True, gc=False):
    unique_id: str
    error_code: str
    error_description: str
    details: msgspec.Raw


class CallResultError(msgspec.Struct, frozen=True, gc=False):
    """OCPP 2.1: the charger could not process a CALLRESULT the hub sent (``unique_id`` is
    that of the CALL the result answered)."""

    unique_id: str
    error_code: str
    error_description: str
    details: msgspec.Raw


class Send(msgspec.Struct, frozen=True, gc=False):
    """OCPP 2.1: a message the sender expects no answer to (NotifyPeriodicEventStream)."""

    unique_id: str
    action: str
    payload: msgspec.Raw


class Malformed(msgspec.Struct, frozen=True, gc=False):
    """A frame we cannot accept; ``unique_id`` is ``-1`` when it could not be read.

    ``answerable`` is False for a broken CALLRESULT or CALLERROR (and in 2.1 CALLRESULTERROR
    or SEND): OCPP-J never answers those, so such a frame is only recorded. ``close_code``,
    when set, ends the connection once the frame is recorded. ``echo`` is the id's JSON text
    when ``unique_id`` had to be made storable (a lone surrogate escape): the CALLERROR
    repeats the id as the charger wrote it.
    """

    reason: RejectionReason
    error_code: str
    description: str
    unique_id: str = UNREADABLE_ID
    action: str = ""
    answerable: bool = True
    close_code: int = 0
    echo: bytes = b""


Frame = Call | CallResult | CallError | CallResultError | Send


def message_types(version: OcppVersion) -> tuple[int, ...]:
    """The message type ids ``version`` has."""
    if version == "2.1":
        return (CALL, CALLRESULT, CALLERROR, CALLRESULTERROR, SEND)
    return (CALL, CALLRESULT, CALLERROR)


def unanswered_types(version: OcppVersion) -> tuple[int, ...]:
    """Message types never answered, not even to refuse them."""
    if version == "2.1":
        return (CALLRESULT, CALLERROR, CALLRESULTERROR, SEND)
    return (CALLRESULT, CALLERROR)


# The 1.6 reasons whose FormationViolation is, in 2.x, a frame that is no valid RPC message
# at all (OCPP-J 2.0.1 §4.2.3 RpcFrameworkError), rather than a payload that is not well
# formed (FormatViolation).
_PAYLOAD_REASONS: Final = frozenset({"schema_violation", "oversized"})
_OCCURRENCE: Final = frozenset({"OccurenceConstraintViolation", "OccurrenceConstraintViolation"})


def rpc_code(version: OcppVersion, reason: RejectionReason, code: str) -> str:
    """The error code ``version`` names a refusal by. The gateway decides refusals once, in
    OCPP-J 1.6's codes; OCPP-J 2.0.1 and 2.1 split 1.6's ``FormationViolation`` into
    ``RpcFrameworkError`` (not an RPC frame), ``MessageTypeNotSupported`` (a message type id
    it does not have) and ``FormatViolation`` (a payload not well formed); each version
    spells the occurrence violation its own way (``schemas.ocpp.errors``: 2.1 spells it
    right, 2.0.1 keeps 1.6's typo). Codes already in a version's spelling stay as they are."""
    if version == "1.6":
        return code
    if code in _OCCURRENCE:
        return error_code(version, "occurrence")
    if code != "FormationViolation":
        return code
    if reason == "unknown_message_type":
        return "MessageTypeNotSupported"
    if reason in _PAYLOAD_REASONS:
        return "FormatViolation"
    return "RpcFrameworkError"


_parts: Final = msgspec.json.Decoder(list[msgspec.Raw])
_int: Final = msgspec.json.Decoder(int)
_str: Final = msgspec.json.Decoder(str)
_encoder: Final = msgspec.json.Encoder()
_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")


def parse(data: bytes, version: OcppVersion = "1.6") -> Frame | Malformed:
    """Split one WebSocket message into an OCPP-J frame of ``version`` without looking at the
    payload's schema. Refusals carry 1.6's codes; ``rpc_code`` names them for ``version``."""
    try:
        return _parse(data, version)
    except UnicodeDecodeError as error:
        # msgspec reads strings as UTF-8 and raises this, not a DecodeError. The shell never
        # gets here (websockets fails a text frame that is not UTF-8 with 1007), but the core
        # answers whatever bytes it is given: JSON that is not UTF-8 is not JSON (RFC 8259 §8.1).
        return _headed(data, version, f"frame is not UTF-8 text: {error}", "not_json")


def _parse(data: bytes, version: OcppVersion) -> Frame | Malformed:
    silent = unanswered_types(version)
    try:
        parts = _parts.decode(data)
    except msgspec.DecodeError:
        return _undecodable(data, version)
    except RecursionError:
        return _headed(data, version, "JSON nested deeper than the gateway reads")
    if not parts:
        return Malformed("bad_shape", "FormationViolation", "frame is an empty array")
    unique_id = _read_unique_id(parts)
    try:
        message_type = _int.decode(parts[0])
    except msgspec.DecodeError:
        return Malformed(
            "bad_shape",
            "FormationViolation",
            "message type id must be an integer",
            unique_id=UNREADABLE_ID if unique_id is None else unique_id,
        )
    if unique_id is None:
        return Malformed(
            "bad_shape",
            "FormationViolation",
            "unique id must be a string",
            answerable=message_type not in silent,
        )
    if len(unique_id) > MAX_UNIQUE_ID_LENGTH:
        return Malformed(
            "unique_id_too_long",
            "FormationViolation",
            f"unique id is {len(unique_id)} characters, at most {MAX_UNIQUE_ID_LENGTH} allowed",
            unique_id=unique_id,
            answerable=message_type not in silent,
        )
    known = message_types(version)
    if message_type not in known:
        expected = ", ".join(map(str, known[:-1]))
        return Malformed(
            "unknown_message_type",
            "FormationViolation",
            f"unknown message type id {message_type}; OCPP {version} has {expected} and "
            f"{known[-1]}",
            unique_id=unique_id,
        )
    if message_type == CALL:
        return _call(parts, unique_id)
    if message_type == SEND:
        call = _call(parts, unique_id, "SEND")
        if isinstance(call, Call):
            return Send(call.unique_id, call.action, call.payload)
        return msgspec.structs.replace(call, answerable=False)
    if message_type == CALLRESULT:
        if len(parts) != 3:
            return _wrong_length(unique_id, "CALLRESULT", 3, len(parts))
        return CallResult(unique_id, parts[2])
    error = _call_error(
        parts, unique_id, "CALLERROR" if message_type == CALLERROR else "CALLRESULTERROR"
    )
    if isinstance(error, CallError) and message_type == CALLRESULTERROR:
        return CallResultError(*msgspec.structs.astuple(error))
    return error


def binary_frame() -> Malformed:
    """OCPP-J messages are JSON text; a binary frame is recorded, then the connection closed."""
    return Malformed(
        "binary_frame",
        "FormationViolation",
        "OCPP-J messages are text frames; binary frames are not accepted",
        answerable=False,
        close_code=UNSUPPORTED_DATA,
    )


def _undecodable(data: bytes, version: OcppVersion) -> Malformed:
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError as error:
        if _is_json(data):
            # JSON allows "\ud800" alone; Unicode text, and so the frame, cannot hold it.
            return _headed(data, version, f"frame is JSON but not Unicode text: {error}")
        return Malformed(
            "not_json",
            "FormationViolation",
            f"frame is not valid JSON: {error}",
            answerable=_answerable(data, version),
        )
    except RecursionError:
        pass
    return Malformed(
        "bad_shape",
        "FormationViolation",
        "frame must be a JSON array",
        answerable=_answerable(data, version),
    )


def _is_json(data: bytes) -> bool:
    """Python's parser, unlike msgspec, takes lone surrogate escapes; it runs only on frames
    msgspec refused, so its speed does not matter."""
    try:
        json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return False
    return True


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# The first element of an array, and the first two, read without parsing the rest of it.
_TYPE: Final = re.compile(rb"\s*\[\s*(-?\d{1,18})\s*[,\]]")
_HEAD: Final = re.compile(rb'\s*\[\s*-?\d{1,18}\s*,\s*("(?:[^"\\]|\\.)*")\s*[,\]]')


def _answerable(data: bytes, version: OcppVersion) -> bool:
    """Whether a frame that cannot be parsed may be answered: not if its head says it is a
    CALLRESULT or CALLERROR (or 2.1's CALLRESULTERROR or SEND), which OCPP-J never answers,
    however broken."""
    kind = _TYPE.match(data)
    return kind is None or int(kind.group(1)) not in unanswered_types(version)


def _headed(
    data: bytes, version: OcppVersion, description: str, reason: RejectionReason = "bad_shape"
) -> Malformed:
    """A frame that is an OCPP-J array at its head but cannot be taken whole: refused with its
    own unique id when the head shows one, and answered unless it is a result."""
    answerable = _answerable(data, version)
    head = _HEAD.match(data)
    if head is None:
        return Malformed(reason, "FormationViolation", description, answerable=answerable)
    token = head.group(1)
    try:
        # Decoded strictly first: json.loads would let UTF-8-encoded surrogates (CESU-8) through.
        unique_id = json.loads(token.decode())
    except ValueError:  # UnicodeDecodeError too: an id that is not UTF-8 is unreadable
        return Malformed(reason, "FormationViolation", description, answerable=answerable)
    storable = storable_text(unique_id)
    return Malformed(
        reason,
        "FormationViolation",
        description,
        unique_id=storable,
        answerable=answerable,
        echo=token if storable != unique_id else b"",
    )


def storable_text(text: str) -> str:
    """``text`` with lone surrogates spelt ``\\udXXX``, so it can be encoded as UTF-8."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="backslashreplace").decode()
    return text


def quote(text: str) -> str:
    """``text`` for a description: repr'd, and cut to ``QUOTE_LIMIT`` characters."""
    if len(text) <= QUOTE_LIMIT:
        return repr(text)
    return f"{text[:QUOTE_LIMIT]!r}... ({len(text)} characters)"


def _read_unique_id(parts: list[msgspec.Raw]) -> str | None:
    if len(parts) < 2:
        return UNREADABLE_ID
    try:
        return _str.decode(parts[1])
    except msgspec.DecodeError:
        return None


def _wrong_length(unique_id: str, kind: str, expected: int, actual: int) -> Malformed:
    return Malformed(
        "bad_shape",
        "FormationViolation",
        f"{kind} must have {expected} elements, got {actual}",
        unique_id=unique_id,
        answerable=kind == "CALL",
    )


def _call(parts: list[msgspec.Raw], unique_id: str, kind: str = "CALL") -> Call | Malformed:
    if len(parts) != 4:
        return _wrong_length(unique_id, kind, 4, len(parts))
    try:
        action = _str.decode(parts[2])
    except msgspec.DecodeError:
        return Malformed(
            "bad_shape", "FormationViolation", "action must be a string", unique_id=unique_id
        )
    return Call(unique_id, action, parts[3])


def _call_error(parts: list[msgspec.Raw], unique_id: str, kind: str) -> CallError | Malformed:
    if len(parts) != 5:
        return _wrong_length(unique_id, kind, 5, len(parts))
    try:
        code = _str.decode(parts[2])
        description = _str.decode(parts[3])
    except msgspec.DecodeError:
        return Malformed(
            "bad_shape",
            "FormationViolation",
            "error code and description must be strings",
            unique_id=unique_id,
            answerable=False,
        )
    return CallError(unique_id, code, description, parts[4])


def encode_call(unique_id: str, action: str, payload: object) -> bytes:
    return _encoder.encode((CALL, unique_id, action, payload))


def encode_result(unique_id: str, payload: object) -> bytes:
    return _encoder.encode((CALLRESULT, unique_id, payload))


def encode_error(unique_id: str, code: str, description: str) -> bytes:
    return _encoder.encode((CALLERROR, unique_id, code, description, _EMPTY_OBJECT))


def encode_refusal(malformed: Malformed) -> bytes:
    """The CALLERROR answering ``malformed``, with its unique id exactly as the charger sent it."""
    if not malformed.echo:
        return encode_error(malformed.unique_id, malformed.error_code, malformed.description)
    unique_id = msgspec.Raw(malformed.echo)
    return _encoder.encode(
        (CALLERROR, unique_id, malformed.error_code, malformed.description, _EMPTY_OBJECT)
    )


class RawText(msgspec.Struct, frozen=True, gc=False):
    """A refused frame as an event keeps it: its text, cut to a budget if need be, and then
    the whole frame's length in bytes and SHA-256, so the cut copy still identifies it."""

    text: str
    truncated: bool = False
    size: int = 0
    sha256: str = ""


def raw_text(data: bytes, budget: int = RAW_BUDGET) -> RawText:
    """``data`` as text (bytes that are not UTF-8 escaped with backslashes) whose JSON encoding
    fits in ``budget`` bytes."""
    # Every byte costs at least one in JSON, so nothing past ``budget`` bytes can be kept.
    end = min(len(data), budget + 1)
    while 0 < end < len(data) and data[end] & 0xC0 == 0x80:
        end -= 1  # never cut a UTF-8 character in two
    text = data[:end].decode(errors="backslashreplace")
    encoded = len(_encoder.encode(text))
    if end == len(data) and encoded <= budget:
        return RawText(text)
    keep = len(text)
    while encoded > budget:
        # Shrink in proportion to the overshoot; characters cost 1 to 6 bytes each.
        keep = max(0, min(keep - 1, keep * budget // encoded))
        encoded = len(_encoder.encode(text[:keep]))
    return RawText(text[:keep], True, len(data), hashlib.sha256(data).hexdigest())
