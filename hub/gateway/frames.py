"""OCPP-J RPC framing (shared by 1.6, 2.0.1 and 2.1): bytes in, typed frames or a rejection out."""

from __future__ import annotations

from typing import Final

import msgspec

from schemas.events import RejectionReason

CALL: Final = 2
CALLRESULT: Final = 3
CALLERROR: Final = 4
MAX_UNIQUE_ID_LENGTH: Final = 36
UNREADABLE_ID: Final = "-1"


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


class Malformed(msgspec.Struct, frozen=True, gc=False):
    """A frame we cannot accept; ``unique_id`` is ``-1`` when it could not be read.

    ``answerable`` is False for a broken CALLRESULT or CALLERROR: OCPP-J never answers a
    result, so such a frame is only recorded.
    """

    reason: RejectionReason
    error_code: str
    description: str
    unique_id: str = UNREADABLE_ID
    action: str = ""
    answerable: bool = True


Frame = Call | CallResult | CallError

_parts: Final = msgspec.json.Decoder(list[msgspec.Raw])
_int: Final = msgspec.json.Decoder(int)
_str: Final = msgspec.json.Decoder(str)
_encoder: Final = msgspec.json.Encoder()
_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")


def parse(data: bytes) -> Frame | Malformed:
    """Split one WebSocket message into an OCPP-J frame without looking at the payload's schema."""
    try:
        parts = _parts.decode(data)
    except msgspec.DecodeError:
        return _malformed_json(data)
    if not parts:
        return Malformed("bad_shape", "FormationViolation", "frame is an empty array")
    try:
        message_type = _int.decode(parts[0])
    except msgspec.DecodeError:
        return Malformed("bad_shape", "FormationViolation", "message type id must be an integer")
    unique_id = _read_unique_id(parts)
    if unique_id is None:
        return Malformed("bad_shape", "FormationViolation", "unique id must be a string")
    if len(unique_id) > MAX_UNIQUE_ID_LENGTH:
        return Malformed(
            "unique_id_too_long",
            "FormationViolation",
            f"unique id is {len(unique_id)} characters, at most {MAX_UNIQUE_ID_LENGTH} allowed",
            unique_id=unique_id,
        )
    if message_type == CALL:
        return _call(parts, unique_id)
    if message_type == CALLRESULT:
        if len(parts) != 3:
            return _wrong_length(unique_id, "CALLRESULT", 3, len(parts))
        return CallResult(unique_id, parts[2])
    if message_type == CALLERROR:
        return _call_error(parts, unique_id)
    return Malformed(
        "unknown_message_type",
        "FormationViolation",
        f"unknown message type id {message_type}; expected 2, 3 or 4",
        unique_id=unique_id,
    )


def _malformed_json(data: bytes) -> Malformed:
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError as error:
        return Malformed("not_json", "FormationViolation", f"frame is not valid JSON: {error}")
    return Malformed("bad_shape", "FormationViolation", "frame must be a JSON array")


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


def _call(parts: list[msgspec.Raw], unique_id: str) -> Call | Malformed:
    if len(parts) != 4:
        return _wrong_length(unique_id, "CALL", 4, len(parts))
    try:
        action = _str.decode(parts[2])
    except msgspec.DecodeError:
        return Malformed(
            "bad_shape", "FormationViolation", "action must be a string", unique_id=unique_id
        )
    return Call(unique_id, action, parts[3])


def _call_error(parts: list[msgspec.Raw], unique_id: str) -> CallError | Malformed:
    if len(parts) != 5:
        return _wrong_length(unique_id, "CALLERROR", 5, len(parts))
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
