"""Differential tests: the generated msgspec validators against the ocpp library's jsonschema.

The reference verdict comes from ``ocpp.messages._validate_payload`` itself (Draft4Validator
built by ``get_validator``, no format checker, Decimal re-parse for the three 1.6 payloads that
use ``multipleOf``), fed with ``json.loads`` as ``ocpp.messages.unpack`` does. Valid payloads
are derived from each schema of OCPP 1.6, 2.0.1 and 2.1, then mutated one aspect at a time;
every case must get the same accept/reject answer from both sides, and our CALLERROR code must
fit the mutation, spelled as the payload's version spells it.
"""

from __future__ import annotations

import copy
import decimal
import functools
import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import ocpp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, MessageType, _validate_payload, get_validator

from schemas.ocpp import (
    CALLERROR_CODES,
    ErrorCode,
    PayloadError,
    known_actions,
    v16,
    v21,
    v201,
    validate_call,
    validate_result,
)
from schemas.ocpp.errors import Problem, error_code
from schemas.ocpp.formats import check_formats, format_paths

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OCPP_DIR = Path(ocpp.__file__).parent
MODULES = {"1.6": "v16", "2.0.1": "v201", "2.1": "v21"}

Kind = Literal["request", "response"]
Json = Any
JsonPath = tuple[str | int, ...]

PROPERTY: Final[ErrorCode] = "PropertyConstraintViolation"
TYPE: Final[ErrorCode] = "TypeConstraintViolation"
OCCURENCE: Final[ErrorCode] = "OccurenceConstraintViolation"
FORMATION: Final[ErrorCode] = "FormationViolation"


@dataclass(frozen=True)
class Schema:
    kind: Kind
    action: str
    root: dict[str, Any]
    version: str = "1.6"
    # 2.1's NotifyPeriodicEventStream: a SEND, whose schema file has no Request suffix.
    send: bool = False

    @property
    def id(self) -> str:
        name = f"{self.action}{'Response' if self.kind == 'response' else ''}"
        return name if self.version == "1.6" else f"{self.version}/{name}"

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        if ref is None:
            return node
        resolved: dict[str, Any] = self.root["definitions"][ref.removeprefix("#/definitions/")]
        return resolved


def load_schemas(version: str = "1.6") -> list[Schema]:
    schemas = []
    for path in sorted((OCPP_DIR / MODULES[version] / "schemas").glob("*.json")):
        kind: Kind = "response" if path.stem.endswith("Response") else "request"
        action = path.stem.removesuffix("Response") if kind == "response" else path.stem
        send = False
        if version != "1.6" and kind == "request":
            send = not action.endswith("Request")
            action = action.removesuffix("Request")
        root = json.loads(path.read_text(encoding="utf-8-sig"))
        schemas.append(Schema(kind, action, root, version, send))
    return schemas


SCHEMAS = load_schemas()
V2_SCHEMAS = load_schemas("2.0.1") + load_schemas("2.1")

# The cases below are written with 1.6's codes; a 2.x payload is expected to get its own.
_PROBLEMS: Final[dict[str, Problem]] = {
    "FormationViolation": "format",
    "OccurenceConstraintViolation": "occurrence",
    "TypeConstraintViolation": "type",
    "PropertyConstraintViolation": "property",
}


def spelled(code: str, version: str) -> str:
    return error_code(version, _PROBLEMS[code]) if code in _PROBLEMS else code


# --- the two validators under comparison ------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    # Codes the jsonschema errors translate to; None when jsonschema crashed instead of answering.
    codes: frozenset[str] | None


def reference(schema: Schema, payload: bytes) -> Verdict:
    try:
        # The ocpp library gets text from websockets, which holds no bytes that are not UTF-8;
        # json.loads on bytes would take UTF-8-encoded surrogates (CESU-8). A BOM it skips.
        document = json.loads(payload.decode("utf-8-sig"))
    except ValueError:
        return Verdict(False, frozenset({FORMATION}))
    if schema.version != "1.6":
        return _v2_reference(schema, document)
    if schema.kind == "request":
        message: Call | CallResult = Call("1", schema.action, document)
        message_type = MessageType.Call
    else:
        message = CallResult("1", document, schema.action)
        message_type = MessageType.CallResult
    try:
        _validate_payload(message, schema.version)
    except OCPPError:
        # _validate_payload swapped in the payload it validated (Decimal floats, where used),
        # and get_validator returns the validator it cached for this action.
        validator = get_validator(message_type, schema.action, schema.version)
        try:
            codes = frozenset(
                _jsonschema_code(error) for error in validator.iter_errors(message.payload)
            )
        except (decimal.InvalidOperation, TypeError):
            return Verdict(False, None)
        return Verdict(False, codes)
    except (decimal.InvalidOperation, TypeError):
        # jsonschema's multipleOf raises on huge or non-finite Decimal quotients.
        return Verdict(False, None)
    return Verdict(True, frozenset())


@functools.cache
def _send_validator(version: str, action: str) -> Any:
    # The ocpp library has no SEND (it looks for "NotifyPeriodicEventStreamRequest.json" and
    # finds nothing); the validator it would build is a plain Draft4Validator of the file.
    path = OCPP_DIR / MODULES[version] / "schemas" / f"{action}.json"
    return Draft4Validator(json.loads(path.read_text(encoding="utf-8-sig")))


