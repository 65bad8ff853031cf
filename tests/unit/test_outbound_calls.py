"""CALLs the hub sends: how they are recorded, and how the charger's answers are recorded."""

from __future__ import annotations

import json

import msgspec
import pytest

from hub.gateway import frames
from hub.gateway.frames import CallError, CallResult
from hub.gateway.protocol import Link, Received, outbound_call, record_answer
from schemas.events import FrameRejected, OcppFrame

LINK = Link(charge_point_id="CP-1", connection_id="c1", gateway_id="gw-1", ocpp_version="1.6")
AT = 1_772_600_767_890


def _answer(text: str) -> CallResult | CallError:
    parsed = frames.parse(text.encode())
    assert isinstance(parsed, CallResult | CallError), parsed
    return parsed


def test_outbound_call_is_recorded_exactly_as_sent() -> None:
    event, frame = outbound_call(LINK, "cmd-1", "Reset", msgspec.Raw(b'{"type":"Soft"}'), at=AT)
    assert json.loads(frame) == [2, "cmd-1", "Reset", {"type": "Soft"}]
    assert (event.direction, event.message_type, event.unique_id, event.action) == (
        "out",
        "CALL",
        "cmd-1",
        "Reset",
    )
    assert bytes(event.payload) == b'{"type":"Soft"}'


def test_a_valid_result_is_recorded_as_answered() -> None:
    raw = '[3,"cmd-1",{"status":"Accepted"}]'
    exchange, outcome = record_answer(LINK, "Reset", _answer(raw), Received(raw.encode(), AT, 1))
    assert outcome.status == "answered" and bytes(outcome.payload) == b'{"status":"Accepted"}'
    [event] = exchange.events
    assert isinstance(event, OcppFrame)
    assert (event.direction, event.message_type, event.action) == ("in", "CALLRESULT", "Reset")
    assert exchange.reply is None


def test_a_callerror_is_recorded_with_its_code() -> None:
    raw = '[4,"cmd-1","NotSupported","no can do",{"hint":1}]'
    exchange, outcome = record_answer(
        LINK, "UnlockConnector", _answer(raw), Received(raw.encode(), AT, 1)
    )
    assert (outcome.status, outcome.error_code, outcome.error_description) == (
        "callerror",
        "NotSupported",
        "no can do",
    )
    [event] = exchange.events
    assert isinstance(event, OcppFrame)
    assert (event.message_type, event.error_code, bytes(event.payload)) == (
        "CALLERROR",
        "NotSupported",
        b'{"hint":1}',
    )


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('[3,"cmd-1",{"status":"Maybe"}]', "PropertyConstraintViolation"),
        ('[3,"cmd-1",{}]', "OccurenceConstraintViolation"),
        ('[3,"cmd-1",{"status":"Accepted","extra":true}]', "FormationViolation"),
    ],
)
def test_a_schema_breaking_result_is_recorded_as_rejected_and_never_answered(
    raw: str, code: str
) -> None:
    exchange, outcome = record_answer(LINK, "Reset", _answer(raw), Received(raw.encode(), AT, 1))
    assert (outcome.status, outcome.error_code) == ("invalid_answer", code)
    [event] = exchange.events
    assert isinstance(event, FrameRejected)
    assert (event.reason, event.unique_id, event.action, event.raw) == (
        "schema_violation",
        "cmd-1",
        "Reset",
        raw,
    )
    assert exchange.reply is None
