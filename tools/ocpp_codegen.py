"""Generate msgspec Structs from the OCPP JSON schemas shipped in the ``ocpp`` package.

Run ``python -m tools.ocpp_codegen`` to regenerate ``schemas/ocpp/v16.py``, ``v201.py`` and
``v21.py``, and ``python -m tools.ocpp_codegen --check`` to fail (exit 1) when a committed file
has drifted from what the installed ``ocpp`` package would produce.

The generated types must accept exactly what ``ocpp.messages._validate_payload`` accepts, so the
translation follows the way the ocpp library runs jsonschema, not what the schema files claim:

* Every schema is validated with ``Draft4Validator`` whatever its ``$schema`` says (the 1.6
  security extension files and all 2.0.1 and 2.1 files declare draft-06). Draft 4's
  ``integer`` rejects ``1.0``, which is also what a msgspec ``int`` does, so ``integer`` maps
  to plain ``int``.
* The validator is built without a ``format_checker``, so ``format`` (``date-time``, ``uri``) is
  never enforced: such fields are plain ``str``. Parsing them here would reject payloads the ocpp
  library lets through (and vice versa if rfc3339-validator happened to be installed).
* ``number`` maps to ``int | float``: jsonschema accepts integers of any size as numbers, while a
  msgspec ``float`` would round them (and reject those beyond float range).
* ``multipleOf`` cannot use ``Meta(multiple_of=...)``: msgspec checks floats with binary floating
  point (``21.4`` is not a multiple of ``0.1`` there). The ocpp library re-parses the payloads that
  carry ``multipleOf`` with ``parse_float=Decimal`` after a ``json.dumps`` round trip, so the
  generated ``__post_init__`` repeats that computation: ``Decimal(repr(value)) % Decimal("0.1")``.
* Optional properties default to ``UNSET`` rather than ``None`` so that an explicit JSON ``null``
  is a type error, as it is for jsonschema.
* An object without ``additionalProperties: false`` (2.x's ``CustomDataType``) takes any extra
  property: its Struct ignores unknown fields instead of forbidding them.
"""

from __future__ import annotations

import argparse
import difflib
import heapq
import json
import keyword
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import msgspec

JsonSchema = Mapping[str, Any]

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    """One OCPP version: where its schemas live in the ocpp package and where its module goes."""

    version: str
    module: str

    @property
    def path(self) -> Path:
        return PROJECT_ROOT / "schemas" / "ocpp" / f"{self.module}.py"


TARGETS = (Target("1.6", "v16"), Target("2.0.1", "v201"), Target("2.1", "v21"))

# Mirrors the hard-coded list in ocpp.messages._validate_payload: only these payloads are
# re-parsed with Decimal floats, so only there does our Decimal multipleOf check match jsonschema.
DECIMAL_PAYLOADS = frozenset(
    {
        ("request", "RemoteStartTransaction"),
        ("request", "SetChargingProfile"),
        ("response", "GetCompositeSchedule"),
    }
)

# Property names that would make poor type names; the spec's own names read better.
NAME_OVERRIDES = {
    "csChargingProfiles": "ChargingProfile",
    "localAuthorizationList": "AuthorizationData",
}

# Keywords that carry no validation meaning for Draft4Validator on these schemas.
ANNOTATION_KEYWORDS = frozenset(
    {"$schema", "$id", "id", "title", "description", "javaType", "comment", "default"}
)
SUPPORTED_KEYWORDS = ANNOTATION_KEYWORDS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "additionalItems",
    "items",
    "enum",
    "maxLength",
    "format",
    "$ref",
    "definitions",
    "minItems",
    "maxItems",
    "multipleOf",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
}


class UnsupportedSchema(Exception):
    """The schema uses a construct the generator cannot translate exactly."""


@dataclass(frozen=True)
class FieldDef:
    py_name: str
    json_name: str
    annotation: str
    required: bool
    multiple_of: Decimal | None

    @property
    def needs_explicit_name(self) -> bool:
        return _renames_to(self.py_name) != self.json_name

    def render(self) -> str:
        annotation = self.annotation if self.required else f"{self.annotation} | UnsetType"
        if self.needs_explicit_name:
            default = "" if self.required else "default=UNSET, "
            return f'{self.py_name}: {annotation} = msgspec.field({default}name="{self.json_name}")'
        return f"{self.py_name}: {annotation}" + ("" if self.required else " = UNSET")