def _v2_reference(schema: Schema, document: Json) -> Verdict:
    """For 2.x, _validate_payload is get_validator(...).validate(payload): no Decimal re-parse.
    One pass of that validator gives the verdict and the codes; _validate_payload itself would
    validate a refusal twice and render the whole schema into its message, which made the 2.x
    cases take minutes. test_v2_reference_is_the_librarys_verdict checks the two agree."""
    if schema.send:
        validator = _send_validator(schema.version, schema.action)
    else:
        kind = MessageType.Call if schema.kind == "request" else MessageType.CallResult
        validator = get_validator(kind, schema.action, schema.version)
    codes = frozenset(_jsonschema_code(error) for error in validator.iter_errors(document))
    return Verdict(not codes, codes)


def library_accepts(schema: Schema, document: Json) -> bool:
    message: Call | CallResult
    if schema.kind == "request":
        message = Call("1", schema.action, document)
    else:
        message = CallResult("1", document, schema.action)
    try:
        _validate_payload(message, schema.version)
    except OCPPError:
        return False
    return True


def _jsonschema_code(error: Any) -> str:
    if error.validator == "type":
        return FORMATION if not error.absolute_path else TYPE
    if error.validator in ("required", "minItems", "maxItems"):
        return OCCURENCE
    if error.validator == "additionalProperties":
        return FORMATION
    return PROPERTY


def ours(schema: Schema, payload: bytes) -> msgspec.Struct | PayloadError:
    validate = validate_call if schema.kind == "request" else validate_result
    return validate(schema.version, schema.action, payload)


# --- schema-driven payloads and mutations -----------------------------------------------------

DATE_TIME = "2024-05-01T12:30:00.000Z"
WRONG_TYPE_POOL: tuple[Json, ...] = ("text", 7, 7.5, 7.0, True, None, {}, [])


def matches_type(value: Json, json_type: str) -> bool:
    """Draft 4 type semantics, as jsonschema implements them."""
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "object":
        return isinstance(value, dict)
    if json_type == "array":
        return isinstance(value, list)
    raise AssertionError(json_type)


def example(schema: Schema, node: dict[str, Any], maximal: bool) -> Json:
    node = schema.resolve(node)
    json_type = node.get("type")
    if json_type is None:
        # Untyped (2.x DataTransfer's data): any JSON at all.
        return {"any": [1, "json"]} if maximal else "abc"
    if json_type == "object":
        properties = node.get("properties", {})
        keys = list(properties) if maximal else node.get("required", [])
        return {key: example(schema, properties[key], maximal) for key in keys}
    if json_type == "array":
        # 2.x payloads nest arrays deeply: one item each keeps the maximal documents small
        # while still holding every field; "three items" below covers longer lists.
        many = 2 if schema.version == "1.6" else 1
        count = min(max(node.get("minItems", 0), many if maximal else 0), node.get("maxItems", 9))
        return [example(schema, node["items"], maximal) for _ in range(count)]
    if json_type == "string":
        if "enum" in node:
            return node["enum"][-1 if maximal else 0]
        if node.get("format") == "date-time":
            return DATE_TIME
        return "x" * node["maxLength"] if maximal and "maxLength" in node else "abc"
    if json_type == "integer":
        return clamp(node, 2**31 + 1 if maximal else 0)
    if json_type == "number":
        return clamp(node, 21.4 if maximal else 0)
    if json_type == "boolean":
        return maximal
    raise AssertionError(json_type)


def clamp(node: dict[str, Any], number: float) -> float:
    number = min(number, bound(node, "maximum", number))
    return max(number, bound(node, "minimum", number))


def bound(node: dict[str, Any], key: str, default: float) -> float:
    # 2.1 writes integer bounds as 0.0; an integer field must still get an int.
    value: float = node.get(key, default)
    return int(value) if node["type"] == "integer" else value


def in_bounds(node: dict[str, Any], number: float) -> bool:
    return node.get("minimum", number) <= number <= node.get("maximum", number)


@dataclass(frozen=True)
class Case:
    description: str
    payload: bytes
    expected: str | None  # None: must be accepted; otherwise the CALLERROR code we must give


def dumps(document: Json, ascii_only: bool = False) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def replaced(document: Json, path: JsonPath, value: Json) -> Json:
    if not path:
        return value
    clone = copy.deepcopy(document)
    target = clone
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return clone


def without(document: Json, path: JsonPath, key: str) -> Json:
    clone = copy.deepcopy(document)
    target = clone
    for step in path:
        target = target[step]
    del target[key]
    return clone


def locations(
    schema: Schema, node: dict[str, Any], value: Json, path: JsonPath = ()
) -> Iterator[tuple[JsonPath, dict[str, Any], Json]]:
    """Every (path, subschema, value) of a conforming document, root included."""
    node = schema.resolve(node)
    yield path, node, value
    if node.get("type") == "object":
        for key, item in value.items():
            yield from locations(schema, node["properties"][key], item, (*path, key))
    elif node.get("type") == "array":
        for index, item in enumerate(value):
            yield from locations(schema, node["items"], item, (*path, index))


_SHAPES: dict[int, str] = {}
_ANNOTATIONS = frozenset(
    {"description", "javaType", "comment", "$id", "$schema", "definitions", "default"}
)


