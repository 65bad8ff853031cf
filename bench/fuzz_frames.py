"""Generated OCPP-J 1.6 frames for fuzzing the gateway, and what the gateway must answer to each.

One catalogue serves the Hypothesis tests (``tests/fuzz/``) and the long run
(``bench/fuzz.py``). Every generator draws through a :class:`Chooser`: Hypothesis's ``draw``
in the tests, so a failure shrinks to a minimal frame, and a seeded ``random.Random`` in the
benchmark, so a million frames cost seconds, not hours.

Each :class:`FuzzFrame` carries its own verdict, written from docs/gateway.md ("CALLERRORs"),
not from what the code does today: whether it is a CALL, a result (never answered) or
something else (answered with a CALLERROR), and which unique ids its answer may carry.
:func:`check_answer` holds the rules; the tests and the benchmark apply the same function.
"""

from __future__ import annotations

import functools
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar

import ocpp

T = TypeVar("T")

UNREADABLE: Final = "-1"
# What a charger sends (docs/gateway.md "What each CALL gets"); the rest are the hub's CALLs.
CHARGER_ACTIONS: Final = (
    "Heartbeat",
    "BootNotification",
    "StatusNotification",
    "MeterValues",
    "Authorize",
    "StartTransaction",
    "StopTransaction",
    "DataTransfer",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "SecurityEventNotification",
    "LogStatusNotification",
    "SignedFirmwareStatusNotification",
    "SignCertificate",
)
CENTRAL_ACTIONS: Final = ("Reset", "RemoteStartTransaction", "GetConfiguration", "UnlockConnector")
# The codes docs/gateway.md lists for inputs; InternalError would mean the hub has a bug.
INPUT_ERROR_CODES: Final = frozenset(
    {
        "FormationViolation",
        "NotImplemented",
        "NotSupported",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
    }
)
HARD_FRAME_LIMIT: Final = 256 * 1024  # hub.gateway.server: larger frames are closed with 1009
SCHEMA_DIR: Final = Path(ocpp.__file__).parent / "v16" / "schemas"
ID_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz0123456789-"

Kind = Literal["call", "result", "other"]


class Chooser(Protocol):
    """Where every random decision of a generator comes from."""

    def integer(self, low: int, high: int) -> int: ...

    def choice(self, options: Sequence[T]) -> T: ...

    def text(self, max_size: int) -> str:
        """Any Unicode text without surrogates, at most ``max_size`` code points."""
        ...

    def binary(self, max_size: int) -> bytes: ...

    def unique_id(self) -> str:
        """A well-formed OCPP-J unique id (1 to 36 characters)."""
        ...