@dataclass
class StructDef:
    name: str
    fields: list[FieldDef]
    doc: str
    # Takes unknown properties (no additionalProperties: false) rather than refusing them.
    open: bool = False
    uses: set[str] = field(default_factory=set)
    used_at: list[str] = field(default_factory=list)


@dataclass
class Generator:
    version: str
    nested: dict[str, StructDef] = field(default_factory=dict)
    messages: dict[str, StructDef] = field(default_factory=dict)
    shape_names: dict[str, str] = field(default_factory=dict)
    steps: set[Decimal] = field(default_factory=set)
    # Named enums (a $ref to a string enum definition): alias name -> Literal[...] text.
    enums: dict[str, str] = field(default_factory=dict)
    enum_names: dict[str, str] = field(default_factory=dict)

    def add_message(self, kind: str, action: str, schema: JsonSchema) -> str:
        suffix = "Request" if kind == "request" else "Response"
        name = f"{action}{suffix}"
        decimal_floats = self.version == "1.6" and (kind, action) in DECIMAL_PAYLOADS
        context = _Context(schema.get("definitions", {}), decimal_floats)
        doc = f"OCPP {self.version} ``{action}`` {kind} payload."
        self.messages[name] = self._struct(name, schema, context, doc)
        return name

    def _struct(self, name: str, schema: JsonSchema, ctx: _Context, doc: str) -> StructDef:
        _check_keywords(schema)
        extra = schema.get("additionalProperties", True)
        if extra not in (True, False):
            raise UnsupportedSchema(f"{name}: additionalProperties must be a boolean")
        required = set(schema.get("required", ()))
        struct = StructDef(name=name, fields=[], doc=doc, open=extra is True)
        for json_name, prop in schema.get("properties", {}).items():
            annotation, step = self._annotation(json_name, prop, ctx, struct)
            struct.fields.append(
                FieldDef(
                    py_name=_py_name(json_name),
                    json_name=json_name,
                    annotation=annotation,
                    required=json_name in required,
                    multiple_of=step,
                )
            )
        unknown_required = required - set(schema.get("properties", {}))
        if unknown_required:
            raise UnsupportedSchema(f"{name}: required but undefined {sorted(unknown_required)}")
        return struct

    def _annotation(
        self, prop_name: str, schema: JsonSchema, ctx: _Context, owner: StructDef
    ) -> tuple[str, Decimal | None]:
        schema, ref_name = ctx.resolve(schema)
        _check_keywords(schema)
        kind = schema.get("type")
        if "multipleOf" in schema and kind != "number":
            raise UnsupportedSchema(f"{prop_name}: multipleOf on {kind}")
        if kind == "string":
            if ref_name is not None and "enum" in schema:
                return self._enum_alias(_type_name(ref_name), schema, owner), None
            return _string_annotation(schema), None
        if kind == "integer":
            return _numeric_annotation("int", schema), None
        if kind == "number":
            return self._number_annotation(prop_name, schema, ctx)
        if kind == "boolean":
            return "bool", None
        if kind == "object":
            hint = NAME_OVERRIDES.get(prop_name) or _type_name(ref_name or prop_name)
            nested = self._nested(hint, schema, ctx, f"{owner.name}.{prop_name}")
            owner.uses.add(nested)
            return nested, None
        if kind == "array":
            return self._array_annotation(prop_name, schema, ctx, owner), None
        if kind is None and set(schema) <= ANNOTATION_KEYWORDS:
            # No constraint at all (2.x DataTransfer's data): any JSON value, null included.
            return "Any", None
        raise UnsupportedSchema(f"{prop_name}: unsupported type {kind!r}")

    def _number_annotation(
        self, prop_name: str, schema: JsonSchema, ctx: _Context
    ) -> tuple[str, Decimal | None]:
        step = schema.get("multipleOf")
        if step is not None:
            if not ctx.decimal_floats:
                raise UnsupportedSchema(f"{prop_name}: multipleOf outside a Decimal-parsed payload")
            self.steps.add(step)
        # Bounds go on each member: msgspec does not apply Meta to a union as a whole.
        union = f"{_numeric_annotation('int', schema)} | {_numeric_annotation('float', schema)}"
        return union, step

    def _array_annotation(
        self, prop_name: str, schema: JsonSchema, ctx: _Context, owner: StructDef
    ) -> str:
        items = schema.get("items")
        if not isinstance(items, Mapping):
            raise UnsupportedSchema(f"{prop_name}: tuple-style items")
        # additionalItems only matters for tuple-style items, which were rejected above.
        item_annotation, step = self._annotation(prop_name, items, ctx, owner)
        if step is not None:
            raise UnsupportedSchema(f"{prop_name}: multipleOf on array items")
        annotation = f"list[{item_annotation}]"
        bounds = [
            f"{meta}={int(schema[keyword])}"
            for keyword, meta in (("minItems", "min_length"), ("maxItems", "max_length"))
            if keyword in schema
        ]
        if bounds:
            return f"Annotated[{annotation}, Meta({', '.join(bounds)})]"
        return annotation

    def _enum_alias(self, hint: str, schema: JsonSchema, owner: StructDef) -> str:
        literal = _string_annotation(schema)
        # Keyed on the name too: GenericStatusEnum and ResetStatusEnum stay two names for one
        # set of values, as the schemas name them.
        name = self.enum_names.get(f"{hint}={literal}")
        if name is None:
            name = hint
            if name in self.enums or name in self.nested or name in self.messages:
                # Another enum with different values already owns the readable name.
                name = owner.name + hint
            self.enum_names[f"{hint}={literal}"] = name
            self.enums[name] = literal
        return name

    def _nested(self, hint: str, schema: JsonSchema, ctx: _Context, used_at: str) -> str:
        shape = _shape_key(schema, ctx)
        name = self.shape_names.get(shape)
        if name is None:
            name = hint
            if name in self.nested or name in self.messages or name in self.enums:
                # A structurally different object already owns the readable name.
                name = used_at.split(".", 1)[0] + hint
            self.shape_names[shape] = name
            doc = f"Nested object of OCPP {self.version} payloads."
            self.nested[name] = self._struct(name, schema, ctx, doc)
        self.nested[name].used_at.append(used_at)
        return name

    def render(self) -> str:
        return _render(self)


