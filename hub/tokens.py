"""JWT bearer tokens for UI clients: which chargers a token may read, until when.

Claims: ``sub`` (who), ``chargers`` (a list of charger ids, or ``"*"``), ``role``
(``viewer``, ``operator`` or ``admin``; the command API will act on it), ``exp`` (required),
``iat``. HS256 with a shared secret, or RS256 with a key pair (the hub only needs the public
key to verify; minting needs the private one).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import jwt
import msgspec

Algorithm = Literal["HS256", "RS256"]
Role = Literal["viewer", "operator", "admin"]

SECRET_FILE: Final = "jwt.secret"


class AuthError(Exception):
    """A token that does not grant access; ``str()`` says why, for the close reason."""


class _Claims(msgspec.Struct, frozen=True):
    exp: float
    chargers: list[str] | Literal["*"]
    sub: str = ""
    role: Role = "viewer"


@dataclass(frozen=True, slots=True)
class Scope:
    subject: str
    role: Role
    chargers: frozenset[str]
    everything: bool
    expires_at: float  # Unix seconds

    def allows(self, charge_point_id: str) -> bool:
        return self.everything or charge_point_id in self.chargers


class Verifier:
    def __init__(self, algorithm: Algorithm, key: str) -> None:
        if not key:
            raise ValueError(f"no {'secret' if algorithm == 'HS256' else 'public key'} for JWT")
        self._algorithm = algorithm
        self._key = key

    def verify(self, token: str) -> Scope:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                options={"require": ["exp"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as error:
            raise AuthError(f"invalid token: {error}") from None
        try:
            parsed = msgspec.convert(claims, _Claims, strict=False)
        except msgspec.ValidationError as error:
            raise AuthError(f"invalid token claims: {error}") from None
        everything = parsed.chargers == "*"
        return Scope(
            subject=parsed.sub,
            role=parsed.role,
            chargers=frozenset() if everything else frozenset(parsed.chargers),
            everything=everything,
            expires_at=parsed.exp,
        )


def mint(
    key: str,
    algorithm: Algorithm,
    *,
    chargers: list[str] | Literal["*"],
    ttl_s: float,
    role: Role = "viewer",
    subject: str = "",
    now: float | None = None,
) -> str:
    issued = time.time() if now is None else now
    claims = {
        "sub": subject,
        "chargers": chargers,
        "role": role,
        "iat": int(issued),
        "exp": int(issued + ttl_s),
    }
    return jwt.encode(claims, key, algorithm=algorithm)


def ensure_secret(data_dir: Path) -> str:
    """The HS256 secret kept under the data directory, made (readable by its owner only) once."""
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret
