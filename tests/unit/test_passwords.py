"""Charger passwords are only ever stored as salted PBKDF2 hashes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.passwords import hash_password, verify_password

FAST = 1_000  # iterations; the cost does not change what is being tested


def test_round_trip_with_default_cost() -> None:
    encoded = hash_password("correct horse battery staple")
    assert verify_password("correct horse battery staple", encoded)
    assert not verify_password("correct horse battery stapl", encoded)


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_only_the_same_password_verifies(password: str, other: str) -> None:
    encoded = hash_password(password, iterations=FAST)
    assert verify_password(password, encoded)
    assert verify_password(other, encoded) == (other == password)


@pytest.mark.parametrize("wrong", ["", "secret ", "Secret", "secre", "sécret"])
def test_wrong_password_fails(wrong: str) -> None:
    assert not verify_password(wrong, hash_password("secret", iterations=FAST))


def test_empty_password_round_trip() -> None:
    encoded = hash_password("", iterations=FAST)
    assert verify_password("", encoded)
    assert not verify_password(" ", encoded)


@settings(max_examples=25, deadline=None)
@given(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40)
)
def test_hash_never_contains_the_password(password: str) -> None:
    # 8+ characters: a chance match inside random base64 is ~1e-12, so a hit means a leak.
    encoded = hash_password(password, iterations=FAST)
    assert password not in encoded
    assert password.encode().hex() not in encoded


def test_two_hashes_of_the_same_password_differ() -> None:
    first, second = (hash_password("secret", iterations=FAST) for _ in range(2))
    assert first != second
    assert first.split("$")[3] != second.split("$")[3], "salts must differ"
    assert verify_password("secret", first) and verify_password("secret", second)


def test_iterations_are_recorded_and_honoured() -> None:
    encoded = hash_password("secret", iterations=1234)
    assert encoded.startswith("$pbkdf2_sha256$i=1234$")
    tampered = encoded.replace("i=1234", "i=1235")
    assert not verify_password("secret", tampered)


def test_tampered_digest_fails() -> None:
    encoded = hash_password("secret", iterations=FAST)
    head, _, digest = encoded.rpartition("$")
    flipped = ("A" if digest[0] != "A" else "B") + digest[1:]
    assert not verify_password("secret", f"{head}${flipped}")


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "secret",
        "garbage",
        "$$$$",
        "$pbkdf2_sha256$i=1$$",
        "$pbkdf2_sha256$i=x$YWJj$YWJj",
        "$md5$i=1$YWJj$YWJj",
        "$pbkdf2_sha256$i=1000$YWJj",
        "$pbkdf2_sha256$i=1000$YWJj$YWJj$YWJj",
    ],
)
def test_garbage_encodings_are_false(encoded: str) -> None:
    assert verify_password("secret", encoded) is False


@pytest.mark.parametrize(
    "encoded",
    [
        "$pbkdf2_sha256$i=1$a$b",  # base64 of impossible length
        "$pbkdf2_sha256$i=1$YWJj$é",  # non-ASCII digest
        "$pbkdf2_sha256$i=0$YWJj$YWJj",  # zero iterations
        "$pbkdf2_sha256$i=-5$YWJj$YWJj",  # negative iterations
    ],
)
def test_broken_encodings_are_false_not_exceptions(encoded: str) -> None:
    assert verify_password("secret", encoded) is False


# Well-formed base64 pieces (lengths that can occur), so the broken ones above stay separate.
_b64 = st.text(alphabet="ABCDabcd0189+/", max_size=12).filter(lambda text: len(text) % 4 != 1)


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        "${}${}${}${}".format,
        st.sampled_from(["pbkdf2_sha256", "md5", ""]),
        st.sampled_from(["i=1", "i=2", "1", "i=", "i=a"]),
        _b64,
        _b64,
    )
)
def test_fuzzed_encodings_never_raise_or_verify(encoded: str) -> None:
    assert verify_password("secret", encoded) is False