def shape(schema: Schema, node: dict[str, Any]) -> str:
    """A subschema with its refs inlined and annotations dropped: equal for the same
    definition used by different messages, as the generated Struct is."""

    def strip(item: Any) -> Any:
        if isinstance(item, dict):
            resolved = schema.resolve(item)
            return {k: strip(v) for k, v in resolved.items() if k not in _ANNOTATIONS}
        if isinstance(item, list):
            return [strip(element) for element in item]
        return item

    if id(node) not in _SHAPES:
        _SHAPES[id(node)] = json.dumps(strip(node), sort_keys=True)
    return _SHAPES[id(node)]


@functools.cache
def owners(version: str) -> dict[tuple[str, bool], str]:
    """Which 2.x message mutates each subschema: the first, by file name, to hold it. 2.x
    payloads $ref the same definitions from many places (CustomData from every object, the
    charging profile from six messages); mutating each at every use would take minutes."""
    owner: dict[tuple[str, bool], str] = {}
    for schema in (s for s in V2_SCHEMAS if s.version == version):
        for maximal in (False, True):
            document = example(schema, schema.root, maximal)
            for path, node, _ in locations(schema, schema.root, document):
                if path:
                    owner.setdefault((shape(schema, node), maximal), schema.id)
    return owner


def mutations(schema: Schema, document: Json, maximal: bool = False) -> Iterator[Case]:
    yield Case("as generated", dumps(document), None)
    seen: set[str] = set()
    for path, node, value in locations(schema, schema.root, document):
        if schema.version != "1.6" and path:
            key = shape(schema, node)
            if key in seen or owners(schema.version)[key, maximal] != schema.id:
                continue
            seen.add(key)
        where = "$" + "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)
        context, at = document, path
        if schema.version != "1.6":
            # Everything off the path cut to its minimal form: a mutation deep in a big 2.1
            # payload is judged in a small document, which keeps the run short.
            context = in_context(schema, schema.root, document, path)
            at = tuple(0 if isinstance(step, int) else step for step in path)
        for label, new, expected in value_mutations(node, value, is_root=not path):
            if isinstance(new, Removed):
                mutated = without(context, at, new.key)
            else:
                mutated = replaced(context, at, new)
            yield Case(f"{where}: {label}", dumps(mutated), expected)
            if isinstance(new, str) and not new.isascii():
                yield Case(f"{where}: {label} (escaped)", dumps(mutated, ascii_only=True), expected)


def in_context(schema: Schema, node: dict[str, Any], value: Json, path: JsonPath) -> Json:
    """A valid document holding ``value``'s part at ``path``, minimal everywhere else; an
    array item on the path moves to index 0."""
    if not path:
        return value
    node = schema.resolve(node)
    step, rest = path[0], path[1:]
    if node["type"] == "object":
        properties = node["properties"]
        context = {
            key: example(schema, properties[key], maximal=False)
            for key in node.get("required", ())
            if key != step
        }
        context[str(step)] = in_context(schema, properties[step], value[step], rest)
        return context
    filler = example(schema, node["items"], maximal=False)
    item = in_context(schema, node["items"], value[step], rest)
    return [item] + [filler] * (node.get("minItems", 1) - 1)


@dataclass(frozen=True)
class Removed:
    key: str


def value_mutations(
    node: dict[str, Any], value: Json, is_root: bool
) -> Iterator[tuple[str, Json, str | None]]:
    json_type = node.get("type")
    if json_type is None:
        for anything in (None, 7.5, [1, "x"], {"nested": {"deep": None}}):
            yield f"untyped {json.dumps(anything)}", anything, None
        return
    for wrong in WRONG_TYPE_POOL:
        if not matches_type(wrong, json_type):
            expected = FORMATION if is_root else TYPE
            yield f"wrong type {json.dumps(wrong)}", wrong, expected
    kind_specific: dict[str, Callable[[dict[str, Any], Json], Iterator[Any]]] = {
        "string": string_mutations,
        "integer": integer_mutations,
        "number": number_mutations,
        "array": array_mutations,
        "object": object_mutations,
    }
    if json_type in kind_specific:
        yield from kind_specific[json_type](node, value)


def string_mutations(node: dict[str, Any], value: str) -> Iterator[tuple[str, Json, str | None]]:
    if "enum" in node:
        for allowed in node["enum"]:
            yield f"enum {allowed}", allowed, None
        yield "enum bogus", "Bogus", PROPERTY
        yield "enum empty", "", PROPERTY
        yield "enum lower-cased", node["enum"][0].lower() + "_", PROPERTY
        yield "enum swapped case", node["enum"][0].swapcase(), PROPERTY
        return
    if "maxLength" in node:
        limit = node["maxLength"]
        yield "at maxLength", "y" * limit, None
        yield "at maxLength, 2-byte chars", "é" * limit, None
        yield "at maxLength, astral chars", "😀" * limit, None
        yield "over maxLength", "y" * (limit + 1), PROPERTY
        yield "over maxLength, astral chars", "😀" * (limit + 1), PROPERTY
    else:
        yield "long string", "z" * 10_000, None
    yield "empty string", "", None
    if node.get("format"):
        # format is not enforced by the ocpp library's validator.
        yield "malformed " + node["format"], "not a " + node["format"], None


