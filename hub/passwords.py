"""Charger passwords (OCPP security profiles 1 and 2), stored only as salted PBKDF2 hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

_ALGORITHM: Final = "pbkdf2_sha256"
# OCPP AuthorizationKeys are 16-40 random characters, so this cost only has to stop offline
# guessing of weak operator-chosen passwords; much more would turn a reconnect storm of
# thousands of chargers into minutes of CPU.
_ITERATIONS: Final = 60_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, iterations: int = _ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"${_ALGORITHM}$i={iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        _, algorithm, cost, salt, digest = encoded.split("$")
        iterations = int(cost.removeprefix("i="))
    except ValueError:
        return False
    if algorithm != _ALGORITHM:
        return False
    actual = hashlib.pbkdf2_hmac("sha256", password.encode(), _unb64(salt), iterations)
    return hmac.compare_digest(actual, _unb64(digest))
