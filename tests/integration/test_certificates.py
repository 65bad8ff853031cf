"""SignCertificate and CertificateSigned end to end: an ocpp-library charger with a real CSR,
the hub's CA (local, or an external command), real NATS, every step recorded as events."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as call_result21

from hub.bus import event_backbone
from hub.ca import LocalCa, ca_dir, init_local_ca
from hub.config import CaSettings, Settings, SupervisorSettings
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from hub.supervisor.service import running_supervisor
from schemas.events import (
    AnomalyDetected,
    CertificateIssued,
    CertificateRefused,
    CommandFinished,
    CommandRequested,
    OcppFrame,
)
from tests.integration.api_helpers import AnsweringCharger, api_client, online
from tests.integration.fanout_helpers import with_fanout
from tests.integration.helpers import (
    charger_events,
    ocpp_charger,
    raw_socket,
    register_charger,
    stored_events,
    wait_for_event,
)


def csr_for(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A charger's key and its CSR, as firmware makes them."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example CPO"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


class SecureCharger(ChargePoint):  # type: ignore[misc]  # the ocpp library ships no type hints
    """Takes the certificate chain the hub sends (CertificateSigned) and keeps it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chains: asyncio.Queue[str] = asyncio.Queue()

    @on(Action.certificate_signed)  # type: ignore[untyped-decorator]
    async def on_certificate_signed(self, certificate_chain: str) -> call_result.CertificateSigned:
        await self.chains.put(certificate_chain)
        return call_result.CertificateSigned(status="Accepted")


@contextlib.asynccontextmanager
async def secure_charger(port: int, charge_point_id: str) -> AsyncIterator[SecureCharger]:
    async with ocpp_charger(port, charge_point_id, charger_class=SecureCharger) as charger:
        yield charger


async def sign(charger: SecureCharger, csr: str) -> str:
    response = await charger.call(call.SignCertificate(csr=csr))
    return str(response.status)


async def issued_to(nats_url: str, charge_point_id: str) -> list[CertificateIssued]:
    events = await charger_events(nats_url, charge_point_id)
    return [e for e in events if isinstance(e, CertificateIssued)]


def is_finished(action: str) -> Any:
    return lambda e: isinstance(e, CommandFinished) and e.action == action


