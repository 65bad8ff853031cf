"""Subject layout of the event log and the reversible charger-id encoding behind it."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.charging import ANSWERED, reads
from hub.domain.policy import Policy
from hub.fanout.live import Live
from hub.subjects import (
    ADMIN_WILDCARD,
    EVENTS_WILDCARD,
    MAX_ACTION_TOKEN,
    MEANINGFUL,
    action_token,
    charger_subject,
    decode_token,
    encode_token,
    subject_for,
)
from schemas.events import (
    ChargerConnected,
    ChargerDisconnected,
    ChargerRegistered,
    ChargerReplaced,
    ChargerUnregistered,
    ConnectionRefused,
    Event,
    FrameRejected,
    IdTagRemoved,
    IdTagUpserted,
    OcppFrame,
)
from tests.unit.agreement import CHARGERS
from tests.unit.test_agreement import run, setup
from tests.unit.test_events_golden import golden_samples

# Everything a charger id can contain once it got past the handshake (printable, up to 48),
# plus the characters that would break a NATS subject and the encoding's own escape character.
ids = st.text(
    alphabet=st.one_of(
        # No lone surrogates: the handshake only accepts UTF-8 that decodes strictly.
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from(".*> \t\n~~~"),
        st.sampled_from("~2E~7E"),
    ),
    max_size=48,
)

_FORBIDDEN_IN_TOKEN = re.compile(r"[.*>\s]|[^\x21-\x7e]")


def matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is exactly one token, a final ``>`` one or more."""
    pattern_tokens = pattern.split(".")
    subject_tokens = subject.split(".")
    for index, token in enumerate(pattern_tokens):
        if token == ">":
            assert index == len(pattern_tokens) - 1, "'>' must be the last token"
            return len(subject_tokens) > index
        if index >= len(subject_tokens):
            return False
        if token != "*" and token != subject_tokens[index]:
            return False
    return len(subject_tokens) == len(pattern_tokens)


def test_matcher_itself() -> None:
    assert matches("ev.cp.A.>", "ev.cp.A.in.Heartbeat")
    assert not matches("ev.cp.A.>", "ev.cp.A")
    assert not matches("ev.cp.A.>", "ev.cp.AB.in.Heartbeat")
    assert matches("ev.cp.*.*.Heartbeat", "ev.cp.A.in.Heartbeat")
    assert not matches("ev.cp.*.*.Heartbeat", "ev.cp.A.in.Heartbeat.x")
    assert not matches("ev.cp.*", "ev.cp.A.in")


# -- the token encoding -----------------------------------------------------------------------


@given(ids)
def test_decode_inverts_encode(value: str) -> None:
    assert decode_token(encode_token(value)) == value


@given(ids)
def test_encoded_token_is_one_safe_subject_token(value: str) -> None:
    token = encode_token(value)
    assert token, "an empty token would make an invalid subject"
    assert not _FORBIDDEN_IN_TOKEN.search(token), token
    assert token.isascii()


@given(st.tuples(ids, ids).filter(lambda pair: pair[0] != pair[1]))
def test_encoding_is_injective(pair: tuple[str, str]) -> None:
    first, second = pair
    assert encode_token(first) != encode_token(second)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("", "~"),
        ("~", "~7E"),
        ("a.b", "a~2Eb"),
        ("CP 1", "CP~201"),
        ("é", "~C3~A9"),
        ("CP-1", "CP-1 "),
    ],
)
def test_look_alike_ids_stay_apart(left: str, right: str) -> None:
    assert encode_token(left) != encode_token(right)
    assert decode_token(encode_token(left)) == left
    assert decode_token(encode_token(right)) == right


@pytest.mark.parametrize("plain", ["CP-1", "SIM_00001", "cp", "A-b_9", "0"])
def test_plain_ids_pass_unchanged(plain: str) -> None:
    assert encode_token(plain) == plain
    assert decode_token(plain) == plain


@pytest.mark.parametrize(
    ("value", "token"),
    [("", "~"), ("a.b", "a~2Eb"), ("~", "~7E"), ("*", "~2A"), (">", "~3E"), ("é", "~C3~A9")],
)
def test_escaped_spelling(value: str, token: str) -> None:
    # The spelling is stored in subjects on disk, so changing it would orphan old events.
    assert encode_token(value) == token


# -- subjects of each event type --------------------------------------------------------------

_COMMON: dict[str, Any] = {"id": "e1", "received_at": 1_700_000_000_000}


