"""Batches from a JetStream pull consumer, without nats-py's cost per message: the
projections runner and every ``Follower`` read the stream through it.

nats-py's ``fetch`` waits for every message with a task and a timeout of its own (about
70 µs each: replay read 11k events/s where the stream gives 40-60k), and a fetch that got a
first message keeps waiting for the rest of its batch until its whole timeout, which was
most of the runner's lag.

Here one pull request is always outstanding while there is room, and one subscription
callback collects what the server sends into a buffer (at most about two batches). So the
stream keeps flowing while the caller folds and stores, and ``next_batch`` hands over what
has arrived: at once if it is a full batch or has waited ``linger_s`` already, else after
the rest of that linger.

Messages are never dropped: a message that arrives after its request was given up on (a
slow server, a reconnect) is buffered like any other, so an ``AckAll`` never acks an event
that was not projected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final, NamedTuple

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription

from hub.bus import subscribe_direct

log = structlog.get_logger("hub.pull")

# Statuses that also say the consumer had nothing more to deliver.
_NOTHING_LEFT: Final = frozenset({"404", "408"})
# How long an idle request waits on the server before it is renewed.
_REQUEST_EXPIRES_S: Final = 1.0
# An answer may trail its request's expiry by a round trip; past this it is given up on.
_GRACE_S: Final = 2.0
_encoder: Final = msgspec.json.Encoder()


class Delivered(NamedTuple):
    """What a message's ack subject says about it."""

    seq: int
    pending: int


def delivered(reply: str) -> Delivered:
    """Stream seq and pending count from ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.
    <cseq>.<ts>.<pending>``, or its v2 form with domain and account hash in front."""
    tokens = reply.split(".")
    base = 4 if len(tokens) == 9 else 6
    return Delivered(int(tokens[base + 1]), int(tokens[base + 4]))


class Batch(NamedTuple):
    # (stream seq, data) in delivery order.
    messages: list[tuple[int, bytes]]
    # The ack subject of the last message: an AckAll there acks the whole batch.
    last_reply: str
    # Messages the consumer still holds after this batch.
    pending: int


class Puller:
    """Pull requests to one consumer, answered on one private inbox, kept flowing."""

    def __init__(self, client: NatsClient, stream: str, consumer: str, batch_size: int) -> None:
        self.client = client
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.inbox = client.new_inbox()
        self.batch_size = batch_size
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._buffer: list[tuple[int, bytes]] = []
        # Each buffered message's ack subject, in step with ``_buffer``.
        self._replies: list[str] = []
        # When the oldest buffered message arrived (monotonic).
        self._first_at = 0.0
        self._pending = 0
        # Messages the outstanding request may still bring.
        self._expected = 0
        # The status that ended the last request, if one did.
        self._status = ""
        self._request_over = asyncio.Event()
        # Set once the buffer holds ``_want`` messages.
        self._want = 1
        self._enough = asyncio.Event()
        self._taken = asyncio.Event()

    async def start(self) -> None:
        self._sub = await subscribe_direct(self.client, self.inbox, self._on_message)
        self._task = asyncio.create_task(self._keep_pulling(), name=f"pull:{self.subject}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    def _on_message(self, subject: str, reply: str, data: bytes, status: str) -> None:
        del subject
        if status:
            # 404 nothing stored, 408 expired, 409 consumer gone or replaced...: each ends
            # the request it answers.
            self._status = status
            if self._status in _NOTHING_LEFT:
                self._pending = 0
            self._expected = 0
            self._request_over.set()
            return
        seq, self._pending = delivered(reply)
        if not self._buffer:
            self._first_at = time.monotonic()
        self._buffer.append((seq, data))
        self._replies.append(reply)
        if len(self._buffer) >= self._want:
            self._enough.set()
        self._expected -= 1
        if self._expected <= 0:
            self._status = ""
            self._request_over.set()

    async def _keep_pulling(self) -> None:
        while True:
            room = self.batch_size - len(self._buffer)
            if room <= 0:
                # Full: the next request waits until the caller takes a batch.
                self._taken.clear()
                await self._taken.wait()
                continue
            self._expected = room
            self._request_over.clear()
            request = {"batch": room, "expires": int(_REQUEST_EXPIRES_S * 1e9)}
            try:
                await self.client.publish(self.subject, _encoder.encode(request), self.inbox)
            except nats.errors.Error as error:
                log.warning(
                    "pull.failed", subject=self.subject, error=str(error) or type(error).__name__
                )
                await asyncio.sleep(_REQUEST_EXPIRES_S)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_REQUEST_EXPIRES_S + _GRACE_S):
                    await self._request_over.wait()
            if self._status and self._status not in _NOTHING_LEFT:
                # Refused (409: too many requests waiting, consumer replaced...): not in a
                # tight loop.
                await asyncio.sleep(0.1)

    async def next_batch(self, size: int, *, linger_s: float, wait_s: float) -> Batch:
        """Up to ``size`` messages, once the oldest has waited ``linger_s`` (at once when
        ``size`` are there); empty if none arrives within ``wait_s``."""
        if not self._buffer and not await self._wait_for(1, wait_s):
            return Batch([], "", self._pending)
        remaining = self._first_at + linger_s - time.monotonic()
        if len(self._buffer) < size and remaining > 0:
            await self._wait_for(size, remaining)
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        replies, self._replies = self._replies[:size], self._replies[size:]
        self._taken.set()
        return Batch(taken, replies[-1], self._pending + len(self._buffer))

    async def _wait_for(self, count: int, timeout_s: float) -> bool:
        """Whether ``count`` messages are buffered within ``timeout_s``."""
        self._want = count
        self._enough.clear()
        if len(self._buffer) < count:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._enough.wait()
        return len(self._buffer) >= count

    async def ack_all(self, reply: str) -> None:
        """Ack every message up to the one ``reply`` belongs to (``AckPolicy.ALL``)."""
        await self.client.publish(reply, b"+ACK")