def bounds_mutations(
    node: dict[str, Any], numbers: tuple[float, ...]
) -> Iterator[tuple[str, Json, str | None]]:
    extra = [bound(node, key, 0) + step for key in ("minimum", "maximum") for step in (-1, 0, 1)]
    extra = [
        n for n, key in zip(extra, ["minimum"] * 3 + ["maximum"] * 3, strict=True) if key in node
    ]
    for number in (*numbers, *extra):
        yield f"number {number!r}", number, None if in_bounds(node, number) else PROPERTY


def integer_mutations(node: dict[str, Any], value: int) -> Iterator[tuple[str, Json, str | None]]:
    yield from bounds_mutations(node, (0, -1, 2**63, 2**70, -(2**70)))
    yield "integral float 1e2", 100.0, TYPE
    yield "float -0.0", -0.0, TYPE


def number_mutations(node: dict[str, Any], value: float) -> Iterator[tuple[str, Json, str | None]]:
    if "multipleOf" not in node:
        yield from bounds_mutations(node, (0, -1.5, 0.5, 2**70, -(2**70), 1e300, -1e300))
        return
    for number in (0, 7, 0.1, 21.4, -3.3, 1234.5, 1e20, 2**70, -0.0, 0.7000000000000001 - 0.6):
        accepted = not (decimal.Decimal(repr(number)) % decimal.Decimal("0.1"))
        yield f"number {number!r}", number, None if accepted else PROPERTY
    for number in (21.45, 0.30000000000000004, 1e-7, 0.05, 1e30, 10**40, 123456789.123):
        yield f"number {number!r}", number, PROPERTY


def array_mutations(
    node: dict[str, Any], value: list[Json]
) -> Iterator[tuple[str, Json, str | None]]:
    yield "empty array", [], OCCURENCE if node.get("minItems", 0) > 0 else None
    if value:
        limit = node.get("maxItems")
        yield "three items", [value[0]] * 3, OCCURENCE if limit is not None and limit < 3 else None
        if limit is not None:
            yield "at maxItems", [value[0]] * limit, None
            yield "over maxItems", [value[0]] * (limit + 1), OCCURENCE


def object_mutations(
    node: dict[str, Any], value: dict[str, Json]
) -> Iterator[tuple[str, Json, str | None]]:
    required = set(node.get("required", ()))
    for key in value:
        yield f"without {key}", Removed(key), OCCURENCE if key in required else None
    # An object without additionalProperties: false (2.x's CustomDataType) takes any property.
    unknown = FORMATION if node.get("additionalProperties", True) is False else None
    yield "unknown field", {**value, "unexpectedField": 1}, unknown
    yield "unknown field null", {**value, "zzz": None}, unknown
    yield "unknown field nested", {**value, "vendorExtra": {"a": [1, {"b": None}]}}, unknown


RAW_CASES: tuple[Case, ...] = (
    Case("empty payload", b"", FORMATION),
    Case("truncated", b"{", FORMATION),
    Case("single quotes", b"{'a': 1}", FORMATION),
    Case("trailing garbage", b"{} {}", FORMATION),
    Case("invalid utf-8", b'{"a": "\xff"}', FORMATION),
    Case("bare NaN", b"NaN", FORMATION),
)


def all_cases(schema: Schema) -> list[Case]:
    cases: dict[bytes, Case] = {}
    for maximal in (False, True):
        for case in mutations(schema, example(schema, schema.root, maximal), maximal):
            cases.setdefault(case.payload, case)
    for case in RAW_CASES:
        cases.setdefault(case.payload, case)
    return list(cases.values())


def spelled_codes(codes: frozenset[str], version: str) -> frozenset[str]:
    return frozenset(spelled(code, version) for code in codes)


def check(schema: Schema, case: Case) -> str | None:
    """Describe how the two validators (or the case's expectation) disagree, if they do."""
    expected = reference(schema, case.payload)
    actual = ours(schema, case.payload)
    accepted = not isinstance(actual, PayloadError)
    wanted = None if case.expected is None else spelled(case.expected, schema.version)
    problem = None
    if accepted != expected.accepted:
        problem = f"jsonschema accepted={expected.accepted}, ours={actual!r}"
    elif (case.expected is None) != expected.accepted:
        problem = f"case expectation wrong: jsonschema accepted={expected.accepted}"
    elif isinstance(actual, PayloadError):
        if actual.code != wanted:
            problem = f"code {actual.code}, expected {wanted}: {actual.description}"
        elif actual.code not in CALLERROR_CODES[schema.version]:
            problem = f"code {actual.code} is not an OCPP {schema.version} CALLERROR code"
        elif expected.codes is not None and (
            actual.code not in spelled_codes(expected.codes, schema.version)
        ):
            problem = f"code {actual.code} not among jsonschema's {sorted(expected.codes)}"
    if problem is None:
        return None
    return f"{schema.id} / {case.description} / {case.payload[:200]!r}: {problem}"


# --- tests --------------------------------------------------------------------------------------


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.ocpp_codegen", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr


def test_every_schema_has_a_struct_and_decoder() -> None:
    assert len(SCHEMAS) == 78
    requests = {s.action for s in SCHEMAS if s.kind == "request"}
    responses = {s.action for s in SCHEMAS if s.kind == "response"}
    assert set(v16.REQUESTS) == set(v16.REQUEST_DECODERS) == requests
    assert set(v16.RESPONSES) == set(v16.RESPONSE_DECODERS) == responses
    assert known_actions("1.6") == frozenset(requests)
    assert known_actions("0.9") == frozenset()


