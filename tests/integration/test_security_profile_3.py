"""Security profile 3 (issue #14, item 7): TLS with client certificates, the charger id
taken from the certificate's CN, on the same port as profile-2 chargers. Real nats-server,
real gateway, ``trustme`` certificates, ocpp-library chargers over wss://."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from ocpp.v16 import call
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.typing import Subprotocol

from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from schemas.events import ChargerConnected, ChargerRegistered, ConnectionRefused
from tests.conftest import with_gateway
from tests.integration.api_helpers import api_client, api_token
from tests.integration.fanout_helpers import messages_until, ui_socket
from tests.integration.helpers import (
    basic_auth,
    charger_events,
    ocpp_charger,
    register_charger,
    registrations_folded,
    stored_events,
)
from tests.integration.test_credentials import hub_command, ui_port

__all__ = ["ui_port"]  # a fixture: imported for pytest, which finds it here

PASSWORD = "profile-2-password"
# What a charger sees when the TLS layer turns its certificate down: under TLS 1.3 the alert
# comes after its side of the handshake, so as a connection closed before any HTTP answer.
REFUSED_AT_TLS = (InvalidMessage, ssl.SSLError, ConnectionError)
BOOT = call.BootNotification(charge_point_vendor="Acme", charge_point_model="X")


@dataclass
class Pki:
    """The hub's server certificate's CA, and the CA that signs chargers' certificates."""

    server_ca: trustme.CA
    charger_ca: trustme.CA

    def context(self, certificate: trustme.LeafCert | None = None) -> ssl.SSLContext:
        """A charger's TLS context: trusts the hub, presents ``certificate`` if given."""
        context = ssl.create_default_context()
        self.server_ca.configure_trust(context)
        if certificate is not None:
            certificate.configure_cert(context)
        return context

    def charger(self, common_name: str, **validity: datetime) -> trustme.LeafCert:
        return self.charger_ca.issue_cert("charger.invalid", common_name=common_name, **validity)


@pytest.fixture
def pki() -> Pki:
    return Pki(trustme.CA(), trustme.CA())


@pytest.fixture
def tls(pki: Pki, settings: Settings, tmp_path: Path) -> Settings:
    """A wss:// gateway for registered chargers only, trusting ``pki.charger_ca``."""
    server = pki.server_ca.issue_cert("127.0.0.1")
    cert, key, client_ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    pki.charger_ca.cert_pem.write_to_path(str(client_ca))
    return with_gateway(
        settings,
        allow_unknown_chargers=False,
        tls_cert=str(cert),
        tls_key=str(key),
        tls_client_ca=str(client_ca),
    )


@pytest.fixture
async def gateway(
    tls: Settings, nats_server: EmbeddedNats, settings: Settings
) -> AsyncIterator[Gateway]:
    """``tls``'s gateway, CP-CERT registered for profile 3 and CP-BASIC for profile 2."""
    await register_charger(nats_server.url, settings, "CP-CERT", security_profile=3)
    await register_charger(nats_server.url, settings, "CP-BASIC", PASSWORD, security_profile=2)
    async with running_gateway(tls, nats_server.url) as running:
        yield running


async def handshake(
    port: int,
    charge_point_id: str,
    context: ssl.SSLContext,
    headers: dict[str, str] | None = None,
    subprotocol: str = "ocpp1.6",
) -> int:
    """The HTTP status a wss:// handshake gets: 101 when the charger got in."""
    try:
        async with connect(
            f"wss://127.0.0.1:{port}/ocpp/{charge_point_id}",
            subprotocols=[Subprotocol(subprotocol)],
            ssl=context,
            additional_headers=headers or {},
        ):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


async def refusals(url: str) -> list[tuple[str, str]]:
    return [
        (e.charge_point_id, e.reason)
        for _, e in await stored_events(url, "ev.gw.refused")
        if isinstance(e, ConnectionRefused)
    ]


