"""Fuzzing the gateway's pure core (frames.py, protocol.py) with generated frames.

For every frame of every class in bench/fuzz_frames.py: the core never raises; a CALL gets a
CALLRESULT or a CALLERROR with its own unique id (``-1`` only when the id cannot be read);
a CALLRESULT or CALLERROR is never answered; the frame is recorded once; and every event
the exchange produces can be published (it encodes, fits a NATS message, and its subject
fits a NATS protocol line).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Final

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_frames import CENTRAL_ACTIONS, TEXT_MUTATIONS, FuzzFrame, check_answer
from hub.config import MAX_EVENT_BYTES, GatewaySettings
from hub.gateway import ocpp16
from hub.gateway.frames import CallError, CallResult, CallResultError, Malformed, Send
from hub.gateway.protocol import (
    Exchange,
    Link,
    Received,
    ValidCall,
    answer,
    inspect,
    record_answer,
    reject,
    unanswered,
)
from hub.registry import Registry
from hub.subjects import subject_for
from schemas.events import Event, FrameRejected, OcppFrame, OcppVersion, encode_event
from schemas.ocpp import PayloadError, validate_result
from schemas.ocpp.errors import CALLERROR_CODES
from tests.fuzz.strategies import frames, skip_unless_enabled

LIMIT: Final = GatewaySettings().max_frame_bytes
LINK: Final = Link(
    charge_point_id="CP-FUZZ", connection_id="conn-1", gateway_id="gw-1", ocpp_version="1.6"
)
AT: Final = 1_772_600_767_890
# What the hub's nats-server accepts in a message (its max_payload, 4 MiB) and nats-server's
# default protocol line such as `HPUB <subject> <reply inbox> <header bytes> <total bytes>`.
NATS_MAX_PAYLOAD: Final = MAX_EVENT_BYTES
NATS_MAX_CONTROL_LINE: Final = 4096
# What a publish adds besides the subject: the reply inbox, sizes, the Nats-Msg-Id header.
PUBLISH_OVERHEAD: Final = 256


def exchange(frame: FuzzFrame) -> Exchange:
    """One inbound frame through the pure core, as the connection's processor drives it."""
    inbound = inspect("1.6", frame.data, max_frame_bytes=LIMIT)
    if isinstance(inbound, ValidCall):
        ctx = ocpp16.Context(
            charge_point_id=LINK.charge_point_id,
            now=datetime.now(UTC),
            settings=GatewaySettings(),
            registry=Registry(),
            transaction_id=1,
        )
        return answer(LINK, inbound, Received(frame.data, AT, 1), ctx)
    if isinstance(inbound, Malformed):
        return reject(LINK, inbound, Received(frame.data, AT, 1))
    assert isinstance(inbound, CallResult | CallError)
    # A result the core gets to record is one the hub awaited; pick any of its commands.
    action = CENTRAL_ACTIONS[len(frame.data) % 4]
    recorded, _ = record_answer(LINK, action, inbound, Received(frame.data, AT, 1))
    return recorded


def publishable(event: Event) -> str | None:
    subject = subject_for(event)
    tokens = subject.split(".")
    if any(not token or any(c in token for c in " \t\r\n*>") for token in tokens):
        return f"subject {subject[:200]!r} is not a valid NATS subject"
    if len(subject.encode()) > NATS_MAX_CONTROL_LINE - PUBLISH_OVERHEAD:
        return f"subject of {len(subject)} characters does not fit a NATS protocol line"
    size = len(encode_event(event))
    if size > NATS_MAX_PAYLOAD - PUBLISH_OVERHEAD:
        return f"event of {size} bytes does not fit a NATS message"
    return None


def check(frame: FuzzFrame) -> None:
    result = exchange(frame)
    problem = check_answer(frame, result.reply, LIMIT)
    assert problem is None, problem
    inbound = [
        e
        for e in result.events
        if isinstance(e, FrameRejected) or (isinstance(e, OcppFrame) and e.direction == "in")
    ]
    assert len(inbound) == 1, f"the frame is recorded {len(inbound)} times"
    for event in result.events:
        problem = publishable(event)
        assert problem is None, problem
    if result.reply is not None:
        sent = [e for e in result.events if isinstance(e, OcppFrame) and e.direction == "out"]
        kind = {3: "CALLRESULT", 4: "CALLERROR"}[json.loads(result.reply)[0]]
        assert [e.message_type for e in sent] == [kind], "the answer is not recorded"


@pytest.mark.parametrize("mutation", TEXT_MUTATIONS)
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_the_pure_core_answers_every_frame_as_documented(
    mutation: str, data: st.DataObject
) -> None:
    skip_unless_enabled(mutation)
    check(data.draw(frames(mutation), label="frame"))


_UNANSWERED_IN_2_1: Final = re.compile(rb"\s*\[\s*[56]\s*[,\]]")


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
@pytest.mark.parametrize("mutation", TEXT_MUTATIONS)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_a_2x_connection_answers_every_frame_in_its_own_codes(
    version: OcppVersion, mutation: str, data: st.DataObject
) -> None:
    """Every 1.6 bad-input class over 2.0.1 and 2.1: no 1.6 spelling ever reaches a 2.x
    charger, a CALL's answer carries its own id, and results (in 2.1, types 5 and 6 too) are
    recorded once and never answered."""
    skip_unless_enabled(mutation)
    frame = data.draw(frames(mutation), label="frame")
    link = msgspec.structs.replace(LINK, ocpp_version=version)
    received = Received(frame.data, AT, 1)
    inbound = inspect(version, frame.data, max_frame_bytes=LIMIT)
    if isinstance(inbound, ValidCall):
        # A 2.x CALL the hub answers: a CALLRESULT with its own id, valid under its schema.
        ctx = ocpp16.Context(
            charge_point_id=LINK.charge_point_id,
            now=datetime.now(UTC),
            settings=GatewaySettings(),
            registry=Registry(),
        )
        result = answer(link, inbound, received, ctx)
        assert result.reply is not None
        kind, unique_id, payload = json.loads(result.reply)
        assert kind == 3 and unique_id in frame.ids
        assert not isinstance(
            validate_result(version, inbound.call.action, json.dumps(payload)), PayloadError
        )
        return
    if isinstance(inbound, Malformed):
        result = reject(link, inbound, received)
    elif isinstance(inbound, Send | CallResultError):
        result = unanswered(link, inbound, received)
    else:
        result, _ = record_answer(link, CENTRAL_ACTIONS[0], inbound, received)
    silent = frame.kind == "result" or (
        version == "2.1" and _UNANSWERED_IN_2_1.match(frame.data) is not None
    )
    if silent:
        assert result.reply is None, result.reply
    else:
        assert result.reply is not None
        kind, unique_id, code = json.loads(result.reply)[:3]
        assert kind == 4 and code in CALLERROR_CODES[version], result.reply
        assert unique_id in frame.ids
    recorded = [
        e
        for e in result.events
        if isinstance(e, FrameRejected) or (isinstance(e, OcppFrame) and e.direction == "in")
    ]
    assert len(recorded) == 1
    for event in result.events:
        assert publishable(event) is None
        if isinstance(event, FrameRejected) or (
            isinstance(event, OcppFrame) and event.direction == "out" and event.error_code
        ):
            assert event.error_code in CALLERROR_CODES[version], event.error_code