def test_reference_validator_enforces_no_formats() -> None:
    # The generated date-time fields are plain str because of this.
    validator = get_validator(MessageType.Call, "BootNotification", "1.6")
    assert type(validator).__name__ == "Draft4Validator"
    assert validator.format_checker is None


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda schema: schema.id)
def test_differential_against_jsonschema(schema: Schema) -> None:
    cases = all_cases(schema)
    problems = [problem for case in cases if (problem := check(schema, case))]
    assert not problems, f"{len(problems)}/{len(cases)} cases disagree:\n" + "\n".join(
        problems[:25]
    )


@pytest.mark.parametrize("schema", V2_SCHEMAS, ids=lambda schema: schema.id)
def test_differential_against_jsonschema_2x(schema: Schema) -> None:
    test_differential_against_jsonschema(schema)


@pytest.mark.parametrize(("version", "module", "count"), [("2.0.1", v201, 128), ("2.1", v21, 181)])
def test_every_2x_schema_has_a_struct_and_decoder(version: str, module: Any, count: int) -> None:
    schemas = [s for s in V2_SCHEMAS if s.version == version]
    assert len(schemas) == count
    requests = {s.action for s in schemas if s.kind == "request"}
    responses = {s.action for s in schemas if s.kind == "response"}
    assert set(module.REQUESTS) == set(module.REQUEST_DECODERS) == requests
    assert set(module.RESPONSES) == set(module.RESPONSE_DECODERS) == responses
    assert known_actions(version) == frozenset(requests)


def test_differential_case_count() -> None:
    counts = {schema.id: len(all_cases(schema)) for schema in SCHEMAS}
    total = sum(counts.values())
    print(f"differential cases: {total} across {len(counts)} schemas")
    assert total > 5_000
    assert min(counts.values()) >= len(RAW_CASES) + 5
    v2_counts = {schema.id: len(all_cases(schema)) for schema in V2_SCHEMAS}
    print(f"2.x differential cases: {sum(v2_counts.values())} across {len(v2_counts)} schemas")
    assert sum(v2_counts.values()) > 10_000
    assert min(v2_counts.values()) >= len(RAW_CASES) + 5


JSON_CORNERS: tuple[tuple[str, str, bytes | None, str | None], ...] = (
    ("Authorize", "duplicate key, last valid", b'{"idTag": 1, "idTag": "ok"}', None),
    ("Authorize", "duplicate key, last invalid", b'{"idTag": "ok", "idTag": 1}', TYPE),
    ("Authorize", "lone surrogate escape", b'{"idTag": "\\ud800"}', None),
    (
        "Authorize",
        "lone surrogate over maxLength",
        b'{"idTag": "' + b"\\udfff" * 21 + b'"}',
        PROPERTY,
    ),
    (
        "Authorize",
        "surrogate pair counts once",
        b'{"idTag": "' + b"\\ud83d\\ude00" * 20 + b'"}',
        None,
    ),
    ("Authorize", "raw surrogate bytes", b'{"idTag": "\xed\xa0\x80"}', FORMATION),
    ("Authorize", "NaN", b'{"idTag": NaN}', TYPE),
    ("Authorize", "BOM", b'\xef\xbb\xbf{"idTag": "ok"}', None),
    ("Authorize", "whitespace", b' \n{"idTag" : "ok"}\t', None),
    ("Heartbeat", "empty object", b"{}", None),
    ("Heartbeat", "array", b"[]", FORMATION),
    ("Heartbeat", "string", b'"x"', FORMATION),
    ("Heartbeat", "null", b"null", FORMATION),
    (
        "StatusNotification",
        "integer exponent",
        b'{"connectorId": 1e0, "errorCode": "NoError", "status": "Available"}',
        TYPE,
    ),
    (
        "StatusNotification",
        "huge integer",
        b'{"connectorId": ' + b"9" * 400 + b', "errorCode": "NoError", "status": "Available"}',
        None,
    ),
    ("SetChargingProfile", "Infinity", None, TYPE),
    ("SetChargingProfile", "1e400", None, PROPERTY),
    ("SetChargingProfile", "27-digit integer", None, None),
    ("SetChargingProfile", "28-digit integer", None, PROPERTY),
)


def _charging_profile(limit: str) -> bytes:
    return (
        b'{"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 1, "stackLevel": 0,'
        b' "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",'
        b' "chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod":'
        b' [{"startPeriod": 0, "limit": ' + limit.encode() + b"}]}}}"
    )


CHARGING_LIMITS = {
    "Infinity": "Infinity",
    "1e400": "1e400",
    "27-digit integer": "9" * 27,
    "28-digit integer": "9" * 28,
}


@pytest.mark.parametrize(
    ("action", "label", "payload", "code"), JSON_CORNERS, ids=[c[1] for c in JSON_CORNERS]
)
def test_json_corners(action: str, label: str, payload: bytes | None, code: str | None) -> None:
    """Places where msgspec's parser is stricter than json.loads, and Decimal edge cases."""
    if payload is None:
        payload = _charging_profile(CHARGING_LIMITS[label])
    schema = next(s for s in SCHEMAS if s.kind == "request" and s.action == action)
    assert check(schema, Case(label, payload, code)) is None


