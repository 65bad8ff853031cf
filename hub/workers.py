"""``hub workers``: the projections and the supervisor, in a process of their own beside the
gateway's, started by ``hub up`` as a child (``hub.children``).

Both only follow the stream and write back to it (rows to ClickHouse, derived events and
commands to NATS); neither answers a charger. In the gateway's process their folds and
chDB's inserts took turns with the gateway on one GIL: with 1,000 chargers the gateway's
process was at one full core while the machine's other core was two thirds idle, and the
hub answered barely more MeterValues per second than a CSMS that keeps nothing. As a child
they run beside it.

chDB allows one process per data path, so it is this process that answers ``hub query``,
``hub replay`` and ``hub status`` (on their NATS subjects) while the hub runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final

from hub.children import ChildProcess, hub_command, until_stopped
from hub.config import Settings
from hub.gc_policy import gc_policy
from hub.nats_server import redacted
from hub.runtime import running_hub_url
from hub.supervisor.service import optional_supervisor
from projections.cli import optional_projections

READY: Final = "workers ready: "


def enabled(settings: Settings) -> list[str]:
    return [
        name
        for name, on in (
            ("projections", settings.projections.enabled),
            ("supervisor", settings.supervisor.enabled),
        )
        if on
    ]


async def workers_main(settings: Settings, nats_url: str) -> int:
    async with (
        until_stopped() as stop,
        gc_policy(),
        optional_projections(settings, nats_url),
        optional_supervisor(settings, nats_url),
    ):
        print(f"{READY}{' '.join(enabled(settings))} nats {redacted(nats_url)}", flush=True)
        await stop.wait()
    return 0


async def workers_command(settings: Settings) -> int:
    """``hub workers``: HUB_NATS_URL, or the NATS of a hub running on this data directory."""
    url = await running_hub_url(settings)
    if not url:
        print(
            "hub: workers need a NATS with the event stream: set HUB_NATS_URL (or --nats-url), "
            "or run `hub up` on this data directory",
            file=sys.stderr,
        )
        return 2
    return await workers_main(settings, url)


def workers_child(settings: Settings, nats_url: str) -> ChildProcess | None:
    """For ``hub up``: the projections and the supervisor, those enabled, as a child."""
    if not enabled(settings):
        return None

    def command(ready_line: str) -> Sequence[str]:
        del ready_line  # a restarted child needs nothing from the last one
        return hub_command("workers", settings)

    return ChildProcess("workers", command, READY, nats_url)