async def test_a_csr_for_the_chargers_own_id_is_signed_and_delivered(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    await register_charger(nats_server.url, settings, "CP-SEC")
    ca = init_local_ca(ca_dir(settings.data_dir))
    key, csr = csr_for("CP-SEC")
    async with (
        running_gateway(settings, nats_server.url) as gateway,
        secure_charger(gateway.port, "CP-SEC") as charger,
    ):
        assert await sign(charger, csr) == "Accepted"
        async with asyncio.timeout(10):
            chain_pem = await charger.chains.get()
        finished = await wait_for_event(
            nats_server.url, "ev.admin.command.>", is_finished("CertificateSigned")
        )
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    leaf, root = chain[0], x509.load_pem_x509_certificate(ca.cert.read_bytes())
    leaf.verify_directly_issued_by(root)
    assert chain[1:] == [root]
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["CP-SEC"]
    assert leaf.public_key() == key.public_key()
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
    assert days == 365  # the default validity, from five minutes before signing

    # Recorded: the certificate (public parts), then the command that delivered it, the
    # CALL before it was sent, the charger's answer, and what became of it.
    assert isinstance(finished, CommandFinished) and finished.status == "answered"
    assert msgspec.json.decode(finished.payload) == {"status": "Accepted"}
    events = await charger_events(nats_server.url, "CP-SEC")
    [issued] = [e for e in events if isinstance(e, CertificateIssued)]
    assert issued.serial == format(leaf.serial_number, "x")
    assert issued.not_after == round(leaf.not_valid_after_utc.timestamp() * 1000)
    assert issued.chain == chain_pem and issued.issuer == "local"
    assert issued.command_id == finished.command_id
    frames = [
        (e.direction, e.message_type, e.action)
        for e in events
        if isinstance(e, OcppFrame) and e.action in ("SignCertificate", "CertificateSigned")
    ]
    assert frames == [
        ("in", "CALL", "SignCertificate"),
        ("out", "CALLRESULT", "SignCertificate"),
        ("out", "CALL", "CertificateSigned"),
        ("in", "CALLRESULT", "CertificateSigned"),
    ]
    delivery = [e for e in events if getattr(e, "unique_id", "") == finished.command_id]
    assert events.index(issued) < events.index(delivery[0])
    assert not any(isinstance(e, CertificateRefused) for e in events)
    # No private key anywhere in the stream: the CSR has none, the chain neither.
    assert all(b"PRIVATE KEY" not in msgspec.json.encode(e) for e in events)


async def refused(nats_url: str, charge_point_id: str) -> tuple[list[CertificateRefused], bool]:
    events = await charger_events(nats_url, charge_point_id)
    sent = any(isinstance(e, OcppFrame) and e.action == "CertificateSigned" for e in events)
    return [e for e in events if isinstance(e, CertificateRefused)], sent


class SecureCharger21(ChargePoint21):  # type: ignore[misc]  # the ocpp library ships no type hints
    """An OCPP 2.1 station that keeps the chain and the requestId CertificateSigned carries."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signed: asyncio.Queue[tuple[str, int | None]] = asyncio.Queue()

    @on("CertificateSigned")  # type: ignore[untyped-decorator]
    async def on_certificate_signed(
        self, certificate_chain: str, request_id: int | None = None, **_: Any
    ) -> call_result21.CertificateSigned:
        await self.signed.put((certificate_chain, request_id))
        return call_result21.CertificateSigned(status="Accepted")


async def test_a_2_1_station_gets_its_certificate_under_its_request_id(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    """The same CA and rules as 1.6; 2.1's requestId comes back in CertificateSigned, and a
    CSR for an ISO 15118 certificate, which this CA does not issue, is refused and recorded."""
    await register_charger(nats_server.url, settings, "CP-SEC21")
    ca = init_local_ca(ca_dir(settings.data_dir))
    _, csr = csr_for("CP-SEC21")
    every = msgspec.structs.replace(settings.gateway, ocpp_versions="2.1,2.0.1,1.6")
    async with (
        running_gateway(msgspec.structs.replace(settings, gateway=every), nats_server.url) as gw,
        ocpp_charger(
            gw.port, "CP-SEC21", charger_class=SecureCharger21, subprotocol="ocpp2.1"
        ) as charger,
    ):
        v2g = await charger.call(call21.SignCertificate(csr=csr, certificate_type="V2GCertificate"))
        assert v2g.status == "Rejected"
        answer = await charger.call(call21.SignCertificate(csr=csr, request_id=77))
        assert answer.status == "Accepted"
        async with asyncio.timeout(10):
            chain_pem, request_id = await charger.signed.get()
        await wait_for_event(
            nats_server.url, "ev.admin.command.>", is_finished("CertificateSigned")
        )
    assert request_id == 77
    leaf = x509.load_pem_x509_certificates(chain_pem.encode())[0]
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert.read_bytes()))
    events = await charger_events(nats_server.url, "CP-SEC21")
    assert [e.reason for e in events if isinstance(e, CertificateRefused)] == ["wrong_type"]


async def test_a_csr_for_another_id_is_refused_and_the_reason_recorded(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    await register_charger(nats_server.url, settings, "CP-SEC")
    init_local_ca(ca_dir(settings.data_dir))
    _, other = csr_for("CP-OTHER")
    async with (
        running_gateway(settings, nats_server.url) as gateway,
        secure_charger(gateway.port, "CP-SEC") as charger,
    ):
        assert await sign(charger, other) == "Rejected"
        assert await sign(charger, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA") == "Rejected"
    reasons, sent = await refused(nats_server.url, "CP-SEC")
    assert [(r.reason, r.detail) for r in reasons] == [
        ("cn_mismatch", "the CSR's CN is 'CP-OTHER', the charger is 'CP-SEC'"),
        ("not_a_csr", reasons[1].detail),
    ]
    assert not sent and charger.chains.empty()


async def refusal_of_own_csr(gateway: Gateway, nats_url: str, charge_point_id: str) -> str:
    """Why the hub refused a charger's valid CSR for its own id; nothing was sent."""
    async with secure_charger(gateway.port, charge_point_id) as charger:
        assert await sign(charger, csr_for(charge_point_id)[1]) == "Rejected"
    [reason], sent = await refused(nats_url, charge_point_id)
    assert not sent and charger.chains.empty()
    return reason.reason


async def test_without_a_ca_sign_certificate_is_rejected(
    nats_server: EmbeddedNats, gateway: Gateway
) -> None:
    assert await refusal_of_own_csr(gateway, nats_server.url, "CP-NOCA") == "no_ca"


async def test_an_unregistered_charger_gets_no_certificate(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway
) -> None:
    # Unknown chargers may connect here (allow_unknown_chargers), but nothing proves their id.
    init_local_ca(ca_dir(settings.data_dir))
    assert await refusal_of_own_csr(gateway, nats_server.url, "CP-ANYONE") == "unknown_charger"


async def test_one_csr_at_a_time_per_charger(nats_server: EmbeddedNats, settings: Settings) -> None:
    """A second SignCertificate while the first one's chain is still on its way is refused
    (busy): a charger flooding CSRs costs one signing at a time. Raw frames, so the charger
    can hold its answer to CertificateSigned while it asks again."""
    await register_charger(nats_server.url, settings, "CP-EAGER")
    init_local_ca(ca_dir(settings.data_dir))

    def sign_call(unique_id: str) -> str:
        csr = csr_for("CP-EAGER")[1]
        return msgspec.json.encode([2, unique_id, "SignCertificate", {"csr": csr}]).decode()

    async def next_frame(websocket: Any) -> list[Any]:
        async with asyncio.timeout(10):
            return list(msgspec.json.decode(await websocket.recv()))

    async with (
        running_gateway(settings, nats_server.url) as gateway,
        raw_socket(gateway.port, "CP-EAGER") as websocket,
    ):
        await websocket.send(sign_call("s1"))
        assert await next_frame(websocket) == [3, "s1", {"status": "Accepted"}]
        delivery = await next_frame(websocket)
        assert delivery[:3] == [2, delivery[1], "CertificateSigned"]
        await websocket.send(sign_call("s2"))  # before answering the delivery
        assert await next_frame(websocket) == [3, "s2", {"status": "Rejected"}]
        await websocket.send(msgspec.json.encode([3, delivery[1], {"status": "Accepted"}]).decode())
        await wait_for_event(
            nats_server.url, "ev.admin.command.>", is_finished("CertificateSigned")
        )
        await websocket.send(sign_call("s3"))
        assert await next_frame(websocket) == [3, "s3", {"status": "Accepted"}]
        assert (await next_frame(websocket))[2] == "CertificateSigned"
    reasons, _ = await refused(nats_server.url, "CP-EAGER")
    assert [(r.unique_id, r.reason) for r in reasons] == [("s2", "busy")]
    assert [c.unique_id for c in await issued_to(nats_server.url, "CP-EAGER")] == ["s1", "s3"]


async def test_an_external_ca_command_signs_and_a_hanging_one_is_stopped(
    nats_server: EmbeddedNats, settings: Settings, tmp_path: Path
) -> None:
    # The external CA: a script that signs with a CA of its own, outside the data directory.
    outside = init_local_ca(tmp_path / "external-ca", subject="CN=External CA,O=Example")
    script = tmp_path / "sign.py"
    script.write_text(
        "import sys, datetime as dt\n"
        "from pathlib import Path\n"
        "from hub.ca import LocalCa\n"
        f"ca = LocalCa(Path({str(outside.cert.parent)!r}), days=90)\n"
        "print(ca.sign_now(sys.stdin.read(), dt.datetime.now(dt.UTC)).chain, end='')\n"
    )
    external = msgspec.structs.replace(
        settings, ca=CaSettings(command=f"{sys.executable} {script}", command_timeout_s=20)
    )
    hanging = msgspec.structs.replace(
        settings, ca=CaSettings(command="sleep 30", command_timeout_s=0.5)
    )
    await register_charger(nats_server.url, settings, "CP-EXT")
    await register_charger(nats_server.url, settings, "CP-HANG")
    async with (
        running_gateway(external, nats_server.url) as gateway,
        secure_charger(gateway.port, "CP-EXT") as charger,
    ):
        assert await sign(charger, csr_for("CP-EXT")[1]) == "Accepted"
        async with asyncio.timeout(20):
            chain = x509.load_pem_x509_certificates((await charger.chains.get()).encode())
    chain[0].verify_directly_issued_by(x509.load_pem_x509_certificate(outside.cert.read_bytes()))
    [issued] = await issued_to(nats_server.url, "CP-EXT")
    assert issued.issuer == "external"
    async with (
        running_gateway(hanging, nats_server.url) as gateway,
        secure_charger(gateway.port, "CP-HANG") as charger,
    ):
        assert await sign(charger, csr_for("CP-HANG")[1]) == "Accepted"
        failed = await wait_for_event(
            nats_server.url,
            "ev.cp.CP-HANG.cert.>",
            lambda e: isinstance(e, CertificateRefused),
        )
    assert isinstance(failed, CertificateRefused)
    assert (failed.reason, failed.detail) == ("ca_failed", "the CA command took longer than 0.5 s")
    assert (await refused(nats_server.url, "CP-HANG"))[1] is False


async def test_certificate_signed_through_the_api_is_delivered_and_recorded(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway, tmp_path: Path
) -> None:
    init_local_ca(tmp_path / "some-ca")
    chain = LocalCa(tmp_path / "some-ca").sign_now(csr_for("CP-API")[1], dt.datetime.now(dt.UTC))
    base = "/api/v1/chargers/CP-API/certificate-signed"
    async with (
        running_fanout(with_fanout(settings), nats_server.url) as ui_port,
        online(gateway.port, ui_port, "CP-API", AnsweringCharger) as charger,
        api_client(ui_port) as api,
    ):
        status, answer = await api.call("POST", base, {"certificateChain": chain.chain})
        not_pem = await api.call("POST", base, {"certificateChain": "hello"})
        too_long = await api.call("POST", base, {"certificateChain": "A" * 10_001})
        missing = await api.call("POST", base, {})
        extended = await api.call(
            "POST",
            "/api/v1/chargers/CP-API/extended-trigger-message",
            {"requestedMessage": "SignChargePointCertificate"},
        )
    assert status == 200, answer
    assert (answer["action"], answer["status"]) == ("CertificateSigned", "accepted")
    assert charger.received[0] == ("CertificateSigned", {"certificate_chain": chain.chain})
    assert extended[0] == 200 and charger.received[1][0] == "ExtendedTriggerMessage"
    assert not_pem[0] == too_long[0] == missing[0] == 400
    assert not_pem[1]["message"].startswith("not a PEM certificate chain: ")
    assert not_pem[1]["message"].endswith(" - at `$.certificateChain`")
    assert too_long[1]["message"] == "Expected `str` of length <= 10000 - at `$.certificateChain`"
    assert missing[1]["message"] == "Object missing required field `certificateChain` - at `$`"
    events = await charger_events(nats_server.url, "CP-API")
    admin = [e for _, e in await stored_events(nats_server.url, "ev.admin.command.>")]
    commands = [e for e in admin if isinstance(e, CommandRequested)]
    assert [(c.action, c.command_id) for c in commands][:1] == [
        ("CertificateSigned", answer["commandId"])
    ]
    sent = [
        e
        for e in events
        if isinstance(e, OcppFrame) and e.action == "CertificateSigned" and e.direction == "out"
    ]
    assert [msgspec.json.decode(e.payload) for e in sent] == [{"certificateChain": chain.chain}]


async def test_a_certificate_near_its_end_raises_an_alert(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    # Certificates valid for 10 days, an alert 30 days before the end: at once.
    hub = msgspec.structs.replace(
        settings,
        ca=CaSettings(certificate_days=10),
        supervisor=SupervisorSettings(tick_s=0.2, certificate_warning_days=30),
    )
    await register_charger(nats_server.url, settings, "CP-OLD")
    init_local_ca(ca_dir(settings.data_dir))
    async with (
        event_backbone(hub, nats_server.url, name="test-sup") as (connection, store),
        running_supervisor(connection, store, hub),
        running_gateway(hub, nats_server.url) as gateway,
        secure_charger(gateway.port, "CP-OLD") as charger,
    ):
        assert await sign(charger, csr_for("CP-OLD")[1]) == "Accepted"
        alert = await wait_for_event(
            nats_server.url,
            "ev.integrity.>",
            lambda e: isinstance(e, AnomalyDetected) and e.kind == "certificate_expiring",
        )
    [issued] = await issued_to(nats_server.url, "CP-OLD")
    assert isinstance(alert, AnomalyDetected)
    assert alert.charge_point_id == "CP-OLD"
    assert alert.observed_at == issued.not_after - 30 * 86_400_000
    assert alert.detail.startswith(f"certificate {issued.serial} (issued) runs out ")