@pytest.mark.parametrize(
    ("payload", "code", "path"),
    [
        (b'{"connectorId": 1, "meterValue": []}', OCCURENCE, "$.meterValue"),
        (b'{"meterValue": [{"timestamp": "t", "sampledValue": [{"value": "1"}]}]}', OCCURENCE, "$"),
        (
            b'{"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": '
            b'[{"value": "1", "unit": "Joule"}]}]}',
            PROPERTY,
            "$.meterValue[0].sampledValue[0].unit",
        ),
        (
            b'{"connectorId": 1, "meterValue": [{"timestamp": 5, "sampledValue": []}]}',
            TYPE,
            "$.meterValue[0].timestamp",
        ),
        (
            b'{"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": '
            b'[{"value": "1", "extra": 1}]}]}',
            FORMATION,
            "$.meterValue[0].sampledValue[0]",
        ),
        (b'{"connectorId": 1, "meterValue": [7]}', TYPE, "$.meterValue[0]"),
        (b"[1, 2]", FORMATION, "$"),
        (b"{", FORMATION, None),
    ],
)
def test_error_classification_and_path(payload: bytes, code: str, path: str | None) -> None:
    result = validate_call("1.6", "MeterValues", payload)
    assert isinstance(result, PayloadError)
    assert result.code == code
    if path is not None:
        assert result.description.endswith(f" - at `{path}`")


def test_multiple_of_error_names_the_field() -> None:
    result = validate_call("1.6", "SetChargingProfile", _charging_profile("21.45"))
    assert result == PayloadError(
        PROPERTY,
        "Expected `number` that's a multiple of 0.1 - at "
        "`$.csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit`",
    )


def test_v2_reference_is_the_librarys_verdict() -> None:
    """_v2_reference runs the validator _validate_payload would run, once; the library's own
    call must agree on every message's generated documents and on a refused one."""
    for schema in V2_SCHEMAS:
        if schema.send:
            continue
        for maximal in (False, True):
            document = example(schema, schema.root, maximal)
            assert library_accepts(schema, document), schema.id
            assert reference(schema, dumps(document)).accepted, schema.id
        refused = {**example(schema, schema.root, False), "unexpectedField": 1}
        assert not library_accepts(schema, refused), schema.id
        assert not reference(schema, dumps(refused)).accepted, schema.id


_V2_AUTHORIZE_MISSING = b'{"idToken": {"type": "ISO14443"}}'


@pytest.mark.parametrize(
    ("version", "payload", "code", "path"),
    [
        ("2.0.1", _V2_AUTHORIZE_MISSING, "OccurenceConstraintViolation", "$.idToken"),
        ("2.1", _V2_AUTHORIZE_MISSING, "OccurrenceConstraintViolation", "$.idToken"),
        ("1.6", b"{}", "OccurenceConstraintViolation", "$"),
        ("2.0.1", b'{"idToken": {"idToken": "a", "type": "Pin"}}', PROPERTY, "$.idToken.type"),
        ("2.1", b'{"idToken": {"idToken": "a", "type": 1}}', TYPE, "$.idToken.type"),
        (
            "2.0.1",
            b'{"idToken": {"idToken": "a", "type": "Local"}, "x": 1}',
            "FormatViolation",
            "$",
        ),
        ("2.1", b"[]", "FormatViolation", "$"),
        ("2.1", b"{", "FormatViolation", None),
        ("1.6", b"{", "FormationViolation", None),
    ],
)
def test_each_version_spells_its_own_codes(
    version: str, payload: bytes, code: str, path: str | None
) -> None:
    result = validate_call(version, "Authorize", payload)
    assert isinstance(result, PayloadError), result
    assert result.code == code
    assert result.code in CALLERROR_CODES[version]
    if path is not None:
        assert result.description.endswith(f" - at `{path}`"), result.description


def test_each_version_defines_its_callerror_codes() -> None:
    shared = {"GenericError", "InternalError", "NotImplemented", "NotSupported", "ProtocolError"}
    shared |= {"SecurityError", "PropertyConstraintViolation", "TypeConstraintViolation"}
    v2 = shared | {"FormatViolation", "MessageTypeNotSupported", "RpcFrameworkError"}
    expected = {
        "1.6": shared | {"FormationViolation", "OccurenceConstraintViolation"},
        "2.0.1": v2 | {"OccurenceConstraintViolation"},
        "2.1": v2 | {"OccurrenceConstraintViolation"},
    }
    assert expected == CALLERROR_CODES


def test_custom_data_takes_any_vendor_property() -> None:
    payload = (
        b'{"customData": {"vendorId": "com.example", "fleet": {"cars": [1, null]}},'
        b' "idToken": {"idToken": "a", "type": "Local", "customData": {"vendorId": "v", "x": 1}}}'
    )
    for version, module in (("2.0.1", v201), ("2.1", v21)):
        result = validate_call(version, "Authorize", payload)
        assert isinstance(result, module.AuthorizeRequest), result
        assert isinstance(result.custom_data, module.CustomData)
        assert result.custom_data.vendor_id == "com.example"
        refused = validate_call(version, "Authorize", payload.replace(b'"com.example"', b"7"))
        assert isinstance(refused, PayloadError) and refused.code == TYPE


