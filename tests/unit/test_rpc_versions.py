"""OCPP-J per version, without sockets: which message types exist, which are answered, and
what each refusal's error code is called in 1.6, 2.0.1 and 2.1 (hub.gateway.frames and
hub.gateway.protocol)."""

from __future__ import annotations

import json

import msgspec
import pytest

from hub.gateway import frames
from hub.gateway.frames import CallResultError, Malformed, Send
from hub.gateway.protocol import Link, Received, inspect, reject, unanswered
from schemas.events import FrameRejected, OcppFrame, OcppVersion, RejectionReason

LIMIT = 65536
# The hub's own action, sent by a station: nothing a station may send is unanswered.
RESET_201 = b'[2, "s1", "Reset", {"type": "Immediate"}]'
BOOT_201 = (
    b'[2,"b1","BootNotification",{"reason":"PowerUp",'
    b'"chargingStation":{"model":"M","vendorName":"V"}}]'
)


def _link(version: OcppVersion) -> Link:
    return Link(
        charge_point_id="CP-2X", connection_id="conn-1", gateway_id="gw-1", ocpp_version=version
    )


@pytest.mark.parametrize(
    ("reason", "code_16", "code_2x"),
    [
        ("not_json", "FormationViolation", "RpcFrameworkError"),
        ("bad_shape", "FormationViolation", "RpcFrameworkError"),
        ("unique_id_too_long", "FormationViolation", "RpcFrameworkError"),
        ("binary_frame", "FormationViolation", "RpcFrameworkError"),
        ("unknown_message_type", "FormationViolation", "MessageTypeNotSupported"),
        ("oversized", "FormationViolation", "FormatViolation"),
        ("schema_violation", "FormationViolation", "FormatViolation"),
        ("schema_violation", "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
        ("schema_violation", "OccurrenceConstraintViolation", "OccurrenceConstraintViolation"),
        ("schema_violation", "TypeConstraintViolation", "TypeConstraintViolation"),
        ("schema_violation", "PropertyConstraintViolation", "PropertyConstraintViolation"),
        ("unknown_action", "NotImplemented", "NotImplemented"),
        ("unknown_action", "NotSupported", "NotSupported"),
        ("call_outstanding", "ProtocolError", "ProtocolError"),
        ("internal_error", "InternalError", "InternalError"),
    ],
)
def test_each_refusal_is_named_in_each_versions_words(
    reason: RejectionReason, code_16: str, code_2x: str
) -> None:
    assert frames.rpc_code("1.6", reason, code_16) == code_16
    # 2.0.1 keeps 1.6's "Occurence" (the OCA's decision); 2.1 spells it right.
    assert frames.rpc_code("2.0.1", reason, code_16) == code_2x.replace("Occurr", "Occur")
    assert frames.rpc_code("2.1", reason, code_16) == code_2x


def test_2_1_reads_callresulterror_and_send() -> None:
    error = frames.parse(b'[5,"r1","FormatViolation","bad result",{"at":"$.x"}]', "2.1")
    assert error == CallResultError(
        "r1", "FormatViolation", "bad result", msgspec.Raw(b'{"at":"$.x"}')
    )
    send = frames.parse(b'[6,"s1","NotifyPeriodicEventStream",{"id":1}]', "2.1")
    assert send == Send("s1", "NotifyPeriodicEventStream", msgspec.Raw(b'{"id":1}'))


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("frame", [b'[5,"r1","E","d",{}]', b'[6,"s1","A",{}]'])
def test_types_5_and_6_are_unknown_before_2_1_and_answered(
    version: OcppVersion, frame: bytes
) -> None:
    parsed = frames.parse(frame, version)
    assert isinstance(parsed, Malformed)
    assert (parsed.reason, parsed.answerable) == ("unknown_message_type", True)
    expected = {"1.6": "FormationViolation", "2.0.1": "MessageTypeNotSupported"}[version]
    answer = json.loads(_refused(version, frame)[1] or b"null")
    assert answer[:3] == [4, json.loads(frame)[1], expected]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b'[6,"s1","NotifyPeriodicEventStream"]', "bad_shape"),
        (b'[6,"s1",7,{}]', "bad_shape"),
        (b'[6,"' + b"s" * 37 + b'","A",{}]', "unique_id_too_long"),
        (b'[6,"s1","A",{"x":"\\ud800"}]', "bad_shape"),
        (b'[5,"r1","E"]', "bad_shape"),
        (b'[5,"r1",1,"d",{}]', "bad_shape"),
        (b'[5, "r1", {', "not_json"),
    ],
)
def test_a_broken_send_or_callresulterror_is_recorded_never_answered(
    frame: bytes, reason: str
) -> None:
    rejected, reply = _refused("2.1", frame)
    assert reply is None
    assert rejected.reason == reason
    assert rejected.error_code in ("RpcFrameworkError", "FormatViolation")


