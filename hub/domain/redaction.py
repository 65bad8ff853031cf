"""Secrets never stored in clear: configuration values the stream must not keep.

A charger's ``AuthorizationKey`` (the Basic password of security profiles 1 and 2) travels
in ChangeConfiguration, when the hub sets it, and in GetConfiguration answers, where some
firmware returns it. The charger gets the real value; every stored copy (events, and so the
``events`` table, UI messages and API answers made from them) says ``***`` instead.

``***`` rather than a digest: an unkeyed digest of a short key can be guessed offline, and a
keyed one needs a key every process shares, which would be one more secret at rest next to
the stream. A fixed marker is deterministic (the same frame redacts to the same bytes, so
retried publishes still deduplicate) and leaks nothing but that a value was there.

Key names are OCPP CiStrings, compared case-insensitively (``authorizationkey`` is the same
key). Pure functions; the gateway's protocol core and the command API call them before an
event is made.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final

import msgspec

REDACTED: Final = "***"
# Always secret, whatever is configured: the charger's Basic password (OCPP 1.6 security
# extension).
ALWAYS_SECRET: Final = ("AuthorizationKey",)
# The actions whose payloads carry configuration values (OCPP 1.6).
CONFIGURATION_ACTIONS: Final = frozenset({"ChangeConfiguration", "GetConfiguration"})

SecretKeys = frozenset[str]

_encoder: Final = msgspec.json.Encoder()


def secret_keys(names: Iterable[str] = ()) -> SecretKeys:
    """The casefolded key names whose values are redacted: ``ALWAYS_SECRET`` and ``names``."""
    return frozenset(name.strip().casefold() for name in (*ALWAYS_SECRET, *names) if name.strip())


def parse_secret_keys(text: str) -> SecretKeys:
    """A comma-separated list of key names, as ``HUB_SECRET_CONFIG_KEYS`` gives them."""
    return secret_keys(text.split(","))


DEFAULT_SECRET_KEYS: Final = secret_keys()


def redact_payload(action: str, payload: bytes | msgspec.Raw, keys: SecretKeys) -> bytes | None:
    """``payload`` (JSON) with every secret configuration value replaced by ``***``, or None
    when there is nothing to redact: not a configuration action, no secret key in it, or
    not JSON (the schema check refuses that anyway, and its raw text is redacted apart)."""
    if action not in CONFIGURATION_ACTIONS:
        return None
    payload = bytes(payload)
    if not mentions_secret(payload, keys):
        return None
    try:
        document = msgspec.json.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return None
    if not _redact(document, keys):
        return None
    return _encoder.encode(document)


def redact_text(text: str, keys: SecretKeys) -> str | None:
    """A frame's text (as ``ocpp.rejected`` keeps it) with secret values replaced, or None
    when it holds none. Text that mentions a secret key but cannot be parsed (cut short,
    not JSON) cannot be redacted value by value, so all of it is replaced."""
    if not mentions_secret(text, keys):
        return None
    try:
        # Python's parser: it takes what msgspec refuses (lone surrogates, NaN), as the
        # gateway's own fallback does.
        document = json.loads(text)
    except (ValueError, RecursionError):
        return REDACTED
    if not _redact(document, keys):
        return None
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def mentions_secret(data: bytes | str, keys: SecretKeys) -> bool:
    """Whether a secret key's name occurs in ``data`` in any case: a cheap test first."""
    if isinstance(data, bytes):
        folded_bytes = data.lower()  # key names are ASCII (CiString)
        return any(key.encode() in folded_bytes for key in keys)
    folded = data.casefold()
    return any(key in folded for key in keys)


def _redact(document: object, keys: SecretKeys) -> bool:
    """Replace, in place, the ``value`` of every object whose ``key`` is secret; whether any
    was. Iterative: a frame may nest as deep as its parser allows."""
    changed = False
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            key = node.get("key")
            if (
                isinstance(key, str)
                and key.casefold() in keys
                and "value" in node
                and node["value"] != REDACTED
            ):
                node["value"] = REDACTED
                changed = True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return changed
