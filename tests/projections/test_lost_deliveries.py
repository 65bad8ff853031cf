"""The runner against deliveries lost on the way and events missing from the stream: every
event the stream holds is projected once, none is passed over, and none stops the runner."""

from __future__ import annotations

import asyncio

import nats
import pytest

from hub.config import Settings
from hub.nats_server import EmbeddedNats
from projections.service import running_projections
from tests.integration.lossy import LossyPuller
from tests.projections.contract import store_events
from tests.projections.helpers import dump, last_seq, replay_in
from tests.projections.scenario import fleet, mixed

# Long enough for any batch here; a runner stuck never gets there.
_CATCH_UP_S = 30.0


@pytest.mark.parametrize("where", ["midway", "at the tail"])
async def test_a_delivery_lost_is_projected_once_all_the_same(
    settings: Settings, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setattr("projections.runner.Puller", LossyPuller)
    monkeypatch.setattr(LossyPuller, "lost_seqs", [])
    await store_events(settings, nats_server.url, fleet(6, 4).events)
    end = await last_seq(nats_server.url)
    # Midway, the events after it show it missing; at the tail nothing does, and left
    # unacked it would come again only after the consumer's ack wait (2 min).
    lost = end // 2 if where == "midway" else end
    monkeypatch.setattr(LossyPuller, "lose", {lost})
    async with running_projections(settings, nats_server.url) as projections:
        await asyncio.wait_for(projections.runner.wait_for(end), _CATCH_UP_S)
        assert LossyPuller.lost_seqs == [lost]
        incremental = await dump(projections.backend)
        assert [row["seq"] for row in incremental["events"]] == list(range(1, end + 1))
        await replay_in(projections)
        assert await dump(projections.backend) == incremental


async def test_an_event_deleted_from_the_middle_of_the_stream_does_not_stop_the_runner(
    settings: Settings, nats_server: EmbeddedNats
) -> None:
    # An operator removed a poison event (`nats stream rmm`): its seq is missing for good,
    # which is no lost delivery to fetch again.
    await store_events(settings, nats_server.url, mixed().events)
    end = await last_seq(nats_server.url)
    client = await nats.connect(nats_server.url)
    try:
        await client.jetstream().delete_msg(settings.stream.name, end // 2)
    finally:
        await client.close()
    async with running_projections(settings, nats_server.url) as projections:
        await asyncio.wait_for(projections.runner.wait_for(end), _CATCH_UP_S)
        seqs = [row["seq"] for row in (await dump(projections.backend))["events"]]
        assert seqs == [seq for seq in range(1, end + 1) if seq != end // 2]