@dataclass(frozen=True, slots=True)
class FuzzFrame:
    data: bytes
    mutation: str
    """Which generator made it (the name the ``HUB_FUZZ_SKIP`` switch takes)."""
    kind: Kind
    """``call``: message type 2; ``result``: 3 or 4, never answered; ``other``: a CALLERROR."""
    ids: frozenset[str]
    """The unique ids its answer may carry: its own when readable, else ``-1``. (A result's
    own id, which no answer may carry.)"""
    valid: bool = False
    """An untouched, schema-valid CALL: it must get a CALLRESULT."""
    binary: bool = False
    """Sent as a binary WebSocket message, which OCPP-J does not allow."""

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 300 else self.data[:300] + b"..."
        flags = "".join(f", {flag}=True" for flag in ("valid", "binary") if getattr(self, flag))
        return (
            f"FuzzFrame({shown!r} ({len(self.data)} bytes), mutation={self.mutation!r}, "
            f"kind={self.kind!r}, ids={sorted(self.ids)!r}{flags})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints failing examples with this, not with __repr__.
        printer.text(repr(self))

    @property
    def utf8(self) -> bool:
        try:
            self.data.decode()
        except UnicodeDecodeError:
            return False
        return True


Answer = Literal["none", "error", "result", "any"]

# What the WebSocket shell does instead of answering (docs/gateway.md), whatever the frame
# holds: a binary message is recorded and the connection closed with 1003; websockets fails
# a text message that is not UTF-8 with 1007 before the gateway sees it, so only the close is
# recorded. The pure core, which never gets such text from the shell, answers it as below.
CLOSE_FOR_BINARY: Final = 1003
CLOSE_FOR_INVALID_UTF8: Final = 1007


def closing_code(frame: FuzzFrame) -> int | None:
    """The code a live gateway closes the connection with after ``frame``, if it does."""
    if frame.binary:
        return CLOSE_FOR_BINARY
    return None if frame.utf8 else CLOSE_FOR_INVALID_UTF8


def recorded_as_frame(frame: FuzzFrame) -> bool:
    """Whether a live gateway stores ``frame`` itself (else only its connection's close)."""
    return frame.binary or frame.utf8


def expected_answer(frame: FuzzFrame, max_frame_bytes: int) -> Answer:
    """What the gateway must send back (docs/gateway.md, "CALLERRORs"). A live gateway
    closes the connection instead after the frames :func:`closing_code` names."""
    if frame.kind == "result":
        return "none"  # a result is never answered, even to refuse it
    if frame.binary or not frame.utf8 or len(frame.data) > max_frame_bytes:
        return "error"
    if frame.valid:
        return "result"
    return "any" if frame.kind == "call" else "error"


def check_answer(frame: FuzzFrame, reply: bytes | None, max_frame_bytes: int) -> str | None:
    """None if ``reply`` (None: nothing was sent back) is what ``frame`` must get, else why not."""
    expected = expected_answer(frame, max_frame_bytes)
    if reply is None:
        return None if expected == "none" else f"no answer; expected {expected}"
    if expected == "none":
        return f"a result was answered: {reply[:200]!r}"
    try:
        answer = json.loads(reply.decode())
    except (UnicodeDecodeError, ValueError) as error:
        return f"the answer is not JSON ({error}): {reply[:200]!r}"
    if not isinstance(answer, list) or len(answer) not in (3, 5) or answer[0] not in (3, 4):
        return f"the answer is not a CALLRESULT or CALLERROR: {reply[:200]!r}"
    if answer[1] not in frame.ids:
        return f"answered with unique id {answer[1]!r}; expected one of {sorted(frame.ids)!r}"
    if answer[0] == 3:
        if len(answer) != 3 or not isinstance(answer[2], dict):
            return f"malformed CALLRESULT: {reply[:200]!r}"
        return None if expected in ("result", "any") else f"accepted: {reply[:200]!r}"
    if len(answer) != 5 or not all(isinstance(part, str) for part in answer[1:4]):
        return f"malformed CALLERROR: {reply[:200]!r}"
    if answer[2] not in INPUT_ERROR_CODES:
        return f"CALLERROR {answer[2]}: {answer[3][:200]}"
    return None if expected in ("error", "any") else f"refused ({answer[2]}: {answer[3][:200]})"


# -- valid payloads, from the ocpp library's JSON schemas --------------------------------------


@functools.cache
def _schema(action: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / f"{action}.json").read_text("utf-8-sig"))
    return loaded


def _resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    resolved: dict[str, Any] = root["definitions"][ref.removeprefix("#/definitions/")]
    return resolved


def timestamp(ch: Chooser) -> str:
    return (
        f"20{ch.integer(20, 35):02d}-{ch.integer(1, 12):02d}-{ch.integer(1, 28):02d}T"
        f"{ch.integer(0, 23):02d}:{ch.integer(0, 59):02d}:{ch.integer(0, 59):02d}Z"
    )


