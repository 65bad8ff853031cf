"""OCTT 1.6 CSMS cases of the security whitepaper (document section 3.21): Basic
authentication and its password change, TLS, certificates on the charger, the security log,
signed firmware, subprotocol negotiation. The cases that need security profile 3 (client
certificates, SignCertificate answered by the hub's CA, CertificateSigned) share one TLS
gateway that asks for client certificates from the CA ``hub ca init`` made."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from ocpp.v16 import call
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hub.runtime import running_gateway
from schemas.events import (
    ChargerConnected,
    CommandFinished,
    ConnectionRefused,
    PasswordRotationEnded,
)
from tests.conformance.conftest import REGISTERED, settings_with
from tests.conformance.octt import FUTURE, Octt, OcttCharger, boot_then
from tests.integration.api_helpers import api_token, online
from tests.integration.fanout_helpers import messages_until, ui_socket
from tests.integration.helpers import (
    HUB_CLI,
    basic_auth,
    charger_events,
    stored_events,
    wait_for_event,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = "-----BEGIN CERTIFICATE-----\nMIIB...octt-root...\n-----END CERTIFICATE-----\n"
HASH_DATA = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "3f0e6fd2e3e0b9b5a4e6c2f0d6f8c3f1a2b4c6d8e0f2a4b6c8d0e2f4a6b8c0d2",
    "issuerKeyHash": "8a0c2e4f6a8c0e2f4a6c8e0a2c4e6a8c0e2a4c6e8a0c2e4a6c8e0a2c4e6a8c0e",
    "serialNumber": "1f2e3d",
}


async def login(octt: Octt, charge_point_id: str, password: str | None) -> int:
    """The HTTP status of a handshake: 101 when the charger got in."""
    headers = basic_auth(charge_point_id, password) if password is not None else {}
    try:
        async with connect(
            f"ws://127.0.0.1:{octt.port}/ocpp/{charge_point_id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=headers,
        ):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


async def test_tc_073_update_charge_point_password_for_http_basic_authentication(
    octt: Octt,
) -> None:
    charger, old = "CP-TC073", REGISTERED["CP-TC073"]
    async with octt.charger(charger, additional_headers=basic_auth(charger, old)) as cp:
        # Manual action: update the password (the operator asks the hub to rotate it). The
        # answer comes as soon as the charger's does (it took 10 s of needless waiting once).
        async with asyncio.timeout(4):
            status, view = await octt.api.call(
                "POST", f"/api/v1/chargers/{charger}/password-rotation"
            )
        change = cp.got("ChangeConfiguration")
    assert (status, view["state"]) == (200, "accepted"), view
    # Step 1: AuthorizationKey, hex, 16 to 20 bytes (at most 40 hex characters).
    assert change["key"] == "AuthorizationKey"
    key = change["value"]
    assert len(key) <= 40 and 16 <= len(bytes.fromhex(key)) <= 20
    assert key == view["key"]
    # Step 3: the charger reconnects with the new password, and is let in.
    async with OcttCharger.connected(
        octt.port, charger, additional_headers=basic_auth(charger, key)
    ) as cp:
        assert await cp.boot() == "Accepted"
    # PBKDF2 on both passwords makes this the slow step on a loaded machine.
    completed = await wait_for_event(
        octt.nats_url,
        "ev.admin.>",
        lambda e: isinstance(e, PasswordRotationEnded),
        within=30,
    )
    assert isinstance(completed, PasswordRotationEnded) and completed.outcome == "completed"
    assert await login(octt, charger, old) == 401
    # The key is in no stored frame: the ChangeConfiguration the hub sent says ***.
    assert await octt.sent(charger, "ChangeConfiguration") == [
        {"key": "AuthorizationKey", "value": "***"}
    ]


async def _install(
    octt: Octt, charge_point_id: str, kind: str, *, delete: bool = False
) -> OcttCharger:
    async with octt.charger(charge_point_id) as cp:
        status, view = await octt.command(
            charge_point_id,
            "install-certificate",
            {"certificateType": kind, "certificate": ROOT},
        )
        assert (status, view["status"]) == (200, "accepted")
        assert cp.got("InstallCertificate") == {"certificate_type": kind, "certificate": ROOT}
        cp.answers["GetInstalledCertificateIds"] = {
            "status": "Accepted",
            "certificate_hash_data": [HASH_DATA],
        }
        status, view = await octt.command(
            charge_point_id, "get-installed-certificate-ids", {"certificateType": kind}
        )
        assert (status, view["status"]) == (200, "accepted")
        assert view["response"]["certificateHashData"] == [HASH_DATA]
        if delete:
            status, view = await octt.command(
                charge_point_id, "delete-certificate", {"certificateHashData": HASH_DATA}
            )
            assert (status, view["status"]) == (200, "accepted")
    return cp


async def test_tc_075_1_install_certificate_manufacturer_root(octt: Octt) -> None:
    await _install(octt, "CP-TC075-1", "ManufacturerRootCertificate")
    assert await octt.sent("CP-TC075-1", "GetInstalledCertificateIds") == [
        {"certificateType": "ManufacturerRootCertificate"}
    ]
    assert await octt.exchanges("CP-TC075-1") == boot_then(
        "hub:InstallCertificate", "hub:GetInstalledCertificateIds"
    )


async def test_tc_075_2_install_certificate_central_system_root(octt: Octt) -> None:
    await _install(octt, "CP-TC075-2", "CentralSystemRootCertificate")
    assert await octt.exchanges("CP-TC075-2") == boot_then(
        "hub:InstallCertificate", "hub:GetInstalledCertificateIds"
    )


async def test_tc_076_delete_a_specific_certificate(octt: Octt) -> None:
    cp = await _install(octt, "CP-TC076", "CentralSystemRootCertificate", delete=True)
    # The hash data deleted is the one the charger reported.
    assert cp.got("DeleteCertificate")["certificate_hash_data"] == {
        "hash_algorithm": "SHA256",
        "issuer_name_hash": HASH_DATA["issuerNameHash"],
        "issuer_key_hash": HASH_DATA["issuerKeyHash"],
        "serial_number": HASH_DATA["serialNumber"],
    }
    assert await octt.sent("CP-TC076", "DeleteCertificate") == [{"certificateHashData": HASH_DATA}]
    assert await octt.exchanges("CP-TC076") == boot_then(
        "hub:InstallCertificate", "hub:GetInstalledCertificateIds", "hub:DeleteCertificate"
    )


async def test_tc_078_invalid_central_system_certificate_security_event(octt: Octt) -> None:
    async with octt.charger("CP-TC078") as cp:
        cp.answers["InstallCertificate"] = {"status": "Rejected"}
        status, view = await octt.command(
            "CP-TC078",
            "install-certificate",
            {"certificateType": "CentralSystemRootCertificate", "certificate": ROOT},
        )
        await cp.call(
            call.SecurityEventNotification(
                type="InvalidCentralSystemCertificate",
                timestamp="2026-03-01T10:00:00Z",
                tech_info=None,
            )
        )
    assert (status, view["status"], view["response"]) == (200, "rejected", {"status": "Rejected"})
    assert await octt.exchanges("CP-TC078") == boot_then(
        "hub:InstallCertificate", "cp:SecurityEventNotification"
    )


async def test_tc_079_get_security_log(octt: Octt) -> None:
    body = {
        "logType": "SecurityLog",
        "requestId": 79,
        "log": {"remoteLocation": "https://logs.example.com/upload"},
    }
    async with octt.charger("CP-TC079") as cp:
        status, view = await octt.command("CP-TC079", "get-log", body)
        assert cp.got("GetLog")["log_type"] == "SecurityLog"
        for log_status in ("Uploading", "Uploaded"):
            await cp.call(call.LogStatusNotification(status=log_status, request_id=79))
    assert (status, view["status"]) == (200, "accepted")
    assert await octt.sent("CP-TC079", "GetLog") == [body]
    assert await octt.exchanges("CP-TC079") == boot_then(
        "hub:GetLog", "cp:LogStatusNotification", "cp:LogStatusNotification"
    )


def signed_firmware(request_id: int, signature: str) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "firmware": {
            "location": "https://firmware.example.com/cp-model-1/2.0.bin",
            "retrieveDateTime": FUTURE,
            "signingCertificate": ROOT,
            "signature": signature,
        },
    }


async def test_tc_080_secure_firmware_update(octt: Octt) -> None:
    body = signed_firmware(80, "c2lnbmF0dXJl")
    async with octt.charger("CP-TC080") as cp:
        status, view = await octt.command("CP-TC080", "signed-update-firmware", body)
        for firmware_status in (
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "InstallRebooting",
        ):
            await cp.call(
                call.SignedFirmwareStatusNotification(status=firmware_status, request_id=80)
            )
    async with OcttCharger.connected(octt.port, "CP-TC080") as cp:
        assert await cp.boot() == "Accepted"
        await cp.call(
            call.SecurityEventNotification(
                type="FirmwareUpdated", timestamp="2026-03-01T10:05:00Z", tech_info=None
            )
        )
        await cp.status("Available")
        await cp.call(call.SignedFirmwareStatusNotification(status="Installed", request_id=80))
    assert (status, view["status"]) == (200, "accepted")
    assert await octt.sent("CP-TC080", "SignedUpdateFirmware") == [body]
    assert await octt.exchanges("CP-TC080") == boot_then(
        "hub:SignedUpdateFirmware",
        *["cp:SignedFirmwareStatusNotification"] * 5,
        "cp:BootNotification",
        "cp:SecurityEventNotification",
        "cp:StatusNotification",
        "cp:SignedFirmwareStatusNotification",
    )


async def test_tc_081_secure_firmware_update_invalid_signature(octt: Octt) -> None:
    body = signed_firmware(81, "aW52YWxpZA==")
    async with octt.charger("CP-TC081") as cp:
        status, view = await octt.command("CP-TC081", "signed-update-firmware", body)
        for firmware_status in ("Downloading", "Downloaded", "InvalidSignature"):
            await cp.call(
                call.SignedFirmwareStatusNotification(status=firmware_status, request_id=81)
            )
    assert (status, view["status"]) == (200, "accepted")
    assert await octt.exchanges("CP-TC081") == boot_then(
        "hub:SignedUpdateFirmware", *["cp:SignedFirmwareStatusNotification"] * 3
    )


async def test_tc_085_basic_authentication_valid_username_password(octt: Octt) -> None:
    charger, password = "CP-TC085", REGISTERED["CP-TC085"]
    assert await login(octt, charger, None) == 401
    async with OcttCharger.connected(
        octt.port, charger, additional_headers=basic_auth(charger, password)
    ) as cp:
        assert await cp.boot() == "Accepted"
        await cp.status("Available")
    refused = [
        e.reason
        for _, e in await stored_events(octt.nats_url, "ev.gw.refused")
        if isinstance(e, ConnectionRefused) and e.charge_point_id == charger
    ]
    assert refused == ["missing_credentials"]
    opened = [
        e for e in await charger_events(octt.nats_url, charger) if isinstance(e, ChargerConnected)
    ]
    assert [e.security_profile for e in opened] == [1]


async def test_tc_086_tls_server_side_certificate_valid(octt: Octt, tmp_path: Path) -> None:
    authority = trustme.CA(key_type=trustme.KeyType.RSA)
    server = authority.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA)
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    server.private_key_pem.write_to_path(str(key_file))
    client = ssl.create_default_context()
    authority.configure_trust(client)
    tls = settings_with(octt, tls_cert=str(cert_file), tls_key=str(key_file))
    async with running_gateway(tls, octt.nats_url) as gateway:
        async with OcttCharger.connected(
            gateway.port,
            "CP-TC086",
            scheme="wss",
            ssl=client,
            additional_headers=basic_auth("CP-TC086", REGISTERED["CP-TC086"]),
        ) as cp:
            session = cp._connection.transport.get_extra_info("ssl_object")
            assert await cp.boot() == "Accepted"
            await cp.status("Available")
            version = session.version()
            certificate = x509.load_der_x509_certificate(session.getpeercert(binary_form=True))
    assert version in ("TLSv1.2", "TLSv1.3")
    assert certificate.serial_number > 0
    assert certificate.public_key().key_size >= 2048  # type: ignore[union-attr]
    opened = [
        e
        for e in await charger_events(octt.nats_url, "CP-TC086")
        if isinstance(e, ChargerConnected)
    ]
    assert [e.security_profile for e in opened] == [2]


async def test_tc_088_websocket_subprotocol_negotiation(octt: Octt) -> None:
    url = f"ws://127.0.0.1:{octt.port}/ocpp/CP-TC088"
    # ocpp0.1 alone: no OCPP connection. OCPP-J 1.6 §3.1.2 has the hub finish the handshake
    # without a subprotocol and close at once, which is what the OCTT sees as a refusal.
    async with connect(url, subprotocols=["ocpp0.1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol is None
        async with asyncio.timeout(10):
            await ws.wait_closed()
    assert ws.close_code == 1002
    async with connect(url, subprotocols=["ocpp0.1", "ocpp1.6"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "ocpp1.6"
        assert ws.response is not None
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "ocpp1.6"
    refused = await wait_for_event(
        octt.nats_url,
        "ev.gw.refused",
        lambda e: isinstance(e, ConnectionRefused) and e.charge_point_id == "CP-TC088",
    )
    assert isinstance(refused, ConnectionRefused)
    assert (refused.reason, refused.offered_subprotocols) == (
        "unsupported_subprotocol",
        ("ocpp0.1",),
    )


# -- security profile 3: client certificates (h-tls, h-ca) -------------------------------------


@dataclass
class Profile3:
    """A TLS gateway that asks for client certificates signed by the hub's CA (``hub ca
    init``), on the module's NATS."""

    port: int
    authority: trustme.CA  # signs the gateway's server certificate
    ca_cert: x509.Certificate
    ca_key: Any
    directory: Path

    def client(self, charge_point_id: str, key: Any = None) -> ssl.SSLContext:
        """A charger's TLS context: trusts the gateway, shows a certificate whose CN is its id."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, charge_point_id)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1))
            .not_valid_after(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))
            .sign(self.ca_key, hashes.SHA256())
        )
        return self.context(charge_point_id, key, [certificate])

    def context(self, name: str, key: Any, chain: list[x509.Certificate]) -> ssl.SSLContext:
        cert_file, key_file = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        cert_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context()
        self.authority.configure_trust(context)
        context.load_cert_chain(str(cert_file), str(key_file))
        return context


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def profile3(octt: Octt, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Profile3]:
    """One CA (made once: ``hub ca init`` never overwrites one) and one gateway for the
    module's profile 3 cases."""
    tmp_path = tmp_path_factory.mktemp("profile3")
    process = await asyncio.create_subprocess_exec(
        *HUB_CLI,
        "ca",
        "init",
        "--data-dir",
        str(octt.settings.data_dir),
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert await process.wait() == 0
    ca_dir = octt.settings.data_dir / "ca"
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    server.private_key_pem.write_to_path(str(key_file))
    tls = settings_with(
        octt,
        tls_cert=str(cert_file),
        tls_key=str(key_file),
        tls_client_ca=str(ca_dir / "ca.crt"),
    )
    async with running_gateway(tls, octt.nats_url) as gateway:
        yield Profile3(gateway.port, authority, ca_cert, ca_key, tmp_path)


def csr(charge_point_id: str, key: Any) -> str:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, charge_point_id)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


