"""When the cyclic garbage collector may pause the process that serves the fan-out.

CPython's collector walks every tracked object of a generation at once while holding the GIL.
With 10,000 WebSocket clients the process holds about a million long-lived objects (~100
per connection: aiohttp's protocol, parser, reader, writer, request, timers, tasks); a full
collection of those stops the event loop for 0.5 to 2 s, and CPython starts one whenever the
objects promoted to the oldest generation since the last one reach a quarter of it. Objects
that merely live a little while (a JetStream message waiting for its turn, a heartbeat's pong
timer) get promoted and die by reference counting, but still count. That made the fan-out's
p99 0.8 to 1 s, far above its 100 ms requirement.

The policy, started by ``running_fanout`` (so ``hub up`` and ``hub fanout``):

- every ``FREEZE_EVERY_S`` seconds, ``gc.freeze()`` moves every object alive into the
  permanent generation, which automatic collections skip. They then only walk what was
  allocated since the last tick, so even a full automatic collection takes milliseconds.
  Frozen objects are still freed by reference counting the moment they are unreferenced.
- what freezing gives up: a reference cycle that becomes garbage after it was frozen is not
  collected while frozen. So once the frozen objects may have grown by ``GROWTH`` (a quarter,
  the bound CPython applies) over what the last full collection left alive, and by at least
  ``MIN_GROWTH`` objects, the policy unfreezes everything, collects in full, and freezes what
  is left. Memory held by unreachable cycles is thereby bounded by a quarter of the live
  objects, as with CPython's own rule; the full pause is paid when the set of long-lived
  objects really grows (clients connecting), not for objects that merely lived a moment.
- counting the frozen objects walks them all (~5 ms per 400,000), so it is done only when it
  could matter: each tick adds the objects it freezes (the young generations' sizes, cheap)
  to what may have been added since the last count, and only when that could have crossed
  the bound are they counted exactly. Growth is never underestimated (the frozen set grows
  only by what is frozen), so a due full collection runs within a tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import structlog

log = structlog.get_logger("hub.fanout.gc")

FREEZE_EVERY_S: Final = 1.0
GROWTH: Final = 0.25
MIN_GROWTH: Final = 20_000  # objects: a small process need not collect in full every tick


@dataclass(slots=True)
class FrozenObjects:
    """What the policy knows about the frozen objects without walking them all."""

    baseline: int  # alive after the last full collection
    counted: int = 0  # at the last exact count
    unseen: int = 0  # frozen since that count: an upper bound on the growth since

    def __post_init__(self) -> None:
        self.counted = self.baseline

    @property
    def allowance(self) -> int:
        return max(MIN_GROWTH, int(self.baseline * GROWTH))

    def froze(self, objects: int) -> bool:
        """``objects`` were just frozen; True when they may have grown past the allowance."""
        self.unseen += objects
        return self.counted + self.unseen - self.baseline > self.allowance

    def count(self, frozen: int) -> bool:
        """The exact number frozen; True when a full collection is due."""
        self.counted, self.unseen = frozen, 0
        return frozen - self.baseline > self.allowance


def full_collection() -> int:
    """Unfreeze, collect every generation, freeze what is left; returns how many that is."""
    started = time.perf_counter()
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info(
        "gc.full_collection",
        collected=collected,
        frozen=frozen,
        pause_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return frozen


def _young() -> int:
    return sum(len(gc.get_objects(generation)) for generation in range(3))


async def _run(freeze_every_s: float) -> None:
    frozen = FrozenObjects(full_collection())
    while True:
        await asyncio.sleep(freeze_every_s)
        young = _young()
        gc.freeze()
        if frozen.froze(young) and frozen.count(gc.get_freeze_count()):
            frozen = FrozenObjects(full_collection())


@contextlib.asynccontextmanager
async def gc_policy(freeze_every_s: float = FREEZE_EVERY_S) -> AsyncIterator[None]:
    """Apply the policy until the block ends; then hand everything back to the collector."""
    task = asyncio.create_task(_run(freeze_every_s), name="fanout.gc_policy")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.unfreeze()
