"""What the hub makes of certificates: whether a charger's CSR may be signed, what a PEM
chain says, and the certificate facts consumers track expiry on.

Pure: parsing and verifying with ``cryptography`` reads no file and no clock. The signing
itself (keys, an external CA) is :mod:`hub.ca`'s.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hub.domain.facts import CertificateKnown
from hub.domain.timeutil import parse_ms
from schemas.events import CertificateIssued, CertificateRefusal, ChargerConnected

__all__ = ["CertificateIssued", "Leaf", "Verdict", "check_csr", "issued", "presented"]

# Curves and RSA sizes a charger's key may have: what the OCPP 1.6 security whitepaper's
# TLS cipher suites use, and nothing weaker.
_CURVES: Final = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 8192


class Verdict(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Whether a CSR may be signed; ``reason`` and ``detail`` say why not."""

    reason: CertificateRefusal | None = None
    detail: str = ""

    @property
    def signable(self) -> bool:
        return self.reason is None


SIGNABLE: Final = Verdict()


def check_csr(pem: str, charge_point_id: str) -> Verdict:
    """A CSR is signed only if it is one, its signature holds (the charger has the key),
    its key is strong enough, and its subject's one CN is the charger's id: the certificate
    becomes the charger's identity (security profile 3 takes the id from the CN), so a
    charger can have one for its own id only (OCPP 1.6 security whitepaper, A02)."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except (ValueError, UnicodeEncodeError) as error:
        return Verdict(reason="not_a_csr", detail=_first_line(error))
    try:
        signature_valid = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, x509.UnsupportedGeneralNameType) as error:
        return Verdict(reason="not_a_csr", detail=_first_line(error))
    if not signature_valid:
        return Verdict(reason="bad_signature", detail="the CSR's signature does not verify")
    weak = _key_problem(key)
    if weak is not None:
        return Verdict(reason="weak_key", detail=weak)
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_names = [str(name.value) for name in names]
    if common_names != [charge_point_id]:
        shown = ", ".join(repr(name[:64]) for name in common_names) or "none"
        return Verdict(
            reason="cn_mismatch",
            detail=f"the CSR's CN is {shown}, the charger is {charge_point_id!r}",
        )
    return SIGNABLE


def _key_problem(key: object) -> str | None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, _CURVES):
            return None
        return f"curve {key.curve.name} is not one of P-256, P-384, P-521"
    if isinstance(key, rsa.RSAPublicKey):
        if MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            return None
        return f"RSA key of {key.key_size} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are signed"
    return f"{type(key).__name__.removeprefix('_')} keys are not signed; EC or RSA only"


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


class Leaf(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the stream keeps about an issued certificate, so nobody parses PEM again."""

    serial: str  # hex, lower case
    subject: str  # RFC 4514
    not_before: int  # Unix ms
    not_after: int  # Unix ms


def load_chain(pem: str) -> list[x509.Certificate]:
    """The certificates of a PEM chain, leaf first; ``ValueError`` if it holds none or
    anything that is not one."""
    try:
        chain = x509.load_pem_x509_certificates(pem.encode())
    except (ValueError, UnicodeEncodeError) as error:
        raise ValueError(f"not a PEM certificate chain: {_first_line(error)}") from None
    if not chain:
        raise ValueError("not a PEM certificate chain: no certificate in it")
    return chain


def chain_problem(pem: str) -> str | None:
    """Why ``pem`` cannot go to a charger as its certificate chain, or None."""
    try:
        load_chain(pem)
    except ValueError as error:
        return str(error)
    return None


def leaf_of(certificate: x509.Certificate) -> Leaf:
    return Leaf(
        serial=format(certificate.serial_number, "x"),
        subject=certificate.subject.rfc4514_string(),
        not_before=_ms(certificate.not_valid_before_utc.timestamp()),
        not_after=_ms(certificate.not_valid_after_utc.timestamp()),
    )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# -- facts --------------------------------------------------------------------------------

Origin = Literal["issued", "presented"]


def issued(seq: int, event: CertificateIssued) -> CertificateKnown:
    """The certificate the hub signed for a charger, as a fact."""
    return CertificateKnown(
        seq=seq,
        at=event.received_at,
        charge_point_id=event.charge_point_id,
        serial=event.serial,
        not_after=event.not_after,
        origin="issued",
        subject=event.subject,
    )


def presented(seq: int, event: ChargerConnected) -> list[CertificateKnown]:
    """The client certificate a charger connected with (security profile 3), when the
    gateway recorded one: its serial and end, never its PEM."""
    if not event.certificate_serial or not event.certificate_not_after:
        return []
    try:
        # The gateway writes serials in upper case, the CA in lower: one spelling here.
        serial = format(int(event.certificate_serial, 16), "x")
        not_after = parse_ms(event.certificate_not_after)
    except ValueError:
        return []
    return [
        CertificateKnown(
            seq=seq,
            at=event.received_at,
            charge_point_id=event.charge_point_id,
            serial=serial,
            not_after=not_after,
            origin="presented",
        )
    ]
