"""The fan-out's GC policy: freezing keeps automatic collections small, and a cycle that
became garbage while frozen is still collected once the heap has grown by a quarter."""

from __future__ import annotations

import asyncio
import gc
import weakref

from hub.fanout.gc_policy import GROWTH, MIN_GROWTH, FrozenObjects, gc_policy


class Node:
    def __init__(self) -> None:
        self.me = self


def test_a_full_collection_is_due_after_a_quarter_more_objects_never_for_a_little() -> None:
    frozen = FrozenObjects(baseline=1_000_000)
    assert not frozen.count(int(1_000_000 * (1 + GROWTH)))
    assert frozen.count(int(1_000_000 * (1 + GROWTH)) + 1)
    assert not FrozenObjects(baseline=1_000).count(1_000 + MIN_GROWTH)


def test_objects_are_counted_only_once_what_was_frozen_could_have_crossed_the_bound() -> None:
    frozen = FrozenObjects(baseline=1_000_000)
    assert not frozen.froze(200_000)  # even if none of them died, still within a quarter
    assert frozen.froze(60_000)  # now they might not be: count them
    assert not frozen.count(1_100_000)  # most had died
    assert not frozen.froze(150_000)  # 1.1 M counted + 150 k frozen since: within the quarter
    assert frozen.froze(150_001)


async def test_a_cycle_frozen_while_alive_is_collected_once_the_heap_grows() -> None:
    async with gc_policy(freeze_every_s=0.01):
        node = Node()
        ref = weakref.ref(node)
        await asyncio.sleep(0.05)
        del node
        gc.collect()
        assert ref() is not None  # frozen: automatic and young collections do not see it
        # Tracked objects: what a full collection walks, and what the policy counts.
        tracked = gc.get_freeze_count() + len(gc.get_objects())
        ballast: list[list[None]] = [[] for _ in range(int(tracked * 0.3) + MIN_GROWTH)]
        for _ in range(200):
            await asyncio.sleep(0.01)
            if ref() is None:
                break
        assert ref() is None
        del ballast
    assert gc.get_freeze_count() == 0  # everything is handed back to the collector