def _charger_events(cp: str) -> dict[str, Event]:
    link: dict[str, Any] = {
        **_COMMON,
        "charge_point_id": cp,
        "gateway_id": "gw-1",
        "connection_id": "c1",
    }
    return {
        "in": OcppFrame(
            **link,
            ocpp_version="1.6",
            direction="in",
            message_type="CALL",
            unique_id="1",
            action="Heartbeat",
            payload=msgspec.Raw(b"{}"),
        ),
        "out": OcppFrame(
            **link,
            ocpp_version="1.6",
            direction="out",
            message_type="CALLRESULT",
            unique_id="1",
            action="Heartbeat",
            payload=msgspec.Raw(b"{}"),
        ),
        "rejected": FrameRejected(
            **link,
            ocpp_version="1.6",
            reason="not_json",
            error_code="FormationViolation",
            error_description="nope",
            raw="{",
        ),
        "opened": ChargerConnected(
            **link, ocpp_version="1.6", remote_address="127.0.0.1:1", security_profile=0
        ),
        "closed": ChargerDisconnected(**link, close_code=1000),
        "replaced": ChargerReplaced(**link, new_connection_id="c2", new_gateway_id="gw-2"),
    }


def test_charger_event_subjects() -> None:
    events = _charger_events("CP-1")
    assert subject_for(events["in"]) == "ev.cp.CP-1.in.Heartbeat"
    assert subject_for(events["out"]) == "ev.cp.CP-1.out.Heartbeat"
    assert subject_for(events["rejected"]) == "ev.cp.CP-1.rejected.not_json"
    assert subject_for(events["opened"]) == "ev.cp.CP-1.conn.opened"
    assert subject_for(events["closed"]) == "ev.cp.CP-1.conn.closed"
    assert subject_for(events["replaced"]) == "ev.cp.CP-1.conn.replaced"


def test_charger_id_is_encoded_in_subjects() -> None:
    for event in _charger_events("a.b *>").values():
        subject = subject_for(event)
        assert subject.split(".")[2] == encode_token("a.b *>")
        assert len(subject.split(".")) in (5, 6)


def test_gateway_and_admin_subjects() -> None:
    refused = ConnectionRefused(
        **_COMMON,
        charge_point_id="CP-1",
        gateway_id="gw-1",
        reason="unknown_charger",
        remote_address="127.0.0.1:1",
        path="/ocpp/CP-1",
    )
    assert subject_for(refused) == "ev.gw.refused"
    admin: dict[str, Any] = {**_COMMON, "actor": "cli:test"}
    expected: list[tuple[Event, str]] = [
        (ChargerRegistered(**admin, charge_point_id="CP-1"), "ev.admin.charger.registered"),
        (ChargerUnregistered(**admin, charge_point_id="CP-1"), "ev.admin.charger.unregistered"),
        (IdTagUpserted(**admin, id_tag="T"), "ev.admin.idtag.upserted"),
        (IdTagRemoved(**admin, id_tag="T"), "ev.admin.idtag.removed"),
    ]
    for event, subject in expected:
        assert subject_for(event) == subject
        assert matches(ADMIN_WILDCARD, subject)
        assert matches(EVENTS_WILDCARD, subject)
    assert not matches(ADMIN_WILDCARD, "ev.gw.refused")


def test_every_charger_event_is_under_the_events_wildcard_but_not_admin() -> None:
    for event in _charger_events("CP-1").values():
        assert matches(EVENTS_WILDCARD, subject_for(event))
        assert not matches(ADMIN_WILDCARD, subject_for(event))


def test_action_wildcard_follows_one_action() -> None:
    events = _charger_events("CP-1")
    assert matches("ev.cp.*.*.Heartbeat", subject_for(events["in"]))
    assert matches("ev.cp.*.*.Heartbeat", subject_for(events["out"]))
    assert not matches("ev.cp.*.*.StartTransaction", subject_for(events["in"]))


# -- following one charger --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mine", "other"),
    [("CP-1", "CP-10"), ("CP-10", "CP-1"), ("CP", "CP.1"), ("CP.1", "CP"), ("a", "a b")],
)
def test_charger_subject_follows_only_that_charger(mine: str, other: str) -> None:
    wildcard = charger_subject(mine)
    for event in _charger_events(mine).values():
        assert matches(wildcard, subject_for(event)), subject_for(event)
    for event in _charger_events(other).values():
        assert not matches(wildcard, subject_for(event)), subject_for(event)


@given(st.tuples(ids, ids).filter(lambda pair: pair[0] != pair[1]))
def test_charger_subject_separates_any_two_chargers(pair: tuple[str, str]) -> None:
    mine, other = pair
    wildcard = charger_subject(mine)
    assert wildcard.endswith(".>")
    assert all(matches(wildcard, subject_for(e)) for e in _charger_events(mine).values())
    assert not any(matches(wildcard, subject_for(e)) for e in _charger_events(other).values())


