"""Stopping a task that loses a cancel, as nats-py's flush and Python 3.11's wait_for do."""

from __future__ import annotations

import asyncio

import pytest

from hub.tasks import stop_task


async def _renewing(lost: list[int], losing: int) -> None:
    """A loop like a lease's renewal, whose first ``losing`` cancels are swallowed."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if len(lost) == losing:
                raise
            lost.append(1)


@pytest.mark.parametrize("losing", [0, 1, 3])
async def test_a_task_that_loses_cancels_is_stopped_all_the_same(losing: int) -> None:
    lost: list[int] = []
    task = asyncio.create_task(_renewing(lost, losing))
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await stop_task(task)
    assert task.cancelled()
    assert len(lost) == losing


async def test_what_a_task_ended_with_is_left_in_it() -> None:
    async def failing() -> None:
        raise RuntimeError("gone")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    await stop_task(task)
    assert isinstance(task.exception(), RuntimeError)
