"""One UI client: a bounded queue and its own sender task, so a slow client delays nobody.

Overflow policy, in order:

1. a client that keeps up gets every message;
2. once its queue is a quarter full, a new ``meter`` message replaces the queued one of the
   same charger and connector (readings merged, the newest per measurand and phase wins),
   and a new ``transaction.updated`` replaces the queued one of the same transaction;
3. when the queue is full all the same, the client is closed with code 4000 and a reason
   that names the last sequence it was sent, so it can resume with ``since``.

Snapshots and resumed history go in whatever the queue holds: they are bounded by the
number of chargers in the token's scope and by the per-charger history.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from hub.fanout.auth import Scope
from hub.fanout.state import reading_key
from schemas.ui import ChargerMessage, Error, Meter, TransactionUpdated, UiMessage, encode_ui

TOO_SLOW: Final = 4000
SEND_TIMEOUT_S: Final = 10.0


@dataclass(slots=True)
class _Entry:
    seq: int
    key: tuple[str, str, int] | None
    message: UiMessage
    text: str


def _coalesce_key(message: UiMessage) -> tuple[str, str, int] | None:
    match message:
        case Meter():
            return ("meter", message.charge_point_id, message.connector_id)
        case TransactionUpdated():
            return ("tx", message.charge_point_id, message.transaction_id)
    return None


def _merged(old: UiMessage, new: UiMessage) -> UiMessage:
    if isinstance(old, Meter) and isinstance(new, Meter):
        readings = {reading_key(r): r for r in old.readings}
        readings.update((reading_key(r), r) for r in new.readings)
        return Meter(
            charge_point_id=new.charge_point_id,
            seq=new.seq,
            ts=new.ts,
            received_at=new.received_at,
            connector_id=new.connector_id,
            transaction_id=new.transaction_id,
            readings=list(readings.values()),
        )
    return new


class Client:
    def __init__(self, ws: web.WebSocketResponse, scope: Scope, *, capacity: int) -> None:
        self.ws = ws
        self.scope = scope
        self.chargers: set[str] = set()
        self.everything = False  # subscribed to "*": every charger the scope allows
        # Live messages at or below this sequence were already sent through a resume.
        self.floor = 0
        self.sent_seq = 0
        self.coalesced = 0
        self._capacity = max(4, capacity)
        self._lagging = self._capacity // 4
        self._queue: deque[_Entry] = deque()
        self._wake = asyncio.Event()
        self.too_slow = False
        self.closed = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    def wants(self, charge_point_id: str) -> bool:
        if self.everything:
            return self.scope.allows(charge_point_id)
        return charge_point_id in self.chargers

    def push(self, message: UiMessage, text: str | None = None) -> None:
        """Queue without the capacity check: snapshots, resumed history, errors."""
        if self.closed or self.too_slow:
            return
        seq = 0 if isinstance(message, Error) else message.seq
        self._queue.append(_Entry(seq, None, message, text or encode_ui(message).decode()))
        self._wake.set()

    def offer(self, message: ChargerMessage, text: str) -> None:
        """A live message, shared text and all; applies the overflow policy."""
        if self.closed or self.too_slow or message.seq <= self.floor:
            return
        queue = self._queue
        key = None
        if len(queue) >= self._lagging:
            key = _coalesce_key(message)
            if key is not None:
                for index in range(len(queue) - 1, -1, -1):
                    if queue[index].key == key:
                        old = queue[index]
                        del queue[index]
                        merged = _merged(old.message, message)
                        if merged is not message:
                            text = encode_ui(merged).decode()
                        queue.append(_Entry(message.seq, key, merged, text))
                        self.coalesced += 1
                        return
            if len(queue) >= self._capacity:
                self.too_slow = True
                queue.clear()
                self._wake.set()
                return
        queue.append(_Entry(message.seq, key or _coalesce_key(message), message, text))
        if len(queue) == 1:
            self._wake.set()

    async def run_sender(self) -> None:
        """Sends queued messages in order until the client goes away or falls too far behind."""
        ws, queue = self.ws, self._queue
        while True:
            if not queue and not self.too_slow:
                self._wake.clear()
                await self._wake.wait()
            if self.too_slow:
                await ws.close(
                    code=TOO_SLOW,
                    message=f"too far behind; resume with since={self.sent_seq}".encode(),
                )
                return
            entry = queue.popleft()
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await ws.send_str(entry.text)
            if entry.seq > self.sent_seq:
                self.sent_seq = entry.seq

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
