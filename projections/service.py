"""``running_projections``: the runner and the query endpoint, in the process owning chDB.

chDB allows one process per data path, so while the hub runs it is the hub that answers
``hub query`` (on the NATS subject ``ctl.query``) and runs ``hub replay``
(``ctl.projections.replay``), with the runner paused only for the final catch-up and swap.

Several ``hub project`` may run against one stream and one ClickHouse: only the holder of
the lease ``projections.<stream>`` (``hub.lease``) projects (``leased_projections``). A
standby holds nothing open, not even chDB, until it takes the lease; then it recovers from
the tables as a restarted runner does. The runner checks the lease before every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Final

import msgspec
import structlog
from nats.aio.msg import Msg

from hub.bus import Connection, connect, ensure_stream
from hub.config import Settings
from hub.lease import KvLease, leased
from projections.backends import Backend, BackendError, open_backend
from projections.fold_process import Spare
from projections.query import QueryRefused, QueryReply, QueryRequest, run_query
from projections.replay import Progress, failure_text, replay, tables_of
from projections.runner import Fenced, OnStored, Runner, RunnerSettings
from projections.schema import check_database

log = structlog.get_logger("projections")

QUERY_SUBJECT: Final = "ctl.query"
REPLAY_SUBJECT: Final = "ctl.projections.replay"
STATUS_SUBJECT: Final = "ctl.projections.status"
# Largest answer sent over NATS (its default max_payload is 1 MiB).
MAX_REPLY_BYTES: Final = 900_000
_READY_WITHIN_S: Final = 10.0

_request_decoder: Final = msgspec.json.Decoder(QueryRequest)
_encoder: Final = msgspec.json.Encoder()


def runner_settings(settings: Settings) -> RunnerSettings:
    projections = settings.projections
    return RunnerSettings(
        database=check_database(projections.database),
        batch_size=projections.batch_size,
        linger_s=projections.linger_s,
        snapshot_every=projections.snapshot_every,
        stream=settings.stream.name,
    )


class ReplayRequest(msgspec.Struct, frozen=True, kw_only=True):
    projections: list[str] = []
    from_seq: int = 1
    progress_subject: str = ""


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """What ``ctl.projections.status`` answers: how far the tables are behind the stream."""

    backend: str
    projected_seq: int
    lag_events: int
    lag_seconds: float
    stalled: bool
    # Failed attempts at the current batch (or step) since the last success.
    retries: int = 0
    # The backend's latest failure and how long ago it was (seconds; -1: none yet).
    last_error: str = ""
    last_error_age_s: float = -1.0
    # Rows the backend refused for their content since the hub started (in projection_errors).
    refused_rows: int = 0
    last_refusal: str = ""


def status_of(runner: Runner) -> Status:
    health = runner.health
    return Status(
        backend=runner.backend.name,
        projected_seq=runner.projected_seq,
        lag_events=runner.lag_events,
        lag_seconds=round(runner.lag_seconds, 3),
        stalled=health.stalled.is_set(),
        retries=health.retries,
        last_error=health.last_error,
        last_error_age_s=(
            round(time.time() - health.last_error_at, 3) if health.last_error_at else -1.0
        ),
        refused_rows=health.refused_rows,
        last_refusal=health.last_refusal,
    )


class Projections:
    def __init__(
        self,
        runner: Runner,
        backend: Backend,
        connection: Connection,
        spare: Spare | None = None,
    ) -> None:
        self.runner = runner
        self.backend = backend
        self.connection = connection
        # The fold process the next replay takes, started ahead (``hub project`` keeps one).
        self.spare = spare
        # Set once the runner stopped for good at its fence: whoever holds the lease next
        # recovers from the tables, as another runner may have written since.
        self.fenced = asyncio.Event()


async def _answer_queries(projections: Projections, msg: Msg) -> None:
    try:
        request = _request_decoder.decode(msg.data)
        data = await run_query(projections.backend, request.sql, request.format)
    except msgspec.DecodeError as error:
        reply = QueryReply(ok=False, error=f"bad request: {error}")
    except (QueryRefused, BackendError) as error:
        reply = QueryReply(ok=False, error=str(error))
    else:
        if len(data) > MAX_REPLY_BYTES:
            reply = QueryReply(
                ok=False,
                error=f"the result is larger than {MAX_REPLY_BYTES} bytes; add a LIMIT",
            )
        else:
            reply = QueryReply(ok=True, data=data.decode(errors="replace"))
    if msg.reply:
        await msg.respond(_encoder.encode(reply))


async def _replay_here(
    projections: Projections, settings: Settings, request: ReplayRequest
) -> None:
    client = projections.connection.client
    last_sent = 0.0

    def report(progress: Progress) -> None:
        nonlocal last_sent
        now = time.monotonic()
        # At most 5 updates a second; the last one always goes.
        if progress.finished or now - last_sent >= 0.2:
            last_sent = now
            pending.append(_encoder.encode(progress))

    pending: list[bytes] = []
    try:
        async with asyncio.TaskGroup() as tasks:
            work = tasks.create_task(
                replay(
                    projections.backend,
                    projections.connection,
                    database=projections.runner.settings.database,
                    stream=settings.stream.name,
                    projections=request.projections,
                    from_seq=request.from_seq,
                    runner=projections.runner,
                    on_progress=report,
                    spool_in=settings.data_dir,
                    spare=projections.spare,
                )
            )
            while not work.done():
                await asyncio.wait([work], timeout=0.2)
                while pending:
                    await client.publish(request.progress_subject, pending.pop(0))
    except* Exception as errors:
        # Whatever stopped it (the store, NATS, the fold process, the stream reader), the
        # operator waiting on the other end is told, not left to time out.
        error = failure_text(errors)
        log.warning("projections.replay_failed", error=error)
        failure = Progress(done=0, total=0, events_per_s=0, eta_s=0, finished=True, error=error)
        pending.append(_encoder.encode(failure))
    while pending:
        await client.publish(request.progress_subject, pending.pop(0))
    if projections.spare is not None:
        await projections.spare.fill()


async def _run_until_fenced(projections: Projections) -> None:
    runner = projections.runner
    try:
        await runner.run()
    except Fenced:
        # The lease ran out (NATS away, this process paused): the block's owner stops it.
        log.warning("projections.fenced", projected_seq=runner.projected_seq)
        projections.fenced.set()


@contextlib.asynccontextmanager
async def running_projections(
    settings: Settings,
    url: str,
    *,
    on_stored: OnStored | None = None,
    spare: Spare | None = None,
    fence: Callable[[], bool] | None = None,
) -> AsyncIterator[Projections]:
    """The runner, started and caught up to its recovery point, until the block ends;
    replays take ``spare``'s fold process, and it starts another for the next. The runner
    writes only while ``fence()`` says so, and stops for good once it does not."""
    backend = open_backend(settings.projections.clickhouse_url, settings.data_dir)
    connection = await connect(url, name="hub-projections")
    try:
        # The runner may start before any gateway has made the stream.
        await ensure_stream(connection.js, settings.stream)
        runner = Runner(
            connection, backend, runner_settings(settings), on_stored=on_stored, fence=fence
        )
        projections = Projections(runner, backend, connection, spare)
        async with asyncio.TaskGroup() as tasks:
            task = tasks.create_task(_run_until_fenced(projections), name="projection-runner")
            ready = tasks.create_task(runner.ready.wait(), name="projection-ready")
            # Usually ready in well under a second; a backend that is down must not hold up
            # `hub up` (the gateway already serves), so after a while it goes on without.
            await asyncio.wait(
                [task, ready], timeout=_READY_WITHIN_S, return_when=asyncio.FIRST_COMPLETED
            )
            if not ready.done():
                log.warning("projections.not_ready", waiting_for="backend")

            async def on_query(msg: Msg) -> None:
                await _answer_queries(projections, msg)

            # Queries are answered one at a time; beyond 64 waiting, NATS reports a slow
            # consumer and drops the request (the CLI then times out with a clear message).
            subscription = await connection.client.subscribe(
                QUERY_SUBJECT, cb=on_query, pending_msgs_limit=64
            )

            async def on_replay(msg: Msg) -> None:
                # One replay at a time; the request is answered at once, progress follows.
                try:
                    request = msgspec.json.decode(msg.data, type=ReplayRequest)
                    tables_of(request.projections)
                except (msgspec.DecodeError, ValueError) as error:
                    await msg.respond(_encoder.encode({"ok": False, "error": str(error)}))
                    return
                await msg.respond(_encoder.encode({"ok": True}))
                await _replay_here(projections, settings, request)

            replay_subscription = await connection.client.subscribe(
                REPLAY_SUBJECT, cb=on_replay, pending_msgs_limit=4
            )

            async def on_status(msg: Msg) -> None:
                await msg.respond(_encoder.encode(status_of(runner)))

            status_subscription = await connection.client.subscribe(
                STATUS_SUBJECT, cb=on_status, pending_msgs_limit=16
            )
            log.info("projections.running", backend=backend.name)
            try:
                yield projections
            finally:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
                    await replay_subscription.unsubscribe()
                    await status_subscription.unsubscribe()
                task.cancel()
                ready.cancel()
    finally:
        await connection.close()
        await backend.close()


# How often a process whose lease ran out by the clock looks whether its renewal came back.
_FENCED_POLL_S: Final = 0.1


def lease_key(settings: Settings) -> str:
    return f"projections.{settings.stream.name}"


class LeasedProjections:
    """``hub project`` among several: projects while it holds the lease, else waits."""

    def __init__(self, lease: KvLease) -> None:
        self.lease = lease
        # The running projections while active; None while standby.
        self.active: Projections | None = None
        # Set each time it starts projecting (tests, ``hub project``'s log).
        self.activated = asyncio.Event()
        # Set as the block that runs it ends. A cancel alone did not always stop it: nats-py
        # catches CancelledError in its flush, and Python 3.11's wait_for loses one that
        # comes as its answer does, so a stop during the start went on to project. Not
        # ``hub.tasks.stop_task``: its cancel sent again would cut short the drain of the
        # projections' connection as they stop.
        self.stopping = asyncio.Event()

    async def run(self, settings: Settings, url: str, spare: Spare | None) -> None:
        lease = self.lease
        while True:
            await _first_of(lease.held.wait(), self.stopping.wait())
            if self.stopping.is_set():
                return
            if not lease.holds():
                # Run out by the clock since the lease's last look, which has not yet told
                # (``held`` still set): its next look renews it or lets it go.
                await asyncio.sleep(_FENCED_POLL_S)
                continue
            log.info("projections.active", holder=lease.state.me)
            async with running_projections(
                settings, url, spare=spare, fence=lease.holds
            ) as projections:
                self.active = projections
                self.activated.set()
                try:
                    # A runner stopped at its fence is started again even if the lease's
                    # next renewal succeeds (``free`` then never set): else this process
                    # would hold the lease and project nothing.
                    await _first_of(
                        lease.free.wait(), projections.fenced.wait(), self.stopping.wait()
                    )
                finally:
                    self.active = None
                    self.activated.clear()
            if not self.stopping.is_set():
                log.warning("projections.standby", holder=lease.state.me)


async def _first_of(*waits: Coroutine[object, object, object]) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


@contextlib.asynccontextmanager
async def leased_projections(
    settings: Settings, url: str, *, spare: Spare | None = None
) -> AsyncIterator[LeasedProjections]:
    """Projections that run while this process holds the lease of the stream's projections,
    until the block ends; a standby until then."""
    connection = await connect(url, name="hub-projections-lease")
    try:
        async with (
            leased(connection, settings, lease_key(settings)) as lease,
            asyncio.TaskGroup() as tasks,
        ):
            projecting = LeasedProjections(lease)
            task = tasks.create_task(projecting.run(settings, url, spare), name="projections")
            try:
                yield projecting
            finally:
                projecting.stopping.set()
                task.cancel()
    finally:
        await connection.close()