def test_a_send_payload_is_validated_as_a_call() -> None:
    """2.1's NotifyPeriodicEventStream only travels in a SEND (type 6): no response schema."""
    payload = b'{"id": 1, "pending": 0, "basetime": "2025-01-01T00:00:00Z", "data": []}'
    assert isinstance(validate_call("2.1", "NotifyPeriodicEventStream", payload), msgspec.Struct)
    missing = validate_result("2.1", "NotifyPeriodicEventStream", b"{}")
    assert isinstance(missing, PayloadError) and missing.code == "NotImplemented"


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
def test_non_finite_numbers_are_refused_though_the_library_takes_them(
    version: str, number: bytes
) -> None:
    """json.loads reads NaN, Infinity and 1e400 (as inf), and jsonschema takes them as numbers
    (a bound compares False with NaN). They are not JSON, and msgspec would store null in
    their place, so the hub refuses them: the one place it is stricter than the library."""
    payload = b'{"evseId": 1, "meterValue": [{"timestamp": "2025-01-01T00:00:00Z",'
    payload += b' "sampledValue": [{"value": ' + number + b"}]}]}"
    schema = next(s for s in V2_SCHEMAS if s.id == f"{version}/MeterValues")
    assert reference(schema, payload).accepted
    result = validate_call(version, "MeterValues", payload)
    assert isinstance(result, PayloadError)
    assert result.code in {TYPE, PROPERTY}
    assert result.description.endswith(" - at `$.meterValue[0].sampledValue[0].value`")


def test_unknown_action_and_version() -> None:
    results = [
        validate_call("1.6", "Bogus", b"{}"),
        validate_result("1.6", "Bogus", b"{}"),
        validate_call("0.9", "Heartbeat", b"{}"),
    ]
    codes = [r.code if isinstance(r, PayloadError) else None for r in results]
    assert codes == ["NotImplemented", "NotImplemented", "NotSupported"]


@pytest.mark.parametrize("bad", [b"\xff", b"\xed\xa0\x80", b"\xc0\xaf"])
def test_a_payload_that_is_not_utf8_is_refused(bad: bytes) -> None:
    """Also a UTF-8-encoded surrogate (CESU-8), which json.loads would take from bytes."""
    payload = b'{"chargePointVendor": "a' + bad + b'b", "chargePointModel": "M"}'
    result = validate_call("1.6", "BootNotification", payload)
    assert isinstance(result, PayloadError) and result.code == "FormationViolation", result


def _with_stack(frames: int, call: Callable[[], object]) -> object:
    return call() if frames == 0 else _with_stack(frames - 1, call)


@pytest.mark.parametrize("depth", [700, 800, 900, 1000, 100_000])
def test_deep_payloads_are_refused_whatever_the_callers_stack(depth: int) -> None:
    """How deep the parsers read depends on how deep the caller's stack already is: a payload
    one parser reads and the next cannot is still a refusal, never an exception (the gateway
    answered such a frame with InternalError, the command API with a 500)."""
    payload = b'{"fuzzExtra":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    for frames in range(0, 300, 10):
        result = _with_stack(frames, lambda: validate_call("1.6", "Heartbeat", payload))
        assert isinstance(result, PayloadError), (frames, result)
        assert result.code == "FormationViolation", (frames, result)


def test_decoded_struct_round_trips() -> None:
    schema = next(s for s in SCHEMAS if s.kind == "request" and s.action == "MeterValues")
    document = example(schema, schema.root, maximal=True)
    decoded = validate_call("1.6", "MeterValues", dumps(document))
    assert isinstance(decoded, v16.MeterValuesRequest)
    assert json.loads(msgspec.json.encode(decoded)) == document


def test_no_jsonschema_at_runtime() -> None:
    code = (
        "import sys, schemas.ocpp as s; "
        "s.validate_call('1.6', 'Heartbeat', b'{}'); "
        "assert 'jsonschema' not in sys.modules, 'jsonschema imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)


# --- hypothesis: random documents around the schemas ------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(alphabet=st.characters(codec=None) | st.sampled_from("\ud800\udfff"), max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def rarely(
    common: st.SearchStrategy[Json], rare: st.SearchStrategy[Json], one_in: int
) -> st.SearchStrategy[Json]:
    # Keeps most documents valid so deep structures still get accepted now and then.
    return st.integers(1, one_in).flatmap(lambda roll: rare if roll == 1 else common)


def from_schema(schema: Schema, node: dict[str, Any]) -> st.SearchStrategy[Json]:
    """Mostly-conforming documents: now and then a node is arbitrary JSON instead."""
    return rarely(_conforming(schema, schema.resolve(node)), json_values, one_in=40)


def _conforming(schema: Schema, node: dict[str, Any]) -> st.SearchStrategy[Json]:
    json_type = node.get("type")
    if json_type is None:
        return json_values
    if json_type == "object":
        return _objects(schema, node)
    if json_type == "array":
        items = from_schema(schema, node["items"])
        at_least = node.get("minItems", 0)
        return rarely(
            st.lists(items, min_size=at_least, max_size=3), st.lists(items, max_size=3), 8
        )
    if json_type == "string":
        if "enum" in node:
            return rarely(st.sampled_from(node["enum"]), st.sampled_from(["Bogus", ""]), 20)
        limit = node.get("maxLength", 30)
        # Hypothesis cannot draw 10000-character texts directly; pad a short one instead.
        near_limit = st.tuples(st.text(max_size=3), st.integers(0, 1)).map(
            lambda drawn: (drawn[0] + "y" * limit)[: limit + drawn[1]]
        )
        return rarely(st.text(max_size=min(limit, 60)), near_limit, 10)
    if json_type == "integer":
        return st.integers() | st.integers(min_value=2**62)
    if json_type == "number":
        tenths = st.integers(-(10**7), 10**7).map(lambda tenth: tenth / 10)
        decimals = st.decimals(places=2, allow_nan=False, allow_infinity=False).map(float)
        return rarely(tenths | st.integers(), st.floats() | decimals, 5)
    if json_type == "boolean":
        return st.booleans()
    raise AssertionError(json_type)


