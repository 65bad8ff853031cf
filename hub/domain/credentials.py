"""Charger credentials: what a password or a key may be, and what a charger's answer to a new
one means. Pure: the shells hash, store and send."""

from __future__ import annotations

import re
from typing import Final, NamedTuple

import msgspec

from schemas.commands import CommandStatus
from schemas.events import OcppVersion, RotationOutcome

# The OCPP 1.6 security whitepaper's AuthorizationKey: at least 16 bytes, at most 20, given
# as hex; OCPP 2.0.1's passwordString: 16 to 40 characters.
MIN_PASSWORD: Final = 16
MAX_PASSWORD: Final = 40
MIN_KEY_BYTES: Final = 16
MAX_KEY_BYTES: Final = 20
# Printable ASCII: what every firmware can store and put in a Basic header as it is.
_PRINTABLE: Final = re.compile(r"[\x20-\x7e]*")
_HEX: Final = re.compile(r"(?:[0-9A-Fa-f]{2})*")
# Answers after which the charger holds the new password (ChangeConfiguration's status,
# SetVariables' attributeStatus).
_TAKEN: Final = frozenset({"Accepted", "RebootRequired"})


class Secret(NamedTuple):
    """A charger's password. ``raw``: the bytes it sends as its Basic password (what is
    hashed); ``configured``: the AuthorizationKey value it is sent (the text, or the hex)."""

    raw: bytes
    configured: str


class BadSecret(ValueError):
    """A password or key the hub will not register; ``field`` says which one."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def password_secret(text: str) -> Secret:
    """A text password, sent as its bytes."""
    if not MIN_PASSWORD <= len(text) <= MAX_PASSWORD:
        raise BadSecret(
            "password",
            f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters, got {len(text)} "
            "(OCPP security whitepaper); for a binary key give its hex as the key instead",
        )
    if _PRINTABLE.fullmatch(text) is None:
        raise BadSecret("password", "must be printable ASCII characters")
    return Secret(text.encode(), text)


def key_secret(hex_text: str) -> Secret:
    """A binary key given as hex (the whitepaper's AuthorizationKey); the charger sends the
    raw bytes, or the hex text (the gateway takes either)."""
    if _HEX.fullmatch(hex_text) is None:
        raise BadSecret("key", "must be hex digits, two per byte")
    raw = bytes.fromhex(hex_text)
    if not MIN_KEY_BYTES <= len(raw) <= MAX_KEY_BYTES:
        raise BadSecret(
            "key",
            f"must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes ({2 * MIN_KEY_BYTES} to "
            f"{2 * MAX_KEY_BYTES} hex digits), got {len(raw)}",
        )
    return Secret(raw, hex_text.lower())


def secret_of(password: str | None, key: str | None, random: bytes) -> tuple[Secret, bool]:
    """The secret a request asks for: its password, its key, or else a key made of
    ``random`` (``True``: generated, so the operator must be told it)."""
    if password is not None and key is not None:
        raise BadSecret("key", "give a password or a key, not both")
    if password is not None:
        return password_secret(password), False
    if key is not None:
        return key_secret(key), False
    return key_secret(random.hex()), True


class PasswordCall(NamedTuple):
    """How chargers of ``versions`` are given a new Basic password: 1.6's ChangeConfiguration
    AuthorizationKey (security whitepaper), 2.x's SetVariables SecurityCtrlr.BasicAuthPassword
    (A01). ``payload`` is what the charger gets; the stream keeps it with the value redacted."""

    action: str
    versions: tuple[OcppVersion, ...]

    def payload(self, value: str) -> bytes:
        if self.action == "ChangeConfiguration":
            return msgspec.json.encode({"key": "AuthorizationKey", "value": value})
        variable = {
            "attributeValue": value,
            "component": {"name": "SecurityCtrlr"},
            "variable": {"name": "BasicAuthPassword"},
        }
        return msgspec.json.encode({"setVariableData": [variable]})


PASSWORD_CALLS: Final = (
    PasswordCall("ChangeConfiguration", ("1.6",)),
    PasswordCall("SetVariables", ("2.0.1", "2.1")),
)


def password_calls(ocpp_version: str) -> tuple[PasswordCall, ...]:
    """The calls a rotation tries, in order: first the one for ``ocpp_version``, the version
    of the charger's latest connection as the hub knows it (unknown, ``""``: 1.6's); the
    other only if the gateway refuses that one (``wrong_version``: the charger reconnected
    with another version in between)."""
    first = tuple(call for call in PASSWORD_CALLS if ocpp_version in call.versions)
    return (*first, *(call for call in PASSWORD_CALLS if call not in first))


class _Result(msgspec.Struct, rename="camel"):
    attribute_status: str = ""


class _Answer(msgspec.Struct, rename="camel"):
    # ChangeConfiguration's, and SetVariables' (one result per variable set).
    status: str = ""
    set_variable_result: list[_Result] = []

    @property
    def verdict(self) -> str:
        if self.set_variable_result:
            return self.set_variable_result[0].attribute_status
        return self.status


def rotation_outcome(status: CommandStatus, payload: bytes) -> tuple[RotationOutcome | None, str]:
    """What a charger's reply to the new password (ChangeConfiguration or SetVariables, see
    ``PasswordCall``) means for a rotation, and the detail to record. None: it took the
    password, and the rotation goes on until it logs in with it."""
    if status == "answered":
        try:
            verdict = msgspec.json.decode(payload, type=_Answer).verdict
        except msgspec.DecodeError:
            return "rejected", "an answer without a status"
        if not verdict:
            return "rejected", "an answer without a status"
        if verdict in _TAKEN:
            return None, verdict
        return "rejected", verdict
    if status in ("callerror", "invalid_answer", "invalid"):
        return "rejected", status
    if status == "timeout":
        return "timeout", status
    return "failed", status