@dataclass(frozen=True)
class _Context:
    definitions: Mapping[str, JsonSchema]
    decimal_floats: bool

    def resolve(self, schema: JsonSchema) -> tuple[JsonSchema, str | None]:
        ref = schema.get("$ref")
        if ref is None:
            return schema, None
        if len(schema) != 1 or not ref.startswith("#/definitions/"):
            raise UnsupportedSchema(f"unsupported $ref {ref!r}")
        name = ref.removeprefix("#/definitions/")
        return self.definitions[name], name


def _check_keywords(schema: JsonSchema) -> None:
    unknown = set(schema) - SUPPORTED_KEYWORDS
    if unknown:
        raise UnsupportedSchema(f"unsupported keywords {sorted(unknown)}")
    if "additionalItems" in schema and isinstance(schema.get("items"), list):
        raise UnsupportedSchema("additionalItems with tuple-style items")


def _string_annotation(schema: JsonSchema) -> str:
    if "enum" in schema:
        values = list(dict.fromkeys(schema["enum"]))
        if not all(isinstance(value, str) for value in values):
            raise UnsupportedSchema(f"non-string enum {values}")
        longest = max(len(value) for value in values)
        if "maxLength" in schema and longest > schema["maxLength"]:
            raise UnsupportedSchema("enum value longer than maxLength")
        return "Literal[" + ", ".join(json.dumps(value) for value in values) + "]"
    if "maxLength" in schema:
        return f"Annotated[str, Meta(max_length={int(schema['maxLength'])})]"
    return "str"


def _numeric_annotation(base: str, schema: JsonSchema) -> str:
    # Draft 4 spells exclusive bounds as booleans next to minimum/maximum.
    constraints = []
    if "minimum" in schema:
        op = "gt" if schema.get("exclusiveMinimum") else "ge"
        constraints.append(f"{op}={_number_literal(schema['minimum'])}")
    if "maximum" in schema:
        op = "lt" if schema.get("exclusiveMaximum") else "le"
        constraints.append(f"{op}={_number_literal(schema['maximum'])}")
    if not constraints:
        return base
    return f"Annotated[{base}, Meta({', '.join(constraints)})]"


def _number_literal(value: int | Decimal) -> str:
    if isinstance(value, Decimal) and value != value.to_integral_value():
        raise UnsupportedSchema(f"fractional bound {value} cannot be compared exactly")
    return str(int(value))