def _objects(schema: Schema, node: dict[str, Any]) -> st.SearchStrategy[Json]:
    properties = node.get("properties", {})
    required = node.get("required", [])
    base = st.fixed_dictionaries(
        {key: from_schema(schema, properties[key]) for key in required},
        optional={
            key: from_schema(schema, value)
            for key, value in properties.items()
            if key not in required
        },
    )
    extras = st.dictionaries(st.sampled_from(["extra", *properties]), json_values, max_size=1)
    drop = st.sampled_from([None, *required])

    def combine(parts: tuple[dict[str, Json], dict[str, Json], str | None]) -> dict[str, Json]:
        document, extra, dropped = parts
        merged = {**document, **extra}
        if dropped is not None:
            merged.pop(dropped, None)
        return merged

    return rarely(base, st.tuples(base, extras, drop).map(combine), one_in=8)


FUZZED = [
    s
    for s in SCHEMAS
    if s.id
    in {
        "MeterValues",
        "SetChargingProfile",
        "GetCompositeScheduleResponse",
        "BootNotification",
        "StopTransaction",
        "SendLocalList",
        "GetConfigurationResponse",
        "GetInstalledCertificateIdsResponse",
    }
]


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.parametrize("schema", FUZZED, ids=lambda schema: schema.id)
@fuzz_settings(250)
@given(data=st.data())
def test_hypothesis_agreement(schema: Schema, data: st.DataObject) -> None:
    draw_and_check(schema, data)


def draw_and_check(schema: Schema, data: st.DataObject) -> None:
    document = data.draw(from_schema(schema, schema.root), label="document")
    payload = dumps(document, ascii_only=data.draw(st.booleans(), label="ascii"))
    assert_agreement(schema, payload, non_finite=has_non_finite(document))


def assert_agreement(schema: Schema, payload: bytes, non_finite: bool) -> None:
    expected = reference(schema, payload)
    actual = ours(schema, payload)
    if non_finite and schema.version != "1.6":
        # The one deliberate difference: 2.x number fields have no multipleOf, and jsonschema
        # takes NaN and infinities there; we refuse them (see test_non_finite_numbers_...).
        assert isinstance(actual, PayloadError), (payload, actual)
        return
    assert (not isinstance(actual, PayloadError)) == expected.accepted, (payload, actual)
    if isinstance(actual, PayloadError) and expected.codes is not None:
        # jsonschema lists every fault and msgspec stops at the first; it must be one of them.
        assert actual.code in spelled_codes(expected.codes, schema.version), (payload, actual)


def has_non_finite(document: Json) -> bool:
    if isinstance(document, float):
        return not math.isfinite(document)
    if isinstance(document, dict):
        return any(has_non_finite(value) for value in document.values())
    if isinstance(document, list):
        return any(has_non_finite(value) for value in document)
    return False


FUZZED_V2 = [
    s
    for s in V2_SCHEMAS
    if s.id
    in {
        "2.0.1/TransactionEvent",
        "2.0.1/NotifyReport",
        "2.0.1/SetChargingProfile",
        "2.0.1/AuthorizeResponse",
        "2.1/TransactionEvent",
        "2.1/NotifyDERAlarm",
        "2.1/SetChargingProfile",
        "2.1/DataTransfer",
    }
]


@pytest.mark.parametrize("schema", FUZZED_V2, ids=lambda schema: schema.id)
@fuzz_settings(60)
@given(data=st.data())
def test_hypothesis_agreement_2x(schema: Schema, data: st.DataObject) -> None:
    draw_and_check(schema, data)


# --- formats: what the command API checks on top of the types --------------------------------


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
def test_2x_date_times_are_found_and_checked(version: str) -> None:
    paths = format_paths(version, "request", "TransactionEvent")
    assert ((("timestamp",), "date-time")) in paths
    assert (("meterValue", "*", "timestamp"), "date-time") in paths
    good = {
        "eventType": "Started",
        "timestamp": "2025-01-01T00:00:00Z",
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "t1"},
        "meterValue": [
            {"timestamp": "2025-01-01T00:00:00Z", "sampledValue": [{"value": 1}]},
            {"timestamp": "2025-02-30T00:00:00Z", "sampledValue": [{"value": 2}]},
        ],
    }
    assert isinstance(validate_call(version, "TransactionEvent", dumps(good)), msgspec.Struct)
    error = check_formats(version, "request", "TransactionEvent", dumps(good))
    assert error == PayloadError(
        "PropertyConstraintViolation",
        "Invalid date-time '2025-02-30T00:00:00Z' - at `$.meterValue[1].timestamp`",
    )
    # Every 2.x schema's formats are found, and they are all date-time.
    found = {
        fmt
        for schema in V2_SCHEMAS
        if schema.version == version
        for _, fmt in format_paths(version, schema.kind, schema.action)
    }
    assert found == {"date-time"}
    assert format_paths(version, "request", "NotifyPeriodicEventStream") == (
        ((("basetime",), "date-time"),) if version == "2.1" else ()
    )
