"""Charger passwords (OCPP security profiles 1 and 2), stored only as salted PBKDF2 hashes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import Final

_ALGORITHM: Final = "pbkdf2_sha256"
# OCPP AuthorizationKeys are 16-40 random characters, so this cost only has to stop offline
# guessing of weak operator-chosen passwords; much more would turn a reconnect storm of
# thousands of chargers into minutes of CPU.
_ITERATIONS: Final = 60_000
_MAX_ITERATIONS: Final = 1_000_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _bytes(password: str | bytes) -> bytes:
    # Text passwords are hashed as their UTF-8 bytes, so hashes made before binary keys
    # existed verify unchanged.
    return password.encode() if isinstance(password, str) else password


def hash_password(password: str | bytes, *, iterations: int = _ITERATIONS) -> str:
    """``bytes``: a binary key (the OCPP 1.6 security whitepaper's AuthorizationKey), as is."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", _bytes(password), salt, iterations)
    return f"${_ALGORITHM}$i={iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str | bytes, encoded: str) -> bool:
    """False for a wrong password and for any stored value that is not one of our hashes."""
    try:
        _, algorithm, cost, salt, digest = encoded.split("$")
        iterations = int(cost.removeprefix("i="))
        salt_bytes, expected = _unb64(salt), _unb64(digest)
    except (ValueError, binascii.Error):
        return False
    # A forged hash with a huge cost would tie up a core during a handshake.
    if algorithm != _ALGORITHM or not 0 < iterations <= _MAX_ITERATIONS or not expected:
        return False
    actual = hashlib.pbkdf2_hmac("sha256", _bytes(password), salt_bytes, iterations)
    return hmac.compare_digest(actual, expected)


# A hex AuthorizationKey is 16 to 20 bytes (whitepaper), 32 to 40 hex digits.
_HEX_KEY: Final = re.compile(rb"(?:[0-9A-Fa-f]{2}){16,20}")


def verify_credential(presented: bytes, encoded: str) -> bool:
    """Whether a Basic password, as the bytes the charger sent, matches ``encoded``.

    Firmware given a hex AuthorizationKey either decodes it and sends the raw bytes, or sends
    the hex text as it is; both are the same key, so a hex text is also tried decoded."""
    if verify_password(presented, encoded):
        return True
    if _HEX_KEY.fullmatch(presented) is None:
        return False
    return verify_password(bytes.fromhex(presented.decode("ascii")), encoded)


def first_match(presented: bytes, encoded: Sequence[str]) -> int | None:
    """The index of the first of ``encoded`` that ``presented`` matches, if any."""
    for index, candidate in enumerate(encoded):
        if verify_credential(presented, candidate):
            return index
    return None
