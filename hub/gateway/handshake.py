"""What the gateway reads off a WebSocket handshake: the charger id, credentials, the peer;
and what websockets itself has to say about handshakes that fail."""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final, NamedTuple
from urllib.parse import unquote, urlsplit

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers

from hub.domain.security_profiles import ClientCertificate
from hub.logs import Throttle, suppressed_field

log = structlog.get_logger("hub.gateway")

# Longest stretch of a client's own text (a path, an error message) that goes into a log line.
LOG_CLIP: Final = 120
# Subprotocols of a refused handshake an event keeps.
_MAX_OFFERED: Final = 16


def charge_point_id_from_path(path: str) -> str | None:
    """The last path segment, percent-decoded; chargers are provisioned with many URL styles
    (``/ocpp/CP1``, ``/steve/websocket/CentralSystemService/CP1``, ``/CP1``). None when it
    does not decode; whether the id is acceptable is ``hub.domain.charger_ids``' business."""
    try:
        last_segment = urlsplit(path).path.rpartition("/")[2]
        return unquote(last_segment, errors="strict")
    except (UnicodeDecodeError, ValueError):  # ValueError: '//[x/...' is a bad IPv6 host
        return None


class BasicCredentials(NamedTuple):
    """What an ``Authorization: Basic`` header carried. ``user`` is None when it is not UTF-8
    (or the header not base64): sent, but no charger's. The password stays bytes: a binary
    AuthorizationKey need not be text."""

    user: str | None
    password: bytes


def basic_credentials(headers: Headers) -> BasicCredentials | None:
    """None only when no Basic credentials were sent at all."""
    value = headers.get("Authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        return BasicCredentials(None, b"")
    user, _, password = decoded.partition(b":")
    try:
        return BasicCredentials(user.decode(), password)
    except UnicodeDecodeError:
        return BasicCredentials(None, password)


def offered_subprotocols(headers: Headers) -> tuple[str, ...]:
    """Sec-WebSocket-Protocol as the client sent it (every header, comma-separated lists
    split), each cut for the log-safe length."""
    return tuple(
        clip(name.strip())
        for value in headers.get_all("Sec-WebSocket-Protocol")
        for name in value.split(",")
        if name.strip()
    )[:_MAX_OFFERED]


def client_certificate(connection: ServerConnection) -> ClientCertificate | None:
    """The client certificate the TLS layer verified against the client CA, if one was
    presented (one that failed verification failed the TLS handshake before any of this)."""
    ssl_object = connection.transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    peer = ssl_object.getpeercert()
    return certificate_of(peer) if peer else None


def certificate_of(peer: Mapping[str, object]) -> ClientCertificate:
    """What ``SSLObject.getpeercert()`` says of a verified certificate. A subject with no CN,
    or with more than one, names no charger: its ``common_name`` is empty, which no charger
    id equals."""
    names: set[str] = set()
    for rdn in _tuple(peer.get("subject")):
        for attribute in _tuple(rdn):
            match attribute:
                case ("commonName", str(name)):
                    names.add(name)
    not_after = peer.get("notAfter")
    expires = (
        datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
        if isinstance(not_after, str)
        else ""
    )
    return ClientCertificate(
        common_name=names.pop() if len(names) == 1 else "",
        serial=_serial(peer.get("serialNumber")),
        not_after=expires,
    )


def _serial(value: object) -> str:
    """Upper-case hex without leading zeros (``format(serial, "X")``), whatever padding
    OpenSSL printed it with, so one certificate has one spelling."""
    try:
        return format(int(str(value), 16), "X")
    except ValueError:
        return ""


def _tuple(value: object) -> tuple[object, ...]:
    return value if isinstance(value, tuple) else ()


def remote_address(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def peer_host(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


def clip(text: str) -> str:
    return text if len(text) <= LOG_CLIP else f"{text[:LOG_CLIP]}... ({len(text)} characters)"


def _one_line(error: BaseException | None) -> str:
    return clip(f"{type(error).__name__}: {error}") if error is not None else ""


# What websockets logs, at INFO, when it answers a handshake with anything but 101.
_HANDSHAKE_ANSWERS: Final = frozenset({"HTTP response sent (%d %s)", "connection rejected (%d %s)"})


class _WebsocketsLog(logging.Handler):
    """websockets' log records as throttled structlog lines, one line each, no traceback.

    Left alone, websockets logs a handshake that makes the gateway fail (and anything else
    unexpected) with a full traceback through the root logger, one per request, and logs the
    requests it refuses itself (request line or headers too long, not an upgrade) nowhere.
    """

    def __init__(self, throttle: Throttle) -> None:
        super().__init__(logging.INFO)
        self._throttle = throttle

    def emit(self, record: logging.LogRecord) -> None:
        connection = getattr(record, "websocket", None)
        remote = remote_address(connection) if isinstance(connection, ServerConnection) else ""
        if record.levelno >= logging.WARNING:
            suppressed = self._throttle.admit(f"websockets.error:{record.msg}")
            if suppressed is not None:
                error = record.exc_info[1] if record.exc_info else None
                log.warning(
                    "websockets.error",
                    message=str(record.msg),
                    error=_one_line(error),
                    remote=remote,
                    **suppressed_field(suppressed),
                )
        elif record.msg in _HANDSHAKE_ANSWERS and isinstance(connection, ServerConnection):
            failure = connection.protocol.handshake_exc
            if failure is None:
                return  # the gateway's own refusal, already logged as connection.refused
            status = record.args[0] if isinstance(record.args, tuple) and record.args else 0
            suppressed = self._throttle.admit(f"handshake.failed:{status}")
            if suppressed is not None:
                log.info(
                    "handshake.failed",
                    status=status,
                    error=_one_line(failure),
                    remote=remote,
                    **suppressed_field(suppressed),
                )
        # Everything else at INFO ("connection open", "connection closed", "server listening")
        # repeats the gateway's own lines.


def websockets_logger(throttle: Throttle) -> logging.Logger:
    """The logger to give websockets: not in the logging tree, so nothing it logs reaches
    the root logger's handlers (or, without any, stderr)."""
    logger = logging.Logger("hub.gateway.websockets", logging.INFO)
    logger.addHandler(_WebsocketsLog(throttle))
    return logger
