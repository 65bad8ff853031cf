"""NATS subject layout of the event log, and the reversible charger-id encoding it needs.

Events live under ``ev.``::

    ev.cp.<charger>.in.<Action>         frames from the charger (CALL, or the result of our CALL)
    ev.cp.<charger>.out.<Action>        frames to the charger
    ev.cp.<charger>.rejected.<reason>   inbound frames the gateway refused
    ev.cp.<charger>.conn.<what>         opened / closed / replaced
    ev.gw.refused                       handshakes refused before a charger id was trusted
    ev.admin.<kind>                     operator actions: registrations, id tags, tariffs, ...
    ev.clock.tick                       the hub's clock, which timers in folds advance on
    ev.wallet.<what>, ev.integrity.<what>, ev.session.<what>
                                        facts the supervisor derived from the events

so ``ev.cp.CP-1.>`` follows one charger and ``ev.cp.*.*.StartTransaction`` one action.
"""

from __future__ import annotations

import re
from typing import Final

from schemas.events import (
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


def charger_subject(charge_point_id: str) -> str:
    """Wildcard that follows every event of one charger."""
    return f"{EVENTS_PREFIX}.cp.{encode_token(charge_point_id)}.>"


def subject_for(event: Event) -> str:
    match event:
        case OcppFrame(charge_point_id=cp, direction=direction, action=action):
            return f"ev.cp.{encode_token(cp)}.{direction}.{encode_token(action)}"
        case FrameRejected(charge_point_id=cp, reason=reason):
            return f"ev.cp.{encode_token(cp)}.rejected.{reason}"
        case ChargerConnected(charge_point_id=cp):
            return f"ev.cp.{encode_token(cp)}.conn.opened"
        case ChargerDisconnected(charge_point_id=cp):
            return f"ev.cp.{encode_token(cp)}.conn.closed"
        case ChargerReplaced(charge_point_id=cp):
            return f"ev.cp.{encode_token(cp)}.conn.replaced"
        case ConnectionRefused():
            return "ev.gw.refused"
        case _AdminEvent() | ClockTick() | _DerivedEvent():
            kind = type(event).__struct_config__.tag
            assert isinstance(kind, str)
            return f"ev.{kind}"
    raise AssertionError(f"no subject for {type(event).__name__}")
