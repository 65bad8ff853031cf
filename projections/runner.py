"""The one projection runner: fetch a batch, fold it, one INSERT per table, record, ack.

    durable pull consumer ──pull≤batch (linger)──▶ fold (pure, worker thread)
        ▲                                              │ rows per table
        └──── ack (AckAll) ◀── _progress row ◀── INSERT per table (backend thread)

ClickHouse, not the consumer, is the record of what is stored: at start the runner reads
each table's position and the latest state snapshot, and re-creates its durable consumer
at the first event after that snapshot. Events are acked only after their rows are stored.
A backend that fails pauses the runner, which retries the same batch with backoff; rows the
backend refuses for their content go to projection_errors instead (``projections.refusals``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Final, NamedTuple

import nats.errors
import nats.js.errors
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from hub.bus import Connection
from hub.pull import Batch, Puller, deliveries
from hub.subjects import EVENTS_WILDCARD
from hub.tasks import raise_if_cancelled
from projections import store
from projections.backends import Backend, BackendError
from projections.fold import fold_batch
from projections.rows import ErrorRow, Output
from projections.state import State

log = structlog.get_logger("projections.runner")

_IDLE_WAIT_S: Final = 1.0
_MAX_BACKOFF_S: Final = 5.0

# (last seq of the batch, received_at of each of its events) once the batch is stored.
OnStored = Callable[[int, list[int]], None]


class Fenced(Exception):
    """The runner may no longer write: its process no longer holds the lease (``hub
    project``), and another may write already."""


class BatchTiming(NamedTuple):
    events: int
    fold_s: float
    # Every table's INSERT and the progress row.
    store_s: float


class RunnerSettings:
    def __init__(
        self,
        *,
        database: str = "ocpp",
        batch_size: int = 1000,
        linger_s: float = 0.5,
        snapshot_every: int = 50_000,
        durable: str = "projections",
        stream: str = "OCPP_EVENTS",
    ) -> None:
        self.database = database
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.snapshot_every = snapshot_every
        self.durable = durable
        self.stream = stream


class Health:
    """What an operator needs to tell a runner that waits from one that works (``hub
    status``): set while the backend fails, and its latest failure."""

    def __init__(self) -> None:
        self.stalled = asyncio.Event()
        # Failed attempts since the last success: the same batch (or step) retried.
        self.retries = 0
        self.last_error = ""
        # Unix seconds of the latest failure, 0 before any.
        self.last_error_at = 0.0
        # Rows the store refused for their content, recorded in projection_errors.
        self.refused_rows = 0
        self.last_refusal = ""

    def failed(self, error: BaseException) -> None:
        self.retries += 1
        self.last_error = str(error)[:500]
        self.last_error_at = time.time()
        self.stalled.set()

    def succeeded(self) -> None:
        self.retries = 0
        self.stalled.clear()

    def refused(self, rows: list[ErrorRow]) -> None:
        self.refused_rows += len(rows)
        if rows:
            self.last_refusal = f"seq {rows[-1].seq} ({rows[-1].projection}): {rows[-1].reason}"


async def retrying(what: str, call: Callable[[], object], health: Health | None = None) -> None:
    """Run ``call`` (a coroutine factory) until it succeeds: a backend outage is a pause.

    ``health`` tells whoever watches the runner that it waits for the backend, and why.
    """
    backoff = 0.1
    attempts = 0
    while True:
        try:
            result = call()
            if asyncio.iscoroutine(result):
                await result
        except BackendError as error:
            attempts += 1
            if health is not None:
                health.failed(error)
            if attempts == 1:
                log.warning("projections.backend_unavailable", what=what, error=str(error)[:300])
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)
            continue
        if health is not None:
            health.succeeded()
        if attempts:
            log.info("projections.backend_back", what=what, attempts=attempts + 1)
        return


class Runner:
    def __init__(
        self,
        connection: Connection,
        backend: Backend,
        settings: RunnerSettings,
        *,
        on_stored: OnStored | None = None,
        fence: Callable[[], bool] | None = None,
    ) -> None:
        self.connection = connection
        # Whether this runner may write now, checked before every write (and every retry).
        self.fence = fence
        self.backend = backend
        self.settings = settings
        self.on_stored = on_stored
        self.state = State()
        self.lag_events = 0
        self._oldest_unstored_ms = 0
        self.ready = asyncio.Event()
        self.health = Health()
        # Set while the backend is unreachable and the runner waits for it.
        self.stalled = self.health.stalled
        self._skip: dict[str, int] = {}
        self._positions: dict[str, int] | None = None
        self._lock = asyncio.Lock()
        self._snapshot_seq = 0
        self.projected_seq = 0
        # The latest batches' sizes and stage times, for whoever measures the runner.
        self.timings: collections.deque[BatchTiming] = collections.deque(maxlen=10_000)
        self._stored = asyncio.Condition()
        # The fold is pure Python over a whole batch: off the event loop, in its own thread.
        self._fold_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fold")

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold the runner between batches (replay swaps tables under this)."""
        async with self._lock:
            yield

    @property
    def lag_seconds(self) -> float:
        """How old the oldest event not yet stored in the tables is (0 when caught up)."""
        if not self._oldest_unstored_ms:
            return 0.0
        return max(0.0, time.time() - self._oldest_unstored_ms / 1000)

    def skip_until(self, table: str, seq: int) -> None:
        """``table`` already holds every row up to ``seq`` (replay swapped it in)."""
        self._skip[table] = max(self._skip.get(table, 0), seq)
        self._positions = None

    async def wait_for(self, seq: int) -> None:
        """Return once every event up to ``seq`` is stored in every table."""
        async with self._stored:
            await self._stored.wait_for(lambda: self.projected_seq >= seq)

    async def recover(self) -> int:
        """Schema, positions and the latest snapshot; returns the first seq to read."""
        db = self.settings.database
        await retrying("schema", lambda: store.ensure_schema(self.backend, db), self.health)
        done = 0
        skip: dict[str, int] = {}

        async def read() -> None:
            nonlocal done, skip
            done = await store.progress(self.backend, db)
            skip = await store.positions(self.backend, db)
            self.state = await store.load_snapshot(self.backend, db, done)

        await retrying("positions", read, self.health)
        self._skip = skip
        self._snapshot_seq = self.state.last_seq
        self.projected_seq = max(done, self.state.last_seq)
        log.info("projections.recovered", snapshot_seq=self.state.last_seq, progress=done)
        return self.state.last_seq + 1

    async def _subscribe(self, start: int) -> Puller:
        """The consumer from ``start`` on. A JetStream API that does not answer (a cluster
        electing the stream's or the consumer's leader, just when a failover lost a pull's
        answer) is waited out, as long as this process may write: it failed the runner."""
        backoff = 0.1
        while True:
            self.check_fence()
            try:
                return await self._subscribe_once(start)
            except nats.errors.Error as error:
                log.warning(
                    "projections.subscribe_failed", start=start, error=str(error) or repr(error)
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _subscribe_once(self, start: int) -> Puller:
        js = self.connection.js
        name, stream = self.settings.durable, self.settings.stream
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, name)
        info = await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=name,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
                ack_policy=AckPolicy.ALL,
                filter_subject=EVENTS_WILDCARD,
                ack_wait=120,
                max_ack_pending=-1,
                max_waiting=4,
            ),
        )
        puller = Puller(
            self.connection.client,
            stream,
            name,
            self.settings.batch_size,
            delivered=deliveries(info),
        )
        await puller.start()
        return puller

    async def run(self) -> None:
        """Project until cancelled."""
        start = await self.recover()
        puller = await self._subscribe(start)
        self.ready.set()
        try:
            while True:
                raise_if_cancelled()
                batch = await self._fetch(puller)
                if batch.messages:
                    async with self._lock:
                        await self._project(puller, batch)
                if puller.lost:
                    # A delivery was lost (a cluster's consumer failover can drop a pull's
                    # answer, and acking what came after would ack it too): start again
                    # from the first event not folded; what followed comes again.
                    log.warning("projections.delivery_lost", folded=self.state.last_seq)
                    await puller.stop()
                    puller = await self._subscribe(self.state.last_seq + 1)
        finally:
            await puller.stop()
            self._fold_executor.shutdown(wait=True)

    def fence_for_good(self) -> None:
        """Write nothing more, whatever the lease says later: the tables may hold what this
        runner does not know of (a replay fenced halfway through its swap); a new runner
        recovers from them."""
        self.fence = lambda: False

    def check_fence(self) -> None:
        """``Fenced`` once this process may no longer write (its lease ran out)."""
        if self.fence is not None and not self.fence():
            raise Fenced

    async def _store(self, out: Output, first: int, last: int) -> None:
        self.check_fence()
        known, self._positions = self._positions, None
        # Positions are read back from the tables after a failure (an INSERT may have
        # landed even though it failed here), else carried over from the last batch.
        self._positions = await store.store_batch(
            self.backend,
            self.settings.database,
            out,
            first,
            last,
            known=known,
            on_refused=self.health.refused,
        )

    async def _snapshot(self, state: State) -> None:
        self.check_fence()
        await store.save_snapshot(self.backend, self.settings.database, state)

    async def _fetch(self, puller: Puller) -> Batch:
        """The next batch: what arrived while the last one was stored, or else the first
        event and what follows within the linger (every batch is a part per table, and
        ClickHouse wants few, large parts)."""
        batch = await puller.next_batch(
            self.settings.batch_size, linger_s=self.settings.linger_s, wait_s=_IDLE_WAIT_S
        )
        if not batch.messages and not puller.lost:
            self.lag_events, self._oldest_unstored_ms = 0, 0
            # Idle: the consumer's count of deliveries tells one lost at the tail.
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                puller.idle(
                    await self.connection.js.consumer_info(
                        self.settings.stream, self.settings.durable
                    )
                )
        return batch

    async def _project(self, puller: Puller, pulled: Batch) -> None:
        # A redelivery of what is already folded is skipped.
        batch = [(seq, data) for seq, data in pulled.messages if seq > self.state.last_seq]
        if batch:
            loop = asyncio.get_running_loop()
            state, skip = self.state, self._skip
            started = time.perf_counter()
            out, received = await loop.run_in_executor(
                self._fold_executor, fold_batch, state, skip, batch
            )
            folded = time.perf_counter()
            first, last = batch[0][0], batch[-1][0]
            self.lag_events = pulled.pending + len(batch)
            self._oldest_unstored_ms = min((ms for ms in received if ms), default=0)
            await retrying("insert", lambda: self._store(out, first, last), self.health)
            self.timings.append(
                BatchTiming(len(batch), folded - started, time.perf_counter() - folded)
            )
            if last - self._snapshot_seq >= self.settings.snapshot_every:
                await retrying("snapshot", lambda: self._snapshot(state), self.health)
                self._snapshot_seq = last
            async with self._stored:
                self.projected_seq = last
                self._stored.notify_all()
            if self.on_stored is not None:
                self.on_stored(last, received)
            log.debug("projections.batch", first=first, last=last, rows=out.count())
            latest = max(received) if received else 0
        else:
            latest = 0
        self.lag_events = pulled.pending
        # Behind: the newest stored event is this old; caught up: no lag.
        self._oldest_unstored_ms = latest if self.lag_events else 0
        # A lost ack only means a redelivery, which the seq check above skips.
        if pulled.last_reply:
            with contextlib.suppress(nats.errors.Error):
                await puller.ack_all(pulled.last_reply)
