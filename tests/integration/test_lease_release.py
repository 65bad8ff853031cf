"""A lease given up on a clean stop is said to be released, not lost: an operator reading a
shutdown's logs must not be warned of a failover that did not happen."""

from __future__ import annotations

from structlog.testing import capture_logs

from hub.bus import event_backbone
from hub.config import Settings
from hub.lease import leased
from hub.nats_server import EmbeddedNats


async def test_a_lease_released_on_a_clean_stop_is_not_reported_lost(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    async with event_backbone(settings, nats_server.url, name="lease-test") as (connection, _):
        with capture_logs() as logs:
            async with leased(connection, settings, "test.release") as lease:
                assert lease.holds()
            assert not lease.holds() and lease.free.is_set()
    # The suite logs at warning: lease.taken and lease.released are info, lease.lost is not.
    assert [entry["event"] for entry in logs if entry.get("key") == "test.release"] == []