def test_2_1_knows_types_up_to_6_only() -> None:
    rejected, reply = _refused("2.1", b'[7,"u1","Heartbeat",{}]')
    assert rejected.error_code == "MessageTypeNotSupported"
    assert json.loads(reply or b"null")[:3] == [4, "u1", "MessageTypeNotSupported"]
    assert "OCPP 2.1 has 2, 3, 4, 5 and 6" in rejected.error_description


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
def test_a_2x_call_the_hub_does_not_answer_is_answered_not_implemented(
    version: OcppVersion,
) -> None:
    rejected, reply = _refused(version, RESET_201)
    assert json.loads(reply or b"null")[:3] == [4, "s1", "NotImplemented"]
    assert (rejected.reason, rejected.action) == ("unknown_action", "Reset")
    assert f"OCPP {version} action 'Reset'" in rejected.error_description


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
def test_a_2x_frame_that_is_not_rpc_is_an_rpc_framework_error(version: OcppVersion) -> None:
    for frame, unique_id in [(b"not json", "-1"), (b'[2,"x1","Heartbeat"]', "x1")]:
        rejected, reply = _refused(version, frame)
        assert json.loads(reply or b"null")[:3] == [4, unique_id, "RpcFrameworkError"]
        assert rejected.error_code == "RpcFrameworkError"


def test_an_oversized_2x_call_is_a_format_violation() -> None:
    link, received = _link("2.0.1"), Received(BOOT_201, 1, 1)
    inbound = inspect("2.0.1", BOOT_201, max_frame_bytes=20)
    assert isinstance(inbound, Malformed)
    exchange = reject(link, inbound, received)
    assert json.loads(exchange.reply or b"null")[:3] == [4, "b1", "FormatViolation"]


def test_send_and_callresulterror_are_recorded_as_frames_without_an_answer() -> None:
    link = _link("2.1")
    send = Send("s1", "NotifyPeriodicEventStream", msgspec.Raw(b'{"id":1}'))
    exchange = unanswered(link, send, Received(b"", 5, 1))
    [event] = exchange.events
    assert exchange.reply is None
    assert isinstance(event, OcppFrame)
    assert (event.message_type, event.direction, event.action, bytes(event.payload)) == (
        "SEND",
        "in",
        "NotifyPeriodicEventStream",
        b'{"id":1}',
    )
    error = CallResultError("r1", "FormatViolation", "bad", msgspec.Raw(b"{}"))
    exchange = unanswered(link, error, Received(b"", 6, 2))
    [event] = exchange.events
    assert exchange.reply is None
    assert isinstance(event, OcppFrame)
    assert (event.message_type, event.unique_id, event.error_code) == (
        "CALLRESULTERROR",
        "r1",
        "FormatViolation",
    )


def _refused(version: OcppVersion, frame: bytes) -> tuple[FrameRejected, bytes | None]:
    inbound = inspect(version, frame, max_frame_bytes=LIMIT)
    assert isinstance(inbound, Malformed), inbound
    exchange = reject(_link(version), inbound, Received(frame, 1, 1))
    rejected = exchange.events[0]
    assert isinstance(rejected, FrameRejected)
    return rejected, exchange.reply
