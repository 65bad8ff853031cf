"""The charger-id rule, as `hub chargers add` applies it (the gateway's side is in
tests/integration/test_handshake_abuse.py)."""

from __future__ import annotations

import pytest

from hub.cli import admin_event, build_parser
from hub.domain.charger_ids import id_problem
from schemas.events import ChargerRegistered
from tests.integration.test_handshake_abuse import LOOK_ALIKES


def _register(charge_point_id: str) -> object:
    args = build_parser().parse_args(["chargers", "add", charge_point_id])
    return admin_event(args)[0]


@pytest.mark.parametrize("look_alike", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_registration_refuses_look_alikes_saying_which_character(look_alike: str) -> None:
    with pytest.raises(SystemExit) as refused:
        _register(look_alike)
    message = str(refused.value)
    assert message.startswith(f"hub: invalid charge point id {look_alike!r}: U+")
    assert "is not allowed; ids use A-Z a-z 0-9 * - _ = + | @ ." in message


@pytest.mark.parametrize("charge_point_id", ["CP-1", "x" * 48, "a*b_c=d+e|f@g.h", "0"])
def test_registration_takes_ids_within_the_rule(charge_point_id: str) -> None:
    event = _register(charge_point_id)
    assert isinstance(event, ChargerRegistered)
    assert event.charge_point_id == charge_point_id


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        ("", "the id is empty"),
        ("x" * 49, "49 characters, more than 48"),
        ("CP:1", "U+003A COLON is not allowed"),
        ("CP\u20101", "U+2010 HYPHEN is not allowed"),
        ("CP-1\x00", "U+0000 is not allowed"),
    ],
)
def test_id_problem_names_the_first_problem(candidate: str, problem: str) -> None:
    found = id_problem(candidate)
    assert found is not None and found.startswith(problem)
