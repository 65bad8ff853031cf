"""NATS subject layout of the event log, and the reversible charger-id encoding it needs.

Events live under ``ev.``::

    ev.cp.<charger>.in.<Action>         frames from the charger (CALL, or the result of our CALL)
    ev.cp.<charger>.out.<Action>        frames to the charger
    ev.cp.<charger>.rejected.<reason>   inbound frames the gateway refused
    ev.cp.<charger>.conn.<what>         opened / closed / replaced
    ev.cp.<charger>.cert.<what>         certificates: issued / refused (SignCertificate)
    ev.gw.refused                       handshakes refused before a charger id was trusted
    ev.admin.<kind>                     operator actions: registrations, id tags, tariffs, ...
    ev.clock.tick                       the hub's clock, which timers in folds advance on
    ev.wallet.<what>, ev.integrity.<what>, ev.session.<what>
                                        facts the supervisor derived from the events

so ``ev.cp.CP-1.>`` follows one charger and ``ev.cp.*.*.StartTransaction`` one action.

Every part of a subject is bounded, since nats-server drops a connection whose PUB line
exceeds 4 KiB: charger ids are at most 48 characters (the handshake refuses longer ones),
and an action, which a charger may send at any length, is cut to ``MAX_ACTION_TOKEN``
characters and ends in ``~~`` and a digest of the whole action (``action_token``). The
event itself keeps the action as sent.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from hub.domain.charging import ANSWERED
from schemas.events import (
    CertificateIssued,
    CertificateRefused,
    ChargerConnected,
    ChargerDisconnected,
    ChargerReplaced,
    ClockTick,
    ConnectionRefused,
    Event,
    FrameRejected,
    OcppFrame,
    _AdminEvent,
    _DerivedEvent,
)

EVENTS_PREFIX: Final = "ev"
EVENTS_WILDCARD: Final = "ev.>"
ADMIN_WILDCARD: Final = "ev.admin.>"
# The command API's requested/finished events (admin.command.*), which its tracking folds.
COMMAND_WILDCARD: Final = "ev.admin.command.>"
# Every event but the hub's answers whose meaning no fold needs (an empty answer to a
# Heartbeat, a MeterValues, a StatusNotification: nearly half of a busy stream): what a
# fold of the charging domain and of chargers' signs of life reads (the fan-out's).
MEANINGFUL: Final = (
    "ev.cp.*.in.>",
    *(f"ev.cp.*.out.{action}" for action in sorted(ANSWERED)),
    "ev.cp.*.rejected.>",
    "ev.cp.*.conn.>",
    "ev.cp.*.cert.>",
    "ev.gw.>",
    "ev.admin.>",
    "ev.clock.>",
    "ev.wallet.>",
    "ev.integrity.>",
    "ev.session.>",
    "ev.allocation.>",
)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching, as a consumer's filter does: ``*`` is exactly one token, a
    final ``>`` one or more."""
    pattern_tokens, subject_tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(pattern_tokens):
        if token == ">":
            return len(subject_tokens) > index
        if index >= len(subject_tokens) or token not in ("*", subject_tokens[index]):
            return False
    return len(subject_tokens) == len(pattern_tokens)


# Plain ids pass through untouched so subjects stay readable; everything else, including
# the escape character itself, becomes ~XX per UTF-8 byte, which keeps the mapping injective.
_PLAIN: Final = re.compile(r"[A-Za-z0-9_\-]+")
_ESCAPED: Final = re.compile(r"~([0-9A-F]{2})")


def encode_token(value: str) -> str:
    """Encode any string as one NATS subject token (no ``.``, ``*``, ``>``, whitespace)."""
    if value and _PLAIN.fullmatch(value):
        return value
    if not value:
        return "~"
    out: list[str] = []
    for char in value:
        if _PLAIN.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"~{byte:02X}" for byte in char.encode())
    return "".join(out)


def decode_token(token: str) -> str:
    if token == "~":
        return ""
    if "~" not in token:
        return token
    raw = bytearray()
    position = 0
    for match in _ESCAPED.finditer(token):
        raw += token[position : match.start()].encode()
        raw.append(int(match.group(1), 16))
        position = match.end()
    raw += token[position:].encode()
    return raw.decode()


# Longer than any action OCPP defines (the longest, 1.6's SignedFirmwareStatusNotification,
# has 32 characters), far shorter than what breaks a NATS subject.
MAX_ACTION_TOKEN: Final = 64
_DIGEST_TOKEN: Final = 18  # "~~" and 16 hex digits


def action_token(action: str) -> str:
    """``action`` as a subject token of at most ``MAX_ACTION_TOKEN`` characters.

    An action whose token is longer keeps a readable head and ends in ``~~`` and 64 bits of
    its BLAKE2b digest: ``encode_token`` never writes ``~~``, so a cut token is never some
    other action's, and two long actions share a token only if their digests collide.
    """
    token = encode_token(action)
    if len(token) <= MAX_ACTION_TOKEN:
        return token
    head = token[: MAX_ACTION_TOKEN - _DIGEST_TOKEN]
    escape = head.rfind("~", len(head) - 2)
    if escape >= 0:
        head = head[:escape]  # never cut a ~XX escape in two
    digest = hashlib.blake2b(action.encode(errors="surrogatepass"), digest_size=8).hexdigest()
    return f"{head}~~{digest}"


def charger_subject(charge_point_id: str) -> str:
    """Wildcard that follows every event of one charger."""
    return f"{EVENTS_PREFIX}.cp.{encode_token(charge_point_id)}.>"


def opened_subject(charge_point_id: str) -> str:
    """The subject of one charger's ``connection.opened`` events."""
    return f"{EVENTS_PREFIX}.cp.{encode_token(charge_point_id)}.conn.opened"


def subject_for(event: Event) -> str:
    match event:
        case OcppFrame(charge_point_id=cp, direction=direction, action=action):
            return f"ev.cp.{encode_token(cp)}.{direction}.{action_token(action)}"
        case FrameRejected(charge_point_id=cp, reason=reason):
            return f"ev.cp.{encode_token(cp)}.rejected.{reason}"
        case ChargerConnected(charge_point_id=cp):
            return opened_subject(cp)
        case ChargerDisconnected(charge_point_id=cp):
            return f"ev.cp.{encode_token(cp)}.conn.closed"
        case ChargerReplaced(charge_point_id=cp):
            return f"ev.cp.{encode_token(cp)}.conn.replaced"
        case CertificateIssued(charge_point_id=cp):
            return f"ev.cp.{encode_token(cp)}.cert.issued"
        case CertificateRefused(charge_point_id=cp):
            return f"ev.cp.{encode_token(cp)}.cert.refused"
        case ConnectionRefused():
            return "ev.gw.refused"
        case _AdminEvent() | ClockTick() | _DerivedEvent():
            kind = type(event).__struct_config__.tag
            assert isinstance(kind, str)
            return f"ev.{kind}"
    raise AssertionError(f"no subject for {type(event).__name__}")
