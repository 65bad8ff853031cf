"""Secrets never stored in clear: configuration values the stream must not keep.

A charger's ``AuthorizationKey`` (the Basic password of security profiles 1 and 2) travels
in ChangeConfiguration, when the hub sets it, and in GetConfiguration answers, where some
firmware returns it. The charger gets the real value; every stored copy (events, and so the
``events`` table, UI messages and API answers made from them) says ``***`` instead.

``***`` rather than a digest: an unkeyed digest of a short key can be guessed offline, and a
keyed one needs a key every process shares, which would be one more secret at rest next to
the stream. A fixed marker is deterministic (the same frame redacts to the same bytes, so
retried publishes still deduplicate) and leaks nothing but that a value was there.

OCPP 2.0.1 and 2.1 keep configuration in the device model instead: a variable of a
component, named ``Component.Variable`` here (``SecurityCtrlr.BasicAuthPassword``, the Basic
password, always secret). Its values travel in SetVariables, GetVariables answers and
NotifyReport, and are redacted the same way; so are the passwords and keys of a
SetNetworkProfile (the APN's and the VPN's, and 2.1's ``basicAuthPassword``), always.

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
ALWAYS_SECRET: Final = ("AuthorizationKey", "SecurityCtrlr.BasicAuthPassword")
# The actions whose payloads carry configuration values (OCPP 1.6), and the device model's
# variables (2.x).
CONFIGURATION_ACTIONS: Final = frozenset({"ChangeConfiguration", "GetConfiguration"})
VARIABLE_ACTIONS: Final = frozenset({"SetVariables", "GetVariables", "NotifyReport"})
# Actions whose payloads hold credentials in fields of their own (2.x), whatever is configured.
NETWORK_ACTIONS: Final = frozenset({"SetNetworkProfile"})
_SECRET_ACTIONS: Final = CONFIGURATION_ACTIONS | VARIABLE_ACTIONS | NETWORK_ACTIONS
# A network connection profile's secrets: the APN's and 2.1's Basic password, and the VPN's
# password and shared key (the last two only inside ``vpn``).
_PROFILE_SECRETS: Final = ("apnPassword", "basicAuthPassword")
_VPN_SECRETS: Final = ("password", "key")

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
    if action not in _SECRET_ACTIONS:
        return None
    payload = bytes(payload)
    if action not in NETWORK_ACTIONS and not mentions_secret(payload, keys):
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
    if not mentions_secret(text, keys) and not _mentions_password(text):
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
    """Whether a secret key's name (a variable's, for ``Component.Variable``) occurs in
    ``data`` in any case: a cheap test first."""
    names = [key.rpartition(".")[2] for key in keys]
    if isinstance(data, bytes):
        folded_bytes = data.lower()  # key names are ASCII (CiString)
        return any(name.encode() in folded_bytes for name in names)
    folded = data.casefold()
    return any(name in folded for name in names)


def _mentions_password(text: str) -> bool:
    folded = text.casefold()
    return "password" in folded or '"vpn"' in folded


def _redact(document: object, keys: SecretKeys) -> bool:
    """Replace, in place, the ``value`` of every object whose ``key`` is secret, the values of
    every secret 2.x variable, and a network profile's passwords; whether any was.
    Iterative: a frame may nest as deep as its parser allows."""
    changed = False
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            key = node.get("key")
            if isinstance(key, str) and key.casefold() in keys:
                changed |= _replace(node, "value")
            if _variable_name(node) in keys:
                changed |= _replace(node, "attributeValue")
                attributes = node.get("variableAttribute")
                for attribute in attributes if isinstance(attributes, list) else ():
                    if isinstance(attribute, dict):
                        changed |= _replace(attribute, "value")
            for field in _PROFILE_SECRETS:
                changed |= _replace(node, field)
            vpn = node.get("vpn")
            if isinstance(vpn, dict):
                for field in _VPN_SECRETS:
                    changed |= _replace(vpn, field)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return changed


def _replace(node: dict[str, object], field: str) -> bool:
    if field in node and node[field] != REDACTED:
        node[field] = REDACTED
        return True
    return False


def _variable_name(node: dict[str, object]) -> str:
    """``component.variable`` (casefolded) of a 2.x object that names both, else ""."""
    component, variable = node.get("component"), node.get("variable")
    if not isinstance(component, dict) or not isinstance(variable, dict):
        return ""
    names = component.get("name"), variable.get("name")
    if not all(isinstance(name, str) for name in names):
        return ""
    return f"{names[0]}.{names[1]}".casefold()
