"""OCPP security profiles: what a charger's registration may say, and how a handshake that
presents (or lacks) a client certificate and Basic credentials is judged. Pure: the gateway
reads the TLS session and the headers, checks passwords and stores the events.

A registered profile is the least a charger must do; more is welcome. A charger registered
for profile 1 or 2 that presents a valid client certificate is admitted on it (profile 3),
so a fleet can move to certificates before its registrations do, and no charger is ever
admitted on less than it was registered for (OCPP forbids lowering a charger's profile).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, NamedTuple

import msgspec

from hub.domain.cistring import ci
from schemas.events import (
    CommandFinished,
    CommandRequested,
    Event,
    RefusalReason,
    SecurityProfile,
)

PROFILES: Final[tuple[SecurityProfile, ...]] = (0, 1, 2, 3)
# ChangeConfiguration answers after which the charger uses the new value: at once, or from
# its next boot (the setting is changed either way; OCPP 1.6 §5.3).
CHANGED: Final = frozenset({"Accepted", "RebootRequired"})
# Upgrades asked for and not answered yet, at most this many (the oldest go first).
MAX_ASKED: Final = 1_000


class ClientCertificate(msgspec.Struct, frozen=True, kw_only=True):
    """What the gateway keeps of a verified client certificate: public facts only."""

    common_name: str  # the subject's CN: the charger id (OCPP 1.6 security whitepaper)
    serial: str  # hex, upper case
    not_after: str  # ISO 8601 UTC


class BadRegistration(ValueError):
    """A registration the hub will not store; ``field`` names the offending setting."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check_registration(profile: SecurityProfile | None, has_secret: bool) -> None:
    """The rule every registration passes, from the CLI or REST. Raises BadRegistration.

    Under profile 3 the certificate alone authenticates the charger (the whitepaper's
    profile 3 has no Basic authentication), so a password would be a secret that opens
    nothing: it is refused rather than stored."""
    if profile is None:
        return
    if profile not in PROFILES:
        raise BadRegistration("security_profile", f"must be 0, 1, 2 or 3, got {profile}")
    if profile == 0 and has_secret:
        raise BadRegistration(
            "security_profile", "profile 0 means no authentication: give no password or key"
        )
    if profile in (1, 2) and not has_secret:
        raise BadRegistration(
            "security_profile", f"profile {profile} (HTTP Basic) needs a password or a key"
        )
    if profile == 3 and has_secret:
        raise BadRegistration(
            "security_profile",
            "profile 3 chargers authenticate with their client certificate: give no password "
            "or key",
        )


def required_profile(registered: SecurityProfile | None, has_password: bool) -> SecurityProfile:
    """The least a registered charger must authenticate with. A registration without a
    profile (older ones included) asks for what it always did: its password, if any."""
    if registered is not None:
        return registered
    return 1 if has_password else 0


class Verdict(NamedTuple):
    """``refusal``: turn the handshake away. Else ``check_password``: admitted only if its
    Basic password is right (then on profile 2 over TLS, 1 without). Else admitted on
    ``profile``."""

    refusal: RefusalReason | None = None
    check_password: bool = False
    profile: SecurityProfile = 0


def judge(
    charge_point_id: str,
    *,
    registered: bool,
    required: SecurityProfile,
    allow_unknown: bool,
    tls: bool,
    certificate: ClientCertificate | None,
    basic_sent: bool,
) -> Verdict:
    """How a handshake fares, before any password is checked. ``certificate`` is one the
    TLS layer verified against the client CA (an invalid one never gets this far)."""
    if certificate is not None and certificate.common_name != charge_point_id:
        # Whoever holds it is some other charger (or no charger at all): never this one.
        return Verdict(refusal="certificate_mismatch")
    if not registered:
        if not allow_unknown:
            return Verdict(refusal="unknown_charger")
        return Verdict(profile=3 if certificate is not None else observed(tls, basic_sent))
    if required >= 2 and not tls:
        return Verdict(refusal="tls_required")
    if certificate is not None:
        return Verdict(profile=3)
    if required == 3:
        return Verdict(refusal="missing_certificate")
    if required == 0:
        return Verdict(profile=observed(tls, basic_sent))
    return Verdict(check_password=True)


def observed(tls: bool, basic_sent: bool) -> SecurityProfile:
    """The profile a connection whose credentials nobody checks looks like it uses."""
    if not basic_sent:
        return 0
    return 2 if tls else 1


class _Configuration(msgspec.Struct, frozen=True):
    key: str = ""
    value: str = ""


class _Answer(msgspec.Struct, frozen=True):
    status: str = ""


_configuration: Final = msgspec.json.Decoder(_Configuration)
_answer: Final = msgspec.json.Decoder(_Answer)


def requested_profile(action: str, payload: bytes) -> SecurityProfile | None:
    """The profile a ChangeConfiguration sets (key ``SecurityProfile``, a CiString), if it
    is one; any other command, or a value that is no profile, sets none."""
    if action != "ChangeConfiguration":
        return None
    try:
        change = _configuration.decode(payload)
    except msgspec.DecodeError:
        return None
    if ci(change.key) != ci("SecurityProfile"):
        return None
    for profile in PROFILES:
        if change.value.strip() == str(profile):
            return profile
    return None


def changed(finished: CommandFinished) -> bool:
    """Whether the charger took the configuration value it was sent."""
    if finished.status != "answered":
        return False
    try:
        return _answer.decode(finished.payload).status in CHANGED
    except msgspec.DecodeError:
        return False


def raised(
    registered: SecurityProfile | None, has_password: bool, configured: SecurityProfile
) -> SecurityProfile | None:
    """The registration's profile once the charger took ``configured``: the higher of the
    two. Never lower (OCPP forbids lowering a charger's profile; a charger that accepted a
    lower one must not lower what the hub asks of it)."""
    if configured > required_profile(registered, has_password):
        return configured
    return registered


class ProfileUpgrades:
    """The ChangeConfiguration SecurityProfile commands in the stream, matched with their
    answers: ``apply`` says which charger took which profile. A fold of the command API's
    events (``admin.command.requested`` then ``admin.command.finished``), so the profile a
    charger was moved to is derived from what is stored, live and in a replay alike."""

    def __init__(self, capacity: int = MAX_ASKED) -> None:
        self._asked: OrderedDict[str, tuple[str, SecurityProfile]] = OrderedDict()
        self._capacity = max(1, capacity)

    def apply(self, event: Event) -> tuple[str, SecurityProfile] | None:
        """``(charger, profile)`` when ``event`` is the answer by which a charger took a
        new security profile; else None."""
        match event:
            case CommandRequested():
                profile = requested_profile(event.action, bytes(event.payload))
                if profile is not None:
                    self._asked[event.command_id] = (event.charge_point_id, profile)
                    while len(self._asked) > self._capacity:
                        self._asked.popitem(last=False)
            case CommandFinished():
                asked = self._asked.pop(event.command_id, None)
                if asked is not None and changed(event):
                    return asked
        return None
