"""Who is subscribed to what, and handing each folded message to exactly those clients.

Everything here runs on the event loop without awaiting, which is what makes resume exact:
the missed messages are copied and the client is registered for live ones in one step, so
no event can be folded in between (no gap), and the client's ``floor`` drops anything a
resume already covered (no duplicate).
"""

from __future__ import annotations

import time

from hub.fanout.clients import Client, text_frame
from hub.fanout.live import Live
from schemas.events import Event
from schemas.ui import encode_ui


class Forbidden(Exception):
    """A charger outside the token's scope; ``str()`` names it."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Broker:
    def __init__(self, live: Live, *, client_queue: int) -> None:
        self.live = live
        self.client_queue = client_queue
        self.clients: set[Client] = set()
        self._by_charger: dict[str, set[Client]] = {}
        self._everything: set[Client] = set()
        # What clients that are gone had coalesced and dropped, and how many were too slow:
        # the metrics add those of the clients still here (hub.fanout.metrics).
        self.gone_coalesced = 0
        self.gone_dropped = 0
        self.gone_too_slow = 0

    def on_event(self, event: Event, seq: int) -> None:
        messages = self.live.fold(event, seq)
        if not messages:
            return
        everything = self._everything
        for message in messages:
            charge_point_id = message.charge_point_id
            targets = self._by_charger.get(charge_point_id)
            if not targets and not everything:
                continue
            # Encoded and framed once, whatever the number of clients.
            payload = encode_ui(message)
            frame = text_frame(payload)
            if targets:
                for client in targets:
                    client.offer(message, payload, frame)
            for client in everything:
                if client.scope.allows(charge_point_id):
                    client.offer(message, payload, frame)

    def subscribe(self, client: Client, chargers: list[str], since: int | None) -> None:
        everything = "*" in chargers
        named = list(dict.fromkeys(c for c in chargers if c != "*"))
        for charge_point_id in named:
            if not client.scope.allows(charge_point_id):
                raise Forbidden(f"charger {charge_point_id!r} is outside the token's scope")
        targets = named
        if everything:
            known = [cp for cp in self.live.chargers if client.scope.allows(cp)]
            targets = list(dict.fromkeys([*known, *named]))
        missed = None
        if since is not None and self.live.can_resume(targets, since):
            missed = self.live.missed(targets, since)
            if len(missed) > self.client_queue:
                missed = None
        if missed is not None:
            assert since is not None
            for message in missed:
                client.push(message)
            client.floor = max(client.floor, since)
        else:
            if since is not None:
                client.push(self.live.resume_error(since))
            received_at = now_ms()
            for charge_point_id in targets:
                client.push(self.live.snapshot(charge_point_id, received_at))
        for charge_point_id in named:
            client.chargers.add(charge_point_id)
            self._by_charger.setdefault(charge_point_id, set()).add(client)
        if everything:
            client.everything = True
            self._everything.add(client)

    def unsubscribe(self, client: Client, chargers: list[str]) -> None:
        for charge_point_id in chargers:
            if charge_point_id == "*":
                client.everything = False
                self._everything.discard(client)
                continue
            client.chargers.discard(charge_point_id)
            subscribers = self._by_charger.get(charge_point_id)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self._by_charger[charge_point_id]

    def add(self, client: Client) -> None:
        self.clients.add(client)

    def remove(self, client: Client) -> None:
        self.unsubscribe(client, [*client.chargers, "*"])
        if client in self.clients:
            self.clients.discard(client)
            self.gone_coalesced += client.coalesced
            self.gone_dropped += client.dropped
            self.gone_too_slow += client.too_slow
        client.close()
