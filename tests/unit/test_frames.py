"""OCPP-J framing: bytes in, a typed frame or a rejection (with its 1.6 error code) out."""

from __future__ import annotations

import hashlib
import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.gateway import frames
from hub.gateway.frames import Call, CallError, CallResult, Malformed

FORMATION = "FormationViolation"  # the OCPP 1.6 spelling; 2.0.1 says FormatViolation


def test_call() -> None:
    frame = frames.parse(b'[2, "abc-1", "Heartbeat", {}]')
    assert isinstance(frame, Call)
    assert frame.unique_id == "abc-1"
    assert frame.action == "Heartbeat"
    assert bytes(frame.payload) == b"{}"


def test_call_payload_is_kept_verbatim() -> None:
    payload = b'{ "chargePointVendor" : "V\\u00e9",\n "chargePointModel":"M" }'
    frame = frames.parse(b'[2,"1","BootNotification",' + payload + b"]")
    assert isinstance(frame, Call)
    assert bytes(frame.payload) == payload


def test_call_result() -> None:
    frame = frames.parse(b'[3,"u-2",{"currentTime":"2026-01-01T00:00:00Z"}]')
    assert isinstance(frame, CallResult)
    assert frame.unique_id == "u-2"
    assert json.loads(bytes(frame.payload)) == {"currentTime": "2026-01-01T00:00:00Z"}


def test_call_error() -> None:
    frame = frames.parse(b'[4,"u-3","NotImplemented","no such action",{"a":1}]')
    assert isinstance(frame, CallError)
    assert frame.unique_id == "u-3"
    assert frame.error_code == "NotImplemented"
    assert frame.error_description == "no such action"
    assert json.loads(bytes(frame.details)) == {"a": 1}


def test_surrounding_whitespace_is_fine() -> None:
    frame = frames.parse(b' \n[2,"1","Heartbeat",{}]\n ')
    assert isinstance(frame, Call)
    assert frame.action == "Heartbeat"


def _malformed(data: bytes) -> Malformed:
    frame = frames.parse(data)
    assert isinstance(frame, Malformed), frame
    assert frame.error_code == FORMATION
    assert frame.description
    return frame


@pytest.mark.parametrize(
    "data",
    [b"", b"[2,", b"not json", b"\xff\xfe[]", b'[2,"1","Heartbeat",{}] trailing', b"[2,'1']"],
)
def test_not_json(data: bytes) -> None:
    frame = _malformed(data)
    assert frame.reason == "not_json"
    assert frame.unique_id == frames.UNREADABLE_ID == "-1"


@pytest.mark.parametrize("data", [b'{"a":1}', b'"text"', b"2", b"null", b"true"])
def test_json_but_not_an_array(data: bytes) -> None:
    frame = _malformed(data)
    assert frame.reason == "bad_shape"
    assert frame.unique_id == "-1"


def test_empty_array() -> None:
    frame = _malformed(b"[]")
    assert frame.reason == "bad_shape"
    assert frame.unique_id == "-1"


@pytest.mark.parametrize("message_type", [b'"2"', b"2.0", b"2.5", b"true", b"null", b"[2]"])
def test_non_integer_message_type(message_type: bytes) -> None:
    frame = _malformed(b"[" + message_type + b',"1","Heartbeat",{}]')
    assert frame.reason == "bad_shape"
    assert "integer" in frame.description


@pytest.mark.parametrize("message_type", [0, 1, 5, 6, 7, -2, 22])
def test_unknown_message_type(message_type: int) -> None:
    frame = _malformed(f'[{message_type},"id-9","Heartbeat",{{}}]'.encode())
    assert frame.reason == "unknown_message_type"
    assert frame.unique_id == "id-9"


@pytest.mark.parametrize("unique_id", [b"1", b"null", b"{}", b"[]", b"true", b"1.5"])
def test_non_string_unique_id(unique_id: bytes) -> None:
    frame = _malformed(b"[2," + unique_id + b',"Heartbeat",{}]')
    assert frame.reason == "bad_shape"
    assert frame.unique_id == "-1"


