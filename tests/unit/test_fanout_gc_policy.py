"""The fan-out's GC policy: freezing keeps automatic collections small, and a cycle that
became garbage while frozen is still collected once the heap has grown by a quarter."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref

from hub.fanout.gc_policy import GROWTH, MIN_GROWTH, Heap, gc_policy


class Node:
    def __init__(self) -> None:
        self.me = self


def test_a_full_collection_is_due_after_a_quarter_more_heap_never_for_a_little() -> None:
    heap = Heap(baseline=1_000_000)
    assert not heap.needs_full_collection(int(1_000_000 * (1 + GROWTH)))
    assert heap.needs_full_collection(int(1_000_000 * (1 + GROWTH)) + 1)
    small = Heap(baseline=1_000)
    assert not small.needs_full_collection(1_000 + MIN_GROWTH)


async def test_a_cycle_frozen_while_alive_is_collected_once_the_heap_grows() -> None:
    async with gc_policy(freeze_every_s=0.01):
        node = Node()
        ref = weakref.ref(node)
        await asyncio.sleep(0.05)
        del node
        gc.collect()
        assert ref() is not None  # frozen: automatic and young collections do not see it
        ballast = [object() for _ in range(int(sys.getallocatedblocks() * 0.3) + MIN_GROWTH)]
        for _ in range(200):
            await asyncio.sleep(0.01)
            if ref() is None:
                break
        assert ref() is None
        del ballast
    assert gc.get_freeze_count() == 0  # everything is handed back to the collector
