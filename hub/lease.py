"""One active process among several candidates, chosen by a lease in a JetStream KV bucket.

Several ``hub supervise`` (or ``hub project``) may run against one stream; only the holder
of the role's lease writes. The lease is one key of the bucket ``HUB_LEASES``; its value
names the holder and its TTL, and its revision changes at every write:

- the holder renews it every ``renew_s`` with ``update(key, value, last=revision)``, a
  compare-and-set: a write that finds another revision than its own has lost the lease;
- a candidate reads the key every ``renew_s`` and takes it (the same compare-and-set) when
  it is absent or released, or when its revision has not changed for a whole TTL of the
  candidate's own clock: the holder stopped renewing;
- the holder counts itself the holder only until ``renew_s`` before the TTL has run out
  from the moment it *sent* its last successful write. No candidate can take the lease
  before a TTL has run out from the moment it first *saw* that write, which is later, so
  the old holder has stopped writing before a new one starts (the fence: see
  :meth:`LeaseState.holds`).

No clock is compared between machines, only durations on each one's monotonic clock, so
clock skew does not matter (clock *rates* are assumed to agree within the margin).
A standby takes over between ``ttl_s`` and ``ttl_s + renew_s`` after the holder's last
renewal; a holder that stops cleanly releases the lease, and a standby takes it at its next
look, within ``renew_s``.

:class:`LeaseState` is the decision, pure (times are passed in); :class:`KvLease` is the
shell that reads and writes the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hub.bus import Connection
from hub.config import Settings
from hub.tasks import stop_task

log = structlog.get_logger("hub.lease")

BUCKET: Final = "HUB_LEASES"


class LeaseValue(msgspec.Struct, frozen=True, kw_only=True):
    """What the key holds: who holds the lease (empty: released) and for how long after a
    renewal a candidate must wait before it may take it over."""

    holder: str = ""
    ttl_ms: int = 0


class Seen(msgspec.Struct, frozen=True):
    """The key as read: its revision and value."""

    revision: int
    value: LeaseValue


def candidate_id() -> str:
    """A holder's name: unique per process, readable in logs (host and pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseState:
    """The lease as one candidate sees it; changed only by what its reads and writes found.

    Times are seconds on the candidate's monotonic clock.
    """

    def __init__(self, me: str, *, ttl_s: float, renew_s: float) -> None:
        if not 0 < renew_s < ttl_s:
            raise ValueError(f"the lease renewal ({renew_s} s) must be shorter than its TTL")
        self.me = me
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        # The revision this candidate wrote last and holds (0: it holds nothing).
        self.revision = 0
        self.valid_until = 0.0
        # A revision of somebody else's, and when this candidate first saw it.
        self._watched: tuple[int, float] | None = None

    @property
    def value(self) -> LeaseValue:
        return LeaseValue(holder=self.me, ttl_ms=round(self.ttl_s * 1000))

    def holds(self, now: float) -> bool:
        """Whether to act as the holder at ``now``: until ``renew_s`` before the TTL has run
        out from the last write that succeeded. The margin covers a write that is checked
        here and lands a little later; a process paused longer than that between the check
        and the write is the fence's remaining window."""
        return self.revision > 0 and now < self.valid_until

    def to_take(self, seen: Seen | None, now: float) -> int | None:
        """As a candidate: the revision to take the lease over from (0: the key is new), or
        None to wait and read again."""
        if seen is None:
            return 0
        if not seen.value.holder or seen.value.holder == self.me:
            # Released, or ours already (a write whose answer was lost).
            return seen.revision
        if self._watched is None or self._watched[0] != seen.revision:
            self._watched = (seen.revision, now)
            return None
        # The holder's TTL, if longer than ours: it counts itself the holder that long.
        ttl = max(self.ttl_s, seen.value.ttl_ms / 1000)
        return seen.revision if now - self._watched[1] >= ttl else None

    def written(self, revision: int, sent_at: float) -> None:
        """A take-over or renewal sent at ``sent_at`` was stored as ``revision``."""
        self.revision = revision
        self.valid_until = sent_at + self.ttl_s - self.renew_s
        self._watched = None

    def refused(self, seen: Seen | None) -> None:
        """A renewal found another revision than ours: whose is it now?"""
        if seen is not None and seen.value.holder == self.me:
            # Our own write, whose answer was lost: still ours, valid as before.
            self.revision = seen.revision
            return
        self.lost()

    def lost(self) -> None:
        self.revision = 0
        self.valid_until = 0.0