def _conforming(ch: Chooser, root: dict[str, Any], node: dict[str, Any]) -> Any:
    node = _resolve(root, node)
    kind = node["type"]
    if kind == "object":
        properties = node.get("properties", {})
        required = node.get("required", [])
        return {
            key: _conforming(ch, root, value)
            for key, value in properties.items()
            if key in required or ch.integer(0, 1)
        }
    if kind == "array":
        at_least = node.get("minItems", 0)
        count = ch.integer(at_least, at_least + 2)
        return [_conforming(ch, root, node["items"]) for _ in range(count)]
    if kind == "string":
        if "enum" in node:
            return ch.choice(node["enum"])
        if node.get("format") == "date-time":
            return timestamp(ch)
        return ch.text(node.get("maxLength", 40))
    if kind == "integer":
        return ch.integer(-(2**31), 2**31 - 1)
    if kind == "number":
        return ch.integer(-(10**6), 10**6)  # a whole number satisfies every multipleOf there is
    if kind == "boolean":
        return bool(ch.integer(0, 1))
    raise AssertionError(kind)


def valid_payload(ch: Chooser, action: str) -> dict[str, Any]:
    root = _schema(action)
    payload: dict[str, Any] = _conforming(ch, root, root)
    return payload


# -- assembling frames -------------------------------------------------------------------------


def dumps(value: Any, ch: Chooser | None = None) -> bytes:
    """JSON bytes; lone surrogates travel as escapes, other text as UTF-8 or escaped."""
    ascii_only = ch is not None and bool(ch.integer(0, 1))
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def array(parts: Sequence[bytes]) -> bytes:
    return b"[" + b",".join(parts) + b"]"


def _own(unique_id: str) -> frozenset[str]:
    return frozenset({unique_id})


_NOWHERE: Final = frozenset({UNREADABLE})
_MARK: Final = "\x00fuzz-mark\x00"
_MARK_JSON: Final = json.dumps(_MARK).encode()


def _valid_call(ch: Chooser) -> tuple[str, str, dict[str, Any]]:
    action = ch.choice(CHARGER_ACTIONS)
    return ch.unique_id(), action, valid_payload(ch, action)


def _call(unique_id: str, action: str, payload: bytes, ch: Chooser) -> bytes:
    return array([b"2", dumps(unique_id, ch), dumps(action, ch), payload])


def _marked(ch: Chooser, payload: dict[str, Any]) -> bytes:
    """The payload with one field (a new one if it has none) set to a mark to splice into."""
    target, key = _some_field(ch, payload)
    target[key] = _MARK
    return dumps(payload, ch)


