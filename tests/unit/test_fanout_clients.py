"""A client's bounded queue: meter coalescing when lagging, closing when too far behind."""

from __future__ import annotations

from aiohttp import web

from hub.fanout.auth import Scope
from hub.fanout.clients import Client
from schemas.ui import Meter, Reading, Status, encode_ui

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
    client.offer(message, encode_ui(message).decode())


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
        offer(
            client,
            Status(
                charge_point_id="CP-1", seq=seq, received_at=0, connector_id=1, status="Charging"
            ),
        )
    assert not client.too_slow
    offer(
        client,
        Status(charge_point_id="CP-1", seq=9, received_at=0, connector_id=1, status="Charging"),
    )
    assert client.too_slow and client.queued == 0


def test_messages_a_resume_already_covered_are_not_sent_again() -> None:
    client = Client(web.WebSocketResponse(), SCOPE, capacity=8)
    client.floor = 10
    offer(client, meter(10, 1, Power=1))
    offer(client, meter(11, 1, Power=2))
    assert [entry.seq for entry in client._queue] == [11]
