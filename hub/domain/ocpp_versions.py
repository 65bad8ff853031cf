"""Which OCPP versions a connection may speak: the hub's allowed set, a registration's, and
the WebSocket subprotocol a handshake settles on. Pure: the gateway reads the offered
subprotocols off the handshake; the CLI and REST check registrations with the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from hub.domain.security_profiles import BadRegistration
from schemas.events import OcppVersion

# Newest first: negotiation picks the first one both sides have (OCPP-J 2.0.1 part 4 §3.1.2
# lets the server choose among what the client offers).
SUBPROTOCOLS: Final[dict[str, OcppVersion]] = {
    "ocpp2.1": "2.1",
    "ocpp2.0.1": "2.0.1",
    "ocpp1.6": "1.6",
}
VERSIONS: Final[tuple[OcppVersion, ...]] = tuple(SUBPROTOCOLS.values())
SUBPROTOCOL_OF: Final[dict[OcppVersion, str]] = {v: name for name, v in SUBPROTOCOLS.items()}
# What a hub allows unless told otherwise. 2.x is selectable, but answers nothing useful
# until its handlers exist (every 2.x CALL is answered NotImplemented), so it is opt-in.
DEFAULT_VERSIONS: Final[tuple[OcppVersion, ...]] = ("1.6",)


def parse_versions(
    text: str | Iterable[str], *, field: str = "ocpp_versions"
) -> tuple[OcppVersion, ...]:
    """``1.6,2.0.1`` (or a list of such names) as versions, newest first, each once.
    Raises BadRegistration naming ``field`` for anything else, or for none at all."""
    names = text.split(",") if isinstance(text, str) else list(text)
    chosen: set[OcppVersion] = set()
    for raw in names:
        name = raw.strip()
        version = next((v for v in VERSIONS if v == name), None)
        if version is None:
            raise BadRegistration(
                field, f"unknown OCPP version {name!r}; expected {', '.join(reversed(VERSIONS))}"
            )
        chosen.add(version)
    if not chosen:
        raise BadRegistration(field, "name at least one OCPP version")
    return tuple(v for v in VERSIONS if v in chosen)


def allowed_versions(
    hub: tuple[OcppVersion, ...], registered: tuple[OcppVersion, ...]
) -> tuple[OcppVersion, ...]:
    """What a charger may speak: the hub's versions, narrowed to its registration's when that
    names some (a charger pinned to 1.6 whose 2.0.1 firmware misbehaves). The hub's set is
    the ceiling: a registration cannot make a gateway speak a version it was told not to."""
    if not registered:
        return hub
    return tuple(v for v in hub if v in registered)


def negotiate(offered: Iterable[str], allowed: tuple[OcppVersion, ...]) -> str | None:
    """The subprotocol to answer: the newest version the charger offers and may speak.
    None: nothing in common (the handshake completes without one and is closed 1002)."""
    names = set(offered)
    for name, version in SUBPROTOCOLS.items():
        if name in names and version in allowed:
            return name
    return None


def spoken(allowed: tuple[OcppVersion, ...]) -> str:
    """``ocpp2.0.1, ocpp1.6``: for the close reason a refused charger reads."""
    return ", ".join(SUBPROTOCOL_OF[v] for v in VERSIONS if v in allowed)