async def lease_bucket(connection: Connection, settings: Settings) -> KeyValue:
    """The bucket of every role's lease, made on first use like the event stream."""
    stream = settings.stream
    config = KeyValueConfig(
        bucket=BUCKET,
        history=1,
        storage=StorageType.FILE if stream.storage == "file" else StorageType.MEMORY,
        replicas=stream.replicas,
    )
    try:
        return await connection.js.create_key_value(config)
    except BadRequestError:
        return await connection.js.key_value(BUCKET)


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(LeaseValue)
_NATS_ERRORS: Final = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)


class KvLease:
    """Keeps trying for the lease ``key`` of ``kv``, and renews it while it holds it.

    ``on_change(held)`` is called whenever :meth:`holds` turns true or false as seen by the
    loop (a lease that ran out while NATS was away turns false without any write).
    """

    def __init__(
        self,
        kv: KeyValue,
        key: str,
        *,
        ttl_s: float,
        renew_s: float,
        me: str | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.key = key
        self.state = LeaseState(me or candidate_id(), ttl_s=ttl_s, renew_s=renew_s)
        self._kv = kv
        self._on_change = on_change
        self._reported = False
        self.held = asyncio.Event()
        self.free = asyncio.Event()
        self.free.set()

    def holds(self) -> bool:
        """Whether to write now: check it before every batch of writes (the fence)."""
        return self.state.holds(time.monotonic())

    async def run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(self.state.renew_s)

    async def step(self) -> None:
        """One renewal, or one look at the key (and a take-over if it is free)."""
        state = self.state
        sent_at = time.monotonic()
        try:
            if state.revision:
                try:
                    revision = await self._kv.update(
                        self.key, _encoder.encode(state.value), last=state.revision
                    )
                except KeyWrongLastSequenceError:
                    state.refused(await self._read())
                else:
                    state.written(revision, sent_at)
            else:
                seen = await self._read()
                # Seen now, not when asked: the later, the safer for the TTL counted from it.
                last = state.to_take(seen, time.monotonic())
                if last is not None:
                    sent_at = time.monotonic()
                    with contextlib.suppress(KeyWrongLastSequenceError):  # another was first
                        state.written(
                            await self._kv.update(
                                self.key, _encoder.encode(state.value), last=last
                            ),
                            sent_at,
                        )
        except _NATS_ERRORS as error:
            # The lease runs out by itself if this goes on: nothing else to do here.
            log.warning("lease.unreachable", key=self.key, error=str(error) or repr(error))
        self._report()

    def _report(self, *, released: bool = False) -> None:
        held = self.holds()
        if held == self._reported:
            return
        self._reported = held
        if held:
            self.held.set()
            self.free.clear()
            log.info("lease.taken", key=self.key, holder=self.state.me)
        else:
            self.held.clear()
            self.free.set()
            if not released:  # given up on a clean stop: said as lease.released
                log.warning("lease.lost", key=self.key, holder=self.state.me)
        if self._on_change is not None:
            self._on_change(held)

    async def _read(self) -> Seen | None:
        try:
            entry = await self._kv.get(self.key)
        except KeyNotFoundError as error:
            # Deleted or purged: a marker with a revision to write over, or nothing at all.
            entry = error.entry
            if entry is None or entry.revision is None:
                return None
            return Seen(entry.revision, LeaseValue())
        assert entry.revision is not None
        try:
            value = _decoder.decode(entry.value or b"")
        except msgspec.DecodeError:
            # Not a lease the hub wrote: taken over like a released one.
            value = LeaseValue()
        return Seen(entry.revision, value)

    async def release(self) -> None:
        """Give the lease up at once (a clean stop), so a standby need not wait a TTL."""
        state = self.state
        if not state.revision:
            return
        revision = state.revision
        state.lost()
        with contextlib.suppress(*_NATS_ERRORS, KeyWrongLastSequenceError):
            await self._kv.update(self.key, _encoder.encode(LeaseValue()), last=revision)
            log.info("lease.released", key=self.key, holder=state.me)
        self._report(released=True)


@contextlib.asynccontextmanager
async def leased(
    connection: Connection,
    settings: Settings,
    key: str,
    *,
    on_change: Callable[[bool], None] | None = None,
) -> AsyncIterator[KvLease]:
    """Compete for ``key`` until the block ends; released then if held."""
    lease = KvLease(
        await lease_bucket(connection, settings),
        key,
        ttl_s=settings.lease_ttl_s,
        renew_s=settings.lease_renew_s,
        on_change=on_change,
    )
    # The first look at once: a lone candidate holds the lease before the block starts.
    await lease.step()
    task = asyncio.create_task(_keep(lease), name=f"lease.{key}")
    try:
        yield lease
    finally:
        await stop_task(task)
        await lease.release()
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


async def _keep(lease: KvLease) -> None:
    await asyncio.sleep(lease.state.renew_s)
    await lease.run()
