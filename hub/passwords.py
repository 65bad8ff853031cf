"""Charger passwords (OCPP security profiles 1 and 2), stored only as salted PBKDF2 hashes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
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


def hash_password(password: str, *, iterations: int = _ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"${_ALGORITHM}$i={iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
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
    actual = hashlib.pbkdf2_hmac("sha256", password.encode(), salt_bytes, iterations)
    return hmac.compare_digest(actual, expected)
