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

Nor is a message the server sent and that never arrived passed over unseen
(:class:`DeliveryCheck`): a cluster's consumer failover can lose a pull's answer. Once one
is lost, the puller hands over what came before it and then says it is :attr:`Puller.lost`;
its caller goes on with a new consumer from the last event it took.
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
from nats.js.api import ConsumerInfo

from hub.bus import subscribe_direct
from hub.tasks import stop_task

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


class Delivery(NamedTuple):
    """A message's stream seq, the consumer's number for this delivery of it, and the count
    the consumer holds after it."""

    seq: int
    delivery: int
    pending: int


def delivery(reply: str) -> Delivery:
    """From ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``, or its
    v2 form with domain and account hash in front."""
    tokens = reply.split(".")
    base = 4 if len(tokens) == 9 else 6
    return Delivery(int(tokens[base + 1]), int(tokens[base + 2]), int(tokens[base + 4]))


def delivered(reply: bytes | bytearray) -> Delivered:
    """Stream seq and pending count from a message's ack subject as it arrived: read from
    the bytes (a bulk reader's every message; decoding them first cost twice as much)."""
    tokens = reply.split(b".")
    base = _base(tokens)
    return Delivered(int(tokens[base + 1]), int(tokens[base + 4]))


def delivered_seq(reply: bytes | bytearray) -> int:
    """The stream seq alone, for a reader that needs the pending count of its last message
    only (``delivered``)."""
    tokens = reply.split(b".")
    return int(tokens[_base(tokens) + 1])


def _base(tokens: list[bytes] | list[bytearray]) -> int:
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>... (9 tokens), or with the domain and
    # the account hash in front (11 or more).
    return 4 if len(tokens) == 9 else 6


def deliveries(info: ConsumerInfo) -> int:
    """How many deliveries the consumer counts (the number of its last)."""
    return (info.delivered.consumer_seq or 0) if info.delivered else 0


class DeliveryCheck:
    """Whether every message a consumer delivered arrived.

    A consumer numbers its deliveries one after another (a redelivery takes a new number),
    whatever subjects it filters, so a number skipped is a message sent that never arrived:
    a pull's answer lost in a cluster's consumer failover, a subscription cut off as a slow
    consumer. Stream seqs could not tell: a filtered consumer skips other subjects' events,
    and a message deleted from the stream leaves a hole for good. A number that goes back
    is a redelivery (a consumer's new leader that did not know how far the old one got):
    nothing lost, and the fold skips what it holds by stream seq.

    A loss at the tail shows no jump, since nothing follows it: :meth:`idle` compares the
    consumer's own count of deliveries, asked while nothing arrives.
    """

    def __init__(self, delivered: int = 0) -> None:
        # The number of the last delivery that arrived.
        self.last = delivered
        # The consumer's count at the last idle look, when it was ahead of ``last``.
        self.ahead = 0

    def arrived(self, delivery: int) -> bool:
        """Whether the delivery numbered ``delivery`` follows the last without a loss."""
        whole = delivery <= self.last + 1
        self.last = delivery
        return whole

    def idle(self, delivered: int) -> bool:
        """While nothing arrives: whether the consumer's count ``delivered`` says some never
        will. Only once it said so at the look before as well and those have not arrived
        since: a message may still be on its way when the server counts it."""
        ahead, self.ahead = self.ahead, delivered if delivered > self.last else 0
        return self.last < ahead


class Batch(NamedTuple):
    # (stream seq, data) in delivery order.
    messages: list[tuple[int, bytes]]
    # The ack subject of the last message: an AckAll there acks the whole batch.
    last_reply: str
    # Messages the consumer still holds after this batch.
    pending: int


class Puller:
    """Pull requests to one consumer, answered on one private inbox, kept flowing."""

    def __init__(
        self, client: NatsClient, stream: str, consumer: str, batch_size: int, *, delivered: int = 0
    ) -> None:
        """``delivered``: the consumer's count of deliveries when this starts pulling."""
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
        self._check = DeliveryCheck(delivered)
        # Set once a delivery was lost: nothing after it is buffered or asked for.
        self._lost = False

    @property
    def lost(self) -> bool:
        """Whether a delivery was lost and every message that arrived before it is handed
        over: the caller goes on from a new consumer, after the last event it took."""
        return self._lost and not self._buffer

    @property
    def suspects_loss(self) -> bool:
        """Whether the last idle look found the consumer's count ahead of what arrived: the
        next look, soon, tells."""
        return self._check.ahead > 0

    def idle(self, info: ConsumerInfo) -> None:
        """After a batch that came empty: ``info``, the consumer's, asked since, may say
        that deliveries were lost at the tail."""
        count = deliveries(info)
        if not self._lost and self._check.idle(count):
            self._lose(count)

    def _lose(self, delivery: int) -> None:
        self._lost = True
        log.warning(
            "pull.delivery_lost", subject=self.subject, after=self._check.last, delivery=delivery
        )
        # A caller waiting for a batch takes what came before at once.
        self._enough.set()
        if self._task is not None:
            self._task.cancel()

    async def start(self) -> None:
        self._sub = await subscribe_direct(self.client, self.inbox, self._on_message)
        self._task = asyncio.create_task(self._keep_pulling(), name=f"pull:{self.subject}")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await stop_task(task)
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
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
            if self._status in _NOTHING_LEFT and not self._lost:
                self._pending = 0
            self._expected = 0
            self._request_over.set()
            return
        seq, number, pending = delivery(reply)
        self._expected -= 1
        if self._lost:
            return
        if not self._check.arrived(number):
            # What the last message before said is left stays the count: the lost ones too.
            self._lose(number)
            return
        self._pending = pending
        if not self._buffer:
            self._first_at = time.monotonic()
        self._buffer.append((seq, data))
        self._replies.append(reply)
        if len(self._buffer) >= self._want:
            self._enough.set()
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
        if not self._buffer and (self._lost or not await self._wait_for(1, wait_s)):
            return Batch([], "", self._pending)
        remaining = self._first_at + linger_s - time.monotonic()
        if len(self._buffer) < size and remaining > 0 and not self._lost:
            await self._wait_for(size, remaining)
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        replies, self._replies = self._replies[:size], self._replies[size:]
        self._taken.set()
        return Batch(taken, replies[-1], self._pending + len(self._buffer))

    async def _wait_for(self, count: int, timeout_s: float) -> bool:
        """Whether ``count`` messages are buffered within ``timeout_s``."""
        self._want = count
        self._enough.clear()
        if len(self._buffer) < count and not self._lost:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._enough.wait()
        return len(self._buffer) >= count

    async def ack_all(self, reply: str) -> None:
        """Ack every message up to the one ``reply`` belongs to (``AckPolicy.ALL``)."""
        await self.client.publish(reply, b"+ACK")
