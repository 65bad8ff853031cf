"""A client's bounded queue: meter coalescing when lagging, closing when too far behind;
shared frames written straight to a client that keeps up."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import WSMsgType, web
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from hub.fanout.clients import WRITE_BUFFER_LIMIT, Client, text_frame
from hub.tokens import Scope
from schemas.ui import Meter, Reading, Snapshot, Status, decode_ui, encode_ui

SCOPE = Scope(subject="t", role="viewer", chargers=frozenset(), everything=True, expires_at=0)


def meter(seq: int, connector: int, **values: float) -> Meter:
    return Meter(
        charge_point_id="CP-1",
        seq=seq,
        received_at=seq,
        connector_id=connector,
        readings=[Reading(measurand=name, value=value) for name, value in values.items()],
    )


def offer(client: Client, message: Meter | Status) -> None:
    payload = encode_ui(message)
    client.offer(message, payload, text_frame(payload))


def status(seq: int) -> Status:
    return Status(charge_point_id="CP-1", seq=seq, received_at=0, connector_id=1, status="Charging")


class Socket(asyncio.Transport):
    """What a client's socket was given, and how much it pretends to hold unsent."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.buffered = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return False


def parse_frames(data: bytes) -> list[Frame]:
    """With the websockets library's parser, an implementation independent of ours."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        with pytest.raises(StopIteration) as done:
            next(parser)
        frames.append(done.value.value)
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_text_frame_parses_back_to_its_payload_at_every_length_encoding(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    [frame] = parse_frames(text_frame(payload))
    assert frame.opcode is Opcode.TEXT and frame.fin and not frame.rsv1
    assert frame.data == payload


def test_a_client_that_keeps_up_gets_the_shared_frame_written_straight_to_its_socket() -> None:
    socket = Socket()
    client = Client(web.WebSocketResponse(compress=False), SCOPE, capacity=8, transport=socket)
    offer(client, status(1))
    offer(client, status(2))
    assert client.queued == 0 and client.sent_seq == 2
    assert [decode_ui(bytes(f.data)) for f in parse_frames(bytes(socket.written))] == [
        status(1),
        status(2),
    ]


def test_live_messages_wait_behind_what_is_queued_and_behind_a_full_socket() -> None:
    socket = Socket()
    client = Client(web.WebSocketResponse(compress=False), SCOPE, capacity=8, transport=socket)
    client.push(Snapshot(charge_point_id="CP-1", seq=1, received_at=0))
    offer(client, status(2))  # the snapshot goes first, so this one queues behind it
    assert not socket.written and [entry.seq for entry in client._queue] == [1, 2]
    client._queue.clear()
    socket.buffered = WRITE_BUFFER_LIMIT
    offer(client, status(3))
    assert not socket.written and [entry.seq for entry in client._queue] == [3]


def test_a_compressed_connection_never_gets_the_shared_uncompressed_frame() -> None:
    socket = Socket()
    client = Client(web.WebSocketResponse(compress=True), SCOPE, capacity=8, transport=socket)
    offer(client, status(1))
    assert not socket.written and client.queued == 1


def test_a_lagging_client_keeps_the_latest_reading_per_connector_and_measurand() -> None:
    client = Client(web.WebSocketResponse(), SCOPE, capacity=8)
    for seq in range(1, 3):  # below a quarter full: every message is kept
        offer(client, meter(seq, 1, Power=seq))
    assert client.queued == 2
    for seq in range(3, 200):
        offer(client, meter(seq, 1, Power=seq))
        offer(client, meter(seq, 2, SoC=seq))
    offer(client, meter(200, 1, Voltage=230))
    assert not client.too_slow and client.queued <= 4
    queued = [entry.message for entry in client._queue]
    latest_1 = [m for m in queued if isinstance(m, Meter) and m.connector_id == 1][-1]
    assert {r.measurand: r.value for r in latest_1.readings} == {"Power": 199, "Voltage": 230}
    assert latest_1.seq == 200
    seqs = [m.seq for m in queued if isinstance(m, Meter)]
    assert seqs == sorted(seqs)  # coalescing never reorders


def test_a_client_too_far_behind_is_marked_and_its_queue_dropped() -> None:
    client = Client(web.WebSocketResponse(), SCOPE, capacity=8)
    for seq in range(1, 9):
        offer(client, status(seq))
    assert not client.too_slow
    offer(client, status(9))
    assert client.too_slow and client.queued == 0


def test_messages_a_resume_already_covered_are_not_sent_again() -> None:
    client = Client(web.WebSocketResponse(), SCOPE, capacity=8)
    client.floor = 10
    offer(client, meter(10, 1, Power=1))
    offer(client, meter(11, 1, Power=2))
    assert [entry.seq for entry in client._queue] == [11]


class RecordingSocket(web.WebSocketResponse):
    def __init__(self) -> None:
        super().__init__(compress=False)
        self.sent: list[bytes] = []

    async def send_frame(
        self, message: bytes, opcode: WSMsgType, compress: int | None = None
    ) -> None:
        assert opcode is WSMsgType.TEXT
        self.sent.append(bytes(message))
        await asyncio.sleep(0)


async def test_a_sender_task_runs_only_while_something_is_queued() -> None:
    ws = RecordingSocket()
    client = Client(ws, SCOPE, capacity=8)  # no socket to write to: everything queues
    client.push(Snapshot(charge_point_id="CP-1", seq=1, received_at=0))
    assert client._sender is None  # nothing is sent before the connection is ready
    client.start()
    offer(client, status(2))
    sender = client._sender
    assert sender is not None
    await sender
    offer(client, status(3))
    assert client._sender is not None and client._sender is not sender
    await client._sender
    assert [decode_ui(payload).seq for payload in ws.sent] == [1, 2, 3]
    assert client._sender is None and client.queued == 0 and client.sent_seq == 3