def _shape_key(schema: JsonSchema, ctx: _Context) -> str:
    """Canonical text of a schema with refs inlined and annotations dropped, for deduplication."""

    def strip(node: Any) -> Any:
        if isinstance(node, Mapping):
            resolved, _ = ctx.resolve(node)
            return {
                key: strip(value)
                for key, value in resolved.items()
                if key not in ANNOTATION_KEYWORDS and key != "definitions"
            }
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    return json.dumps(strip(schema), sort_keys=True, default=str) + f"|{ctx.decimal_floats}"


def _type_name(name: str) -> str:
    name = name.removesuffix("Type")
    return name[:1].upper() + name[1:]


def _py_name(json_name: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", json_name).lower()
    snake = re.sub(r"\W", "_", snake)
    return f"{snake}_" if keyword.iskeyword(snake) or snake[:1].isdigit() else snake


def _renames_to(py_name: str) -> str:
    # Ask msgspec itself rather than re-implementing its camel-casing rules.
    probe = msgspec.defstruct("Probe", [(py_name, int)], rename="camel")
    encoded: str = probe.__struct_encode_fields__[0]
    return encoded


def _step_constant(step: Decimal) -> str:
    return "_MULTIPLE_OF_" + str(step).replace(".", "_").replace("-", "MINUS_")


def _topological(structs: Mapping[str, StructDef]) -> list[StructDef]:
    """Definition order where every Struct follows the Structs it references, ties by name."""
    pending = {name: set(struct.uses) for name, struct in structs.items()}
    ready = [name for name, deps in pending.items() if not deps]
    heapq.heapify(ready)
    ordered: list[StructDef] = []
    while ready:
        name = heapq.heappop(ready)
        ordered.append(structs[name])
        for other, deps in pending.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, other)
    if len(ordered) != len(structs):
        raise UnsupportedSchema("recursive object definitions")
    return ordered


# msgspec inherits every option; mypy's dataclass view of a class only sees frozen and kw_only
# on the class itself, so those two are repeated.
STRUCT_BASE = """\
class _Payload(
    msgspec.Struct,
    frozen=True,
    forbid_unknown_fields=True,
    rename="camel",
    omit_defaults=True,
    kw_only=True,
):
    \"\"\"Options every OCPP payload type shares.\"\"\"
"""

HEADER = (
    "# Generated by tools/ocpp_codegen.py from the ocpp package's OCPP {version} JSON schemas."
    " Do not edit.\n"
)

PRELUDE = '''\
# Source: ocpp {ocpp_version} ({count} schemas). Regenerate with `python -m tools.ocpp_codegen`.
"""Typed OCPP {version} payloads; see docs/validation.md for how they mirror jsonschema."""

{decimal_import}from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType
'''

# Only 1.6 has multipleOf (in the three Decimal-parsed payloads); other modules go without.
DECIMAL_HELPERS = """\
# The ocpp library runs jsonschema with the default decimal context; pin it so that a caller
# changing the thread's context cannot change what we accept.
_DECIMAL_CONTEXT = Context(prec=28)
{steps}


def _is_multiple_of(value: float, step: Decimal) -> bool:
    # ocpp.messages round-trips these payloads through json.dumps and re-parses floats as
    # Decimal, so a float is judged by its repr and an int exactly.
    exact = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    try:
        return not _DECIMAL_CONTEXT.remainder(exact, step)
    except InvalidOperation:
        # jsonschema raises here instead of answering; a crash is not an acceptance.
        return False


def _check_multiple_of(name: str, value: float | UnsetType, step: Decimal) -> None:
    if isinstance(value, UnsetType) or _is_multiple_of(value, step):
        return
    # errors.py moves "(field `x`)" into the JSON path that msgspec appends.
    raise ValueError(f"Expected `number` that's a multiple of {{step}} (field `{{name}}`)")
"""


def _render(gen: Generator) -> str:
    steps = "\n".join(f'{_step_constant(step)} = Decimal("{step}")' for step in sorted(gen.steps))
    decimal_import = "from decimal import Context, Decimal, InvalidOperation\n" if steps else ""
    prelude = HEADER.format(version=gen.version) + PRELUDE.format(
        version=gen.version,
        ocpp_version=metadata.version("ocpp"),
        count=len(gen.messages),
        decimal_import=decimal_import,
    )
    if steps:
        prelude += "\n" + DECIMAL_HELPERS.format(steps=steps)
    parts = [prelude, STRUCT_BASE]
    if gen.enums:
        aliases = sorted(gen.enums.items())
        parts.append("".join(f"{name} = {literal}\n" for name, literal in aliases))
    parts.extend(_render_struct(struct) for struct in _topological(gen.nested))
    parts.extend(_render_struct(gen.messages[name]) for name in sorted(gen.messages))
    parts.append(_render_registries(gen))
    return "\n\n".join(parts)


