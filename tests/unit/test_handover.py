"""The reader-to-processor hand-over: in order, bounded (a full one holds the reader back),
and a waiting side is woken by the other."""

from __future__ import annotations

import asyncio

from hub.gateway.handover import Handover


async def test_items_come_out_in_order_and_a_full_handover_holds_the_producer() -> None:
    handover: Handover[int] = Handover(2)
    await handover.put(1)
    await handover.put(2)
    third = asyncio.create_task(handover.put(3))
    await asyncio.sleep(0)  # one turn of the loop: it is waiting, not done
    assert not third.done() and len(handover) == 2
    assert await handover.get() == 1
    await third
    assert [await handover.get(), await handover.get()] == [2, 3]


async def test_a_waiting_consumer_is_woken_and_a_cancelled_wait_leaves_it_usable() -> None:
    handover: Handover[str] = Handover(16)
    waiting = asyncio.create_task(handover.get())
    await asyncio.sleep(0)
    await handover.put("frame")
    assert await waiting == "frame"
    cancelled = asyncio.create_task(handover.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    await handover.put("next")
    assert await handover.get() == "next"
