"""One way to follow the stream: every in-memory fold of the hub is fed by a ``Follower``.

A follower is one pull consumer over all the subjects its fold reads, so the fold sees
their events in stream order (two per-subject consumers would interleave them as they
pleased). It starts at a sequence (1, or the one after a snapshot), says when it has
caught up with what the stream held when it started (``caught_up``), and lets a writer
wait until its own event has been folded (``reached``). When its consumer is lost (a NATS
restart, a cluster failover), it makes a new one that goes on from the next sequence, so
nothing is folded twice or skipped. So it does when a delivery is lost on the way (a pull's
answer lost in a cluster's consumer failover): ``hub.pull`` tells by the consumer's own
numbering of its deliveries, which a filtered consumer's stream seqs could not.

Pull, not push: nats-py answers a push consumer's flow control at most every 0.25 s once
the subscriber is behind, which throttles a fold that fell behind to a crawl. And pulled
through ``hub.pull``, not nats-py's ``fetch``, which waits for each message with a task and
a timeout of its own: in a busy event loop (the gateway's, at saturation) that is one loop
iteration per message, and the supervisor's fold fell tens of seconds behind the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hub.bus import Connection
from hub.logs import Throttle, suppressed_field
from hub.pull import Puller, deliveries
from hub.tasks import raise_if_cancelled, stop_task
from schemas.events import Event, decode_event

log = structlog.get_logger("hub.follower")

FETCH_BATCH: Final = 256
FETCH_WAIT_S: Final = 5.0
# The server drops a follower's consumer when its process is gone this long.
CONSUMER_IDLE_S: Final = 60.0
# How soon an idle follower looks again at a consumer that counted deliveries it never
# had: one on its way arrives within a round trip.
LOSS_CONFIRM_S: Final = 1.0
# How long a writer waits by default for its event to be folded.
REACH_WAIT_S: Final = 5.0

Apply = Callable[[Event, int], None]


class Follower:
    """Feeds ``apply(event, seq)`` the events under ``subjects``, in stream order."""

    def __init__(
        self,
        connection: Connection,
        stream: str,
        subjects: Sequence[str],
        apply: Apply,
        *,
        name: str,
        start_seq: int = 1,
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._subjects = list(subjects)
        self._apply = apply
        self.name = name
        # The last sequence folded (or passed over: the consumer skips other subjects).
        self.seq = start_seq - 1
        self.caught_up = asyncio.Event()
        # Events under its subjects not folded yet, as the server last said; and the hub's
        # time of the last one folded (ms): the lag the metrics and /readyz report.
        self.pending = 0
        # Events delivered again and passed over (a cluster's consumer failover).
        self.redelivered = 0
        # Deliveries lost on the way, each followed by a new consumer from the next seq.
        self.lost = 0
        self._folded_at_ms = 0
        self._target = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._throttle = Throttle()
        self._consumer = ""  # the consumer it follows now (a new one after a loss)
        self._consuming = asyncio.Event()  # set once there is one

    async def begin(self) -> None:
        """Follow in the background, from now on; ``caught_up`` says when it has caught up."""
        info = await self._connection.js.stream_info(self._stream)
        self._target = info.state.last_seq
        if self.seq >= self._target:
            self.caught_up.set()
        self._task = asyncio.create_task(self._run(), name=f"follow.{self.name}")

    async def start(self) -> None:
        """Follow in the background; returns once what the stream held now is folded."""
        await self.begin()
        assert self._task is not None
        caught_up = asyncio.create_task(self.caught_up.wait())
        done, _ = await asyncio.wait({self._task, caught_up}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            caught_up.cancel()
            self._task.result()  # raises what stopped it

    async def __aenter__(self) -> Follower:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is None:
            return
        await stop_task(self._task)
        if not self._task.cancelled() and (error := self._task.exception()) is not None:
            # Stopping must not fail what stops it.
            log.warning("follower.stopped_with_error", follower=self.name, error=repr(error))

    def _error(self, what: str, seq: int, error: Exception) -> None:
        """One line, cut short and throttled: a charger's garbage must not flood the log (or
        block the event loop on a full pipe)."""
        suppressed = self._throttle.admit(what)
        if suppressed is not None:
            log.error(
                what,
                follower=self.name,
                seq=seq,
                error=str(error)[:200],
                **suppressed_field(suppressed),
            )

    @property
    def lag_seconds(self) -> float:
        """How old the last event folded is while more wait; 0 when none wait."""
        if not self.pending or not self._folded_at_ms:
            return 0.0
        return max(0.0, time.time() - self._folded_at_ms / 1000)

    async def reached(self, seq: int, within_s: float = REACH_WAIT_S) -> bool:
        """Whether ``seq`` is folded within ``within_s`` seconds."""
        if self.seq >= seq:
            return True
        waiter = (seq, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within_s):
                await waiter[1]
            return True
        except TimeoutError:
            log.warning("follower.behind", follower=self.name, seq=seq, folded=self.seq)
            return False
        finally:
            self._waiters.remove(waiter)

    async def settled(self, within_s: float = REACH_WAIT_S) -> bool:
        """Whether every event under its subjects that the stream held when this was called
        is folded within ``within_s`` seconds: for a reader that must see what was stored
        before it asked (an event of another subject, last in the stream, is no sequence
        ``reached`` could wait for). The consumer's state says how far its subjects go."""
        try:
            async with asyncio.timeout(within_s):
                await self._consuming.wait()
                while True:
                    info = await self._connection.js.consumer_info(self._stream, self._consumer)
                    delivered = info.delivered.stream_seq if info.delivered else 0
                    # Delivered is in this process already; beyond it, more was stored.
                    target = (delivered or 0) + (1 if info.num_pending else 0)
                    if not await self.reached(target, within_s):
                        return False
                    if not info.num_pending:
                        return True
        except (TimeoutError, ValueError, nats.errors.Error, nats.js.errors.Error) as error:
            log.warning("follower.unsettled", follower=self.name, seq=self.seq, error=repr(error))
            return False

    async def _run(self) -> None:
        js = self._connection.js
        while True:
            config = ConsumerConfig(
                filter_subjects=self._subjects,
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.seq + 1,
                mem_storage=True,
                inactive_threshold=CONSUMER_IDLE_S,
            )
            try:
                info = await js.add_consumer(self._stream, config)
            except (nats.errors.Error, nats.js.errors.Error) as error:
                raise_if_cancelled()
                log.warning("follower.consumer_failed", follower=self.name, error=str(error))
                await asyncio.sleep(1.0)
                continue
            self.pending = info.num_pending or 0
            if info.num_pending == 0:
                self.caught_up.set()
            self._consumer = info.name
            self._consuming.set()
            puller = Puller(
                self._connection.client,
                self._stream,
                info.name,
                FETCH_BATCH,
                delivered=deliveries(info),
            )
            try:
                await puller.start()
                await self._follow(puller, info.name)
                # A delivery was lost: what follows comes from a new consumer, at once.
                self.lost += 1
                log.warning("follower.delivery_lost", follower=self.name, seq=self.seq)
                with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                    await js.delete_consumer(self._stream, info.name)
            except (nats.errors.Error, nats.js.errors.Error) as error:
                raise_if_cancelled()
                # The consumer went away (a NATS restart, say): a new one goes on from here.
                log.warning(
                    "follower.consumer_lost", follower=self.name, seq=self.seq, error=str(error)
                )
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await puller.stop()

    async def _follow(self, puller: Puller, consumer: str) -> None:
        """Fold what ``consumer`` delivers; returns once a delivery was lost."""
        while not puller.lost:
            wait_s = LOSS_CONFIRM_S if puller.suspects_loss else FETCH_WAIT_S
            batch = await puller.next_batch(FETCH_BATCH, linger_s=0.0, wait_s=wait_s)
            self.pending = batch.pending
            if not batch.messages:
                if puller.lost:
                    return
                # Nothing more under our subjects: whatever the stream held is behind us.
                self.caught_up.set()
                # A consumer that is gone delivers nothing either; this raises for it. And
                # its count of deliveries tells one lost at the tail.
                puller.idle(await self._connection.js.consumer_info(self._stream, consumer))
                continue
            for seq, data in batch.messages:
                if seq <= self.seq:
                    # Delivered again: a consumer's new leader on a cluster may not know how
                    # far the old one got (nothing is acked), and a fold takes an event once.
                    self.redelivered += 1
                    continue
                self._fold(data, seq)
            if batch.pending == 0 or self.seq >= self._target:
                self.caught_up.set()

    def _fold(self, data: bytes, seq: int) -> None:
        try:
            event = decode_event(data)
        except msgspec.DecodeError as error:
            self._error("follower.undecodable", seq, error)
        else:
            self._folded_at_ms = event.received_at
            try:
                self._apply(event, seq)
            except (ValueError, ArithmeticError, msgspec.ValidationError) as error:
                # One bad event costs itself, never the fold of the rest.
                self._error("follower.unapplicable", seq, error)
        self.seq = max(self.seq, seq)
        for target, future in self._waiters:
            if target <= seq and not future.done():
                future.set_result(None)


async def fold_once(
    connection: Connection, stream: str, subjects: Sequence[str], apply: Apply, *, name: str
) -> None:
    """Fold what the stream holds under ``subjects`` now, then stop following."""
    async with Follower(connection, stream, subjects, apply, name=name):
        pass
