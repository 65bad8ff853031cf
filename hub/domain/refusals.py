"""Chargers the gateway turned away at connect, and why: a bounded fold of the stream."""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

import msgspec

from schemas.events import ChargerConnected, ConnectionRefused, Event, RefusalReason

# Ids a fleet of misconfigured chargers (or a scanner inventing ids) can make it hold.
MAX_REFUSED: Final = 1000


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    """A charger whose last attempt to connect was refused."""

    charge_point_id: str
    reason: RefusalReason
    last_attempt_at: int  # Unix ms
    remote_address: str
    offered_subprotocols: tuple[str, ...]
    attempts: int  # refusals in a row, since it last connected (within what was folded)


class Refusals:
    """Per charger id, its last refusal; a charger that connects leaves the list."""

    def __init__(self, limit: int = MAX_REFUSED) -> None:
        self._by_id: OrderedDict[str, Refused] = OrderedDict()
        self._limit = limit

    def apply(self, event: Event) -> None:
        match event:
            case ConnectionRefused(charge_point_id=cp):
                earlier = self._by_id.pop(cp, None)
                self._by_id[cp] = Refused(
                    charge_point_id=cp,
                    reason=event.reason,
                    last_attempt_at=event.received_at,
                    remote_address=event.remote_address,
                    offered_subprotocols=event.offered_subprotocols,
                    attempts=earlier.attempts + 1 if earlier else 1,
                )
                while len(self._by_id) > self._limit:
                    self._by_id.popitem(last=False)
            case ChargerConnected(charge_point_id=cp):
                self._by_id.pop(cp, None)

    def get(self, charge_point_id: str) -> Refused | None:
        return self._by_id.get(charge_point_id)

    def latest_first(self) -> list[Refused]:
        return list(reversed(self._by_id.values()))
