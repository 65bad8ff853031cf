"""``hub up``'s fan-out, run as a process of its own: ``hub fanout``, a child of ``hub up``
(``hub.children``).

The fan-out shares no memory with the gateway and the projections (it follows the stream), but
in their process it shared their CPU and their GIL: the projections' fold and chDB threads and
the gateway's work on the same event loop put its p50 at 30-60 ms and its p99 at 200-300 ms
with 1,000 chargers and 10,000 subscribers, against ~10 and ~90 ms in a process of its own
(docs/ui-messages.md, "Latency under load").

It runs on the same data directory (so the same JWT secret, which ``hub up`` makes before it
starts the child), with the UI host and port as flags. Its ready line names the port it took;
a restarted child asks for that port again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from hub.children import ChildProcess, hub_command
from hub.config import Settings
from hub.fanout.app import signing_key

READY: Final = "fanout ready: "


def port_of(line: str) -> int | None:
    """The port in ``hub fanout``'s ready line (``fanout ready: http://HOST:PORT/ nats URL``)."""
    if not line.startswith(READY):
        return None
    url = line.removeprefix(READY).split()[0]
    return int(url.rstrip("/").rsplit(":", 1)[1])


def child_command(settings: Settings, port: int) -> list[str]:
    return hub_command(
        "fanout", settings, "--ui-host", settings.fanout.host, "--ui-port", str(port)
    )


def fanout_child(settings: Settings, nats_url: str) -> ChildProcess:
    """``hub fanout`` as ``hub up``'s child; a restarted one asks for the port the first
    took."""
    signing_key(settings)  # the child must find the secret, not race to make its own

    def command(ready_line: str) -> Sequence[str]:
        return child_command(settings, port_of(ready_line) or settings.fanout.port)

    return ChildProcess("fanout", command, READY, nats_url)
