"""No frame one charger sends can cut the gateway off NATS: frames whose events would break a
NATS limit are recorded within the limits, and every other charger keeps being answered."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from pathlib import Path

import nats
import pytest
from websockets.exceptions import ConnectionClosed

from hub.config import Settings
from hub.gateway.server import HARD_FRAME_LIMIT, Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from hub.subjects import charger_subject
from schemas.events import ChargerDisconnected, FrameRejected, OcppFrame
from tests.conftest import with_gateway
from tests.integration.helpers import (
    charger_events,
    gateway_port,
    hub_up,
    raw_socket,
    wait_for_event,
)

_random = random.Random(16)
# Lone continuation bytes are never UTF-8; each cost 5 bytes in the event before the fix
# (``\\xNN`` in a JSON string), so this many made it 1,048,555 bytes, which its NATS
# headers pushed past the 1 MiB max_payload.
_NEAR_LIMIT = bytes(_random.randrange(0x80, 0xC0) for _ in range(209_635))
# Raw control characters are UTF-8 but not JSON, and 6 bytes each as a JSON escape.
_CONTROL = "\x01" * 200_000

# name: (frame, the unique id its CALLERROR carries; None: binary, closed instead)
POISON: dict[str, tuple[str | bytes, str | None]] = {
    "long ASCII action": ('[2,"p1","' + "A" * 4100 + '",{}]', "p1"),
    "long CJK action": ('[2,"p2","' + "充" * 460 + '",{}]', "p2"),
    "huge text frame, not JSON": ('[2,"p3","DataTransfer",{"data":"' + _CONTROL + '"}]', "-1"),
    "binary frame near 1 MiB": (_NEAR_LIMIT, None),
    "200,000-byte binary frame": (_random.randbytes(200_000), None),
}


async def _heartbeat(port: int, charge_point_id: str, unique_id: str) -> list[object]:
    async with raw_socket(port, charge_point_id) as ws:
        await ws.send(f'[2,"{unique_id}","Heartbeat",{{}}]')
        async with asyncio.timeout(10):
            answer: list[object] = json.loads(await ws.recv())
        return answer


@pytest.mark.parametrize(("poison", "unique_id"), list(POISON.values()), ids=list(POISON))
async def test_a_poison_frame_is_recorded_and_every_other_charger_is_still_answered(
    gateway: Gateway, nats_server: EmbeddedNats, poison: str | bytes, unique_id: str | None
) -> None:
    async with (
        raw_socket(gateway.port, "CP-OTHER") as other,
        raw_socket(gateway.port, "CP-POISON", max_size=None) as sender,
    ):
        await sender.send(poison)
        try:
            async with asyncio.timeout(10):
                reply = await sender.recv()
        except ConnectionClosed:
            reply = None
        if unique_id is None:
            # Binary frames are refused as RFC 6455 §7.4.1 says: the connection is closed 1003.
            assert reply is None and sender.close_code == 1003
        else:
            assert isinstance(reply, str)
            answer = json.loads(reply)
            assert answer[:2] == [4, unique_id]
            assert answer[2] in ("NotImplemented", "FormationViolation")
            assert len(reply) < 1024  # the CALLERROR does not echo the action back
        # The charger on the same gateway, and a new connection, are answered as before.
        await other.send('[2,"after","Heartbeat",{}]')
        async with asyncio.timeout(10):
            assert json.loads(await other.recv())[:2] == [3, "after"]
    assert (await _heartbeat(gateway.port, "CP-NEW", "new"))[:2] == [3, "new"]

    data = poison.encode() if isinstance(poison, str) else poison
    rejected = await charger_events(nats_server.url, "CP-POISON")
    refusals = [e for e in rejected if isinstance(e, FrameRejected)]
    assert len(refusals) == 1
    refusal = refusals[0]
    if refusal.raw_truncated:
        assert refusal.raw_size == len(data)
        assert refusal.raw_sha256 == hashlib.sha256(data).hexdigest()
        assert data.startswith(refusal.raw[:100].encode()) or isinstance(poison, bytes)
    else:
        assert refusal.raw == (
            poison if isinstance(poison, str) else poison.decode(errors="backslashreplace")
        )
    if unique_id in ("p1", "p2"):
        # The action was cut in the subject, never in the event.
        assert refusal.action == json.loads(poison)[2]
        errors = [e for e in rejected if isinstance(e, OcppFrame)]
        assert [e.action for e in errors] == [refusal.action]


async def test_an_event_beyond_the_nats_limit_is_refused_without_losing_the_connection(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    from hub.bus import EventRefused, EventStore
    from hub.clock import now_ms
    from schemas.events import ClockTick, TariffSet

    store: EventStore = gateway._store
    huge = TariffSet(
        id="huge", received_at=now_ms(), actor="test", tariff_id="t" * (5 * 1024 * 1024)
    )
    with pytest.raises(EventRefused):
        await store.store([huge])
    # Nothing was sent, so nothing stalled: the next event is stored at once.
    async with asyncio.timeout(5):
        [seq] = await store.store([ClockTick(id="tick-after", received_at=now_ms())])
    assert seq > 0


async def test_the_nats_connection_survives_a_server_error(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    from hub.clock import now_ms
    from schemas.events import ClockTick

    client = gateway.nats_client
    # A subject past nats-server's 4 KiB control line: the server answers -ERR and drops the
    # connection, which nats-py would then close for good.
    client._skip_subject_validation = True
    try:
        await client.publish("x" * 5000, b"poison")
        # The server's -ERR comes instead of the PONG this waits for.
        await client.flush(timeout=2)
    except (nats.errors.Error, TimeoutError):
        pass
    finally:
        client._skip_subject_validation = False
    async with asyncio.timeout(10):
        await gateway.store_new(ClockTick(id="tick-survived", received_at=now_ms()))
    assert not client.is_closed and client.stats["reconnects"] >= 1
    assert (await _heartbeat(gateway.port, "CP-AFTER-ERR", "hb"))[:2] == [3, "hb"]


# -- the CALLERROR table, class by class, through a real gateway ------------------------------

TABLE = [
    # (frame, unique id of the CALLERROR as the charger reads it, rejection reason)
    ('["2", "t1", "Heartbeat", {}]', "t1", "bad_shape"),
    ('[1e400, "t2", "Heartbeat", {}]', "t2", "bad_shape"),
    ('[2, "t3", "DataTransfer", ' + "[" * 2000 + "]" * 2000 + "]", "t3", "bad_shape"),
    ('[2, "t4", "DataTransfer", {"vendorId": "v", "data": "\\ud800"}]', "t4", "bad_shape"),
    ('[2, "t5\\udc00", "Heartbeat", {}]', "t5\udc00", "bad_shape"),
]


@pytest.mark.parametrize(("frame", "unique_id", "reason"), TABLE)
async def test_formation_violations_carry_the_frames_unique_id(
    gateway: Gateway, nats_server: EmbeddedNats, frame: str, unique_id: str, reason: str
) -> None:
    async with raw_socket(gateway.port, "CP-TABLE") as ws:
        await ws.send(frame)
        async with asyncio.timeout(10):
            answer = json.loads(await ws.recv())
        assert answer[:3] == [4, unique_id, "FormationViolation"]
        await ws.send('[2, "after", "Heartbeat", {}]')
        async with asyncio.timeout(10):
            assert json.loads(await ws.recv())[:2] == [3, "after"]
    events = await charger_events(nats_server.url, "CP-TABLE")
    rejected = [e for e in events if isinstance(e, FrameRejected)]
    assert [(e.reason, e.raw) for e in rejected] == [(reason, frame)]


async def test_a_result_with_a_too_long_unique_id_is_recorded_but_never_answered(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    async with raw_socket(gateway.port, "CP-LONGRESULT") as ws:
        await ws.send('[3, "' + "r" * 40 + '", {}]')
        await ws.send('[2, "hb", "Heartbeat", {}]')
        async with asyncio.timeout(10):
            # The first answer is the Heartbeat's: nothing answered the result.
            assert json.loads(await ws.recv())[:2] == [3, "hb"]
    events = await charger_events(nats_server.url, "CP-LONGRESULT")
    assert [e.reason for e in events if isinstance(e, FrameRejected)] == ["unique_id_too_long"]
    assert [e.message_type for e in events if isinstance(e, OcppFrame)] == ["CALL", "CALLRESULT"]


async def test_a_binary_frame_is_recorded_then_the_connection_closed_with_1003(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    frame = b'[2, "bin", "Heartbeat", {}]'
    async with raw_socket(gateway.port, "CP-BINARY") as ws:
        await ws.send(frame)
        async with asyncio.timeout(10):
            await ws.wait_closed()
        assert ws.close_code == 1003
    events = await charger_events(nats_server.url, "CP-BINARY")
    rejected = [e for e in events if isinstance(e, FrameRejected)]
    assert [(e.reason, e.raw) for e in rejected] == [("binary_frame", frame.decode())]
    assert not [e for e in events if isinstance(e, OcppFrame)]  # never answered


async def recorded_close(nats_url: str, charge_point_id: str) -> int | None:
    """The close code of the charger's first recorded connection.closed event."""
    closed = await wait_for_event(
        nats_url,
        charger_subject(charge_point_id),
        lambda event: isinstance(event, ChargerDisconnected),
    )
    assert isinstance(closed, ChargerDisconnected)
    return closed.close_code


