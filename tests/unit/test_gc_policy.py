"""The fan-out's GC policy: freezing keeps automatic collections small; a full collection
comes once the heap has grown by a quarter, or right when a surge of growth ends, and then a
cycle that became garbage while frozen is collected too."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref

from hub.gc_policy import GROWTH, MIN_GROWTH, SETTLED_GROWTH, Heap, gc_policy


class Node:
    def __init__(self) -> None:
        self.me = self


MILLION = 1_000_000


def test_a_full_collection_is_due_once_the_heap_grew_by_a_quarter_in_small_steps() -> None:
    heap = Heap(collected_at=MILLION)
    steps = [MILLION + step * 10_000 for step in range(1, 26)]  # 1 % a tick: no surge
    assert not any(heap.full_collection_due(blocks) for blocks in steps)
    assert heap.full_collection_due(int(MILLION * (1 + GROWTH)) + 10_000)


def test_a_full_collection_comes_right_when_a_surge_ends() -> None:
    heap = Heap(collected_at=MILLION)
    surge = [MILLION + step * 40_000 for step in range(1, 5)]  # +4 % a tick, +16 % in all
    assert not any(heap.full_collection_due(blocks) for blocks in surge)
    assert heap.full_collection_due(surge[-1] + 1_000)  # it ended: collect now, not later


def test_no_full_collection_after_a_surge_too_small_to_matter_or_for_a_small_heap() -> None:
    big = 10 * MILLION
    heap = Heap(collected_at=big)
    small = int(big * SETTLED_GROWTH)
    assert not heap.full_collection_due(big + small)  # a surge of a single tick...
    assert not heap.full_collection_due(big + small)  # ...that grew no more than 5 %
    heap = Heap(collected_at=big)
    assert not heap.full_collection_due(big + small + 1)
    assert heap.full_collection_due(big + small + 1)
    tiny = Heap(collected_at=1_000)
    assert not tiny.full_collection_due(1_000 + MIN_GROWTH)


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
