"""Security profiles without sockets: what a registration may say, how a handshake is judged,
and what is kept of a client certificate."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from hub.config import GatewaySettings, Settings, from_environment, with_client_ca
from hub.domain.security_profiles import (
    BadRegistration,
    ClientCertificate,
    ProfileUpgrades,
    Verdict,
    check_registration,
    judge,
    required_profile,
)
from hub.gateway.handshake import certificate_of
from hub.registry import Registry
from schemas.events import (
    ChargerRegistered,
    CommandFinished,
    CommandRequested,
    Event,
    SecurityProfile,
)

CERT = ClientCertificate(common_name="CP-1", serial="1F", not_after="2027-01-01T00:00:00Z")
OTHER = ClientCertificate(common_name="CP-2", serial="20", not_after="2027-01-01T00:00:00Z")


def verdict(
    required: SecurityProfile,
    *,
    registered: bool = True,
    allow_unknown: bool = False,
    tls: bool = True,
    certificate: ClientCertificate | None = None,
    basic_sent: bool = False,
) -> Verdict:
    return judge(
        "CP-1",
        registered=registered,
        required=required,
        allow_unknown=allow_unknown,
        tls=tls,
        certificate=certificate,
        basic_sent=basic_sent,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # Profile 3: the certificate alone; Basic neither helps nor hurts.
        (verdict(3, certificate=CERT), Verdict(profile=3)),
        (verdict(3, certificate=CERT, basic_sent=True), Verdict(profile=3)),
        (verdict(3, basic_sent=True), Verdict(refusal="missing_certificate")),
        (verdict(3), Verdict(refusal="missing_certificate")),
        (verdict(3, tls=False), Verdict(refusal="tls_required")),
        # Someone else's certificate is refused whatever the registration says.
        (verdict(3, certificate=OTHER), Verdict(refusal="certificate_mismatch")),
        (verdict(1, certificate=OTHER, basic_sent=True), Verdict(refusal="certificate_mismatch")),
        (
            verdict(0, registered=False, allow_unknown=True, certificate=OTHER),
            Verdict(refusal="certificate_mismatch"),
        ),
        # Profiles 1 and 2: the password decides; a valid certificate is more, and enough.
        (verdict(2, basic_sent=True), Verdict(check_password=True)),
        (verdict(2), Verdict(check_password=True)),
        (verdict(2, tls=False, basic_sent=True), Verdict(refusal="tls_required")),
        (verdict(1, tls=False, basic_sent=True), Verdict(check_password=True)),
        (verdict(2, certificate=CERT), Verdict(profile=3)),
        # Profile 0: in, on whatever it looks like.
        (verdict(0), Verdict(profile=0)),
        (verdict(0, basic_sent=True), Verdict(profile=2)),
        (verdict(0, tls=False, basic_sent=True), Verdict(profile=1)),
        # Unknown chargers: refused, or with --allow-unknown-chargers in on their certificate.
        (verdict(0, registered=False, certificate=CERT), Verdict(refusal="unknown_charger")),
        (verdict(0, registered=False, allow_unknown=True, certificate=CERT), Verdict(profile=3)),
        (verdict(0, registered=False, allow_unknown=True), Verdict(profile=0)),
    ],
)
def test_handshakes_are_judged_by_the_registered_profile(case: Verdict, expected: Verdict) -> None:
    assert case == expected


def test_a_registration_without_a_profile_asks_for_what_it_always_did() -> None:
    assert required_profile(None, has_password=True) == 1
    assert required_profile(None, has_password=False) == 0
    assert required_profile(3, has_password=False) == 3


@pytest.mark.parametrize(
    ("profile", "has_secret", "problem"),
    [
        (0, True, "profile 0 means no authentication: give no password or key"),
        (1, False, "profile 1 (HTTP Basic) needs a password or a key"),
        (2, False, "profile 2 (HTTP Basic) needs a password or a key"),
        (3, True, "profile 3 chargers authenticate with their client certificate"),
        (7, False, "must be 0, 1, 2 or 3, got 7"),
    ],
)
def test_registrations_that_cannot_work_are_refused(
    profile: int, has_secret: bool, problem: str
) -> None:
    with pytest.raises(BadRegistration) as refused:
        check_registration(profile, has_secret)  # type: ignore[arg-type]
    assert refused.value.field == "security_profile"
    assert problem in refused.value.problem


@pytest.mark.parametrize(
    ("profile", "has_secret"),
    [(None, True), (None, False), (0, False), (1, True), (2, True), (3, False)],
)
def test_registrations_that_can_work_pass(
    profile: SecurityProfile | None, has_secret: bool
) -> None:
    check_registration(profile, has_secret)


def test_what_is_kept_of_a_certificate_is_its_cn_serial_and_expiry() -> None:
    peer = {
        "subject": ((("organizationName", "Acme"),), (("commonName", "CP-1"),)),
        "serialNumber": "00AB12",
        "notAfter": "Jun  1 12:00:00 2027 GMT",
    }
    assert certificate_of(peer) == ClientCertificate(
        common_name="CP-1", serial="AB12", not_after="2027-06-01T12:00:00Z"
    )


def test_a_subject_with_two_cns_names_no_charger() -> None:
    peer = {"subject": ((("commonName", "CP-1"),), (("commonName", "CP-2"),))}
    assert certificate_of(peer).common_name == ""
    assert verdict(3, certificate=certificate_of(peer)) == Verdict(refusal="certificate_mismatch")


def test_a_tls_gateway_trusts_the_hubs_own_ca_unless_told_otherwise(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, gateway=GatewaySettings(tls_cert="server.pem"))
    assert with_client_ca(settings).gateway.tls_client_ca == ""  # no CA yet
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    assert with_client_ca(settings).gateway.tls_client_ca == str(tmp_path / "ca" / "ca.crt")
    own = tmp_path / "chargers-ca.pem"
    own.write_text("-----BEGIN CERTIFICATE-----\n")
    told = from_environment({"HUB_TLS_CERT": "server.pem", "HUB_TLS_CLIENT_CA": str(own)})
    assert with_client_ca(told).gateway.tls_client_ca == str(own)
    # Without TLS there is no client certificate to ask for.
    assert with_client_ca(Settings(data_dir=tmp_path)).gateway.tls_client_ca == ""


@pytest.mark.parametrize(
    ("environment", "problem"),
    [
        ({"HUB_TLS_CLIENT_CA": "ca.pem"}, "needs --tls-cert and --tls-key"),
        ({"HUB_TLS_CERT": "s.pem", "HUB_TLS_CLIENT_CA": "/nowhere/ca.pem"}, "no such file"),
    ],
)
def test_a_client_ca_that_cannot_work_stops_the_start(
    environment: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        with_client_ca(from_environment(environment))


# -- a charger moved to a higher profile (OCTT TC_083) -----------------------------------------


def change(command_id: str, key: str, value: str, cp: str = "CP-1") -> CommandRequested:
    return CommandRequested(
        id=f"{command_id}:requested",
        received_at=1,
        actor="operator",
        command_id=command_id,
        charge_point_id=cp,
        action="ChangeConfiguration",
        payload=msgspec.Raw(msgspec.json.encode({"key": key, "value": value})),
    )


def answer(command_id: str, status: str, outcome: str = "answered") -> CommandFinished:
    return CommandFinished(
        id=f"{command_id}:finished",
        received_at=2,
        actor="operator",
        command_id=command_id,
        charge_point_id="CP-1",
        action="ChangeConfiguration",
        status=outcome,
        payload=msgspec.Raw(msgspec.json.encode({"status": status} if status else {})),
    )


def registered(profile: SecurityProfile | None, password_hash: str = "h") -> Registry:
    registry = Registry()
    registry.apply(
        ChargerRegistered(
            id="reg",
            received_at=0,
            actor="operator",
            charge_point_id="CP-1",
            password_hash=password_hash,
            security_profile=profile,
        )
    )
    return registry


def required_after(registry: Registry, *events: Event) -> SecurityProfile:
    for event in events:
        registry.apply(event)
    record = registry.chargers["CP-1"]
    return required_profile(record.security_profile, bool(record.password_hash))


@pytest.mark.parametrize("status", ["Accepted", "RebootRequired"])
def test_a_charger_that_takes_a_higher_profile_must_connect_with_it(status: str) -> None:
    registry = registered(None)
    assert required_after(registry, change("c1", "SecurityProfile", "3")) == 1
    assert required_after(registry, answer("c1", status)) == 3


@pytest.mark.parametrize(
    "finished",
    [
        answer("c1", "Rejected"),
        answer("c1", "NotSupported"),
        answer("c1", "", outcome="timeout"),
        answer("c1", "", outcome="callerror"),
        answer("c1", "", outcome="offline"),
        answer("other", "Accepted"),  # the answer to some other command
    ],
)
def test_a_profile_the_charger_did_not_take_changes_nothing(finished: CommandFinished) -> None:
    registry = registered(2)
    assert required_after(registry, change("c1", "SecurityProfile", "3"), finished) == 2


def test_a_profile_is_never_lowered_and_only_security_profile_counts() -> None:
    registry = registered(3, password_hash="")
    assert (
        required_after(registry, change("c1", "SecurityProfile", "1"), answer("c1", "Accepted"))
        == 3
    )
    registry = registered(1)
    for command_id, key, value in [
        ("c2", "HeartbeatInterval", "3"),
        ("c3", "SecurityProfile", "4"),
        ("c4", "SecurityProfile", "three"),
    ]:
        assert (
            required_after(registry, change(command_id, key, value), answer(command_id, "Accepted"))
            == 1
        )
    # The key is a CiString.
    assert (
        required_after(registry, change("c5", "securityprofile", "2"), answer("c5", "Accepted"))
        == 2
    )


def test_an_upgrade_of_an_unregistered_charger_registers_nothing() -> None:
    registry = Registry()
    registry.apply(change("c1", "SecurityProfile", "3"))
    registry.apply(answer("c1", "Accepted"))
    assert not registry.is_known("CP-1")


def test_a_registration_after_the_upgrade_says_what_the_charger_must_do() -> None:
    registry = registered(1)
    required_after(registry, change("c1", "SecurityProfile", "2"), answer("c1", "Accepted"))
    registry.apply(
        ChargerRegistered(
            id="again", received_at=3, actor="operator", charge_point_id="CP-1", security_profile=3
        )
    )
    assert registry.chargers["CP-1"].security_profile == 3


def test_upgrades_waiting_for_an_answer_are_bounded() -> None:
    upgrades = ProfileUpgrades(capacity=2)
    for command_id in ("c1", "c2", "c3"):
        assert upgrades.apply(change(command_id, "SecurityProfile", "3")) is None
    # The oldest was let go; the newer ones still match their answers.
    assert upgrades.apply(answer("c1", "Accepted")) is None
    assert upgrades.apply(answer("c3", "Accepted")) == ("CP-1", 3)
