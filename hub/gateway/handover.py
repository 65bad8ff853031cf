"""A bounded hand-over between one producer and one consumer task: what ``asyncio.Queue``
does for a charger's reader and processor, at a thirtieth of its memory.

An ``asyncio.Queue`` holds four deques (its items, its waiting getters and putters, and its
``join`` event's waiters), about 3 KB before anything is in it; a gateway holds one per
charger. Here: a short list and at most one waiting future each way, made when it waits.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Handover(Generic[T]):
    """At most ``depth`` items from one producer to one consumer, in order; ``put`` waits
    while it is full (which pushes back on the charger through TCP), ``get`` while empty."""

    __slots__ = ("_depth", "_getter", "_items", "_putter")

    def __init__(self, depth: int) -> None:
        self._depth = depth
        self._items: list[T] = []
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: T) -> None:
        while len(self._items) >= self._depth:
            self._putter = asyncio.get_running_loop().create_future()
            try:
                await self._putter
            finally:
                self._putter = None
        self._items.append(item)
        _wake(self._getter)

    async def get(self) -> T:
        while not self._items:
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        # The list is short (its depth is 16): popping its front costs less than a deque.
        item = self._items.pop(0)
        _wake(self._putter)
        return item


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