async def opened(url: str, charge_point_id: str) -> list[ChargerConnected]:
    return [
        e for e in await charger_events(url, charge_point_id) if isinstance(e, ChargerConnected)
    ]


async def test_a_valid_client_certificate_is_the_chargers_identity_tc_087(
    gateway: Gateway, pki: Pki, nats_server: EmbeddedNats, ui_port: int
) -> None:
    certificate = pki.charger("CP-CERT")
    issued = x509.load_pem_x509_certificate(certificate.cert_chain_pems[0].bytes())
    async with (
        ui_socket(ui_port, "/ws/chargers/CP-CERT", token_value=api_token("viewer")) as ui,
        ocpp_charger(
            gateway.port, "CP-CERT", scheme="wss", ssl=pki.context(certificate)
        ) as charger,
    ):
        answer = await charger.call(BOOT)
        assert answer.status == "Accepted"
        connected = await messages_until(ui, lambda m: m["type"] == "connection")
        async with api_client(ui_port) as api:
            status, snapshot = await api.call(
                "GET", "/api/v1/chargers/CP-CERT", token=api_token("viewer")
            )
    expiry = issued.not_valid_after_utc.isoformat().replace("+00:00", "Z")
    assert (connected[-1]["securityProfile"], connected[-1]["certificateNotAfter"]) == (3, expiry)
    assert status == 200
    assert (snapshot["securityProfile"], snapshot["certificateNotAfter"]) == (3, expiry)
    [event] = await opened(nats_server.url, "CP-CERT")
    assert event.security_profile == 3
    assert event.certificate_serial == format(issued.serial_number, "X")
    assert event.certificate_not_after == expiry
    # Public facts only: nothing of the key, nor the certificate itself, is stored.
    assert "PRIVATE" not in str(event) and "BEGIN" not in str(event)


async def test_a_certificate_from_an_unknown_ca_is_refused_at_tls(
    gateway: Gateway, nats_server: EmbeddedNats, pki: Pki
) -> None:
    stranger = trustme.CA().issue_cert("charger.invalid", common_name="CP-CERT")
    with pytest.raises(REFUSED_AT_TLS):
        await handshake(gateway.port, "CP-CERT", pki.context(stranger))
    # Turned away before any HTTP: no charger id was read, so nothing is recorded.
    assert await refusals(nats_server.url) == []
    assert await opened(nats_server.url, "CP-CERT") == []