def test_unique_id_of_36_characters_is_fine() -> None:
    unique_id = "x" * 36
    frame = frames.parse(f'[2,"{unique_id}","Heartbeat",{{}}]'.encode())
    assert isinstance(frame, Call)
    assert frame.unique_id == unique_id


def test_unique_id_of_36_non_ascii_characters_is_fine() -> None:
    unique_id = "é" * 36  # the limit is in characters, not UTF-8 bytes
    frame = frames.parse(json.dumps([2, unique_id, "Heartbeat", {}]).encode())
    assert isinstance(frame, Call)
    assert frame.unique_id == unique_id


@pytest.mark.parametrize("message_type", [2, 3, 4])
def test_unique_id_of_37_characters_is_refused_but_echoed(message_type: int) -> None:
    unique_id = "y" * 37
    frame = _malformed(json.dumps([message_type, unique_id, "Heartbeat", {}]).encode())
    assert frame.reason == "unique_id_too_long"
    assert frame.unique_id == unique_id
    error = json.loads(frames.encode_error(frame.unique_id, frame.error_code, frame.description))
    assert error[:3] == [4, unique_id, FORMATION]


@pytest.mark.parametrize(
    "data",
    [b"[2]", b'[2,"c1"]', b'[2,"c1","Heartbeat"]', b'[2,"c1","Heartbeat",{},{}]'],
)
def test_call_with_wrong_element_count(data: bytes) -> None:
    frame = _malformed(data)
    assert frame.reason == "bad_shape"
    assert frame.unique_id == ("-1" if data == b"[2]" else "c1")


@pytest.mark.parametrize("action", [b"1", b"null", b"{}", b'["Heartbeat"]'])
def test_call_with_non_string_action(action: bytes) -> None:
    frame = _malformed(b'[2,"c2",' + action + b",{}]")
    assert frame.reason == "bad_shape"
    assert frame.unique_id == "c2"
    assert frame.action == ""


@pytest.mark.parametrize("data", [b'[3,"r1"]', b'[3,"r1",{},{}]'])
def test_call_result_with_wrong_element_count(data: bytes) -> None:
    frame = _malformed(data)
    assert frame.reason == "bad_shape"
    assert frame.unique_id == "r1"


@pytest.mark.parametrize(
    "data",
    [
        b'[4,"e1"]',
        b'[4,"e1","GenericError"]',
        b'[4,"e1","GenericError","d"]',
        b'[4,"e1","GenericError","d",{},1]',
    ],
)
def test_call_error_with_wrong_element_count(data: bytes) -> None:
    frame = _malformed(data)
    assert frame.reason == "bad_shape"
    assert frame.unique_id == "e1"


@pytest.mark.parametrize("data", [b'[4,"e1",1,"d",{}]', b'[4,"e1","GenericError",null,{}]'])
def test_call_error_with_non_string_code_or_description(data: bytes) -> None:
    frame = _malformed(data)
    assert frame.reason == "bad_shape"
    assert frame.unique_id == "e1"


# -- encoding ---------------------------------------------------------------------------------


def test_encode_result_is_an_ocpp_j_callresult() -> None:
    data = frames.encode_result("u-1", {"currentTime": "2026-01-01T00:00:00.000Z"})
    assert json.loads(data) == [3, "u-1", {"currentTime": "2026-01-01T00:00:00.000Z"}]
    parsed = frames.parse(data)
    assert isinstance(parsed, CallResult)
    assert parsed.unique_id == "u-1"


def test_encode_error_is_an_ocpp_j_callerror() -> None:
    data = frames.encode_error("u-2", "NotImplemented", 'unknown action "Foo"')
    assert json.loads(data) == [4, "u-2", "NotImplemented", 'unknown action "Foo"', {}]
    parsed = frames.parse(data)
    assert isinstance(parsed, CallError)
    assert (parsed.unique_id, parsed.error_code) == ("u-2", "NotImplemented")


