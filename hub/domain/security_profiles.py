"""OCPP security profiles: what a charger's registration may say, and how a handshake that
presents (or lacks) a client certificate and Basic credentials is judged. Pure: the gateway
reads the TLS session and the headers, checks passwords and stores the events.

A registered profile is the least a charger must do; more is welcome. A charger registered
for profile 1 or 2 that presents a valid client certificate is admitted on it (profile 3),
so a fleet can move to certificates before its registrations do, and no charger is ever
admitted on less than it was registered for (OCPP forbids lowering a charger's profile).
"""

from __future__ import annotations

from typing import Final, NamedTuple

import msgspec

from schemas.events import RefusalReason, SecurityProfile

PROFILES: Final[tuple[SecurityProfile, ...]] = (0, 1, 2, 3)


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
