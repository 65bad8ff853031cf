"""Fuzzing the UI fan-out's WebSocket (`/ws`) of a real ``hub up`` with generated client messages.

A UI client sends a generated sequence of messages (docs/ui-messages.md: subscribe, resume,
unsubscribe, garbage). After each one it subscribes to a fresh charger id, a barrier: what
the server answers before that barrier's snapshot is its answer to the message. Properties:
garbage gets an ``error`` naming the field and the connection stays up; a valid subscribe
gets its snapshots and no error; a resume past the end of the stream is not silent; a message
over 4096 bytes closes with 1009, as documented; the server never crashes; and afterwards the
client receives exactly the live messages its subscriptions call for, while another UI client
keeps receiving.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from bench.fuzz_frames import INVALID_UTF8, LONE_SURROGATES
from tests.fuzz.conftest import RunningHub, token

CHARGER: Final = "FZ-UI-CP"
MAX_CLIENT_MESSAGE: Final = 4096  # docs/ui-messages.md "Under load"
WITHIN_S: Final = 10.0
BEYOND_THE_END: Final = 10**12  # no test stream gets anywhere near this sequence
# Resumes within the stream: the `ui_hub` fixture takes the stream past the last of them first,
# or a resume there would be beyond the end.
RESUMES: Final = (-1, 0, 1, 5)
ANSWERS: Final = frozenset({"snapshot", "error"})


@dataclass(frozen=True)
class Message:
    """A client message and what the server owes it."""

    data: bytes | str  # bytes go out as a binary WebSocket message
    expect: str  # "subscribe", "unsubscribe", "resume", "beyond_end", "bad", "closes"
    names: str = ""  # what a bad message's error must mention
    chargers: tuple[str, ...] = ()

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 200 else self.data[:200]
        return f"Message({shown!r} ({len(self.data)}), {self.expect}, {self.names!r})"


charger_ids = st.sampled_from([CHARGER, "*", "FZ-UNKNOWN", "ü-ü", "x" * 48]) | st.text(
    st.characters(codec="utf-8"), min_size=1, max_size=20
)


@st.composite
def subscribe(draw: st.DrawFn) -> Message:
    chargers = tuple(draw(st.lists(charger_ids, min_size=1, max_size=3)))
    op = draw(st.sampled_from(["subscribe", "unsubscribe"]))
    if op == "unsubscribe":
        return Message(json.dumps({"op": op, "chargers": chargers}), "unsubscribe", "", chargers)
    # Any integer is a sequence, even one beyond 64 bits: beyond the end, and answered so.
    since = draw(st.sampled_from([None, *RESUMES, BEYOND_THE_END, 2**53, 10**23]))
    body: dict[str, Any] = {"op": op, "chargers": chargers}
    if since is not None:
        body["since"] = since
    expect = "subscribe" if since is None else "beyond_end" if since > 10**9 else "resume"
    return Message(json.dumps(body), expect, "", chargers)


# Bodies msgspec refuses, and the field the error must name ("" when there is no field).
WRONG: Final[tuple[tuple[str, str], ...]] = (
    ('{"op":"subscribe"}', "chargers"),
    ('{"op":"subscribe","chargers":"CP-1"}', "chargers"),
    ('{"op":"subscribe","chargers":[1]}', "chargers"),
    ('{"op":"subscribe","chargers":["a"],"since":1.5}', "since"),
    ('{"op":"subscribe","chargers":["a"],"since":"5"}', "since"),
    ('{"op":"subscribe","chargers":["a"],"since":1e400}', "since"),
    ('{"op":"dance","chargers":["a"]}', "op"),
    ('{"chargers":["a"]}', "op"),
    ('{"op":7,"chargers":["a"]}', "op"),
    ('{"op":"subscribe","chargers":["a"],"extra":1}', "extra"),
    ("[]", ""),
    ("null", ""),
    ("not json", ""),
    ("", ""),
    ('{"op":"subscribe","chargers":' + "[" * 2000 + "]" * 2000 + "}", ""),
)


@st.composite
def bad(draw: st.DrawFn) -> Message:
    shape = draw(st.sampled_from(["wrong", "binary", "surrogate", "text"]))
    if shape == "wrong":
        data, names = draw(st.sampled_from(WRONG))
        return Message(data, "bad", names)
    if shape == "binary":
        return Message(draw(st.binary(max_size=64)), "bad")
    if shape == "surrogate":
        raw = draw(st.sampled_from(LONE_SURROGATES)).decode()
        return Message('{"op":"subscribe","chargers":[' + raw + "]}", "bad")
    return Message(draw(st.text(max_size=50)).replace("{", ""), "bad")


@st.composite
def closing(draw: st.DrawFn) -> Message:
    if draw(st.booleans()):
        size = draw(st.integers(MAX_CLIENT_MESSAGE + 1, 3 * MAX_CLIENT_MESSAGE))
        return Message('{"op":"subscribe","chargers":["' + "x" * size + '"]}', "closes")
    # Not UTF-8 in a text message: RFC 6455 has the server close with 1007.
    bad_bytes = draw(st.sampled_from(INVALID_UTF8))
    return Message(b'{"op":"subscribe","chargers":["' + bad_bytes + b'"]}', "invalid_utf8")


@st.composite
def conversation(draw: st.DrawFn) -> list[Message]:
    messages = draw(st.lists(st.one_of(subscribe(), bad()), min_size=1, max_size=5))
    if draw(st.integers(0, 4)) == 0:
        messages.append(draw(closing()))
    return messages


async def _send(ws: aiohttp.ClientWebSocketResponse, message: Message) -> None:
    if message.expect == "invalid_utf8":
        assert isinstance(message.data, bytes)
        await ws.send_frame(message.data, aiohttp.WSMsgType.TEXT)
    elif isinstance(message.data, bytes):
        await ws.send_bytes(message.data)
    else:
        await ws.send_str(message.data)


async def _until_barrier(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]] | int:
    """Subscribe to a fresh charger id and return every message that arrives before its
    snapshot, or the close code if the server closes instead."""
    barrier = f"BARRIER-{uuid.uuid4().hex[:8]}"
    await ws.send_str(json.dumps({"op": "subscribe", "chargers": [barrier]}))
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(WITHIN_S):
        while True:
            frame = await ws.receive()
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code or 0
            assert frame.type == aiohttp.WSMsgType.TEXT, frame
            message = json.loads(frame.data)
            if message["type"] == "snapshot" and message["chargePointId"] == barrier:
                return received
            received.append(message)


def _judge(message: Message, received: list[dict[str, Any]]) -> None:
    answers = [m for m in received if m["type"] in ANSWERS]
    errors = [a for a in answers if a["type"] == "error"]
    snapshots = {a["chargePointId"] for a in answers if a["type"] == "snapshot"}
    if message.expect == "bad":
        assert [e["code"] for e in errors] == ["bad_request"], answers
        assert errors[0]["message"], answers
        assert message.names in errors[0]["message"], f"the error does not name {message.names}"
    elif message.expect == "subscribe":
        assert not errors, answers
        assert {c for c in message.chargers if c != "*"} <= snapshots, answers
    elif message.expect == "resume":
        assert all(e["code"] == "resume_unavailable" for e in errors), answers
    elif message.expect == "beyond_end":
        # Its own code, documented in docs/ui-messages.md "Resume": the client should start
        # over, and may learn that the stream was recreated.
        assert [e["code"] for e in errors] == ["resume_beyond_end"], (
            f"a resume past the stream's end got {answers}"
        )
        assert {c for c in message.chargers if c != "*"} <= snapshots, answers
    else:
        assert message.expect == "unsubscribe" and not errors, answers


class Subscriptions:
    """What the client should be subscribed to, per docs/ui-messages.md."""

    def __init__(self) -> None:
        self.chargers: set[str] = set()
        self.everything = False

    def apply(self, message: Message) -> None:
        named = {c for c in message.chargers if c != "*"}
        if message.expect == "unsubscribe":
            self.chargers -= named
            self.everything = self.everything and "*" not in message.chargers
        elif message.expect in ("subscribe", "resume", "beyond_end"):
            self.chargers |= named
            self.everything = self.everything or "*" in message.chargers

    def covers(self, charge_point_id: str) -> bool:
        return self.everything or charge_point_id in self.chargers


async def _status(hub: RunningHub, info: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(hub.gateway_url(CHARGER), protocols=("ocpp1.6",)) as cp:
            payload = {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": "Available",
                "info": info,
            }
            await cp.send_str(json.dumps([2, "st", "StatusNotification", payload]))
            await cp.receive(timeout=WITHIN_S)


def _status_in(received: list[dict[str, Any]], info: str) -> bool:
    return any(m["type"] == "status" and m.get("info") == info for m in received)


async def _sees(ws: aiohttp.ClientWebSocketResponse, info: str) -> bool:
    async with asyncio.timeout(WITHIN_S):
        async for frame in ws:
            if _status_in([json.loads(frame.data)], info):
                return True
    return False


async def _stream_past(hub: RunningHub, seq: int) -> None:
    """StatusNotifications until the fan-out has shown one past ``seq``."""
    ws_url = hub.ui_url.replace("http", "ws")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{ws_url}/ws/chargers/{CHARGER}?token={token()}") as ws:
            shown = 0
            while shown <= seq:
                info = uuid.uuid4().hex
                await _status(hub, info)
                async with asyncio.timeout(WITHIN_S):
                    async for frame in ws:
                        message = json.loads(frame.data)
                        if _status_in([message], info):
                            shown = message["seq"]
                            break


@pytest.fixture(scope="module")
def ui_hub(hub: RunningHub) -> RunningHub:
    asyncio.run(_stream_past(hub, max(RESUMES)))
    return hub


async def _converse(hub: RunningHub, messages: list[Message]) -> None:
    ws_url = hub.ui_url.replace("http", "ws")
    async with aiohttp.ClientSession() as session:
        bystander = await session.ws_connect(f"{ws_url}/ws/chargers/{CHARGER}?token={token()}")
        ws = await session.ws_connect(f"{ws_url}/ws?token={token()}")
        state = Subscriptions()
        closed = False
        for index, message in enumerate(messages):
            await _send(ws, message)
            answers = await _until_barrier(ws)
            if message.expect == "closes":
                assert answers == 1009, f"message {index} {message}: got {answers}"
                closed = True
                break
            if message.expect == "invalid_utf8":
                # Either a bad_request error (the connection stays) or a close with 1007.
                if answers == 1007:
                    closed = True
                    break
                message = Message(message.data, "bad")
            assert isinstance(answers, list), f"message {index} {message}: closed {answers}"
            _judge(message, answers)
            state.apply(message)
        info = uuid.uuid4().hex
        await _status(hub, info)
        assert await _sees(bystander, info), "the other UI client missed a live message"
        if not closed:
            # The fan-out hands a live message to every subscriber at once, so whatever this
            # client gets of it arrives before the snapshot of a subscription sent now.
            received = await _until_barrier(ws)
            assert isinstance(received, list), f"closed {received}"
            assert _status_in(received, info) == state.covers(CHARGER), (
                f"subscribed to {state.chargers} (everything: {state.everything})"
            )
        await ws.close()
        await bystander.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(messages=conversation())
def test_ui_clients_get_clear_errors_and_sane_subscriptions(
    ui_hub: RunningHub, messages: list[Message]
) -> None:
    note(repr(messages))
    asyncio.run(_converse(ui_hub, messages))
    assert ui_hub.alive, ui_hub.log_tail()
