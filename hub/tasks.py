"""Stopping a background task that talks to NATS.

A cancel can be lost there: nats-py catches ``CancelledError`` in its flush, and Python
3.11's ``asyncio.wait_for`` drops one that arrives together with its answer (about half of
the cancels that hit a connect or a JetStream request in flight, measured). The task then
goes on as if it had not been cancelled, and whoever awaits it waits for ever: a stop that
came at such a moment held a shutdown until its grace ran out.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

# How long a cancel is given before it is taken for lost and sent again.
_AGAIN_AFTER_S: Final = 0.5


def raise_if_cancelled() -> None:
    """In a task, after a NATS call: stop if it was asked to, even if the call swallowed
    the cancel (or turned it into a library error while its connection closed)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` until it has ended: again after each cancel it lost. What it ended
    with (its result, its error) is left in the task for the caller.

    Only for a task whose own cleanup is short: one still running when the cancel is sent
    again is cut short (``LeasedProjections``, which drains a connection as it stops, is
    told to stop by an event instead)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=_AGAIN_AFTER_S)
