"""When the cyclic garbage collector may pause a hub process: the fan-out, the gateway, the
projections, the supervisor.

CPython's collector walks every tracked object of a generation at once while holding the GIL.
With 10,000 WebSocket clients the process holds about a million long-lived objects (~100
per connection: aiohttp's protocol, parser, reader, writer, request, timers, tasks); a full
collection of those stops the event loop for 0.5 to 2 s, and CPython starts one whenever the
objects promoted to the oldest generation since the last one reach a quarter of it. Objects
that merely live a little while (a JetStream message waiting for its turn, a heartbeat's pong
timer) get promoted and die by reference counting, but still count. That made the fan-out's
p99 0.8 to 1 s, far above its 100 ms requirement.

The policy, started by ``running_fanout`` (the fan-out's process), by ``hub up`` for its
own (the gateway's) process and by each role ``hub up`` starts as a child (``hub.roles``):

- every ``FREEZE_EVERY_S`` seconds, ``gc.freeze()`` moves every object alive into the
  permanent generation, which automatic collections skip. They then only walk what was
  allocated since the last tick, so even a full automatic collection takes milliseconds.
  Frozen objects are still freed by reference counting the moment they are unreferenced.
- what freezing gives up: a reference cycle that becomes garbage after it was frozen is not
  collected while frozen. So the policy watches the heap, in allocated memory blocks
  (``sys.getallocatedblocks``: a walk over memory arenas, ~1 ms, where counting the frozen
  objects would walk all of them, ~100 ms at a million). Once the heap has grown by
  ``GROWTH`` (a quarter, the bound CPython applies) since the last full collection, it
  unfreezes everything, collects in full, and freezes what is left. Memory held by unreachable
  cycles is thereby bounded by a quarter of the heap, in objects: a buffer over 512 bytes is
  no pymalloc block, so one a frozen cycle holds goes unseen (aiohttp's 413 answers held
  request bodies so: ``app.answer_http_errors_without_cycles``). The full pause (0.1 to 1 s
  at 10,000 clients) is paid when the heap really grows, never for objects that merely lived
  a moment.
- the heap grows in surges (clients connecting); a threshold crossed by the tail of a surge
  would put a full pause at some random later moment. So when a surge ends (a tick grew the
  heap by less than ``SURGE`` after ticks that grew it by more), the policy collects in full
  right away if the heap grew by ``SETTLED_GROWTH`` since the last full collection: the pause
  comes while the clients that caused it are still settling in, and the next threshold is a
  quarter above the new plateau.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import structlog

log = structlog.get_logger("hub.gc")

FREEZE_EVERY_S: Final = 1.0
GROWTH: Final = 0.25
SURGE: Final = 0.02
SETTLED_GROWTH: Final = 0.05
MIN_GROWTH: Final = 100_000  # blocks: a small process need not collect in full every tick


@dataclass(slots=True)
class Heap:
    """The heap, in allocated blocks, as the policy saw it; decides what each tick does."""

    collected_at: int  # blocks after the last full collection
    previous: int = 0  # blocks at the previous tick
    surging: bool = False

    def __post_init__(self) -> None:
        self.previous = self.collected_at

    def full_collection_due(self, blocks: int) -> bool:
        grew, self.previous = blocks - self.previous, blocks
        since_collected = blocks - self.collected_at
        if grew > max(MIN_GROWTH // 10, blocks * SURGE):
            self.surging = True
        elif self.surging:
            self.surging = False
            if since_collected > max(MIN_GROWTH, self.collected_at * SETTLED_GROWTH):
                return True
        return since_collected > max(MIN_GROWTH, self.collected_at * GROWTH)


def full_collection() -> int:
    """Unfreeze, collect every generation, freeze what is left; returns the blocks left."""
    started = time.perf_counter()
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    blocks = sys.getallocatedblocks()
    log.info(
        "gc.full_collection",
        collected=collected,
        blocks=blocks,
        pause_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return blocks


async def _run(freeze_every_s: float) -> None:
    heap = Heap(full_collection())
    while True:
        await asyncio.sleep(freeze_every_s)
        if heap.full_collection_due(sys.getallocatedblocks()):
            heap = Heap(full_collection())
        else:
            gc.freeze()


@contextlib.asynccontextmanager
async def gc_policy(freeze_every_s: float = FREEZE_EVERY_S) -> AsyncIterator[None]:
    """Apply the policy until the block ends; then hand everything back to the collector."""
    task = asyncio.create_task(_run(freeze_every_s), name="gc_policy")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.unfreeze()
