"""Certificates without sockets: the CSR check, the local CA, what an external CA command
printed, `hub ca init`, and the supervisor's expiry alerts as a pure fold."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hub import cli
from hub.ca import CaExists, LocalCa, SigningFailed, init_local_ca, issued_by_command
from hub.domain.certificates import SIGNABLE, chain_problem, check_csr, presented
from hub.domain.policy import Policy
from hub.supervisor import snapshot
from hub.supervisor.core import Supervisor
from schemas.events import AnomalyDetected, AnomalyResolved, CertificateIssued, ChargerConnected
from tests.unit.supervisor_stream import T0, Stream

DAY = 86_400_000


def csr(*names: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name) for name in names])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    request = builder.sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


def tampered(pem: str) -> str:
    """The same CSR with one bit of its signature flipped: it parses, it does not verify."""
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    request = x509.load_der_x509_csr(bytes(der))
    return request.public_bytes(serialization.Encoding.PEM).decode()


def test_only_a_valid_csr_for_the_chargers_own_id_is_signable() -> None:
    assert check_csr(csr("CP-1"), "CP-1") == SIGNABLE
    wrong = check_csr(csr("CP-2"), "CP-1")
    assert (wrong.reason, wrong.detail) == (
        "cn_mismatch",
        "the CSR's CN is 'CP-2', the charger is 'CP-1'",
    )
    assert check_csr(csr("cp-1"), "CP-1").reason == "cn_mismatch"  # ids are exact
    assert check_csr(csr("CP-1", "CP-2"), "CP-1").reason == "cn_mismatch"
    assert check_csr(csr(), "CP-1").detail == "the CSR's CN is none, the charger is 'CP-1'"
    assert check_csr(tampered(csr("CP-1")), "CP-1").reason == "bad_signature"
    assert check_csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA", "CP-1").reason == "not_a_csr"
    assert check_csr("", "CP-1").reason == "not_a_csr"
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert check_csr(csr("CP-1", key=small), "CP-1").reason == "weak_key"
    odd_curve = ec.generate_private_key(ec.SECP256K1())
    assert check_csr(csr("CP-1", key=odd_curve), "CP-1").reason == "weak_key"


def test_the_local_ca_signs_client_certificates_that_chain_to_it(tmp_path: Path) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    made = init_local_ca(tmp_path, days=30, subject="CN=Site CA,O=Example", key_type="rsa", now=now)
    key = ec.generate_private_key(ec.SECP384R1())
    issued = LocalCa(tmp_path, days=365).sign_now(csr("CP-1", key=key), now)
    leaf, root = x509.load_pem_x509_certificates(issued.chain.encode())
    assert root == x509.load_pem_x509_certificate(made.cert.read_bytes())
    leaf.verify_directly_issued_by(root)
    assert leaf.public_key() == key.public_key()
    assert leaf.subject.rfc4514_string() == "CN=CP-1" == issued.leaf.subject
    # Never beyond the CA's own end.
    assert leaf.not_valid_after_utc == root.not_valid_after_utc
    assert issued.leaf.not_after == round(root.not_valid_after_utc.timestamp() * 1000)
    assert issued.leaf.serial == format(leaf.serial_number, "x")
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    with pytest.raises(SigningFailed, match="expired"):
        LocalCa(tmp_path).sign_now(csr("CP-1"), now + dt.timedelta(days=40))


def test_a_ca_replaced_while_the_hub_runs_signs_from_then_on(tmp_path: Path) -> None:
    ca = LocalCa(tmp_path / "ca")
    with pytest.raises(SigningFailed, match="cannot be read"):
        ca.sign_now(csr("CP-1"), dt.datetime.now(dt.UTC))
    init_local_ca(tmp_path / "ca")
    old = ca.sign_now(csr("CP-1"), dt.datetime.now(dt.UTC))
    (tmp_path / "ca").rename(tmp_path / "ca.old")
    init_local_ca(tmp_path / "ca", subject="CN=New CA")
    new = ca.sign_now(csr("CP-1"), dt.datetime.now(dt.UTC))
    for directory, issued in (("ca.old", old), ("ca", new)):
        root = x509.load_pem_x509_certificate((tmp_path / directory / "ca.crt").read_bytes())
        leaf = x509.load_pem_x509_certificates(issued.chain.encode())[0]
        leaf.verify_directly_issued_by(root)


def test_what_an_external_ca_prints_must_certify_the_csrs_key(tmp_path: Path) -> None:
    init_local_ca(tmp_path)
    request = csr("CP-1")
    chain = LocalCa(tmp_path).sign_now(request, dt.datetime.now(dt.UTC)).chain
    assert issued_by_command(chain.encode(), request).issuer == "external"
    with pytest.raises(SigningFailed, match="not for the CSR's key"):
        issued_by_command(chain.encode(), csr("CP-1"))
    with pytest.raises(SigningFailed, match="not a PEM certificate chain"):
        issued_by_command(b"Certificate issued!\n", request)
    with pytest.raises(SigningFailed, match="CertificateSigned takes 10000"):
        issued_by_command(chain.encode() * 10, request)
    assert chain_problem(chain) is None
    assert chain_problem("PEM") is not None


def test_hub_ca_init_makes_a_ca_once_and_refuses_to_overwrite_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["ca", "init", "--data-dir", str(tmp_path)]) == 0
    key, cert = tmp_path / "ca" / "ca.key", tmp_path / "ca" / "ca.crt"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes(), cert.read_bytes()
    root = x509.load_pem_x509_certificate(before[1])
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    capsys.readouterr()
    assert cli.main(["ca", "init", "--data-dir", str(tmp_path), "--key-type", "rsa"]) == 1
    assert "exists: a CA is there already and is never overwritten" in capsys.readouterr().err
    assert (key.read_bytes(), cert.read_bytes()) == before
    with pytest.raises(CaExists):
        init_local_ca(tmp_path / "ca")
    assert cli.main(["ca", "init", "--data-dir", str(tmp_path / "x"), "--subject", "O=x"]) == 2


def issued_event(cp: str, serial: str, not_after: int, at: int) -> CertificateIssued:
    return CertificateIssued(
        id=f"cert-{serial}",
        received_at=at,
        charge_point_id=cp,
        gateway_id="gw",
        connection_id="c",
        unique_id="u",
        command_id="cmd",
        serial=serial,
        subject=f"CN={cp}",
        not_before=at,
        not_after=not_after,
        issuer="local",
        chain="",
    )


def alerts(stream: Stream) -> list[tuple[str, str, int]]:
    return [
        (type(i.event).__name__, i.event.kind, i.event.received_at)
        for i in stream.intents
        if isinstance(i.event, AnomalyDetected | AnomalyResolved)
    ]


def test_expiry_alerts_come_on_ticks_at_the_same_place_in_a_replay() -> None:
    stream = Stream(Policy(certificate_warning_days=30))
    end = T0 + 40 * DAY
    stream.add(issued_event("CP-1", "a1", end, T0))
    stream.tick(T0 + 9 * DAY)  # 31 days left: nothing
    assert alerts(stream) == []
    stream.tick(T0 + 10 * DAY)  # 30 days left
    stream.tick(T0 + 11 * DAY)
    stream.tick(end)
    stream.tick(end + DAY)
    assert alerts(stream) == [
        ("AnomalyDetected", "certificate_expiring", T0 + 10 * DAY),
        ("AnomalyResolved", "certificate_expiring", end),
        ("AnomalyDetected", "certificate_expired", end),
    ]
    detected = [i.event for i in stream.intents if isinstance(i.event, AnomalyDetected)]
    assert detected[0].observed_at == end - 30 * DAY
    assert detected[0].detail == "certificate a1 (issued) runs out 2026-10-31T14:13:20Z"
    # A new certificate ends the alert.
    stream.add(issued_event("CP-1", "b2", end + 400 * DAY, end + 2 * DAY))
    stream.tick(end + 2 * DAY)
    assert alerts(stream)[-1] == ("AnomalyResolved", "certificate_expired", end + 2 * DAY)
    # Replay: the same events give the same alerts, already stored, so nothing new.
    again = Supervisor(Policy(certificate_warning_days=30))
    for seq, event in enumerate(stream.events, 1):
        again.apply(seq, event)
    assert again.unconfirmed == {} and again.anomalies == stream.supervisor.anomalies
    restored = snapshot.decode(snapshot.encode(stream.supervisor), stream.supervisor.policy)
    assert restored is not None and restored.certificates == stream.supervisor.certificates


def test_a_presented_certificate_is_tracked_only_when_the_connection_names_one() -> None:
    plain = ChargerConnected(
        id="o",
        received_at=T0,
        charge_point_id="CP-1",
        gateway_id="gw",
        connection_id="c",
        ocpp_version="1.6",
        remote_address="::1",
        security_profile=3,
    )
    assert presented(1, plain) == []
    # As the TLS gateway records it: the serial in upper-case hex, the end in ISO 8601.
    tls = msgspec.structs.replace(
        plain, certificate_serial="C0FFEE", certificate_not_after="2026-09-22T14:13:20Z"
    )
    [fact] = presented(2, tls)
    assert (fact.serial, fact.not_after, fact.origin) == ("c0ffee", T0 + DAY, "presented")
    assert presented(3, msgspec.structs.replace(tls, certificate_serial="")) == []
    assert presented(4, msgspec.structs.replace(tls, certificate_not_after="soon")) == []
