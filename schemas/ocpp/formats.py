"""The ``format`` keywords of the OCPP JSON schemas (``date-time``, ``uri``), checked.

1.6 names both formats; 2.0.1 and 2.1 name only ``date-time`` (38 and 76 fields). The
generated types (``v16.py``, ``v201.py``, ``v21.py``) take such fields as plain ``str``, as
the ocpp library's validator does (it has no format checker). The command API checks them
on top, so an operator's ``"expiryDate": "tomorrow"`` is refused with the field's path
before anything is stored or sent. Where each format applies is read once per message from
the same schema files the types were generated from.

``date-time`` is RFC 3339 §5.6 (JSON Schema's definition): a full date, ``T``, a time with
optional fractional seconds, and ``Z`` or an offset, e.g. ``2027-01-01T00:00:00Z``. ``uri``
is an absolute URI (RFC 3986 §4.3): a scheme, ``:``, and no spaces or control characters.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from datetime import datetime
from importlib import resources
from typing import Any, Final, Literal

import msgspec

from schemas.ocpp.errors import PayloadError

Kind = Literal["request", "response"]
# A path into a payload: property names, and "*" for every item of an array.
Path = tuple[str, ...]

_DATE_TIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_URI: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s\x00-\x1f\x7f]*", re.ASCII)


def is_date_time(value: str) -> bool:
    if _DATE_TIME.fullmatch(value) is None:
        return False
    try:
        # The pattern admits 2026-02-30 and 25:00; the calendar does not. A leap second
        # (:60) is valid RFC 3339 that Python cannot hold: taken as :59 to check the rest.
        datetime.fromisoformat((value[:17] + value[17:19].replace("60", "59") + value[19:]).upper())
    except ValueError:
        return False
    return True


def is_uri(value: str) -> bool:
    return _URI.fullmatch(value) is not None


_CHECKS: Final = {"date-time": is_date_time, "uri": is_uri}
_MODULES: Final = {"1.6": "v16", "2.0.1": "v201", "2.1": "v21"}


@functools.cache
def format_paths(version: str, kind: Kind, action: str) -> tuple[tuple[Path, str], ...]:
    """Where ``action``'s ``kind`` payload has a format, and which; () if it has none (or the
    version or action is unknown)."""
    module = _MODULES.get(version)
    if module is None:
        return ()
    directory = resources.files("ocpp").joinpath(module, "schemas")
    if kind == "response":
        names = [f"{action}Response.json"]
    elif version == "1.6":
        names = [f"{action}.json"]
    else:
        # 2.x names requests ...Request.json, except 2.1's SEND NotifyPeriodicEventStream.
        names = [f"{action}Request.json", f"{action}.json"]
    entry = next((directory / n for n in names if (directory / n).is_file()), None)
    if entry is None:
        return ()
    schema = json.loads(entry.read_text(encoding="utf-8-sig"))
    return tuple(_walk(schema, schema.get("definitions", {}), ()))


def _walk(schema: dict[str, Any], definitions: dict[str, Any], path: Path) -> Iterator[Any]:
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rpartition("/")[2]]
    if isinstance(fmt := schema.get("format"), str) and fmt in _CHECKS:
        yield path, fmt
    for prop, sub in schema.get("properties", {}).items():
        yield from _walk(sub, definitions, (*path, prop))
    if isinstance(items := schema.get("items"), dict):
        yield from _walk(items, definitions, (*path, "*"))


def check_formats(
    version: str, kind: Kind, action: str, payload: bytes | msgspec.Raw
) -> PayloadError | None:
    """The first value in ``payload`` (already valid against its type) that breaks its
    format, as a ``PropertyConstraintViolation`` naming its JSON path; None if none does."""
    paths = format_paths(version, kind, action)
    if not paths:
        return None
    document = msgspec.json.decode(payload)
    for path, fmt in paths:
        for where, value in _values(document, path, "$"):
            if isinstance(value, str) and not _CHECKS[fmt](value):
                return PayloadError(
                    "PropertyConstraintViolation",
                    f"Invalid {fmt} {_quote(value)} - at `{where}`",
                )
    return None


def _values(node: Any, path: Path, where: str) -> Iterator[tuple[str, Any]]:
    if not path:
        yield where, node
        return
    step, rest = path[0], path[1:]
    if step == "*":
        if isinstance(node, list):
            for index, item in enumerate(node):
                yield from _values(item, rest, f"{where}[{index}]")
    elif isinstance(node, dict) and step in node:
        yield from _values(node[step], rest, f"{where}.{step}")


def _quote(value: str) -> str:
    return repr(value) if len(value) <= 64 else f"{value[:64]!r}..."