async def test_an_expired_client_certificate_is_refused_at_tls(
    gateway: Gateway, nats_server: EmbeddedNats, pki: Pki
) -> None:
    now = datetime.now(UTC)
    expired = pki.charger(
        "CP-CERT", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    with pytest.raises(REFUSED_AT_TLS):
        await handshake(gateway.port, "CP-CERT", pki.context(expired))
    assert await refusals(nats_server.url) == []
    assert await opened(nats_server.url, "CP-CERT") == []


async def test_a_certificate_for_another_charger_is_refused_and_listed(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings, pki: Pki, ui_port: int
) -> None:
    await register_charger(nats_server.url, settings, "CP-VICTIM", security_profile=3)
    # CP-CERT's own, valid certificate, used to connect as CP-VICTIM.
    assert await handshake(gateway.port, "CP-VICTIM", pki.context(pki.charger("CP-CERT"))) == 403
    assert await refusals(nats_server.url) == [("CP-VICTIM", "certificate_mismatch")]
    assert await opened(nats_server.url, "CP-VICTIM") == []
    # Once a later charger's connection reached the UI, the refusal before it is folded.
    async with (
        ui_socket(ui_port, "/ws/chargers/CP-CERT", token_value=api_token("viewer")) as ui,
        ocpp_charger(
            gateway.port, "CP-CERT", scheme="wss", ssl=pki.context(pki.charger("CP-CERT"))
        ),
    ):
        await messages_until(ui, lambda m: m["type"] == "connection")
    async with api_client(ui_port) as api:
        status, listed = await api.call("GET", "/api/v1/refusals", token=api_token("viewer"))
    assert status == 200
    assert [(r["chargePointId"], r["reason"]) for r in listed["refused"]] == [
        ("CP-VICTIM", "certificate_mismatch")
    ]


async def test_a_profile_3_charger_without_a_certificate_is_refused_even_with_basic(
    gateway: Gateway, nats_server: EmbeddedNats, pki: Pki
) -> None:
    headers = basic_auth("CP-CERT", PASSWORD)
    assert await handshake(gateway.port, "CP-CERT", pki.context(), headers) == 403
    assert await handshake(gateway.port, "CP-CERT", pki.context()) == 403
    assert await refusals(nats_server.url) == [("CP-CERT", "missing_certificate")] * 2
    assert await opened(nats_server.url, "CP-CERT") == []


async def test_profile_2_chargers_keep_basic_over_tls_on_the_same_port(
    gateway: Gateway, nats_server: EmbeddedNats, pki: Pki
) -> None:
    async with ocpp_charger(
        gateway.port,
        "CP-BASIC",
        scheme="wss",
        ssl=pki.context(),
        additional_headers=basic_auth("CP-BASIC", PASSWORD),
    ) as charger:
        assert (await charger.call(BOOT)).status == "Accepted"
    wrong = basic_auth("CP-BASIC", "not-the-password!")
    assert await handshake(gateway.port, "CP-BASIC", pki.context(), wrong) == 401
    assert await refusals(nats_server.url) == [("CP-BASIC", "bad_credentials")]
    [event] = await opened(nats_server.url, "CP-BASIC")
    assert (event.security_profile, event.certificate_serial, event.certificate_not_after) == (
        2,
        "",
        "",
    )


async def test_the_profile_is_set_by_cli_and_rest_under_one_rule_set(
    gateway: Gateway, nats_server: EmbeddedNats, pki: Pki, ui_port: int
) -> None:
    url = nats_server.url
    both_folded = registrations_folded(gateway.registry, "CP-CLI", "CP-REST")
    code, out, err = await hub_command(
        "chargers", "add", "CP-CLI", "--security-profile", "3", "--nats-url", url
    )
    assert (code, out.strip()) == (0, "registered CP-CLI (security profile 3)"), err
    password = ("--password", PASSWORD)
    code, _, err = await hub_command(
        "chargers", "add", "CP-NO", "--security-profile", "3", *password, "--nats-url", url
    )
    assert code == 1
    assert "hub: --security-profile: profile 3 chargers authenticate with their client" in err
    code, _, err = await hub_command(
        "chargers", "add", "CP-NO", "--security-profile", "2", "--nats-url", url
    )
    assert (code, err.strip()) == (
        1,
        "hub: --security-profile: profile 2 (HTTP Basic) needs a password or a key",
    )
    async with api_client(ui_port) as api:
        path = "/api/v1/chargers/CP-REST/registration"
        status, view = await api.call("PUT", path, {"securityProfile": 3})
        assert status == 200, view
        assert (view["securityProfile"], view["hasPassword"], view["actor"]) == (3, False, "alice")
        for body, problem in [
            (
                {"securityProfile": 3, "password": PASSWORD},
                "profile 3 chargers authenticate with their client certificate: give no "
                "password or key - at `$.securityProfile`",
            ),
            (
                {"securityProfile": 1},
                "profile 1 (HTTP Basic) needs a password or a key - at `$.securityProfile`",
            ),
            ({"securityProfile": 9}, "Invalid enum value 9 - at `$.securityProfile`"),
            (
                {"password": "short"},
                "must be 16 to 40 characters, got 5 (OCPP security whitepaper); for a binary "
                "key give its hex as the key instead - at `$.password`",
            ),
        ]:
            assert await api.call("PUT", "/api/v1/chargers/CP-NO/registration", body) == (
                400,
                {"error": "bad_request", "message": problem},
            )
        denied, _ = await api.call("PUT", path, {"securityProfile": 3}, token=api_token("viewer"))
        assert denied == 403
    registered = [
        (e.charge_point_id, e.security_profile, e.actor[:4])
        for _, e in await stored_events(url, "ev.admin.>")
        if isinstance(e, ChargerRegistered) and e.actor != "test"
    ]
    assert registered == [("CP-CLI", 3, "cli:"), ("CP-REST", 3, "alic")]
    # Both registrations rule the gateway: the certificate gets in, nothing else does.
    async with asyncio.timeout(10):
        await both_folded.wait()
    for charger in ("CP-CLI", "CP-REST"):
        assert await handshake(gateway.port, charger, pki.context(pki.charger(charger))) == 101
        assert await handshake(gateway.port, charger, pki.context()) == 403


async def test_unknown_chargers_are_let_in_on_their_certificate_when_allowed(
    tls: Settings, nats_server: EmbeddedNats, pki: Pki
) -> None:
    open_door = with_gateway(tls, allow_unknown_chargers=True)
    async with running_gateway(open_door, nats_server.url) as gateway:
        async with ocpp_charger(
            gateway.port, "CP-NEW", scheme="wss", ssl=pki.context(pki.charger("CP-NEW"))
        ) as charger:
            assert (await charger.call(BOOT)).status == "Accepted"
        # Its certificate is its id: not another charger's.
        other = pki.context(pki.charger("CP-NEW"))
        assert await handshake(gateway.port, "CP-ELSE", other) == 403
    [event] = await opened(nats_server.url, "CP-NEW")
    assert event.security_profile == 3 and event.certificate_serial
    assert await refusals(nats_server.url) == [("CP-ELSE", "certificate_mismatch")]


@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_the_same_profiles_hold_for_2x_stations(
    tls: Settings, nats_server: EmbeddedNats, settings: Settings, pki: Pki, subprotocol: str
) -> None:
    """Profile 3: the certificate is the identity (the right one in, another's or none out);
    profile 2: Basic with the station's BasicAuthPassword over TLS."""
    await register_charger(nats_server.url, settings, "CP-CERT2", security_profile=3)
    await register_charger(nats_server.url, settings, "CP-BASIC2", PASSWORD, security_profile=2)
    every = with_gateway(tls, ocpp_versions="2.1,2.0.1,1.6")
    boot = call201.BootNotification(
        charging_station={"model": "X", "vendor_name": "Acme"}, reason="PowerUp"
    )
    async with running_gateway(every, nats_server.url) as gateway:
        for charge_point_id, context, headers in (
            ("CP-CERT2", pki.context(pki.charger("CP-CERT2")), {}),
            ("CP-BASIC2", pki.context(), basic_auth("CP-BASIC2", PASSWORD)),
        ):
            async with ocpp_charger(
                gateway.port,
                charge_point_id,
                charger_class=ChargePoint201,
                subprotocol=subprotocol,
                scheme="wss",
                ssl=context,
                additional_headers=headers,
            ) as charger:
                assert (await charger.call(boot)).status == "Accepted"
        someone_else = pki.context(pki.charger("CP-OTHER"))
        assert await handshake(gateway.port, "CP-CERT2", someone_else, None, subprotocol) == 403
        assert await handshake(gateway.port, "CP-CERT2", pki.context(), None, subprotocol) == 403
        wrong = basic_auth("CP-BASIC2", "not-the-password!")
        assert await handshake(gateway.port, "CP-BASIC2", pki.context(), wrong, subprotocol) == 401
    version = subprotocol.removeprefix("ocpp")
    for charge_point_id, profile in (("CP-CERT2", 3), ("CP-BASIC2", 2)):
        [event] = await opened(nats_server.url, charge_point_id)
        assert (event.ocpp_version, event.security_profile) == (version, profile)
    assert await refusals(nats_server.url) == [
        ("CP-CERT2", "certificate_mismatch"),
        ("CP-CERT2", "missing_certificate"),
        ("CP-BASIC2", "bad_credentials"),
    ]
