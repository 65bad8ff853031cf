"""The pure parts of charger credentials: what a password or key may be, what a charger's
answer to a new one means, how the registry folds a rotation and an acceptance, which
refusals are listed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub.domain.credentials import (
    BadSecret,
    key_secret,
    password_calls,
    password_secret,
    rotation_outcome,
    secret_of,
)
from hub.domain.refusals import Refusals
from hub.passwords import first_match, hash_password, verify_credential
from hub.registry import Registry
from schemas.events import (
    ChargerAccepted,
    ChargerConnected,
    ChargerRegistered,
    ChargerUnregistered,
    ConnectionRefused,
    PasswordRotationEnded,
    PasswordRotationStarted,
)

FAST = 1_000


def test_passwords_are_16_to_40_printable_characters() -> None:
    assert password_secret("a" * 16).raw == b"a" * 16
    assert password_secret("a" * 40).configured == "a" * 40
    for bad in ("a" * 15, "a" * 41, "tab\there-0123456", "sixteen-chars-\u00e9\u00e9"):
        with pytest.raises(BadSecret) as refused:
            password_secret(bad)
        assert refused.value.field == "password"


def test_keys_are_16_to_20_bytes_of_hex() -> None:
    key = key_secret("00FF" * 8)
    assert key.raw == bytes.fromhex("00ff" * 8) and key.configured == "00ff" * 8
    for bad in ("00" * 15, "00" * 21, "0" * 33, "zz" * 16, "00 " * 16):
        with pytest.raises(BadSecret):
            key_secret(bad)


def test_without_password_or_key_a_random_key_is_generated_and_both_is_refused() -> None:
    secret, generated = secret_of(None, None, bytes(range(20)))
    assert (
        generated and secret.raw == bytes(range(20)) and secret.configured == bytes(range(20)).hex()
    )
    assert secret_of("p" * 16, None, b"")[1] is False
    with pytest.raises(BadSecret):
        secret_of("p" * 16, "00" * 16, b"")


def _set_variables(status: str) -> bytes:
    result = {
        "attributeStatus": status,
        "component": {"name": "SecurityCtrlr"},
        "variable": {"name": "BasicAuthPassword"},
    }
    return json.dumps({"setVariableResult": [result]}).encode()


@pytest.mark.parametrize(
    ("status", "payload", "outcome"),
    [
        ("answered", b'{"status":"Accepted"}', (None, "Accepted")),
        ("answered", b'{"status":"RebootRequired"}', (None, "RebootRequired")),
        ("answered", b'{"status":"Rejected"}', ("rejected", "Rejected")),
        ("answered", b'{"status":"NotSupported"}', ("rejected", "NotSupported")),
        ("answered", b"[]", ("rejected", "an answer without a status")),
        # 2.x: SetVariables SecurityCtrlr.BasicAuthPassword
        ("answered", _set_variables("Accepted"), (None, "Accepted")),
        ("answered", _set_variables("RebootRequired"), (None, "RebootRequired")),
        ("answered", _set_variables("UnknownVariable"), ("rejected", "UnknownVariable")),
        ("answered", b'{"setVariableResult": []}', ("rejected", "an answer without a status")),
        ("wrong_version", b"{}", ("failed", "wrong_version")),
        ("callerror", b"{}", ("rejected", "callerror")),
        ("invalid_answer", b"{}", ("rejected", "invalid_answer")),
        ("timeout", b"{}", ("timeout", "timeout")),
        ("offline", b"{}", ("failed", "offline")),
        ("busy", b"{}", ("failed", "busy")),
    ],
)
def test_what_an_answer_to_a_new_key_means(status: Any, payload: bytes, outcome: Any) -> None:
    assert rotation_outcome(status, payload) == outcome


def test_a_binary_key_verifies_as_its_bytes_or_its_hex_text() -> None:
    # Ends in a non-zero byte: HMAC pads keys with zeros, so PBKDF2 cannot tell a key from
    # itself plus trailing zero bytes (which takes knowing the key anyway).
    key = bytes.fromhex("00ff" * 10)
    encoded = hash_password(key, iterations=FAST)
    assert verify_credential(key, encoded)
    assert verify_credential(key.hex().encode(), encoded)
    assert verify_credential(key.hex().upper().encode(), encoded)
    assert not verify_credential(key[:-1], encoded)
    assert not verify_credential(b"00ff" * 10 + b"0", encoded)
    # A text password hashes as before binary keys existed: its UTF-8 bytes.
    assert verify_credential("pässwörd-0123456".encode(), hash_password("pässwörd-0123456"))
    assert first_match(key, ["", hash_password(b"x" * 16, iterations=FAST), encoded]) == 2
    assert first_match(b"nope", [encoded]) is None


def _admin(kind: type[Any], **fields: Any) -> Any:
    return kind(id=fields.pop("id", "e"), received_at=1, actor="test", **fields)


def rotating() -> Registry:
    """CP registered with hash ``old``, being rotated (r1) to ``new``."""
    registry = Registry()
    registry.apply(_admin(ChargerRegistered, charge_point_id="CP", password_hash="old"))
    registry.apply(
        _admin(
            PasswordRotationStarted,
            charge_point_id="CP",
            rotation_id="r1",
            password_hash="new",
            command_id="c1",
        )
    )
    return registry


def test_a_rotation_accepts_both_hashes_until_it_ends() -> None:
    registry = rotating()
    assert registry.chargers["CP"].password_hashes == ("old", "new")
    assert registry.rotating("CP")
    # The end of some other rotation changes nothing.
    registry.apply(
        _admin(PasswordRotationEnded, charge_point_id="CP", rotation_id="r0", outcome="completed")
    )
    assert registry.chargers["CP"].password_hashes == ("old", "new")
    registry.apply(
        _admin(PasswordRotationEnded, charge_point_id="CP", rotation_id="r1", outcome="completed")
    )
    assert registry.chargers["CP"].password_hashes == ("new",) and not registry.rotating("CP")


@pytest.mark.parametrize("outcome", ["rejected", "timeout", "failed"])
def test_a_rotation_that_fails_keeps_the_old_hash(outcome: Any) -> None:
    registry = rotating()
    registry.apply(
        _admin(PasswordRotationEnded, charge_point_id="CP", rotation_id="r1", outcome=outcome)
    )
    assert registry.chargers["CP"].password_hashes == ("old",)


def test_acceptance_lasts_until_the_charger_is_unregistered() -> None:
    registry = Registry()
    registry.apply(_admin(ChargerAccepted, charge_point_id="CP"))
    assert "CP" in registry.accepted
    registry.apply(_admin(ChargerUnregistered, charge_point_id="CP"))
    assert "CP" not in registry.accepted


def _refused(cp: str, at: int, reason: Any = "bad_credentials") -> ConnectionRefused:
    return ConnectionRefused(
        id=f"{cp}-{at}",
        received_at=at,
        charge_point_id=cp,
        gateway_id="gw",
        reason=reason,
        remote_address="10.0.0.1:5000",
        path=f"/ocpp/{cp}",
        offered_subprotocols=("ocpp1.6",),
    )


def test_refusals_keep_the_last_per_charger_until_it_connects_and_are_bounded() -> None:
    refusals = Refusals(limit=2)
    refusals.apply(_refused("A", 1))
    refusals.apply(_refused("B", 2))
    refusals.apply(_refused("A", 3, "locked_out"))
    assert [(r.charge_point_id, r.reason, r.attempts) for r in refusals.latest_first()] == [
        ("A", "locked_out", 2),
        ("B", "bad_credentials", 1),
    ]
    refusals.apply(_refused("C", 4))  # B, the oldest, makes room
    assert [r.charge_point_id for r in refusals.latest_first()] == ["C", "A"]
    refusals.apply(
        ChargerConnected(
            id="o",
            received_at=5,
            charge_point_id="A",
            gateway_id="gw",
            connection_id="c",
            ocpp_version="1.6",
            remote_address="10.0.0.1:5001",
            security_profile=1,
        )
    )
    assert refusals.get("A") is None and [r.charge_point_id for r in refusals.latest_first()] == [
        "C"
    ]


@pytest.mark.parametrize(
    ("version", "order"),
    [
        ("1.6", ["ChangeConfiguration", "SetVariables"]),
        ("2.0.1", ["SetVariables", "ChangeConfiguration"]),
        ("2.1", ["SetVariables", "ChangeConfiguration"]),
        ("", ["ChangeConfiguration", "SetVariables"]),  # never seen connected
    ],
)
def test_a_rotation_tries_the_call_for_the_known_version_first_and_the_other_once(
    version: str, order: list[str]
) -> None:
    assert [call.action for call in password_calls(version)] == order
