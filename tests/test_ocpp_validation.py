"""Differential tests: the generated msgspec validators against the ocpp library's jsonschema.

The reference verdict comes from ``ocpp.messages._validate_payload`` itself (Draft4Validator
built by ``get_validator``, no format checker, Decimal re-parse for the three payloads that use
``multipleOf``), fed with ``json.loads`` as ``ocpp.messages.unpack`` does. Valid payloads are
derived from each schema, then mutated one aspect at a time; every case must get the same
accept/reject answer from both sides, and our CALLERROR code must fit the mutation.
"""

from __future__ import annotations

import copy
import decimal
import json
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
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, MessageType, _validate_payload, get_validator

from schemas.ocpp import ErrorCode, PayloadError, known_actions, v16, validate_call, validate_result

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = Path(ocpp.__file__).parent / "v16" / "schemas"

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

    @property
    def id(self) -> str:
        return f"{self.action}{'Response' if self.kind == 'response' else ''}"

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        if ref is None:
            return node
        resolved: dict[str, Any] = self.root["definitions"][ref.removeprefix("#/definitions/")]
        return resolved


def load_schemas() -> list[Schema]:
    schemas = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        kind: Kind = "response" if path.stem.endswith("Response") else "request"
        root = json.loads(path.read_text(encoding="utf-8-sig"))
        schemas.append(Schema(kind, path.stem.removesuffix("Response"), root))
    return schemas


SCHEMAS = load_schemas()


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
    if schema.kind == "request":
        message: Call | CallResult = Call("1", schema.action, document)
        message_type = MessageType.Call
    else:
        message = CallResult("1", document, schema.action)
        message_type = MessageType.CallResult
    try:
        _validate_payload(message, "1.6")
    except OCPPError:
        # _validate_payload swapped in the payload it validated (Decimal floats, where used),
        # and get_validator returns the validator it cached for this action.
        validator = get_validator(message_type, schema.action, "1.6")
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


def _jsonschema_code(error: Any) -> str:
    if error.validator == "type":
        return FORMATION if not error.absolute_path else TYPE
    if error.validator in ("required", "minItems"):
        return OCCURENCE
    if error.validator == "additionalProperties":
        return FORMATION
    return PROPERTY


def ours(schema: Schema, payload: bytes) -> msgspec.Struct | PayloadError:
    validate = validate_call if schema.kind == "request" else validate_result
    return validate("1.6", schema.action, payload)


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
    json_type = node["type"]
    if json_type == "object":
        properties = node.get("properties", {})
        keys = list(properties) if maximal else node.get("required", [])
        return {key: example(schema, properties[key], maximal) for key in keys}
    if json_type == "array":
        count = max(node.get("minItems", 0), 2 if maximal else 0)
        return [example(schema, node["items"], maximal) for _ in range(count)]
    if json_type == "string":
        if "enum" in node:
            return node["enum"][-1 if maximal else 0]
        if node.get("format") == "date-time":
            return DATE_TIME
        return "x" * node["maxLength"] if maximal and "maxLength" in node else "abc"
    if json_type == "integer":
        return 2**31 + 1 if maximal else 0
    if json_type == "number":
        return 21.4 if maximal else 0
    if json_type == "boolean":
        return maximal
    raise AssertionError(json_type)


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
    if node["type"] == "object":
        for key, item in value.items():
            yield from locations(schema, node["properties"][key], item, (*path, key))
    elif node["type"] == "array":
        for index, item in enumerate(value):
            yield from locations(schema, node["items"], item, (*path, index))


def mutations(schema: Schema, document: Json) -> Iterator[Case]:
    yield Case("as generated", dumps(document), None)
    for path, node, value in locations(schema, schema.root, document):
        where = "$" + "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)
        for label, new, expected in value_mutations(node, value, is_root=not path):
            if isinstance(new, Removed):
                mutated = without(document, path, new.key)
            else:
                mutated = replaced(document, path, new)
            yield Case(f"{where}: {label}", dumps(mutated), expected)
            if isinstance(new, str) and not new.isascii():
                yield Case(f"{where}: {label} (escaped)", dumps(mutated, ascii_only=True), expected)


@dataclass(frozen=True)
class Removed:
    key: str


def value_mutations(
    node: dict[str, Any], value: Json, is_root: bool
) -> Iterator[tuple[str, Json, str | None]]:
    json_type = node["type"]
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


def integer_mutations(node: dict[str, Any], value: int) -> Iterator[tuple[str, Json, str | None]]:
    for number in (0, -1, 2**63, 2**70, -(2**70)):
        yield f"integer {number}", number, None
    yield "integral float 1e2", 100.0, TYPE
    yield "float -0.0", -0.0, TYPE


def number_mutations(node: dict[str, Any], value: float) -> Iterator[tuple[str, Json, str | None]]:
    if "multipleOf" not in node:
        for number in (0, -1.5, 2**70, 1e300):
            yield f"number {number}", number, None
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
        yield "three items", [value[0]] * 3, None


def object_mutations(
    node: dict[str, Any], value: dict[str, Json]
) -> Iterator[tuple[str, Json, str | None]]:
    required = set(node.get("required", ()))
    for key in value:
        yield f"without {key}", Removed(key), OCCURENCE if key in required else None
    yield "unknown field", {**value, "unexpectedField": 1}, FORMATION
    yield "unknown field null", {**value, "zzz": None}, FORMATION


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
        for case in mutations(schema, example(schema, schema.root, maximal)):
            cases.setdefault(case.payload, case)
    for case in RAW_CASES:
        cases.setdefault(case.payload, case)
    return list(cases.values())


def check(schema: Schema, case: Case) -> str | None:
    """Describe how the two validators (or the case's expectation) disagree, if they do."""
    expected = reference(schema, case.payload)
    actual = ours(schema, case.payload)
    accepted = not isinstance(actual, PayloadError)
    problem = None
    if accepted != expected.accepted:
        problem = f"jsonschema accepted={expected.accepted}, ours={actual!r}"
    elif (case.expected is None) != expected.accepted:
        problem = f"case expectation wrong: jsonschema accepted={expected.accepted}"
    elif isinstance(actual, PayloadError):
        if actual.code != case.expected:
            problem = f"code {actual.code}, expected {case.expected}: {actual.description}"
        elif expected.codes is not None and actual.code not in expected.codes:
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


def test_differential_case_count() -> None:
    counts = {schema.id: len(all_cases(schema)) for schema in SCHEMAS}
    total = sum(counts.values())
    print(f"differential cases: {total} across {len(counts)} schemas")
    assert total > 5_000
    assert min(counts.values()) >= len(RAW_CASES) + 5


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
    json_type = node["type"]
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


@pytest.mark.parametrize("schema", FUZZED, ids=lambda schema: schema.id)
@settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_hypothesis_agreement(schema: Schema, data: st.DataObject) -> None:
    document = data.draw(from_schema(schema, schema.root), label="document")
    payload = dumps(document, ascii_only=data.draw(st.booleans(), label="ascii"))
    expected = reference(schema, payload)
    actual = ours(schema, payload)
    assert (not isinstance(actual, PayloadError)) == expected.accepted, (payload, actual)
    if isinstance(actual, PayloadError) and expected.codes is not None:
        # jsonschema lists every fault and msgspec stops at the first; it must be one of them.
        assert actual.code in expected.codes, (payload, actual, expected)