@contextlib.asynccontextmanager
async def _renewing_certificate(
    octt: Octt, profile3: Profile3, charge_point_id: str, answer: str
) -> AsyncIterator[tuple[OcttCharger, x509.Certificate, Any]]:
    """ExtendedTriggerMessage SignChargePointCertificate through the API; the charger's
    SignCertificate is Accepted and followed by the hub's CertificateSigned, which the charger
    answers ``answer``. Yields, still connected once that answer is stored, the charger, the
    certificate it got and its new key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with online(
        profile3.port,
        octt.ui_port,
        charge_point_id,
        OcttCharger,
        scheme="wss",
        ssl=profile3.client(charge_point_id),
    ) as charger:
        cp = cast(OcttCharger, charger)
        assert await cp.boot() == "Accepted"
        cp.answers["CertificateSigned"] = {"status": answer}
        # Step 1: the operator asks for it (a manual action).
        status, view = await octt.command(
            charge_point_id,
            "extended-trigger-message",
            {"requestedMessage": "SignChargePointCertificate"},
        )
        assert (status, view["status"]) == (200, "accepted")
        assert cp.got("ExtendedTriggerMessage") == {
            "requested_message": "SignChargePointCertificate"
        }
        # Steps 3 and 4: the hub signs CSRs of chargers registered for profile 3.
        signed = await cp.call(call.SignCertificate(csr=csr(charge_point_id, key)))
        assert signed.status == "Accepted"
        chain = await cp.signed(within=10)
        # Step 6: the charger's answer to CertificateSigned, stored with its command.
        finished = await wait_for_event(
            octt.nats_url,
            "ev.admin.command.>",
            lambda e: (
                isinstance(e, CommandFinished)
                and e.charge_point_id == charge_point_id
                and e.action == "CertificateSigned"
            ),
        )
        assert isinstance(finished, CommandFinished)
        assert json.loads(bytes(finished.payload)) == {"status": answer}
        [leaf, *_] = x509.load_pem_x509_certificates(chain.encode())
        yield cp, leaf, key


async def test_tc_074_update_charge_point_certificate_by_request_of_central_system(
    octt: Octt, profile3: Profile3
) -> None:
    async with _renewing_certificate(octt, profile3, "CP-TC074", "Accepted") as (_, leaf, key):
        pass
    # Step 5: the certificate is for the CSR's key, names the charger, is long enough, and is
    # signed by the hub's CA.
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    [common_name] = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert common_name.value == "CP-TC074"
    assert leaf.public_key().key_size >= 2048  # type: ignore[union-attr]
    assert leaf.issuer == profile3.ca_cert.subject
    # Step 7: the charger reconnects with the new certificate, and is let in.
    context = profile3.context("CP-TC074-new", key, [leaf])
    async with OcttCharger.connected(profile3.port, "CP-TC074", scheme="wss", ssl=context) as cp:
        assert await cp.boot() == "Accepted"
    opened = [
        e
        for e in await charger_events(octt.nats_url, "CP-TC074")
        if isinstance(e, ChargerConnected)
    ]
    assert [e.security_profile for e in opened] == [3, 3]
    assert [e.certificate_serial for e in opened][-1] == f"{leaf.serial_number:X}"
    assert await octt.sent("CP-TC074", "ExtendedTriggerMessage") == [
        {"requestedMessage": "SignChargePointCertificate"}
    ]
    assert (await octt.exchanges("CP-TC074"))[:4] == boot_then(
        "hub:ExtendedTriggerMessage", "cp:SignCertificate", "hub:CertificateSigned"
    )


async def test_tc_077_invalid_charge_point_certificate_security_event(
    octt: Octt, profile3: Profile3
) -> None:
    async with ui_socket(
        octt.ui_port, "/ws/chargers/CP-TC077", token_value=api_token("viewer")
    ) as ui:
        async with _renewing_certificate(octt, profile3, "CP-TC077", "Rejected") as (cp, _, _):
            # Step 7: the charger found the certificate invalid, and says so.
            await cp.call(
                call.SecurityEventNotification(
                    type="InvalidChargePointCertificate",
                    timestamp="2026-03-01T10:00:00Z",
                    tech_info="certificate rejected",
                )
            )
        # Operators see it as it happens.
        [*_, event] = await messages_until(ui, lambda m: m["type"] == "security_event")
    assert event["event"] == {
        "type": "InvalidChargePointCertificate",
        "timestamp": "2026-03-01T10:00:00Z",
        "techInfo": "certificate rejected",
        "critical": False,  # not one the whitepaper calls critical
    }
    # Step 8: answered, and every step is in the stream with its answer.
    assert await octt.exchanges("CP-TC077") == boot_then(
        "hub:ExtendedTriggerMessage",
        "cp:SignCertificate",
        "hub:CertificateSigned",
        "cp:SecurityEventNotification",
    )


async def test_tc_083_upgrade_charge_point_security_profile_accepted(
    octt: Octt, profile3: Profile3
) -> None:
    charger, password = "CP-TC083", REGISTERED["CP-TC083"]
    profile2 = ssl.create_default_context()
    profile3.authority.configure_trust(profile2)
    basic = basic_auth(charger, password)
    # Prerequisite: the charger is on security profile 2 (Basic over TLS).
    async with online(
        profile3.port,
        octt.ui_port,
        charger,
        OcttCharger,
        scheme="wss",
        ssl=profile2,
        additional_headers=basic,
    ) as cp:
        assert await cast(OcttCharger, cp).boot() == "Accepted"
        # Steps 1 to 4: the operator sets the profile one higher, then resets the charger.
        status, view = await octt.command(
            charger, "configuration", {"key": "SecurityProfile", "value": "3"}, method="PUT"
        )
        assert (status, view["status"]) == (200, "accepted")
        status, view = await octt.command(charger, "reset", {"type": "Hard"})
        assert (status, view["status"]) == (200, "accepted")
    # Steps 5 to 9: back with a client certificate (profile 3), and accepted.
    async with OcttCharger.connected(
        profile3.port, charger, scheme="wss", ssl=profile3.client(charger)
    ) as cp:
        assert await cp.boot() == "Accepted"
        await cp.status("Available")
    # Step 12: profile 2 again is refused now, and the refusal recorded.
    with pytest.raises(InvalidStatus) as refused:
        async with OcttCharger.connected(
            profile3.port, charger, scheme="wss", ssl=profile2, additional_headers=basic
        ):
            pass
    assert refused.value.response.status_code == 403
    recorded = await wait_for_event(
        octt.nats_url,
        "ev.gw.refused",
        lambda e: isinstance(e, ConnectionRefused) and e.charge_point_id == charger,
    )
    assert isinstance(recorded, ConnectionRefused) and recorded.reason == "missing_certificate"
    # Step 13: and profile 3 still works.
    async with OcttCharger.connected(
        profile3.port, charger, scheme="wss", ssl=profile3.client(charger)
    ) as cp:
        assert await cp.boot() == "Accepted"
    assert await octt.sent(charger, "ChangeConfiguration") == [
        {"key": "SecurityProfile", "value": "3"}
    ]
    assert await octt.sent(charger, "Reset") == [{"type": "Hard"}]
    opened = [
        e for e in await charger_events(octt.nats_url, charger) if isinstance(e, ChargerConnected)
    ]
    assert [e.security_profile for e in opened] == [2, 3, 3]


async def test_tc_087_tls_client_side_certificate_valid(octt: Octt, profile3: Profile3) -> None:
    async with OcttCharger.connected(
        profile3.port, "CP-TC087", scheme="wss", ssl=profile3.client("CP-TC087")
    ) as cp:
        assert await cp.boot() == "Accepted"
        await cp.status("Available")
    opened = [
        e
        for e in await charger_events(octt.nats_url, "CP-TC087")
        if isinstance(e, ChargerConnected)
    ]
    assert [e.security_profile for e in opened] == [3]
    assert opened[0].certificate_serial and opened[0].certificate_not_after
    assert await octt.exchanges("CP-TC087") == boot_then("cp:StatusNotification")