async def test_invalid_utf8_in_a_text_frame_closes_the_connection_with_1007(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    async with raw_socket(gateway.port, "CP-UTF8") as ws:
        # websockets' client validates what it sends, so the broken frame is put on the wire
        # by its protocol layer directly.
        from websockets.frames import Frame, Opcode

        ws.protocol.send_frame(Frame(Opcode.TEXT, b'[2, "u8", "Heartbeat", {"x": "\xff"}]'))
        ws.send_data()  # type: ignore[attr-defined]
        async with asyncio.timeout(10):
            await ws.wait_closed()
        assert ws.close_code == 1007
    # The frame is not recorded, but why the connection ended is (docs/gateway.md).
    assert await recorded_close(nats_server.url, "CP-UTF8") == 1007
    events = await charger_events(nats_server.url, "CP-UTF8")
    assert not [e for e in events if isinstance(e, FrameRejected | OcppFrame)]


async def test_a_frame_over_the_websocket_limit_closes_with_1009_and_is_recorded_so(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    async with raw_socket(gateway.port, "CP-HUGE") as ws:
        await ws.send('[2,"h1","Heartbeat",{"x":"' + "x" * (HARD_FRAME_LIMIT + 1) + '"}]')
        async with asyncio.timeout(10):
            await ws.wait_closed()
        assert ws.close_code == 1009
    assert await recorded_close(nats_server.url, "CP-HUGE") == 1009


async def test_hub_up_survives_a_poison_frame_and_still_stops_on_ctrl_c(tmp_path: Path) -> None:
    async with hub_up(tmp_path, "--allow-unknown-chargers") as process:
        port = await gateway_port(process)
        async with raw_socket(port, "CP-OTHER") as other, raw_socket(port, "CP-POISON") as ws:
            await ws.send(POISON["long ASCII action"][0])
            async with asyncio.timeout(10):
                assert json.loads(await ws.recv())[:3] == [4, "p1", "NotImplemented"]
            await other.send('[2,"after","Heartbeat",{}]')
            async with asyncio.timeout(10):
                assert json.loads(await other.recv())[:2] == [3, "after"]
    # hub_up itself asserts that SIGINT stopped the hub with exit code 0.


async def test_a_frame_whose_event_nats_refuses_is_answered_internal_error_and_recorded(
    tmp_path: Path, settings: Settings
) -> None:
    # A server whose max_payload is below the frame limit: the CALL's event cannot be stored.
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 65536\n")
    big = with_gateway(settings, max_frame_bytes=200_000)
    frame = '[2,"big-1","DataTransfer",{"vendorId":"v","data":"' + "x" * 100_000 + '"}]'
    async with (
        EmbeddedNats(tmp_path / "nats", extra_args=("-c", str(config))) as server,
        running_gateway(big, server.url) as gateway,
        raw_socket(gateway.port, "CP-BIG") as ws,
    ):
        await ws.send(frame)
        async with asyncio.timeout(10):
            assert json.loads(await ws.recv())[:3] == [4, "big-1", "InternalError"]
        await ws.send('[2,"after","Heartbeat",{}]')
        async with asyncio.timeout(10):
            assert json.loads(await ws.recv())[:2] == [3, "after"]
        events = await charger_events(server.url, "CP-BIG")
    rejected = [e for e in events if isinstance(e, FrameRejected)]
    assert [(e.reason, e.raw_truncated, e.raw_size) for e in rejected] == [
        ("internal_error", True, len(frame))
    ]
    assert rejected[0].raw_sha256 == hashlib.sha256(frame.encode()).hexdigest()
