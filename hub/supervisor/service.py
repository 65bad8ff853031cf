"""The supervisor's I/O shell: the stream into the core, the core's intents into the stream,
their commands to the chargers, and the clock into the stream as ``clock.tick`` events.

The core's outbox (:attr:`Supervisor.unconfirmed`) is drained only once the fold has caught
up with the stream: a restart folds the stream from the start, re-derives what it derived
before, finds those events already stored further on, and publishes only what is missing.
Commands go out only after their derived event is stored, each audited as
``admin.command.requested``/``finished`` by ``supervisor``.

Several supervisors may follow one stream; only the holder of the lease ``supervisor.<stream>``
(``hub.lease``) writes. A standby folds the stream like the active one (its state is warm)
and publishes nothing. When it takes the lease, it first folds everything the stream holds
by then, so whatever the old holder stored is confirmed and not derived again, then drains
what is left. Before each batch it stores it checks that it still holds the lease (the
fence). A command is sent only by the supervisor whose ``admin.command.requested`` the
stream stored first: the stream's deduplication by event id decides between two that race.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Final

import msgspec
import structlog

from hub.bus import Connection, EventStore, StoreError
from hub.commands import finished_event, send_requested
from hub.config import Settings, SupervisorSettings
from hub.domain.policy import Policy, parse_actions
from hub.follower import Follower
from hub.lease import KvLease, leased
from hub.metrics import Counts
from hub.supervisor import snapshot
from hub.supervisor.core import ACTOR, COMMAND_ACTIONS, Command, Supervisor
from schemas.events import AnomalyDetected, ClockTick, CommandRequested, Event, encode_event

log = structlog.get_logger("hub.supervisor")

# Commands in flight at once; more wait for a slot, none is dropped.
MAX_COMMANDS: Final = 32
COMMAND_TIMEOUT_S: Final = 30.0
SHUTDOWN_GRACE_S: Final = 5.0
# What the core folds; the rest of the stream (Heartbeats, the hub's answers to
# MeterValues and StatusNotification, ...) is about half of it and never read.
FOLDED_SUBJECTS: Final = (
    "ev.cp.*.in.StartTransaction",
    "ev.cp.*.out.StartTransaction",
    "ev.cp.*.in.StatusNotification",
    "ev.cp.*.in.MeterValues",
    "ev.cp.*.in.StopTransaction",
    # The chargers' answers to the site allocator's profiles (also in admin.command.finished).
    "ev.cp.*.in.SetChargingProfile",
    # The CALLs of its commands, which say a gateway had them (Supervisor.unsent).
    *(f"ev.cp.*.out.{action}" for action in COMMAND_ACTIONS),
    # OCPP 2.x: a TransactionEvent is a start, readings or a stop once the hub answered it.
    "ev.cp.*.in.TransactionEvent",
    "ev.cp.*.out.TransactionEvent",
    "ev.cp.*.conn.>",
    "ev.cp.*.cert.issued",
    "ev.admin.>",
    "ev.clock.>",
    "ev.wallet.>",
    "ev.integrity.>",
    "ev.session.>",
    "ev.allocation.>",
)
# A snapshot of the fold's state at most this many events or seconds apart.
SNAPSHOT_EVERY_EVENTS: Final = 50_000
SNAPSHOT_EVERY_S: Final = 60.0
# Derived events stored per JetStream round trip.
MAX_DRAIN: Final = 500
SETTLE_RETRY_S: Final = 0.2


def policy_from(settings: SupervisorSettings) -> Policy:
    shared = {
        name: getattr(settings, name) for name in Policy.__struct_fields__ if name != "actions"
    }
    return Policy(**shared, actions=parse_actions(settings.actions))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _requested(command: Command, at: int) -> CommandRequested:
    return CommandRequested(
        id=f"{command.command_id}:requested",
        received_at=at,
        actor=ACTOR,
        command_id=command.command_id,
        charge_point_id=command.charge_point_id,
        action=command.action,
        payload=msgspec.Raw(command.payload),
        timeout_s=COMMAND_TIMEOUT_S,
    )


def lease_key(settings: Settings) -> str:
    return f"supervisor.{settings.stream.name}"


class SupervisorService:
    def __init__(self, connection: Connection, store: EventStore, settings: Settings) -> None:
        self.connection = connection
        self.store = store
        self.stream = settings.stream.name
        # Set by running_supervisor; a service without one is the only writer there is.
        self.lease: KvLease | None = None
        self.following: Follower | None = None
        self.tick_ms = max(1, round(settings.supervisor.tick_s * 1000))
        self.policy = policy_from(settings.supervisor)
        self.core = Supervisor(self.policy)
        self.snapshot_path = settings.data_dir / "supervisor" / "state.json"
        self._snapshot_seq = 0
        self._snapshot_at = time.monotonic()
        self._snapshotting: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()
        self._due = asyncio.Event()
        self._published: set[str] = set()
        self._sent: set[str] = set()
        self._slots = asyncio.Semaphore(MAX_COMMANDS)
        self._tasks: set[asyncio.Task[None]] = set()
        # Anomalies this process stored, by kind (ocpp_hub_supervisor_alerts_total).
        self.alerts = Counts()

    def follower(self) -> Follower:
        """What feeds the core: the stream from the event after its state (a snapshot's)."""
        follower = Follower(
            self.connection,
            self.stream,
            FOLDED_SUBJECTS,
            self._on_event,
            name="supervisor",
            start_seq=self.core.last_seq + 1,
        )
        self.caught_up = follower.caught_up
        self.following = follower
        return follower

    def active(self) -> bool:
        """Whether to write now: the fence, checked before every batch of writes."""
        return self.lease is None or self.lease.holds()

    def on_lease(self, held: bool) -> None:
        del held  # the drain looks again either way
        self._due.set()

    async def resume(self) -> None:
        """Take up the latest snapshot, if it fits the stream; before :meth:`run`."""
        info = await self.connection.js.stream_info(self.stream)
        stream_last_seq = info.state.last_seq
        data = await asyncio.to_thread(snapshot.read, self.snapshot_path)
        found = snapshot.decode(data, self.policy) if data is not None else None
        # A snapshot ahead of the stream belongs to a stream that is gone.
        if found is not None and found.last_seq <= stream_last_seq:
            self.core = found
            self._snapshot_seq = found.last_seq
            log.info("supervisor.resumed", last_seq=found.last_seq)
        elif data is not None:
            log.warning("supervisor.snapshot_ignored", path=str(self.snapshot_path))

    def _maybe_snapshot(self) -> None:
        due = self.core.last_seq - self._snapshot_seq >= SNAPSHOT_EVERY_EVENTS or (
            time.monotonic() - self._snapshot_at >= SNAPSHOT_EVERY_S
            and self.core.last_seq > self._snapshot_seq
        )
        if not due or (self._snapshotting is not None and not self._snapshotting.done()):
            return
        # Encoded here, between two events, so it is the state after exactly last_seq.
        data = snapshot.encode(self.core)
        self._snapshot_seq, self._snapshot_at = self.core.last_seq, time.monotonic()
        self._snapshotting = asyncio.create_task(
            asyncio.to_thread(snapshot.write, self.snapshot_path, data)
        )

    def _on_event(self, event: Event, seq: int) -> None:
        self.core.apply(seq, event)
        if self.caught_up.is_set() or seq - self._snapshot_seq >= SNAPSHOT_EVERY_EVENTS:
            self._maybe_snapshot()
        if self.core.unconfirmed or self.core.commands_due:
            self._due.set()

    async def drain(self) -> None:
        """Store what the core derived, then send its commands; never on the fold's path,
        which must keep reading the stream while a store waits for its ack. It starts once
        the fold has caught up: what a restart derives again is mostly stored already. It
        runs while this supervisor holds the lease, from the moment its fold has taken in
        all that the stream held when it took it."""
        await self.caught_up.wait()
        while True:
            if self.lease is not None:
                await self.lease.held.wait()
            if not await self._settled():
                # Not yet (a consumer being made again, NATS away): look again shortly.
                await asyncio.sleep(SETTLE_RETRY_S)
                continue
            log.info("supervisor.active", folded_seq=self.core.last_seq)
            for command in list(self.core.unsent.values()):
                self._spawn(self._resend(command))
            self._due.set()
            while self.active():
                await self._due.wait()
                self._due.clear()
                await self._drain_once()
            log.warning("supervisor.standby", folded_seq=self.core.last_seq)

    async def _settled(self) -> bool:
        """Whether the fold holds everything stored so far: what a holder before this one
        stored is then confirmed, not stored again (nor its commands sent)."""
        if self.lease is None or self.following is None:
            return True
        return await self.following.settled() and self.active()

    async def _drain_once(self) -> None:
        due = [i for i in self.core.unconfirmed.values() if i.event.id not in self._published]
        if due and self.active():
            await self.store.store([intent.event for intent in due[:MAX_DRAIN]])
            for intent in due[:MAX_DRAIN]:
                self._published.add(intent.event.id)
                if isinstance(intent.event, AnomalyDetected):
                    self.alerts.add((intent.event.kind,))
                log.info(
                    "supervisor.derived",
                    type=intent.event.__struct_config__.tag,
                    id=intent.event.id,
                    cause_seq=intent.event.cause_seq,
                )
            if len(due) > MAX_DRAIN:
                self._due.set()
        self._published &= self.core.unconfirmed.keys()
        for command in list(self.core.commands_due.values()):
            if command.command_id not in self._sent:
                self._sent.add(command.command_id)
                self._spawn(self._command(command))
        self._sent &= self.core.commands_due.keys()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _command(self, command: Command) -> None:
        async with self._slots:
            requested = _requested(command, _now_ms())
            try:
                if not self.active():
                    # The next holder sends it (it is still due in every fold).
                    self._sent.discard(command.command_id)
                    return
                if not await self._first_to_request(requested):
                    log.warning(
                        "supervisor.command_requested_elsewhere", command_id=command.command_id
                    )
                    return
                await self._send(requested)
            except StoreError as error:
                # It stays due (no requested event folded): the next drain tries again.
                self._sent.discard(command.command_id)
                log.warning(
                    "supervisor.command_unstored", command_id=command.command_id, error=str(error)
                )

    async def _resend(self, command: Command) -> None:
        """A command requested before this supervisor held the lease that no gateway has
        sent yet: the one that requested it may have died before the gateway had it. Sent
        with the same id: a gateway that had it sends it once all the same."""
        async with self._slots:
            if command.command_id not in self.core.unsent or not self.active():
                return
            log.info("supervisor.command_resent", command_id=command.command_id)
            with contextlib.suppress(StoreError):
                await self._send(_requested(command, _now_ms()))

    async def _send(self, requested: CommandRequested) -> None:
        reply = await send_requested(self.connection.client, requested)
        await self.store.store([finished_event(requested, reply, _now_ms())])
        log.info(
            "supervisor.command",
            command_id=requested.command_id,
            charge_point_id=requested.charge_point_id,
            action=requested.action,
            status=reply.status,
        )

    async def _first_to_request(self, requested: CommandRequested) -> bool:
        """Store ``requested``; whether the copy in the stream is this one. Another holder's
        (one that lost the lease while it was paused, say) has the same id but another
        time, so the stream kept theirs, and they send the command, not this one."""
        [stored] = await self.store.store_acked([requested])
        if not stored.duplicate:
            return True
        # Our own earlier attempt, whose ack was lost and which the store retried, is ours.
        kept = await self.connection.js.get_msg(self.stream, seq=stored.seq, direct=True)
        return kept.data == encode_event(requested)

    async def tick(self) -> None:
        """Store ``clock.tick`` on the tick grid; two hubs store each tick once (same id)."""
        while True:
            now = _now_ms()
            at = now - now % self.tick_ms + self.tick_ms
            await asyncio.sleep((at - now) / 1000)
            if not self.active():
                continue
            try:
                await self.store.store([ClockTick(id=f"tick-{at}", received_at=at)])
            except StoreError as error:
                log.warning("supervisor.tick_unstored", error=str(error))

    async def close(self) -> None:
        if self._snapshotting is not None:
            await asyncio.gather(self._snapshotting, return_exceptions=True)
        if self.core.last_seq > self._snapshot_seq:
            await asyncio.to_thread(snapshot.write, self.snapshot_path, snapshot.encode(self.core))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def running_supervisor(
    connection: Connection, store: EventStore, settings: Settings
) -> AsyncIterator[SupervisorService]:
    service = SupervisorService(connection, store, settings)
    await service.resume()
    follower = service.follower()
    await follower.begin()
    async with leased(
        connection, settings, lease_key(settings), on_change=service.on_lease
    ) as lease:
        service.lease = lease
        tasks = [
            asyncio.create_task(service.tick(), name="supervisor.tick"),
            asyncio.create_task(service.drain(), name="supervisor.drain"),
        ]
        try:
            yield service
        finally:
            await follower.close()
            for task in tasks:
                task.cancel()
            # Bounded: shutting down must not hang on a client library that swallows a cancel.
            _, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
            if stuck:
                log.warning("supervisor.stop_timeout", tasks=sorted(t.get_name() for t in stuck))
            await service.close()
