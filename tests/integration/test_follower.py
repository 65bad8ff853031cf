"""A Follower over a stream that holds more than it has folded: closing it stops it there."""

from __future__ import annotations

import asyncio
import time

import pytest

from hub.bus import Connection, event_backbone, subscribe_direct
from hub.config import Settings
from hub.follower import FETCH_WAIT_S, Follower
from hub.nats_server import EmbeddedNats
from schemas.events import AccessDenied, ClockTick, Event
from tests.integration.lossy import LossyPuller

BACKLOG = 20_000


async def test_close_stops_a_follower_in_the_middle_of_a_backlog(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    # `hub up` closes its followers when it stops: one that is behind (the supervisor of a
    # busy hub) must stop at once, not fold the rest of the stream first.
    async with event_backbone(settings, nats_server.client_url, name="test") as (connection, store):
        for start in range(0, BACKLOG, 1000):
            await store.store(
                [ClockTick(id=f"tick-{n}", received_at=n) for n in range(start, start + 1000)]
            )
        folded: list[int] = []

        def apply(event: Event, seq: int) -> None:
            folded.append(seq)

        follower = Follower(connection, settings.stream.name, ["ev.clock.>"], apply, name="test")
        await follower.begin()
        assert await follower.reached(1000)
        # Wherever the follower is now: between two batches or waiting for a message of one.
        await asyncio.sleep(0.005)
        started = time.monotonic()
        await follower.close()
        assert time.monotonic() - started < FETCH_WAIT_S / 2
        assert folded == list(range(1, len(folded) + 1)) and len(folded) < BACKLOG


async def test_settled_waits_for_what_was_stored_before_though_the_stream_ends_elsewhere(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    # A reader (the smart-charging API) must see its subjects' last event even when the
    # stream's last one is of another subject, which `reached` could never wait for.
    async with event_backbone(settings, nats_server.client_url, name="test") as (connection, store):
        folded: list[int] = []
        follower = _ticks(connection, settings, folded)
        async with follower:
            assert await follower.settled()  # an empty stream: nothing to wait for
            ticks = [ClockTick(id=f"tick-{n}", received_at=n) for n in range(BACKLOG)]
            seqs: list[int] = []
            for start in range(0, BACKLOG, 1000):
                seqs += await store.store(ticks[start : start + 1000])
            [other] = await store.store(
                [
                    AccessDenied(
                        id="denied",
                        received_at=1,
                        actor="",
                        method="GET",
                        path="/",
                        http_status=401,
                        reason="r",
                    )
                ]
            )
            assert await follower.settled()
            assert folded[-1] == seqs[-1] < other
            assert not await follower.reached(other, within_s=0.05)


@pytest.fixture
def lossy(monkeypatch: pytest.MonkeyPatch) -> type[LossyPuller]:
    """Followers pull through a puller that loses the deliveries it is told to."""
    monkeypatch.setattr("hub.follower.Puller", LossyPuller)
    monkeypatch.setattr(LossyPuller, "lose", set())
    monkeypatch.setattr(LossyPuller, "lost_seqs", [])
    return LossyPuller


async def test_a_delivery_lost_in_the_middle_is_fetched_again_and_folded_once(
    nats_server: EmbeddedNats, settings: Settings, lossy: type[LossyPuller]
) -> None:
    # A filtered follower's stream seqs skip other subjects' events, so a skipped seq tells
    # nothing; the consumer's numbering of its deliveries does.
    async with event_backbone(settings, nats_server.client_url, name="test") as (connection, store):
        seqs = await store.store([_denied(n) for n in range(3)])
        seqs += await store.store([ClockTick(id=f"tick-{n}", received_at=n) for n in range(10)])
        ticks = seqs[3:]
        lossy.lose = {ticks[4]}
        folded: list[int] = []
        follower = _ticks(connection, settings, folded)
        async with follower:
            assert await follower.reached(ticks[-1])
            assert lossy.lost_seqs == [ticks[4]]
            assert folded == ticks
            assert follower.lost == 1


async def test_a_delivery_lost_at_the_tail_is_fetched_again(
    nats_server: EmbeddedNats,
    settings: Settings,
    lossy: type[LossyPuller],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing follows the lost event to show a jump: the consumer's count of deliveries,
    # asked while nothing arrives, says one never came. (Idle looks made short here.)
    monkeypatch.setattr("hub.follower.FETCH_WAIT_S", 0.5)
    async with event_backbone(settings, nats_server.client_url, name="test") as (connection, store):
        folded: list[int] = []
        follower = _ticks(connection, settings, folded)
        async with follower:
            first = await store.store([ClockTick(id="tick-0", received_at=0)])
            assert await follower.reached(first[-1])
            [last] = await store.store([ClockTick(id="tick-1", received_at=1)])
            lossy.lose = {last + 1}
            [lost] = await store.store([ClockTick(id="tick-2", received_at=2)])
            assert await follower.reached(lost, within_s=10.0)
            assert lossy.lost_seqs == [lost]
            assert folded == [*first, last, lost]
            assert follower.lost == 1


def _denied(n: int) -> AccessDenied:
    return AccessDenied(
        id=f"denied-{n}",
        received_at=n,
        actor="",
        method="GET",
        path="/",
        http_status=401,
        reason="r",
    )


def _ticks(connection: Connection, settings: Settings, folded: list[int]) -> Follower:
    """A follower of the clock's ticks that keeps the seqs it folds in ``folded``."""
    return Follower(
        connection,
        settings.stream.name,
        ["ev.clock.>"],
        lambda _, seq: folded.append(seq),
        name="test",
    )


async def test_a_direct_subscription_takes_each_message_as_it_is_read(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    # The folds' pulls and the gateway's PubAcks skip nats-py's header dict, Msg, queue and
    # task per message (most of what taking one in costs): the handler runs as the message
    # is read, in order, and one that fails costs its own message, not the connection.
    async with event_backbone(settings, nats_server.client_url, name="test") as (connection, _):
        client = connection.client
        got: list[tuple[str, str, bytes, str]] = []
        last = asyncio.Event()

        def handler(subject: str, reply: str, data: bytes, status: str) -> None:
            if data == b"bad":
                raise ValueError("a bug in one handler")
            got.append((subject, reply, data, status))
            if status:
                last.set()

        subscription = await subscribe_direct(client, "direct.>", handler)
        for data in (b"1", b"bad", b"2"):
            await client.publish("direct.test", data, reply="direct.back")
        # A request nobody answers: the server says so to its reply subject, status 503.
        await client.publish("nobody.listens", b"", reply="direct.inbox")
        async with asyncio.timeout(5):
            await last.wait()
        assert got == [
            ("direct.test", "direct.back", b"1", ""),
            ("direct.test", "direct.back", b"2", ""),
            ("direct.inbox", "", b"", "503"),
        ]
        assert client.is_connected
        # Nothing went through the subscription's own queue, and no task waits on it.
        assert subscription._pending_queue.empty() and subscription._wait_for_msgs_task is None
        await subscription.unsubscribe()
        await client.publish("direct.test", b"3")
        await client.flush()
        assert len(got) == 3
