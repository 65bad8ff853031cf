"""What the gateway counts per frame, in place, for ``/metrics`` (``hub.metrics``).

Labels a charger chooses (an action, an error code) are kept only when the OCPP versions
name them; anything else counts as ``other``, so a charger sending garbage cannot make a
time series per frame.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Final, get_args

from prometheus_client.core import Metric

from hub.gateway.protocol import Exchange, Link
from hub.metrics import OTHER, Counts, Histogram, bounded, labelled
from schemas import ocpp
from schemas.commands import CommandStatus
from schemas.events import OcppFrame, RejectionReason

_VERSIONS: Final = ("1.6", "2.0.1", "2.1")
ACTIONS: Final = frozenset(action for v in _VERSIONS for action in ocpp.known_actions(v))
CODES: Final = frozenset(code for codes in ocpp.CALLERROR_CODES.values() for code in codes)
# What an exchange's outcome may be: answered (ok), a retry still held, stored while the
# charger retried under a newer id (superseded), a 2.1 SEND or CALLRESULTERROR recorded, a
# refusal's reason, or a CALLERROR's code (the hub's, or the charger's to a command).
OUTCOMES: Final = frozenset(
    {"ok", "retry", "superseded", "send", "callresulterror"}
    | set(get_args(RejectionReason))
    | CODES
)
COMMAND_OUTCOMES: Final = frozenset(get_args(CommandStatus))


class GatewayMetrics:
    def __init__(self) -> None:
        self.frames = Counts()
        self.callerrors = Counts()
        self.commands = Counts()
        self.frame_store = Histogram()

    def exchanged(self, link: Link, exchange: Exchange, *, sent: bool, seconds: float) -> None:
        """One inbound frame, its events stored in ``seconds``; ``sent``: its answer went
        out (an answer is held back when the charger retried meanwhile). Inlined: it runs
        once per frame."""
        action, outcome = exchange.action, exchange.outcome
        if not sent and exchange.reply is not None:
            outcome = "superseded"
        key = (
            link.ocpp_version,
            action if action in ACTIONS else OTHER,
            outcome if outcome in OUTCOMES else OTHER,
        )
        frames = self.frames.values
        frames[key] = frames.get(key, 0) + 1
        self.frame_store.observe(seconds)
        if exchange.outcome == "ok":
            return  # an answered CALL or a CALLRESULT: no CALLERROR either way
        for event in exchange.events:
            if (
                type(event) is OcppFrame
                and event.message_type == "CALLERROR"
                and (event.direction == "in" or sent)
            ):
                self.callerrors.add((event.direction, bounded(event.error_code, CODES)))

    def commanded(self, action: str, status: str) -> None:
        self.commands.add((bounded(action, ACTIONS), bounded(status, COMMAND_OUTCOMES)))

    def families(self, connected: Iterable[Link]) -> Iterator[Metric]:
        versions = Counter(link.ocpp_version for link in connected)
        yield labelled("ocpp_hub_chargers_connected", {(v,): versions.get(v, 0) for v in _VERSIONS})
        yield labelled("ocpp_hub_frames_total", self.frames.values)
        yield self.frame_store.family("ocpp_hub_frame_store_seconds")
        yield labelled("ocpp_hub_callerrors_total", self.callerrors.values)
        yield labelled("ocpp_hub_commands_total", self.commands.values)
