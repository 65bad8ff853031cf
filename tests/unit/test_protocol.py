"""The gateway's pure core end to end on bytes: inspect, then answer or reject."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import msgspec
import pytest

from hub.config import MAX_EVENT_BYTES, GatewaySettings
from hub.gateway import ocpp16
from hub.gateway.frames import CallError, CallResult, Malformed
from hub.gateway.protocol import (
    REFUSED_RAW_BUDGET,
    Exchange,
    Inbound,
    Link,
    Received,
    ValidCall,
    answer,
    event_id,
    inspect,
    reject,
    unstorable,
)
from hub.gateway.server import HARD_FRAME_LIMIT
from hub.registry import Registry
from hub.subjects import subject_for
from schemas.events import FrameRejected, OcppFrame, encode_event
from schemas.ocpp import PayloadError, v16, validate_result

NOW = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)
RECEIVED_AT = 1_772_600_767_890
LIMIT = 65536

BOOT = b'[2,"boot-1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'


def _link(charge_point_id: str = "CP-1") -> Link:
    return Link(
        charge_point_id=charge_point_id,
        connection_id="conn-1",
        gateway_id="gw-1",
        ocpp_version="1.6",
    )


def _ctx(charge_point_id: str = "CP-1", **settings: object) -> ocpp16.Context:
    return ocpp16.Context(
        charge_point_id=charge_point_id,
        now=NOW,
        settings=GatewaySettings(**settings),  # type: ignore[arg-type]
        registry=Registry(),
    )


def _inspect(data: bytes, max_frame_bytes: int = LIMIT) -> Inbound:
    return inspect("1.6", data, max_frame_bytes=max_frame_bytes)


def _answer(
    data: bytes, charge_point_id: str = "CP-1", position: int = 1, connection: str = "conn-1"
) -> Exchange:
    valid = _inspect(data)
    assert isinstance(valid, ValidCall), valid
    link = msgspec.structs.replace(_link(charge_point_id), connection_id=connection)
    return answer(link, valid, Received(data, RECEIVED_AT, position), _ctx(charge_point_id))


def _reject(
    data: bytes, charge_point_id: str = "CP-1", position: int = 1, **kwargs: int
) -> Exchange:
    malformed = _inspect(data, **kwargs)
    assert isinstance(malformed, Malformed), malformed
    return reject(_link(charge_point_id), malformed, Received(data, RECEIVED_AT, position))


# -- valid calls ------------------------------------------------------------------------------


def test_valid_boot_notification_is_a_valid_call() -> None:
    inbound = _inspect(BOOT)
    assert isinstance(inbound, ValidCall)
    assert inbound.call.unique_id == "boot-1"
    assert inbound.call.action == "BootNotification"
    assert isinstance(inbound.request, v16.BootNotificationRequest)
    assert inbound.request.charge_point_vendor == "V"


def test_answer_records_the_call_and_its_result() -> None:
    exchange = _answer(BOOT)
    assert (exchange.action, exchange.unique_id, exchange.outcome) == (
        "BootNotification",
        "boot-1",
        "ok",
    )
    call, result = exchange.events
    assert isinstance(call, OcppFrame)
    assert isinstance(result, OcppFrame)
    assert (call.direction, call.message_type) == ("in", "CALL")
    assert (result.direction, result.message_type) == ("out", "CALLRESULT")
    for event in (call, result):
        assert event.unique_id == "boot-1"
        assert event.action == "BootNotification"
        assert event.charge_point_id == "CP-1"
        assert event.connection_id == "conn-1"
        assert event.gateway_id == "gw-1"
        assert event.ocpp_version == "1.6"
        assert event.received_at == RECEIVED_AT
    assert bytes(call.payload) == b'{"chargePointVendor":"V","chargePointModel":"M"}'
    assert call.id != result.id


def test_call_payload_is_stored_verbatim_not_re_encoded() -> None:
    payload = b'{ "chargePointModel" : "M\\u00e9",  "chargePointVendor":"V" }'
    data = b'[2, "b2", "BootNotification", ' + payload + b" ]"
    call = _answer(data).events[0]
    assert isinstance(call, OcppFrame)
    assert bytes(call.payload) == payload


def test_answer_reply_is_a_callresult_with_the_boot_fields() -> None:
    exchange = _answer(BOOT)
    assert exchange.reply is not None
    message_type, unique_id, payload = json.loads(exchange.reply)
    assert (message_type, unique_id) == (3, "boot-1")
    assert payload == {
        "status": "Accepted",
        "currentTime": "2026-03-04T05:06:07.890Z",
        "interval": 300,
    }
    result = exchange.events[1]
    assert isinstance(result, OcppFrame)
    assert json.loads(bytes(result.payload)) == payload
    parsed = validate_result("1.6", "BootNotification", bytes(result.payload))
    assert not isinstance(parsed, PayloadError), parsed


def test_heartbeat_round_trip() -> None:
    exchange = _answer(b'[2,"hb","Heartbeat",{}]')
    assert exchange.reply is not None
    assert json.loads(exchange.reply) == [3, "hb", {"currentTime": "2026-03-04T05:06:07.890Z"}]


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"chargePointVendor":"V"}', "OccurenceConstraintViolation"),
        (b'{"chargePointVendor":1,"chargePointModel":"M"}', "TypeConstraintViolation"),
        (
            b'{"chargePointVendor":"' + b"V" * 21 + b'","chargePointModel":"M"}',
            "PropertyConstraintViolation",
        ),
        (b'{"chargePointVendor":"V","chargePointModel":"M","colour":"red"}', "FormationViolation"),
    ],
    ids=["missing", "wrong-type", "too-long", "unknown-field"],
)
def test_boot_schema_violations(payload: bytes, code: str) -> None:
    data = b'[2,"sv-1","BootNotification",' + payload + b"]"
    inbound = _inspect(data)
    assert isinstance(inbound, Malformed)
    assert (inbound.reason, inbound.error_code) == ("schema_violation", code)
    assert (inbound.unique_id, inbound.action) == ("sv-1", "BootNotification")


def test_bad_enum_value_is_a_property_constraint_violation() -> None:
    data = (
        b'[2,"sv-2","StatusNotification",'
        b'{"connectorId":1,"errorCode":"Exploded","status":"Available"}]'
    )
    inbound = _inspect(data)
    assert isinstance(inbound, Malformed)
    assert (inbound.reason, inbound.error_code) == (
        "schema_violation",
        "PropertyConstraintViolation",
    )
    assert inbound.unique_id == "sv-2"


def test_schema_violation_is_answered_with_a_callerror_for_that_call() -> None:
    data = b'[2,"sv-3","BootNotification",{"chargePointVendor":"V"}]'
    exchange = _reject(data)
    assert exchange.reply is not None
    assert json.loads(exchange.reply)[:3] == [4, "sv-3", "OccurenceConstraintViolation"]


def test_unknown_action_is_not_implemented() -> None:
    inbound = _inspect(b'[2,"u1","MakeCoffee",{}]')
    assert isinstance(inbound, Malformed)
    assert (inbound.reason, inbound.error_code) == ("unknown_action", "NotImplemented")
    assert (inbound.unique_id, inbound.action) == ("u1", "MakeCoffee")


@pytest.mark.parametrize("action", ["Reset", "RemoteStartTransaction", "ChangeConfiguration"])
def test_central_system_action_sent_by_a_charger_is_not_supported(action: str) -> None:
    inbound = _inspect(f'[2,"u2","{action}",{{}}]'.encode())
    assert isinstance(inbound, Malformed)
    assert (inbound.reason, inbound.error_code) == ("unknown_action", "NotSupported")
    assert (inbound.unique_id, inbound.action) == ("u2", action)


def test_oversized_call() -> None:
    inbound = _inspect(BOOT, max_frame_bytes=len(BOOT) - 1)
    assert isinstance(inbound, Malformed)
    assert (inbound.reason, inbound.error_code) == ("oversized", "FormationViolation")
    assert (inbound.unique_id, inbound.action) == ("boot-1", "BootNotification")
    assert isinstance(_inspect(BOOT, max_frame_bytes=len(BOOT)), ValidCall)


def test_oversized_garbage_has_no_unique_id() -> None:
    inbound = _inspect(b"x" * 100, max_frame_bytes=10)
    assert isinstance(inbound, Malformed)
    assert (inbound.reason, inbound.unique_id) == ("oversized", "-1")


@pytest.mark.parametrize(
    "data",
    [b'[3,"r1",{"data":"' + b"x" * 64 + b'"}]', b'[4,"r1","GenericError","' + b"x" * 64 + b'",{}]'],
)
def test_oversized_result_is_not_answered(data: bytes) -> None:
    exchange = _reject(data, max_frame_bytes=32)
    assert exchange.reply is None


def test_results_pass_through_inspect() -> None:
    assert isinstance(_inspect(b'[3,"r1",{}]'), CallResult)
    assert isinstance(_inspect(b'[4,"r1","GenericError","",{}]'), CallError)


def test_reject_records_the_raw_frame_and_answers_with_a_callerror() -> None:
    data = b'[2,"u1","MakeCoffee",{"sugar":  2}]'
    exchange = _reject(data)
    rejected, error = exchange.events
    assert isinstance(rejected, FrameRejected)
    assert rejected.raw == data.decode()
    assert (rejected.reason, rejected.error_code) == ("unknown_action", "NotImplemented")
    assert (rejected.unique_id, rejected.action) == ("u1", "MakeCoffee")
    assert rejected.charge_point_id == "CP-1"
    assert rejected.received_at == RECEIVED_AT
    assert isinstance(error, OcppFrame)
    assert (error.direction, error.message_type) == ("out", "CALLERROR")
    assert (error.unique_id, error.action, error.error_code) == (
        "u1",
        "MakeCoffee",
        "NotImplemented",
    )
    assert exchange.reply is not None
    reply = json.loads(exchange.reply)
    assert reply[:3] == [4, "u1", "NotImplemented"]
    assert reply[3] == error.error_description
    assert reply[4] == {}
    assert (exchange.unique_id, exchange.outcome) == ("u1", "NotImplemented")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{{{", "FormationViolation"),
        (b'[9,"x"]', "FormationViolation"),
        (b'[2,"u2","Reset",{"type":"Soft"}]', "NotSupported"),
    ],
)
def test_reject_reply_carries_the_code(data: bytes, code: str) -> None:
    exchange = _reject(data)
    assert exchange.reply is not None
    reply = json.loads(exchange.reply)
    assert reply[0] == 4
    assert reply[2] == code
    assert len(reply) == 5


def test_raw_text_survives_invalid_utf8() -> None:
    data = b'[2,"1","Heartbeat",{"x":"\xff"}]'
    exchange = _reject(data)
    rejected = exchange.events[0]
    assert isinstance(rejected, FrameRejected)
    assert rejected.raw == '[2,"1","Heartbeat",{"x":"\\xff"}]'


def test_unexpected_result_is_recorded_but_not_answered() -> None:
    data = b'[3,"nobody-asked",{}]'
    unexpected = Malformed(
        "unexpected_result",
        "ProtocolError",
        "no CALL outstanding",
        unique_id="nobody-asked",
        answerable=False,
    )
    exchange = reject(_link(), unexpected, Received(data, RECEIVED_AT, 1))
    assert exchange.reply is None
    (rejected,) = exchange.events
    assert isinstance(rejected, FrameRejected)
    assert rejected.reason == "unexpected_result"
    assert rejected.raw == data.decode()
    assert rejected.unique_id == "nobody-asked"


# -- event ids --------------------------------------------------------------------------------


def test_the_same_receipt_stored_again_is_the_same_event() -> None:
    # The hub publishing a frame's events again (after a NATS reconnect) stores them once.
    first, second = _answer(BOOT), _answer(BOOT)
    assert [e.id for e in first.events] == [e.id for e in second.events]
    assert [e.id for e in _reject(b"{{").events] == [e.id for e in _reject(b"{{").events]


def test_a_frame_sent_again_is_another_event() -> None:
    # A retry, or a repeat byte for byte: it arrived again, so the stream records it again.
    first, again = _answer(BOOT, position=1), _answer(BOOT, position=2)
    assert not {e.id for e in first.events} & {e.id for e in again.events}
    assert _reject(b"{{", position=1).events[0].id != _reject(b"{{", position=2).events[0].id


def test_a_reboots_byte_identical_frame_is_another_event() -> None:
    # MicroOcpp reuses message ids after a reboot: the same bytes, first on a new connection.
    before, after = _answer(BOOT, connection="conn-1"), _answer(BOOT, connection="conn-2")
    assert not {e.id for e in before.events} & {e.id for e in after.events}


def test_same_frame_from_another_charger_is_another_event() -> None:
    mine, theirs = _answer(BOOT, "CP-1"), _answer(BOOT, "CP-2")
    assert not {e.id for e in mine.events} & {e.id for e in theirs.events}
    assert _reject(b"{{", "CP-1").events[0].id != _reject(b"{{", "CP-2").events[0].id


def test_all_ids_of_one_exchange_differ() -> None:
    for exchange in (_answer(BOOT), _reject(b"{{"), _reject(b'[2,"u","Reset",{}]')):
        ids = [e.id for e in exchange.events]
        assert len(set(ids)) == len(ids)


def test_garbage_frames_answered_with_id_minus_one_stay_distinct() -> None:
    # Regression guard: both replies are [4,"-1","FormationViolation",...], but the two
    # out-events must not collapse into one under JetStream's duplicate detection.
    first = _reject(b'{"not": "an array"}', position=1)
    second = _reject(b'"neither"', position=2)
    assert first.unique_id == second.unique_id == "-1"
    assert first.reply == second.reply
    assert first.events[1].id != second.events[1].id
    assert first.events[0].id != second.events[0].id


def test_event_ids_cannot_collide_by_concatenation() -> None:
    one = event_id(msgspec.structs.replace(_link("CP-1"), connection_id="c"), "in", "12")
    other = event_id(msgspec.structs.replace(_link("CP-1c"), connection_id=""), "in", "12")
    assert one != other
    assert (
        event_id(_link(), "in", "12")
        != event_id(_link(), "in", "1")
        != event_id(_link(), "out", "1")
    )


def test_refused_frame_and_its_accepted_retry_are_different_events() -> None:
    outstanding = Malformed(
        "call_outstanding", "ProtocolError", "busy", unique_id="boot-1", action="BootNotification"
    )
    refused = reject(_link(), outstanding, Received(BOOT, RECEIVED_AT, 1)).events[0]
    accepted = _answer(BOOT, position=2).events[0]
    assert refused.id != accepted.id


# -- poison frames (issue #16): every event stays far inside NATS's limits --------------------

_POISON = [
    b'[2,"p1","' + b"A" * 4100 + b'",{}]',
    b'[2,"p2","' + "充".encode() * 460 + b'",{}]',
    b'[2,"p3","' + b"B" * 250_000 + b'",{}]',
    b"\x01" * 250_000,
    bytes(range(0x80, 0xC0)) * 4_000,
    # The largest frame the WebSocket layer lets through, 6 bytes each in JSON.
    b"\x01" * HARD_FRAME_LIMIT,
]


@pytest.mark.parametrize(
    "data", _POISON, ids=["ascii", "cjk", "huge-action", "control", "binary", "hard-limit"]
)
def test_a_poison_frames_events_fit_nats_and_its_callerror_stays_short(data: bytes) -> None:
    exchange = _reject(data, max_frame_bytes=256 * 1024)
    for event in exchange.events:
        # Room to spare for the headers under what the embedded nats-server accepts.
        assert len(encode_event(event)) < MAX_EVENT_BYTES - 1024
        assert len(subject_for(event)) < 256
    assert exchange.reply is None or len(exchange.reply) < 1024


def test_a_cut_frame_is_marked_with_its_size_and_digest() -> None:
    data = bytes(range(0x80, 0xC0)) * 12_000  # 5 bytes each in JSON: past the budget
    rejected = _reject(data).events[0]
    assert isinstance(rejected, FrameRejected)
    assert rejected.raw_truncated
    assert (rejected.raw_size, rejected.raw_sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert rejected.raw.startswith("\\x80\\x81")


def test_a_whole_frame_is_not_marked() -> None:
    rejected = _reject(b"not json").events[0]
    assert isinstance(rejected, FrameRejected)
    assert (rejected.raw, rejected.raw_truncated, rejected.raw_size) == ("not json", False, 0)


def test_unstorable_call_is_answered_with_internal_error_and_recorded_cut_short() -> None:
    data = b'[2,"big-1","DataTransfer",{"vendorId":"v","data":"' + b"x" * 100_000 + b'"}]'
    valid = _inspect(data, max_frame_bytes=256 * 1024)
    exchange = unstorable(_link(), valid, Received(data, RECEIVED_AT, 1), "too large")
    rejected, error = exchange.events
    assert isinstance(rejected, FrameRejected) and isinstance(error, OcppFrame)
    assert (rejected.reason, rejected.error_code, rejected.raw_truncated) == (
        "internal_error",
        "InternalError",
        True,
    )
    assert len(rejected.raw) < REFUSED_RAW_BUDGET
    assert exchange.reply is not None
    assert json.loads(exchange.reply)[:3] == [4, "big-1", "InternalError"]


def test_unstorable_result_is_recorded_but_not_answered() -> None:
    data = b'[3,"r-1",{}]'
    result = _inspect(data)
    exchange = unstorable(_link(), result, Received(data, RECEIVED_AT, 1), "too large")
    assert exchange.reply is None
    assert [type(e) for e in exchange.events] == [FrameRejected]