def _some_field(ch: Chooser, document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """An object somewhere in ``document`` and one of its keys (maybe a new one)."""
    objects: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            objects.append(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(document)
    target = ch.choice(objects)
    keys = [*target, "fuzzExtra"]
    return target, ch.choice(keys)


# -- the catalogue -----------------------------------------------------------------------------


def valid(ch: Chooser) -> FuzzFrame:
    unique_id, action, payload = _valid_call(ch)
    return FuzzFrame(
        _call(unique_id, action, dumps(payload, ch), ch), "valid", "call", _own(unique_id), True
    )


def missing_field(ch: Chooser) -> FuzzFrame:
    unique_id, action, payload = _valid_call(ch)
    target, key = _some_field(ch, payload)
    target.pop(key, None)
    data = _call(unique_id, action, dumps(payload, ch), ch)
    return FuzzFrame(data, "missing_field", "call", _own(unique_id))


WRONG_VALUES: Final[tuple[Any, ...]] = (None, True, 0, -1, 1.5, "", "x", [], {}, [1, "a"], {"a": 1})


def wrong_type(ch: Chooser) -> FuzzFrame:
    unique_id, action, payload = _valid_call(ch)
    target, key = _some_field(ch, payload)
    target[key] = ch.choice(WRONG_VALUES)
    data = _call(unique_id, action, dumps(payload, ch), ch)
    return FuzzFrame(data, "wrong_type", "call", _own(unique_id))


def extra_field(ch: Chooser) -> FuzzFrame:
    unique_id, action, payload = _valid_call(ch)
    target, _ = _some_field(ch, payload)
    target[ch.text(12) or "extra"] = ch.choice(WRONG_VALUES)
    data = _call(unique_id, action, dumps(payload, ch), ch)
    return FuzzFrame(data, "extra_field", "call", _own(unique_id))


def _spliced(ch: Chooser, mutation: str, value: bytes) -> FuzzFrame:
    unique_id, action, payload = _valid_call(ch)
    data = _call(unique_id, action, _marked(ch, payload).replace(_MARK_JSON, value), ch)
    return FuzzFrame(data, mutation, "call", _own(unique_id))


def long_string(ch: Chooser, size: int, unit: str) -> bytes:
    """A JSON string of about ``size`` bytes (escapes included) repeating ``unit``."""
    inner = dumps(unit or "y", ch)[1:-1]
    return b'"' + inner * max(1, size // len(inner)) + b'"'


def huge_string(ch: Chooser) -> FuzzFrame:
    # Up to three times the default --max-frame-bytes, still under the WebSocket layer's limit.
    size = ch.choice((100, 1000, 60_000, 70_000, 200_000))
    return _spliced(ch, "huge_string", long_string(ch, size, ch.text(3)))


def nested(depth: int, ch: Chooser) -> bytes:
    if ch.integer(0, 1):
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def deep_nesting(ch: Chooser) -> FuzzFrame:
    depth = ch.choice((10, 100, 1000, 5000, 20_000))
    return _spliced(ch, "deep_nesting", nested(depth, ch))


BIG_NUMBERS: Final = (
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"1.7976931348623157e308",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"123456789012345678901234567890123456789",
    b"-0",
    b"0.1e1",
    b"2147483648",
)


def big_number(ch: Chooser) -> FuzzFrame:
    return _spliced(ch, "big_number", ch.choice(BIG_NUMBERS))


LONE_SURROGATES: Final = (b'"\\ud800"', b'"a\\udc00b"', b'"\\udbff\\udbff"', b'"x\\ud83d"')


def lone_surrogate(ch: Chooser) -> FuzzFrame:
    return _spliced(ch, "lone_surrogate", ch.choice(LONE_SURROGATES))


# Bytes no UTF-8 text contains: a stray continuation byte, a truncated sequence, an overlong
# encoding, an encoded surrogate (CESU-8), a code point above U+10FFFF, bytes 0xFE/0xFF.
INVALID_UTF8: Final = (
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\xc3\x28",
    b"\xe2\x82",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xf8\x88\x80\x80\x80",
)


def invalid_utf8(ch: Chooser) -> FuzzFrame:
    unique_id, action, payload = _valid_call(ch)
    bad = ch.choice(INVALID_UTF8)
    where = ch.choice(("payload", "id", "action", "between"))
    if where == "payload":
        spliced = _marked(ch, payload).replace(_MARK_JSON, b'"a' + bad + b'b"')
        return FuzzFrame(
            _call(unique_id, action, spliced, ch),
            "invalid_utf8",
            "call",
            _own(unique_id) | _NOWHERE,
        )
    if where == "id":
        data = array([b"2", b'"' + unique_id.encode() + bad + b'"', dumps(action), dumps(payload)])
        return FuzzFrame(data, "invalid_utf8", "call", _NOWHERE)
    if where == "action":
        data = array([b"2", dumps(unique_id), b'"' + action.encode() + bad + b'"', dumps(payload)])
        return FuzzFrame(data, "invalid_utf8", "call", _own(unique_id) | _NOWHERE)
    data = array([b"2", dumps(unique_id), dumps(action), dumps(payload)]) + b" " + bad
    return FuzzFrame(data, "invalid_utf8", "call", _NOWHERE)


def payload_not_object(ch: Chooser) -> FuzzFrame:
    unique_id, action, _ = _valid_call(ch)
    payload = dumps(ch.choice((None, [], [{}], "x", 1, True, 1.5)))
    return FuzzFrame(
        _call(unique_id, action, payload, ch), "payload_not_object", "call", _own(unique_id)
    )


# Message type ids that are not integers, and integers other than 2, 3 and 4. (No number equal
# to 2, 3 or 4 such as 2.0: whether that is a CALL the documentation does not say.)
ODD_MESSAGE_TYPES: Final = (
    b'"2"',
    b"2.5",
    b"true",
    b"null",
    b"[]",
    b"[2]",
    b"{}",
    b"1e400",
    b"-1",
    b"0",
    b"1",
    b"5",
    b"99999999999999999999",
    b"-0",
    b'"CALL"',
)


def message_type(ch: Chooser) -> FuzzFrame:
    unique_id, action, payload = _valid_call(ch)
    odd = ch.choice((*ODD_MESSAGE_TYPES, b"nest"))
    ids = _own(unique_id)
    if odd == b"nest":
        depth = ch.choice((3, 2000, 20_000))
        odd = nested(depth, ch)
        if depth > 1000:
            # Deeper than the parser goes (about 1,000 levels), before the id: docs/gateway.md
            # answers with the id read from the frame's head, and this head shows none.
            ids |= _NOWHERE
    data = array([odd, dumps(unique_id, ch), dumps(action, ch), dumps(payload, ch)])
    return FuzzFrame(data, "message_type", "other", ids)


def _odd_unique_id(ch: Chooser) -> tuple[bytes, frozenset[str]]:
    """A unique id that breaks a rule, as JSON, and the ids an answer to it may carry."""
    shape = ch.choice(("long", "long_unicode", "empty", "escapes", "not_a_string", "surrogate"))
    if shape in ("long", "long_unicode"):
        size = ch.choice((37, 100, 5000, 60_000))
        raw = long_string(ch, size, ch.unique_id() if shape == "long" else (ch.text(4) or "é"))
        return raw, _own(json.loads(raw))
    if shape == "empty":
        return b'""', _own("")
    if shape == "escapes":
        value = ch.choice(('a"b', "a\\b", "\x00", "tab\there", "\u2028", "a/b", "😀"))
        return dumps(value, ch), _own(value)
    if shape == "surrogate":
        raw = ch.choice(LONE_SURROGATES)
        # Readable by json.loads, not as UTF-8: either answer is defensible.
        return raw, _own(json.loads(raw)) | _NOWHERE
    return dumps(ch.choice((17, None, True, [], {}, 1.5, ["id"]))), _NOWHERE


def unique_id(ch: Chooser) -> FuzzFrame:
    _, action, payload = _valid_call(ch)
    raw_id, ids = _odd_unique_id(ch)
    kind_byte = ch.choice((b"2", b"3", b"4"))
    if kind_byte == b"2":
        return FuzzFrame(
            array([b"2", raw_id, dumps(action, ch), dumps(payload, ch)]), "unique_id", "call", ids
        )
    return _result(ch, kind_byte, raw_id, ids, "unique_id")


ODD_ACTIONS: Final = (
    "",
    " ",
    "a.b",
    "*",
    ">",
    "ev.>",
    "Heart beat",
    "\n",
    "heartbeat",
    "Heartbeat ",
    "HEARTBEAT",
    "~",
    "~41",
    "$JS.API.STREAM.INFO",
    "\x00",
)


def _with_action(ch: Chooser, raw: bytes, mutation: str) -> FuzzFrame:
    unique_id, _, payload = _valid_call(ch)
    data = array([b"2", dumps(unique_id, ch), raw, dumps(payload, ch)])
    return FuzzFrame(data, mutation, "call", _own(unique_id))


def long_action(ch: Chooser) -> FuzzFrame:
    """An action of 40 bytes to 60 KB: it must not reach a NATS subject whole."""
    size = ch.choice((40, 1000, 5000, 60_000))
    unit = ch.choice(("Heartbeat", ch.text(4) or "ü"))
    return _with_action(ch, long_string(ch, size, unit), "long_action")


def action(ch: Chooser) -> FuzzFrame:
    shape = ch.choice(("odd", "central", "not_a_string", "surrogate"))
    if shape == "odd":
        raw = dumps(ch.choice(ODD_ACTIONS), ch)
    elif shape == "central":
        raw = dumps(ch.choice(CENTRAL_ACTIONS))
    elif shape == "surrogate":
        raw = ch.choice(LONE_SURROGATES)
    else:
        raw = dumps(ch.choice((17, None, [], {}, True)))
    return _with_action(ch, raw, "action")


def element_count(ch: Chooser) -> FuzzFrame:
    unique_id, action, payload = _valid_call(ch)
    parts = [b"2", dumps(unique_id), dumps(action), dumps(payload)]
    count = ch.choice((1, 2, 3, 5, 6))
    extra = [dumps(ch.choice(WRONG_VALUES)) for _ in range(max(0, count - 4))]
    data = array([*parts[:count], *extra])
    return FuzzFrame(data, "element_count", "call", _own(unique_id) if count > 1 else _NOWHERE)


def not_an_array(ch: Chooser) -> FuzzFrame:
    value = ch.choice(({"a": 1}, "text", 2, None, True, 1.5, {"0": 2, "1": "id"}))
    return FuzzFrame(dumps(value, ch), "not_an_array", "other", _NOWHERE)


def not_json(ch: Chooser) -> FuzzFrame:
    unique_id, action, payload = _valid_call(ch)
    whole = array([b"2", dumps(unique_id), dumps(action), dumps(payload)])
    shape = ch.choice(("truncated", "trailing", "text", "bytes", "quotes", "constant", "empty"))
    if shape == "truncated":
        data = whole[: ch.integer(0, len(whole) - 1)]
    elif shape == "trailing":
        data = whole + ch.choice((b"x", b"]", b",", b"[]", b"\x00", b"//c"))
    elif shape == "text":
        data = b"~" + ch.text(40).encode()  # no JSON document starts with ~
    elif shape == "bytes":
        data = b"[\x00" + ch.binary(40)  # nor has a NUL outside a string
    elif shape == "quotes":
        data = f"[2,'{unique_id}','{action}',{{}}]".encode()
    elif shape == "constant":
        data = array([b"2", dumps(unique_id), dumps(action), ch.choice((b"NaN", b"Infinity"))])
    else:
        data = b""
    return FuzzFrame(data, "not_json", "other", _NOWHERE)


def whole_nesting(ch: Chooser) -> FuzzFrame:
    return FuzzFrame(
        nested(ch.choice((2, 100, 2000, 20_000)), ch), "whole_nesting", "other", _NOWHERE
    )


def oversized(ch: Chooser) -> FuzzFrame:
    """Over --max-frame-bytes, under the hard limit: valid JSON made large with whitespace, or
    bytes that are not UTF-8 (each one four characters once escaped to be recorded)."""
    unique_id, action, payload = _valid_call(ch)
    kind_byte = ch.choice((b"2", b"3", b"garbage"))
    if kind_byte == b"garbage":
        data = b"[\x00" + ch.choice(INVALID_UTF8)[:1] * ch.choice((70_000, HARD_FRAME_LIMIT - 2))
        return FuzzFrame(data, "oversized", "other", _NOWHERE)
    padding = b" " * ch.choice((65_536, 70_000, 200_000))
    if kind_byte == b"3":
        data = array([b"3", dumps(unique_id), padding + b"{}"])
        return FuzzFrame(data, "oversized", "result", _own(unique_id))
    data = array([b"2", dumps(unique_id), dumps(action), padding + dumps(payload)])
    return FuzzFrame(data, "oversized", "call", _own(unique_id))


def _result(
    ch: Chooser, kind_byte: bytes, raw_id: bytes, ids: frozenset[str], mutation: str
) -> FuzzFrame:
    """``ids``: the frame's own id, which nothing may answer (kept to spot answers that come)."""
    if kind_byte == b"3":
        payload = ch.choice((b"{}", b'{"status":"Accepted"}', b"[]", b"null", nested(3000, ch)))
        parts = [b"3", raw_id, payload]
    else:
        parts = [
            b"4",
            raw_id,
            dumps(ch.choice(("GenericError", "", 5))),
            dumps(ch.text(20)),
            ch.choice((b"{}", b"null", b"[]")),
        ]
    count = ch.choice((len(parts), len(parts), 1, 2, len(parts) + 1))
    return FuzzFrame(array([*parts, b"0"][:count]), mutation, "result", ids)


def result(ch: Chooser) -> FuzzFrame:
    """A CALLRESULT or CALLERROR nobody asked for, well formed or not: never answered."""
    kind_byte = ch.choice((b"3", b"4"))
    if ch.integer(0, 2):
        unique_id = ch.unique_id()
        raw_id, ids = dumps(unique_id), _own(unique_id)
    else:
        raw_id, ids = _odd_unique_id(ch)
    return _result(ch, kind_byte, raw_id, ids, "result")


def binary(ch: Chooser) -> FuzzFrame:
    """Any frame, as a binary WebSocket message: OCPP-J allows only text."""
    inner = ch.choice((valid, result, not_json))(ch)
    kind: Kind = "result" if inner.kind == "result" else "other"
    return FuzzFrame(inner.data, "binary", kind, inner.ids, binary=True)


MUTATIONS: Final[dict[str, Callable[[Chooser], FuzzFrame]]] = {
    fn.__name__: fn
    for fn in (
        valid,
        missing_field,
        wrong_type,
        extra_field,
        payload_not_object,
        huge_string,
        deep_nesting,
        big_number,
        lone_surrogate,
        invalid_utf8,
        message_type,
        unique_id,
        action,
        long_action,
        element_count,
        not_an_array,
        not_json,
        whole_nesting,
        oversized,
        result,
        binary,
    )
}
# Only the WebSocket shell sees whether a message was binary.
TEXT_MUTATIONS: Final = tuple(name for name in MUTATIONS if name != "binary")
SKIP_VARIABLE: Final = "HUB_FUZZ_SKIP"


def enabled(names: Sequence[str], environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """``names`` without those listed in ``HUB_FUZZ_SKIP`` (comma-separated): a switch to keep
    a run going past known findings while they are being fixed. Unknown names are an error."""
    raw = (os.environ if environ is None else environ).get(SKIP_VARIABLE, "")
    skipped = {name.strip() for name in raw.split(",") if name.strip()}
    unknown = skipped - set(MUTATIONS)
    if unknown:
        raise ValueError(f"{SKIP_VARIABLE}: unknown mutations {sorted(unknown)}")
    kept = tuple(name for name in names if name not in skipped)
    if not kept:
        raise ValueError(f"{SKIP_VARIABLE} leaves no mutation to run")
    return kept


def generate(ch: Chooser, names: Sequence[str]) -> FuzzFrame:
    return MUTATIONS[ch.choice(names)](ch)


class RandomChooser:
    """A seeded :class:`Chooser` for long runs: cheap, reproducible, unique ids by counting."""

    # Mostly ASCII, some Latin-1, CJK and emoji: what shows up in real payloads and ids.
    _RANGES: Final = (
        (0x20, 0x7E),
        (0x20, 0x7E),
        (0x20, 0x7E),
        (0xA0, 0xFF),
        (0x4E00, 0x4FFF),
        (0x1F600, 0x1F64F),
        (0x0, 0x1F),
    )

    def __init__(self, seed: int, prefix: str = "") -> None:
        self._random = random.Random(seed)
        self._prefix = prefix
        self._serial = 0

    def integer(self, low: int, high: int) -> int:
        return self._random.randint(low, high)

    def choice(self, options: Sequence[T]) -> T:
        return options[self._random.randrange(len(options))]

    def text(self, max_size: int) -> str:
        size = self._random.randint(0, min(max_size, 24))
        ranges = self._RANGES
        return "".join(
            chr(self._random.randint(*ranges[self._random.randrange(len(ranges))]))
            for _ in range(size)
        )

    def binary(self, max_size: int) -> bytes:
        return self._random.randbytes(self._random.randint(0, max_size))

    def unique_id(self) -> str:
        self._serial += 1
        return f"{self._prefix}{self._serial}"[-36:]
