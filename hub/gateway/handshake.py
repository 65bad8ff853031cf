"""What the gateway reads off a WebSocket handshake: the charger id, credentials, the peer."""

from __future__ import annotations

import base64
import binascii
from typing import Final
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers

MAX_CHARGE_POINT_ID_LENGTH: Final = 48


def charge_point_id_from_path(path: str) -> str | None:
    """The last path segment, percent-decoded; chargers are provisioned with many URL styles
    (``/ocpp/CP1``, ``/steve/websocket/CentralSystemService/CP1``, ``/CP1``)."""
    last_segment = urlsplit(path).path.rpartition("/")[2]
    try:
        candidate = unquote(last_segment, errors="strict")
    except UnicodeDecodeError:
        return None
    if not 0 < len(candidate) <= MAX_CHARGE_POINT_ID_LENGTH:
        return None
    # ':' would make HTTP Basic credentials ambiguous (OCPP 2.0.1 forbids it for the same reason).
    if ":" in candidate or not candidate.isprintable():
        return None
    return candidate


def basic_credentials(headers: Headers) -> tuple[str, str] | None:
    value = headers.get("Authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return username, password


def remote_address(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
