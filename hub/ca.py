"""The certificate authority that signs chargers' CSRs: the local one ``hub ca init`` makes
under ``<data dir>/ca`` for small sites, or an external one behind a command.

Keys stay on disk (the local CA's, mode 0600) or with the external CA; the stream gets only
what is public: the issued chain, its serial and validity (``certificate.issued``).
Signing never runs on the event loop: the local CA in a thread, the command as a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shlex
from pathlib import Path
from typing import Final, Literal, Protocol

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.config import Settings
from hub.domain.certificates import Leaf, leaf_of, load_chain

KEY_FILE: Final = "ca.key"
CERT_FILE: Final = "ca.crt"
DEFAULT_SUBJECT: Final = "CN=ocpp-hub local CA"
# A charger's clock may run a little behind the hub's.
_BACKDATE: Final = dt.timedelta(minutes=5)
# What an external command may print: a chain of a few certificates, with room to spare.
MAX_COMMAND_OUTPUT: Final = 64 * 1024
MAX_COMMANDS: Final = 4
# OCPP 1.6 CertificateSigned.req: certificateChain is at most 10,000 characters.
MAX_CHAIN: Final = 10_000

KeyType = Literal["ec", "rsa"]
_CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def ca_dir(data_dir: Path) -> Path:
    """Where the local CA lives; the gateway trusts its ``ca.crt`` for client certificates."""
    return data_dir / "ca"


class CaExists(Exception):
    """``hub ca init`` found a CA already; it never overwrites one."""


class SigningFailed(Exception):
    """The CA could not sign: ``str()`` says why, for the ``certificate.refused`` event."""


class Issued(msgspec.Struct, frozen=True, kw_only=True):
    chain: str  # PEM, leaf first
    leaf: Leaf
    issuer: Literal["local", "external"]


class LocalCaFiles(msgspec.Struct, frozen=True, kw_only=True):
    key: Path
    cert: Path
    subject: str
    not_after: dt.datetime


def init_local_ca(
    directory: Path,
    *,
    days: int = 3650,
    subject: str = DEFAULT_SUBJECT,
    key_type: KeyType = "ec",
    now: dt.datetime | None = None,
) -> LocalCaFiles:
    """Make a self-signed CA in ``directory``: ``ca.key`` (0600) and ``ca.crt``.

    ``CaExists`` if either file is there; ``ValueError`` for a subject that does not parse.
    """
    key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
    for path in (key_path, cert_path):
        if path.exists():
            raise CaExists(
                f"{path} exists: a CA is there already and is never overwritten "
                "(move the directory away first to make a new one; see docs/ca.md)"
            )
    name = x509.Name.from_rfc4514_string(subject)
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise ValueError(f"subject {subject!r} has no CN")
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if key_type == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=3072)
    )
    start = (now or dt.datetime.now(dt.UTC)) - _BACKDATE
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: of two inits at once, one wins and the other is refused, never a mix of both.
    _write_new(key_path, key_pem, 0o600)
    try:
        _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except FileExistsError:
        key_path.unlink()
        raise CaExists(f"{cert_path} appeared while the CA was being made") from None
    return LocalCaFiles(
        key=key_path, cert=cert_path, subject=subject, not_after=cert.not_valid_after_utc
    )


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    """``digitalSignature`` and the usages named true; every other one off."""
    usages = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(digital_signature=True, **(usages | allowed))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise CaExists(f"{path} exists: a CA is there already and is never overwritten") from None
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


class CertificateAuthority(Protocol):
    def available(self) -> bool:
        """Whether SignCertificate may be accepted: the CA is there to sign."""
        ...

    async def sign(self, csr: str) -> Issued:
        """The chain for a CSR that ``hub.domain.certificates.check_csr`` passed;
        ``SigningFailed`` says why there is none."""
        ...


class NoCa:
    def available(self) -> bool:
        return False

    async def sign(self, csr: str) -> Issued:
        raise SigningFailed("no certificate authority is configured")


class LocalCa:
    """The CA ``hub ca init`` made. Its files are looked at on each signing, so one made
    (or replaced) while the hub runs is used from then on."""

    def __init__(self, directory: Path, *, days: int = 365) -> None:
        self.key_path = directory / KEY_FILE
        self.cert_path = directory / CERT_FILE
        self.days = days
        # Loading an RSA key checks it (about 250 ms for 3072 bits): kept while the files
        # stay the same.
        self._loaded: tuple[tuple[int, ...], _CaKey, x509.Certificate] | None = None

    def available(self) -> bool:
        # Two stat calls on a SignCertificate, a rare CALL: cheap enough for the loop.
        return self.key_path.is_file() and self.cert_path.is_file()

    async def sign(self, csr: str) -> Issued:
        return await asyncio.to_thread(self.sign_now, csr, dt.datetime.now(dt.UTC))

    def _load(self) -> tuple[_CaKey, x509.Certificate]:
        try:
            version = tuple(
                value
                for path in (self.key_path, self.cert_path)
                for status in (path.stat(),)
                for value in (status.st_ino, status.st_mtime_ns, status.st_size)
            )
            if self._loaded is not None and self._loaded[0] == version:
                return self._loaded[1], self._loaded[2]
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        except (OSError, ValueError, TypeError) as error:
            raise SigningFailed(f"the local CA cannot be read: {error}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise SigningFailed(f"the local CA's key is {type(key).__name__}; EC or RSA only")
        self._loaded = version, key, ca_cert
        return key, ca_cert

    def sign_now(self, csr_pem: str, now: dt.datetime) -> Issued:
        key, ca_cert = self._load()
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise SigningFailed("the CSR's key is neither EC nor RSA")
        start = now - _BACKDATE
        # Never beyond the CA's own end: a chain that outlives its root does not verify.
        end = min(now + dt.timedelta(days=self.days), ca_cert.not_valid_after_utc)
        if end <= now:
            raise SigningFailed(f"the local CA expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}")
        subject = x509.Name(
            [
                attribute
                for attribute in csr.subject
                if attribute.oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME)
            ]
        )
        rsa_key = isinstance(public, rsa.RSAPublicKey)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # TLS with RSA key exchange encrypts with the client's key; ECDHE agrees on one.
            .add_extension(
                _key_usage(key_encipherment=rsa_key, key_agreement=not rsa_key), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        chain = b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (cert, ca_cert)
        ).decode()
        return Issued(chain=chain, leaf=leaf_of(cert), issuer="local")


class ExternalCa:
    """An operator's command (``HUB_CA_COMMAND``): the CSR in PEM on its stdin, the chain
    in PEM (leaf first) on its stdout, exit 0. Killed after ``timeout_s``."""

    def __init__(self, command: str, *, timeout_s: float = 30.0) -> None:
        self.argv = shlex.split(command)
        self.timeout_s = timeout_s
        # Processes at once, whatever the number of chargers asking; the rest wait in turn.
        self._slots = asyncio.Semaphore(MAX_COMMANDS)

    def available(self) -> bool:
        return bool(self.argv)

    async def sign(self, csr: str) -> Issued:
        async with self._slots:
            return await self._run(csr)

    async def _run(self, csr: str) -> Issued:
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            raise SigningFailed(f"the CA command did not start: {error}") from None
        try:
            async with asyncio.timeout(self.timeout_s):
                out, err = await process.communicate(csr.encode())
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise SigningFailed(f"the CA command took longer than {self.timeout_s:g} s") from None
        if process.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise SigningFailed(f"the CA command exited {process.returncode}: {tail[0][:200]}")
        return issued_by_command(out, csr)


def issued_by_command(out: bytes, csr_pem: str) -> Issued:
    """What a CA command printed, checked before any charger gets it: a PEM chain that fits
    CertificateSigned, whose leaf certifies the key and the CN of the CSR."""
    if len(out) > MAX_COMMAND_OUTPUT:
        raise SigningFailed(f"the CA command printed {len(out)} bytes, more than a chain")
    text = out.decode(errors="replace").strip() + "\n"
    if len(text) > MAX_CHAIN:
        raise SigningFailed(
            f"the chain has {len(text)} characters; CertificateSigned takes {MAX_CHAIN}"
        )
    try:
        chain = load_chain(text)
    except ValueError as error:
        raise SigningFailed(f"the CA command printed {error}") from None
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    leaf = chain[0]
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*der) != csr.public_key().public_bytes(*der):
        raise SigningFailed("the chain's first certificate is not for the CSR's key")
    if leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME) != (
        csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ):
        raise SigningFailed("the chain's first certificate has another CN than the CSR")
    return Issued(chain=text, leaf=leaf_of(leaf), issuer="external")


def certificate_authority(settings: Settings) -> CertificateAuthority:
    """The external command if one is configured, else the local CA (which may not exist
    yet: SignCertificate is refused until ``hub ca init`` makes it)."""
    if settings.ca.command.strip():
        return ExternalCa(settings.ca.command, timeout_s=settings.ca.command_timeout_s)
    return LocalCa(ca_dir(settings.data_dir), days=settings.ca.certificate_days)