def test_the_registry_follows_exactly_the_admin_events_it_folds() -> None:
    from hub.registry import REGISTRY_SUBJECTS
    from schemas.events import (
        ChargerRegistered,
        ChargerUnregistered,
        CommandFinished,
        CommandRequested,
        IdTagRemoved,
        IdTagUpserted,
        TariffSet,
    )

    common = {"id": "e", "received_at": 1, "actor": "t"}
    folded: list[Event] = [
        msgspec.convert({**common, "charge_point_id": "CP"}, ChargerRegistered),
        msgspec.convert({**common, "charge_point_id": "CP"}, ChargerUnregistered),
        msgspec.convert({**common, "id_tag": "T"}, IdTagUpserted),
        msgspec.convert({**common, "id_tag": "T"}, IdTagRemoved),
        # A ChangeConfiguration SecurityProfile and its answer raise a charger's profile.
        msgspec.convert(
            {**common, "command_id": "c", "charge_point_id": "CP", "action": "A"},
            CommandRequested,
        ),
        msgspec.convert(
            {**common, "command_id": "c", "charge_point_id": "CP", "action": "A", "status": "s"},
            CommandFinished,
        ),
    ]
    for event in folded:
        assert any(matches(p, subject_for(event)) for p in REGISTRY_SUBJECTS), event
    tariff = msgspec.convert({**common, "tariff_id": "std"}, TariffSet)
    assert not any(matches(p, subject_for(tariff)) for p in REGISTRY_SUBJECTS)


# -- bounded action tokens (issue #16: a 4,100-character action broke NATS's 4 KiB PUB line) --


@pytest.mark.parametrize("action", ["Heartbeat", "SignedFirmwareStatusNotification", "A" * 64])
def test_actions_of_up_to_64_token_characters_stay_as_they_are(action: str) -> None:
    assert action_token(action) == encode_token(action)


@pytest.mark.parametrize("action", ["A" * 4100, "充" * 460, "a.b" * 40, "~" * 100, "x" * 65])
def test_a_long_action_is_cut_to_a_readable_head_and_a_digest(action: str) -> None:
    token = action_token(action)
    assert len(token) <= MAX_ACTION_TOKEN
    assert not _FORBIDDEN_IN_TOKEN.search(token)
    head, marker, digest = token.partition("~~")
    assert marker and re.fullmatch(r"[0-9a-f]{16}", digest)
    assert encode_token(action).startswith(head)
    assert re.fullmatch(r"([A-Za-z0-9_\-]|~[0-9A-F]{2})*", head)  # no escape cut in two


@given(st.text(min_size=60, max_size=300), st.text(min_size=60, max_size=300))
def test_long_actions_keep_distinct_tokens(left: str, right: str) -> None:
    if left != right:
        assert action_token(left) != action_token(right)


def test_a_cut_action_token_is_never_an_uncut_one() -> None:
    # encode_token never writes "~~", so no action of any length maps onto a cut token.
    assert "~~" not in encode_token("~~" + "A" * 30)


def test_the_subject_of_any_charger_frame_fits_a_nats_control_line() -> None:
    widest_id = "\U0001f600" * 48  # 4 UTF-8 bytes each: the longest token a charger id makes
    for event in _charger_events(widest_id).values():
        if isinstance(event, OcppFrame):
            event = msgspec.structs.replace(event, action="\U0001f600" * 100_000)
        assert len(subject_for(event).encode()) < 1024


def test_meaningful_subjects_hold_every_event_but_answers_no_fold_reads() -> None:
    for tag, event in golden_samples().items():
        kept = any(matches(pattern, subject_for(event)) for pattern in MEANINGFUL)
        answer = isinstance(event, OcppFrame) and event.direction == "out"
        assert kept == (not answer or event.action in ANSWERED), tag
        if reads(event):
            assert kept, f"{tag}: the charging domain reads it"
    heartbeat = msgspec.structs.replace(
        golden_samples()["ocpp.frame"], direction="out", action="Heartbeat"
    )
    assert not any(matches(pattern, subject_for(heartbeat)) for pattern in MEANINGFUL)


def test_the_fan_out_makes_the_same_of_the_meaningful_events_as_of_all() -> None:
    hub, chargers = setup(Policy(actions={}))
    run(
        hub,
        chargers,
        [
            ("start", 0, 1, "POST", None),
            ("meter", 0, 1, 500, 5, False),
            ("start", 1, 1, "PRE", -1),
            ("meter", 1, 1, 300, 5, True),
            ("reboot", 0, 2),
            ("stop", 0, 1),
            ("flush", 1),
            ("wait", 31),
            ("stray", 1, 2, 7, 0),
        ],
    )
    filtered = Live(history_per_charger=100_000)
    messages = []
    for seq, event in enumerate(hub.events, start=1):
        if any(matches(pattern, subject_for(event)) for pattern in MEANINGFUL):
            messages += filtered.fold(event, seq)
    assert messages == hub.messages
    for cp in CHARGERS:
        whole, meaningful = hub.live.snapshot(cp, hub.now), filtered.snapshot(cp, hub.now)
        assert msgspec.structs.replace(meaningful, seq=0) == msgspec.structs.replace(whole, seq=0)
