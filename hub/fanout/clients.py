"""One UI client: a bounded queue and its own sender task, so a slow client delays nobody.

A live message goes straight to the client's socket when nothing is queued before it and
the socket takes it without buffering more than ``WRITE_BUFFER_LIMIT``: the broker builds
the WebSocket frame once per message and every such client gets the very same bytes. That
path allocates nothing per client and wakes no task, which is what keeps 10,000 clients from
feeding the cyclic GC (docs/ui-messages.md, "Latency under load"). Clients that
negotiated permessage-deflate, and anything that has to wait, go through the queue and the
sender task instead.

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
import contextlib
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from hub.fanout.state import reading_key
from hub.tokens import Scope
from schemas.ui import ChargerMessage, Error, Meter, TransactionUpdated, UiMessage, encode_ui

log = structlog.get_logger("hub.fanout")

TOO_SLOW: Final = 4000
SEND_TIMEOUT_S: Final = 10.0
# Beyond this many bytes waiting in the socket's buffer a client counts as not keeping up:
# its messages queue (and coalesce) instead of piling up as bytes.
WRITE_BUFFER_LIMIT: Final = 64 * 1024

_FIN_TEXT: Final = 0x81


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked, uncompressed server-to-client text frame (RFC 6455, 5.2)."""
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", _FIN_TEXT, size) + payload
    if size < 65536:
        return struct.pack("!BBH", _FIN_TEXT, 126, size) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, size) + payload


@dataclass(slots=True)
class _Entry:
    seq: int
    key: tuple[str, str, int | str] | None
    message: UiMessage
    payload: bytes


def _coalesce_key(message: UiMessage) -> tuple[str, str, int | str] | None:
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
    def __init__(
        self,
        ws: web.WebSocketResponse,
        scope: Scope,
        *,
        capacity: int,
        transport: asyncio.Transport | None = None,
    ) -> None:
        """``transport``: the prepared WebSocket's own, to write shared frames to directly;
        None (or a compressed connection) sends everything through the queue."""
        self.ws = ws
        self.scope = scope
        self._transport = None if ws.compress else transport
        self.chargers: set[str] = set()
        self.everything = False  # subscribed to "*": every charger the scope allows
        # Live messages at or below this sequence were already sent through a resume.
        self.floor = 0
        self.sent_seq = 0
        self.coalesced = 0
        # Queued messages discarded when it was found too slow (ocpp_hub_ui_queue_drops_total).
        self.dropped = 0
        self._capacity = max(4, capacity)
        self._lagging = self._capacity // 4
        self._queue: deque[_Entry] = deque()
        self._started = False
        self._sender: asyncio.Task[None] | None = None  # running while anything is queued
        self.too_slow = False
        self.closed = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    def wants(self, charge_point_id: str) -> bool:
        if self.everything:
            return self.scope.allows(charge_point_id)
        return charge_point_id in self.chargers

    def push(self, message: UiMessage) -> None:
        """Queue without the capacity check: snapshots, resumed history, errors."""
        if self.closed or self.too_slow:
            return
        seq = 0 if isinstance(message, Error) else message.seq
        self._queue.append(_Entry(seq, None, message, encode_ui(message)))
        self._kick()

    def offer(self, message: ChargerMessage, payload: bytes, frame: bytes) -> None:
        """A live message: its encoding and its ``text_frame``, both shared by every client.

        Applies the overflow policy."""
        if self.closed or self.too_slow or message.seq <= self.floor:
            return
        queue = self._queue
        # While a sender runs, its message may still be on its way: a direct write would
        # overtake it.
        if not queue and self._sender is None and self._write_now(frame):
            self.sent_seq = message.seq
            return
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
                            payload = encode_ui(merged)
                        queue.append(_Entry(message.seq, key, merged, payload))
                        self.coalesced += 1
                        return
            if len(queue) >= self._capacity:
                self.too_slow = True
                self.dropped += len(queue)
                queue.clear()
                self._kick()
                return
        queue.append(_Entry(message.seq, key or _coalesce_key(message), message, payload))
        self._kick()

    def _write_now(self, frame: bytes) -> bool:
        transport = self._transport
        if (
            transport is None
            or self.ws.closed
            or transport.is_closing()
            or transport.get_write_buffer_size() >= WRITE_BUFFER_LIMIT
        ):
            return False
        transport.write(frame)
        return True

    def start(self) -> None:
        """The connection is ready: from now on anything queued is sent."""
        self._started = True
        self._kick()

    def _kick(self) -> None:
        # The sender task lives only while something is queued: an idle client costs no task,
        # and a wait that would outlive a young GC generation is not created per message.
        if self._sender is None and self._started and not self.closed:
            self._sender = asyncio.get_running_loop().create_task(
                self._send_queued(), name="fanout.sender"
            )

    async def _send_queued(self) -> None:
        """Sends what is queued, in order, then ends; closes a client too far behind."""
        ws, queue = self.ws, self._queue
        try:
            while queue and not self.too_slow:
                entry = queue.popleft()
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await ws.send_frame(entry.payload, WSMsgType.TEXT)
                if entry.seq > self.sent_seq:
                    self.sent_seq = entry.seq
            if self.too_slow:
                await ws.close(
                    code=TOO_SLOW,
                    message=f"too far behind; resume with since={self.sent_seq}".encode(),
                )
        except (ConnectionError, TimeoutError) as error:
            # A client that cannot take a message in time is dead; its reader sees the close.
            log.info("fanout.send_failed", error=type(error).__name__)
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"send timed out")
        finally:
            self._sender = None

    async def stopped(self) -> None:
        """After ``close``: returns once the sender, if one was running, has ended."""
        sender = self._sender
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        if self._sender is not None:
            self._sender.cancel()
