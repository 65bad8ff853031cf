"""What a CALL gets while another is held, decided without sockets: retries are answered once
under the newest uniqueId, and a hub that was late queues the charger's next CALL."""

from __future__ import annotations

import json

import pytest

from hub.gateway.frames import Malformed
from hub.gateway.protocol import (
    Admission,
    Exchange,
    HeldCalls,
    Link,
    Received,
    ValidCall,
    answer,
    inspect,
    reject,
    repeat,
)
from schemas.events import OcppFrame
from tests.unit.test_protocol import RECEIVED_AT, _ctx

LATE_AFTER_MS = 1000.0
LINK = Link(charge_point_id="CP-1", connection_id="conn-1", gateway_id="gw-1", ocpp_version="1.6")


def _meter(unique_id: str, value: int = 100) -> bytes:
    return (
        f'[2,"{unique_id}","MeterValues",{{"connectorId":1,"transactionId":7,"meterValue":'
        f'[{{"timestamp":"2026-11-22T10:00:00Z","sampledValue":[{{"value":"{value}"}}]}}]}}]'
    ).encode()


def _status(unique_id: str, status: str = "Finishing") -> bytes:
    return (
        f'[2,"{unique_id}","StatusNotification",'
        f'{{"connectorId":1,"errorCode":"NoError","status":"{status}"}}]'
    ).encode()


class Charger:
    """One connection's frames through HeldCalls in the order the gateway's reader and
    processor see them, on a clock in ms that only moves when told; ``sent`` is what went
    out on the wire."""

    def __init__(self) -> None:
        self.held = HeldCalls(late_after_ms=LATE_AFTER_MS)
        self.queue: list[tuple[Received, Admission]] = []
        self.sent: list[tuple[int, str]] = []
        self.stored: list[OcppFrame] = []
        self.now = 10_000.0

    def arrive(self, data: bytes, *, after: float = 0.0, stalled: bool = False) -> Admission:
        self.now += after
        inbound = inspect("1.6", data, max_frame_bytes=65536)
        assert isinstance(inbound, ValidCall | Malformed)
        admission = self.held.admit(inbound, now_ms=self.now, stalled=stalled)
        self.queue.append(
            (Received(data, RECEIVED_AT, len(self.stored) + len(self.queue) + 1), admission)
        )
        return admission

    def process(self, *, after: float = 0.0) -> None:
        """The processor takes the oldest queued frame, stores it and sends what is due."""
        self.now += after
        received, admission = self.queue.pop(0)
        exchange = self._exchange(received, admission)
        self.stored.extend(e for e in exchange.events if isinstance(e, OcppFrame))
        reply = self.held.reply(admission, exchange)
        if reply is not None:
            self.sent.append(_head(reply))
        self.held.done(admission, now_ms=self.now)

    def process_all(self) -> None:
        while self.queue:
            self.process()

    @staticmethod
    def _exchange(received: Received, admission: Admission) -> Exchange:
        inbound = admission.inbound
        if admission.nth > 1:
            assert isinstance(inbound, ValidCall)
            found = HeldCalls.answer_for(admission)
            return repeat(LINK, inbound, received, answer=found)
        if isinstance(inbound, ValidCall):
            return answer(LINK, inbound, received, _ctx())
        assert isinstance(inbound, Malformed)
        return reject(LINK, inbound, received)


def _head(frame: bytes) -> tuple[int, str]:
    message_type, unique_id = json.loads(frame)[:2]
    return message_type, unique_id


# -- retries ----------------------------------------------------------------------------------


def test_byte_identical_retry_is_recorded_and_answered_once() -> None:
    charger = Charger()
    charger.arrive(_meter("mv"))
    charger.arrive(_meter("mv"), after=1500, stalled=True)
    charger.arrive(_meter("mv"), after=1500, stalled=True)
    charger.process_all()
    assert charger.sent == [(3, "mv")]
    calls = [e for e in charger.stored if e.message_type == "CALL"]
    # Three frames arrived, so three events, each under its own id.
    assert [e.unique_id for e in calls] == ["mv", "mv", "mv"]
    assert len({e.id for e in calls}) == 3
    assert [e.unique_id for e in charger.stored if e.message_type == "CALLRESULT"] == ["mv"]


def test_retry_under_a_new_id_is_answered_once_under_the_newest_id() -> None:
    charger = Charger()
    charger.arrive(_meter("mv-1"))
    charger.arrive(_meter("mv-2"), after=1500, stalled=True)
    charger.arrive(_meter("mv-3"), after=1500, stalled=True)
    charger.process_all()
    assert charger.sent == [(3, "mv-3")]
    results = [e for e in charger.stored if e.message_type == "CALLRESULT"]
    # mv-1's answer was stored before the retries superseded it; mv-3 gets the same payload.
    assert [e.unique_id for e in results] == ["mv-1", "mv-3"]
    assert bytes(results[0].payload) == bytes(results[1].payload)


def test_start_transaction_retried_under_a_new_id_keeps_its_answer() -> None:
    start = (
        '[2,"{id}","StartTransaction",{{"connectorId":1,"idTag":"T","meterStart":0,'
        '"timestamp":"2026-11-22T10:00:00Z"}}]'
    )
    charger = Charger()
    charger.arrive(start.format(id="s-1").encode())
    charger.arrive(start.format(id="s-2").encode(), after=2000)
    charger.process_all()
    assert charger.sent == [(3, "s-2")]
    results = [e for e in charger.stored if e.message_type == "CALLRESULT"]
    assert len({bytes(e.payload) for e in results}) == 1  # the handler ran once