def _render_struct(struct: StructDef) -> str:
    options = "frozen=True, kw_only=True" + (", forbid_unknown_fields=False" if struct.open else "")
    lines = [f"class {struct.name}(_Payload, {options}):", f'    """{struct.doc}']
    places = sorted(set(struct.used_at))
    if places:
        # CustomData is everywhere in 2.x; a list of hundreds of places tells nobody anything.
        listed = ", ".join(places) if len(places) <= 20 else f"{len(places)} places"
        used_at = f"Used at {listed}."
        lines.append("")
        lines.extend(
            textwrap.wrap(used_at, width=96, initial_indent="    ", subsequent_indent="    ")
        )
    lines.append('    """')
    lines.append("")
    required = [f for f in struct.fields if f.required]
    optional = [f for f in struct.fields if not f.required]
    lines.extend(f"    {f.render()}" for f in (*required, *optional))
    checks = [f for f in struct.fields if f.multiple_of is not None]
    if checks:
        lines.append("")
        lines.append("    def __post_init__(self) -> None:")
        lines.extend(
            f'        _check_multiple_of("{f.json_name}", self.{f.py_name}, '
            f"{_step_constant(f.multiple_of)})"
            for f in checks
            if f.multiple_of is not None
        )
    return "\n".join(lines) + "\n"


def _render_registries(gen: Generator) -> str:
    def mapping(var: str, suffix: str) -> str:
        names = sorted(name for name in gen.messages if name.endswith(suffix))
        body = "".join(f'    "{name.removesuffix(suffix)}": {name},\n' for name in names)
        return f"{var}: dict[str, type[msgspec.Struct]] = {{\n{body}}}\n"

    decoders = (
        "# Built once at import: a Decoder caches its type's validation plan.\n"
        "REQUEST_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {\n"
        "    action: msgspec.json.Decoder(struct) for action, struct in REQUESTS.items()\n"
        "}\n"
        "RESPONSE_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {\n"
        "    action: msgspec.json.Decoder(struct) for action, struct in RESPONSES.items()\n"
        "}\n"
    )
    return "\n".join([mapping("REQUESTS", "Request"), mapping("RESPONSES", "Response"), decoders])


def iter_schemas(target: Target) -> Iterator[tuple[str, str, JsonSchema]]:
    """Yield ``(kind, action, schema)`` for every schema of ``target``, sorted by file name.

    1.6 names a request after its action and 2.x appends ``Request``. 2.1's SEND-only
    ``NotifyPeriodicEventStream`` has neither suffix nor a response: it is a request here.
    """
    directory = resources.files("ocpp").joinpath(target.module, "schemas")
    for entry in sorted(directory.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".json"):
            continue
        stem = entry.name.removesuffix(".json")
        kind = "response" if stem.endswith("Response") else "request"
        action = stem.removesuffix("Response") if kind == "response" else stem
        if target.version != "1.6":
            action = action.removesuffix("Request")
        # Decimal keeps multipleOf exact, as the ocpp library does for the payloads that use it.
        schema = json.loads(entry.read_text(encoding="utf-8-sig"), parse_float=Decimal)
        yield kind, action, schema


def generate(target: Target) -> str:
    gen = Generator(target.version)
    for kind, action, schema in iter_schemas(target):
        gen.add_message(kind, action, schema)
    return _format(gen.render(), target)


def _format(source: str, target: Target) -> str:
    # --stdin-filename makes ruff apply the project's pyproject settings to the output.
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(target.path), "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT_ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ruff format failed:\n{result.stderr}")
    return result.stdout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a committed module is out of date"
    )
    args = parser.parse_args(argv)
    stale = 0
    for target in TARGETS:
        source = generate(target)
        current = target.path.read_text(encoding="utf-8") if target.path.exists() else ""
        if current == source:
            continue
        if not args.check:
            target.path.write_text(source, encoding="utf-8")
            continue
        stale += 1
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            source.splitlines(keepends=True),
            fromfile=f"{target.path.name} (committed)",
            tofile=f"{target.path.name} (generated)",
        )
        sys.stdout.writelines(diff)
        print(f"{target.path} is out of date; run `python -m tools.ocpp_codegen`.", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