def test_encode_call_is_an_ocpp_j_call() -> None:
    data = frames.encode_call("u-3", "Reset", {"type": "Hard"})
    assert json.loads(data) == [2, "u-3", "Reset", {"type": "Hard"}]


@given(
    unique_id=st.text(max_size=36),
    code=st.text(),
    description=st.text(),
)
def test_encoded_error_parses_back(unique_id: str, code: str, description: str) -> None:
    data = frames.encode_error(unique_id, code, description)
    parsed = frames.parse(data)
    assert isinstance(parsed, CallError)
    assert (parsed.unique_id, parsed.error_code, parsed.error_description) == (
        unique_id,
        code,
        description,
    )
    assert json.loads(data) == [4, unique_id, code, description, {}]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.binary(max_size=64) | st.lists(_json, max_size=6).map(lambda v: json.dumps(v).encode()))
def test_parse_never_raises_and_echoes_only_readable_ids(data: bytes) -> None:
    frame = frames.parse(data)
    assert isinstance(frame, Call | CallResult | CallError | Malformed)
    if isinstance(frame, Malformed) and frame.unique_id != "-1":
        # A refusal only echoes a unique id that really is the frame's second element.
        assert json.loads(data)[1] == frame.unique_id


# -- the CALLERROR table's harder classes (issue #16) -------------------------------------------


@pytest.mark.parametrize("message_type", [b'"2"', b"2.0", b"1e400", b"-1e400", b"null", b"[2]"])
def test_non_integer_message_type_is_refused_with_the_frames_unique_id(
    message_type: bytes,
) -> None:
    frame = _malformed(b"[" + message_type + b',"id-7","Heartbeat",{}]')
    assert (frame.reason, frame.unique_id, frame.answerable) == ("bad_shape", "id-7", True)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [1_100, 100_000])
def test_deep_nesting_is_a_formation_violation_with_the_frames_unique_id(depth: int) -> None:
    frame = _malformed(b'[2,"deep-1","DataTransfer",' + _nested(depth) + b"]")
    assert (frame.reason, frame.unique_id, frame.answerable) == ("bad_shape", "deep-1", True)
    assert "nested" in frame.description


def test_deep_nesting_without_a_readable_unique_id_is_answered_with_minus_one() -> None:
    frame = _malformed(_nested(5_000))
    assert (frame.reason, frame.unique_id) == ("bad_shape", "-1")


def test_deeply_nested_result_is_not_answered() -> None:
    frame = _malformed(b'[3,"r-deep",' + _nested(5_000) + b"]")
    assert (frame.unique_id, frame.answerable) == ("r-deep", False)


@pytest.mark.parametrize("unique_id", [b"17", b'"r\xff"', b"null"])
def test_deeply_nested_result_without_a_readable_unique_id_is_not_answered(
    unique_id: bytes,
) -> None:
    frame = _malformed(b"[3," + unique_id + b"," + _nested(5_000) + b"]")
    assert (frame.unique_id, frame.answerable) == ("-1", False)


@pytest.mark.parametrize(
    "data",
    [
        rb'[2,"s1","DataTransfer",{"vendorId":"v","data":"\ud800"}]',
        rb'[2,"s1","\udc00",{}]',
        rb'[2,"s1","Heartbeat",{"\udfff":1}]',
    ],
)
def test_lone_surrogate_is_a_formation_violation_with_the_frames_unique_id(data: bytes) -> None:
    frame = _malformed(data)
    assert (frame.reason, frame.unique_id, frame.answerable) == ("bad_shape", "s1", True)
    assert "Unicode" in frame.description
    assert json.loads(frames.encode_refusal(frame))[:3] == [4, "s1", FORMATION]


def test_lone_surrogate_in_the_unique_id_is_echoed_exactly_and_stored_readably() -> None:
    frame = _malformed(rb'[2,"a\ud800b","Heartbeat",{}]')
    # The event keeps a storable spelling; the charger gets its own id back.
    assert frame.unique_id == "a\\ud800b"
    frame.unique_id.encode()
    assert json.loads(frames.encode_refusal(frame))[:3] == [4, "a\ud800b", FORMATION]