def test_repeat_after_the_answer_went_out_is_a_new_call() -> None:
    charger = Charger()
    charger.arrive(_meter("mv"))
    charger.process()  # stored and answered before the retry arrived
    charger.arrive(_meter("mv"), after=1500)
    charger.process()
    # Nothing held any more: a repeat after the answer is a new CALL (a race on the wire).
    assert charger.sent == [(3, "mv"), (3, "mv")]


def test_same_id_repeat_on_time_is_the_same_call_not_a_second_one() -> None:
    charger = Charger()
    charger.arrive(_status("st"))
    repeated = charger.arrive(_status("st"), after=10)
    assert repeated.nth == 2
    charger.process_all()
    # A CALLERROR under "st" would be a second answer to the one CALL.
    assert charger.sent == [(3, "st")]


def test_retry_of_an_answer_being_sent_is_recorded_without_an_answer() -> None:
    charger = Charger()
    first = charger.arrive(_meter("mv"))
    received, _ = charger.queue.pop(0)
    inbound = first.inbound
    assert isinstance(inbound, ValidCall)
    reply = charger.held.reply(first, answer(LINK, inbound, received, _ctx()))
    assert reply is not None
    # The answer is on its way out when the same frame arrives again.
    late = charger.arrive(_meter("mv"), after=2000)
    charger.held.done(first, now_ms=charger.now)
    assert late.nth == 2
    charger.process_all()
    assert charger.sent == []


# -- a second CALL ----------------------------------------------------------------------------


def test_second_call_on_time_is_refused() -> None:
    charger = Charger()
    charger.arrive(_meter("mv"))
    refused = charger.arrive(_status("st"), after=10)
    assert isinstance(refused.inbound, Malformed)
    assert (refused.inbound.error_code, refused.inbound.unique_id) == ("ProtocolError", "st")
    assert refused.held is None


def test_same_payload_under_a_new_id_on_time_is_refused() -> None:
    charger = Charger()
    charger.arrive(b'[2,"first","Heartbeat",{}]')
    refused = charger.arrive(b'[2,"second","Heartbeat",{}]', after=10)
    assert isinstance(refused.inbound, Malformed)
    assert refused.inbound.error_code == "ProtocolError"


@pytest.mark.parametrize(
    ("after", "stalled"), [(LATE_AFTER_MS, False), (10.0, True)], ids=["waited", "stalled"]
)
def test_next_call_after_the_hub_was_late_is_queued_and_answered_in_order(
    after: float, stalled: bool
) -> None:
    charger = Charger()
    charger.arrive(_status("st-1", "Charging"))
    queued = charger.arrive(_meter("mv"), after=after, stalled=stalled)
    assert queued.held is not None and queued.nth == 1
    charger.process_all()
    assert charger.sent == [(3, "st-1"), (3, "mv")]


STOP = (
    b'[2,"stop","StopTransaction",'
    b'{"meterStop":900,"transactionId":7,"timestamp":"2026-11-22T11:00:00Z"}]'
)


def test_charger_put_behind_by_a_late_answer_is_not_refused_until_it_falls_quiet() -> None:
    """A charger that takes any answer as its own sends its next CALL early after a late
    answer: st-1's answer, late, is taken for mv's, so stop comes once both are answered,
    and mv's answer, taken for stop's, brings st-2 while stop is still held."""
    charger = Charger()
    charger.arrive(_status("st-1", "Charging"))
    charger.arrive(_meter("mv"), after=1500, stalled=True)
    charger.process(after=1500)
    charger.process()
    assert charger.arrive(STOP, after=5).held is not None
    assert charger.arrive(_status("st-2"), after=5).held is not None
    charger.process_all()
    assert charger.sent == [(3, "st-1"), (3, "mv"), (3, "stop"), (3, "st-2")]
    # Quiet for late_after: the charger has caught up, and the rule is strict again.
    charger.arrive(_status("st-3"), after=LATE_AFTER_MS)
    refused = charger.arrive(_meter("mv-2"), after=1)
    assert isinstance(refused.inbound, Malformed) and refused.held is None


def test_one_late_answer_alone_makes_the_hub_late() -> None:
    """No second CALL came during the stall: the charger gave up on st-1 and sent mv only
    after it, so st-1's late answer is taken for mv's and stop comes while mv is held."""
    charger = Charger()
    charger.arrive(_status("st-1", "Charging"))
    charger.process(after=3000)
    charger.arrive(_meter("mv"), after=5)
    queued = charger.arrive(STOP, after=5)
    assert queued.held is not None
    charger.process_all()
    assert charger.sent == [(3, "st-1"), (3, "mv"), (3, "stop")]


def test_refused_frame_is_never_taken_for_a_retry() -> None:
    charger = Charger()
    bad = b'[2,"bad","StatusNotification",{"connectorId":1}]'
    first = charger.arrive(bad)
    assert isinstance(first.inbound, Malformed)
    again = charger.arrive(bad, after=2000, stalled=True)
    assert again.nth == 1  # answered with its own CALLERROR, in order
    charger.process_all()
    assert charger.sent == [(4, "bad"), (4, "bad")]
