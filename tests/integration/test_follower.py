"""A Follower over a stream that holds more than it has folded: closing it stops it there."""

from __future__ import annotations

import asyncio
import time

from hub.bus import event_backbone, subscribe_direct
from hub.config import Settings
from hub.follower import FETCH_WAIT_S, Follower
from hub.nats_server import EmbeddedNats
from schemas.events import AccessDenied, ClockTick, Event

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
        follower = Follower(
            connection,
            settings.stream.name,
            ["ev.clock.>"],
            lambda _, seq: folded.append(seq),
            name="test",
        )
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
