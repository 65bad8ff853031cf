"""Which OCPP version a handshake settles on (hub.domain.ocpp_versions), without sockets."""

from __future__ import annotations

import pytest

from hub.config import GatewaySettings, check_ocpp_versions, from_environment
from hub.domain.ocpp_versions import allowed_versions, negotiate, parse_versions, spoken
from hub.domain.security_profiles import BadRegistration
from schemas.events import OcppVersion

ALL: tuple[OcppVersion, ...] = ("2.1", "2.0.1", "1.6")

# (offered, in the charger's order; allowed; the subprotocol answered, None: closed 1002)
MATRIX: list[tuple[list[str], tuple[OcppVersion, ...], str | None]] = [
    (["ocpp1.6"], ALL, "ocpp1.6"),
    (["ocpp2.0.1"], ALL, "ocpp2.0.1"),
    (["ocpp2.1"], ALL, "ocpp2.1"),
    # The newest both have, whatever order the charger lists them in.
    (["ocpp1.6", "ocpp2.0.1"], ALL, "ocpp2.0.1"),
    (["ocpp1.6", "ocpp2.0.1", "ocpp2.1"], ALL, "ocpp2.1"),
    (["ocpp2.1", "ocpp1.6"], ALL, "ocpp2.1"),
    (["ocpp2.1", "ocpp2.0.1", "ocpp1.6"], ("1.6",), "ocpp1.6"),
    (["ocpp2.1", "ocpp2.0.1", "ocpp1.6"], ("2.0.1", "1.6"), "ocpp2.0.1"),
    (["ocpp2.1", "ocpp1.6"], ("2.0.1", "1.6"), "ocpp1.6"),
    (["ocpp2.0.1"], ("1.6",), None),
    (["ocpp2.1"], ("2.0.1", "1.6"), None),
    (["ocpp1.6"], ("2.1", "2.0.1"), None),
    ([], ALL, None),
    # Subprotocol names are exact (RFC 6455 §4.1 tokens): no case folding, no 2.0 alias.
    (["OCPP1.6", "ocpp2.0", "ocpp1.5"], ALL, None),
]


@pytest.mark.parametrize(("offered", "allowed", "chosen"), MATRIX)
def test_the_newest_version_both_sides_have_is_chosen(
    offered: list[str], allowed: tuple[OcppVersion, ...], chosen: str | None
) -> None:
    assert negotiate(offered, allowed) == chosen


@pytest.mark.parametrize(
    ("hub", "registered", "allowed"),
    [
        (ALL, (), ALL),
        (ALL, ("1.6",), ("1.6",)),
        (("2.0.1", "1.6"), ("2.1", "2.0.1"), ("2.0.1",)),
        # The hub's versions are the ceiling: a registration cannot widen them.
        (("1.6",), ("2.0.1",), ()),
    ],
)
def test_a_registration_narrows_the_hubs_versions(
    hub: tuple[OcppVersion, ...],
    registered: tuple[OcppVersion, ...],
    allowed: tuple[OcppVersion, ...],
) -> None:
    assert allowed_versions(hub, registered) == allowed


def test_version_lists_are_read_newest_first_once_each() -> None:
    assert parse_versions("1.6, 2.1,1.6") == ("2.1", "1.6")
    assert parse_versions(["2.0.1", "1.6"]) == ("2.0.1", "1.6")
    assert spoken(("2.0.1", "1.6")) == "ocpp2.0.1, ocpp1.6"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2.0", "unknown OCPP version '2.0'; expected 1.6, 2.0.1, 2.1"),
        ("ocpp1.6", "unknown OCPP version 'ocpp1.6'"),
        ("", "unknown OCPP version ''"),
        ([], "name at least one OCPP version"),
    ],
)
def test_unknown_versions_are_refused_naming_the_field(text: str | list[str], problem: str) -> None:
    with pytest.raises(BadRegistration) as refused:
        parse_versions(text)
    assert refused.value.field == "ocpp_versions"
    assert refused.value.problem.startswith(problem)


def test_the_hubs_versions_default_to_1_6_and_are_checked_at_start() -> None:
    assert parse_versions(GatewaySettings().ocpp_versions) == ("1.6",)
    assert from_environment({"HUB_OCPP_VERSIONS": "2.1,1.6"}).gateway.ocpp_versions == "2.1,1.6"
    with pytest.raises(ValueError, match="invalid HUB_OCPP_VERSIONS: unknown OCPP version '3'"):
        from_environment({"HUB_OCPP_VERSIONS": "3"})
    with pytest.raises(ValueError, match="invalid --ocpp-versions"):
        check_ocpp_versions(GatewaySettings(ocpp_versions="1.6,2.2"), "--ocpp-versions")
