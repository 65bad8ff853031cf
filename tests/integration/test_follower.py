"""A Follower over a stream that holds more than it has folded: closing it stops it there."""

from __future__ import annotations

import asyncio
import time

from hub.bus import event_backbone
from hub.config import Settings
from hub.follower import FETCH_WAIT_S, Follower
from hub.nats_server import EmbeddedNats
from schemas.events import ClockTick, Event

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