def test_invalid_json_stays_unanswerable_by_id() -> None:
    frame = _malformed(rb'[2,"x","Heartbeat",{]')
    assert (frame.reason, frame.unique_id) == ("not_json", "-1")


@pytest.mark.parametrize(
    "data",
    [
        rb'[3,"x",{]',
        rb'[4,"x","GenericError","",{]',
        b'[3,"\\ud800",' + b'{"a":' * 5_000 + b"1" + b"}" * 5_000 + b"]",
    ],
)
def test_results_that_are_not_json_are_never_answered(data: bytes) -> None:
    frame = _malformed(data)
    assert (frame.unique_id, frame.answerable) == ("-1", False)


@pytest.mark.parametrize("message_type", [3, 4])
def test_results_with_a_too_long_unique_id_are_never_answered(message_type: int) -> None:
    frame = _malformed(json.dumps([message_type, "r" * 40, {}]).encode())
    assert (frame.reason, frame.answerable) == ("unique_id_too_long", False)


def test_call_with_a_too_long_unique_id_is_answered() -> None:
    assert _malformed(json.dumps([2, "c" * 40, "Heartbeat", {}]).encode()).answerable


def test_binary_frame_is_recorded_then_closed_with_1003() -> None:
    frame = frames.binary_frame()
    assert (frame.reason, frame.answerable, frame.close_code) == ("binary_frame", False, 1003)


# -- what an event keeps of a refused frame ---------------------------------------------------


def test_raw_text_keeps_a_frame_within_budget_whole() -> None:
    kept = frames.raw_text(b'[2,"1","Heartbeat",{}]\xff')
    assert kept == frames.RawText('[2,"1","Heartbeat",{}]\\xff')


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 1_000, b"\x01" * 200_000, "充".encode() * 100_000, b"x" * 400_000],
)
def test_raw_text_cuts_a_frame_to_its_budget_with_length_and_digest(data: bytes) -> None:
    budget = 64 * 1024
    kept = frames.raw_text(data, budget)
    assert kept.truncated and kept.size == len(data)
    assert kept.sha256 == hashlib.sha256(data).hexdigest()
    assert budget * 0.99 <= len(msgspec.json.encode(kept.text)) <= budget
    assert "\ufffd" not in kept.text  # never a character cut in two


@pytest.mark.parametrize("unique_id", [b"17", b"null", b"[]"])
@pytest.mark.parametrize("result", [b"[3,{id},{{}}]", b'[4,{id},"GenericError","",{{}}]'])
def test_results_with_a_unique_id_that_is_not_a_string_are_never_answered(
    result: bytes, unique_id: bytes
) -> None:
    frame = _malformed(result.replace(b"{id}", unique_id).replace(b"{{}}", b"{}"))
    assert (frame.reason, frame.unique_id, frame.answerable) == ("bad_shape", "-1", False)


# The shell never passes on a text frame that is not UTF-8 (websockets closes it with 1007), but
# the core must still answer whatever bytes it is given as the CALLERROR table says.
@pytest.mark.parametrize(
    ("data", "unique_id", "answerable"),
    [
        (b'[2,"u\xff","Heartbeat",{}]', "-1", True),
        (b'[2,"u-8","Heart\xc3\x28",{}]', "u-8", True),
        (b'[3,"u\xed\xa0\x80",{}]', "-1", False),
        (b'[4,"u-8","Generic\x80","",{}]', "u-8", False),
        (b"\xfe", "-1", True),
    ],
)
def test_text_that_is_not_utf8_is_refused_as_not_json(
    data: bytes, unique_id: str, answerable: bool
) -> None:
    frame = _malformed(data)
    assert (frame.reason, frame.unique_id, frame.answerable) == ("not_json", unique_id, answerable)
    assert frame.error_code == FORMATION
