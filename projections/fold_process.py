"""Replay's fold in a process of its own, so that it does not take turns with reading.

Reading the stream (and making the events log, about 13 µs an event) and folding it (about
30 µs) are both pure Python: in one process they share one GIL, whatever the threads, and
replay ran at a sixth of the raw read rate. Replay needs no state back from its fold, only
rows, so a child process folds and encodes each batch into one INSERT body per table, each
in a file that chDB reads itself; the parent reads the next batch meanwhile, and chDB
(which releases the GIL) stores the last.

The child is ``python -m projections.fold_child``, talking length-prefixed msgpack over
its stdin and stdout: not a fork (the parent runs chDB's and nats-py's threads, whose locks a
fork would copy mid-flight) and not multiprocessing's spawn (which re-imports the parent's
main module). It applies each event with the very same ``apply_message`` as the runner, on
a state of its own that starts empty, as a replay does; batches are answered in the order
they were sent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import sys
from pathlib import Path
from typing import IO, Final

from projections.bodies import Encoded
from projections.fold_child import LENGTH, Flush, Fold, Start, encoder, frame, reply_decoder

_PIPE_BYTES: Final = 1 << 20
# What the parent may write ahead of the child: the child takes a few tenths of a second to
# start (imports), and the parent reads on and makes the events log meanwhile instead of
# waiting at the first full pipe. About 10,000 events.
_AHEAD_BYTES: Final = 8 << 20
_EXIT_WAIT_S: Final = 5.0


def _widen(pipe: IO[bytes] | None) -> None:
    """A pipe that holds a whole chunk of events (about 1 MB): at Linux's default 64 kB,
    each chunk took a dozen hand-overs between the processes, a twentieth of the fold's
    time."""
    if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


async def _spawn() -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "projections.fold_child",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _started(process: asyncio.subprocess.Process) -> None:
    """Its first frame, empty: the fold process has imported what it folds with."""
    assert process.stdout is not None
    await process.stdout.readexactly(LENGTH)


class Spare:
    """A fold process started ahead of the replay that will take it, waiting for its
    ``Start``: its imports (a quarter of a second, a tenth of a replay of 100,000 events,
    and the fold is the stage the others wait for) are behind it when the replay begins.
    ``hub project``, where replays run, keeps one; it costs about 40 MB."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        # Whether its first frame, read, said its imports are done.
        self._ready = False

    async def __aenter__(self) -> Spare:
        await self.fill()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def fill(self) -> None:
        if self._process is None or self._process.returncode is not None:
            self._process, self._ready = await _spawn(), False

    async def warm(self) -> None:
        """Wait until the waiting process has its imports behind it."""
        if self._process is not None and not self._ready:
            with contextlib.suppress(asyncio.IncompleteReadError):  # gone: the replay says so
                await _started(self._process)
                self._ready = True

    @property
    def pid(self) -> int | None:
        """The waiting fold process's, if one waits."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def take(self) -> tuple[asyncio.subprocess.Process | None, bool]:
        """The waiting process, if one waits, and whether its first frame was read."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return None, False
        return process, self._ready

    async def close(self) -> None:
        process, _ = self.take()
        if process is not None:
            # It has read nothing yet: its stdin's end is its end.
            assert process.stdin is not None
            process.stdin.close()
            try:
                async with asyncio.timeout(_EXIT_WAIT_S):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


class FoldProcess:
    """The parent's side: ``add`` sends events as they are read, ``flush`` ends a batch
    and gets the future of its INSERT bodies. The child folds while the parent reads on,
    so a batch can be large (few parts) without the fold waiting for all of it. The child
    is ``spare``'s if it has one, else started now."""

    def __init__(
        self,
        skip: dict[str, int],
        tables: tuple[str, ...],
        spool: Path,
        spare: Spare | None = None,
    ) -> None:
        self._start = Start(skip=skip, tables=tables, spool=str(spool))
        self._spare = spare
        self._process: asyncio.subprocess.Process | None = None
        self._started = False
        self._replies: asyncio.Task[None] | None = None
        self._waiting: collections.deque[asyncio.Future[dict[str, Encoded]]] = collections.deque()
        self._failure: RuntimeError | None = None

    async def start(self) -> None:
        warm, self._started = self._spare.take() if self._spare is not None else (None, False)
        self._process = warm or await _spawn()
        assert self._process.stdin is not None
        transport = self._process.stdin.transport
        _widen(transport.get_extra_info("pipe"))
        transport.set_write_buffer_limits(high=_AHEAD_BYTES)
        self._process.stdin.write(frame(encoder.encode(self._start)))
        self._replies = asyncio.create_task(self._read_replies(), name="replay-fold-replies")

    async def add(self, events: list[tuple[int, bytes]]) -> None:
        """Fold ``events`` into the current batch (waiting while the pipe is full)."""
        await self._send(Fold(events))

    async def flush(self, first_seq: int) -> asyncio.Future[dict[str, Encoded]]:
        """End the batch that began at ``first_seq``; the future is its bodies."""
        future: asyncio.Future[dict[str, Encoded]] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        await self._send(Flush(first_seq))
        return future

    async def _send(self, message: Fold | Flush) -> None:
        assert self._process is not None and self._process.stdin is not None
        if self._failure is not None:
            raise self._failure
        self._process.stdin.write(frame(encoder.encode(message)))
        try:
            await self._process.stdin.drain()
        except ConnectionError:
            # The child is gone; why is in the replies, read to their end.
            assert self._replies is not None
            await asyncio.wait([self._replies])
            raise self._failure or RuntimeError("replay fold: the fold process exited") from None

    async def _read_replies(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        stdout = process.stdout
        error = ""
        try:
            if not self._started:
                await _started(process)
            while True:
                size = int.from_bytes(await stdout.readexactly(LENGTH), "big")
                reply = reply_decoder.decode(await stdout.readexactly(size))
                if reply.error:
                    error = reply.error
                    break
                future = self._waiting.popleft()
                if not future.done():
                    future.set_result(
                        {
                            table: Encoded(Path(path), last_seq)
                            for table, (path, last_seq) in reply.bodies.items()
                        }
                    )
        except asyncio.IncompleteReadError:
            error = f"the fold process exited (code {await process.wait()})"
        except Exception as failure:  # a garbled reply: nothing after it can be trusted
            error = f"unreadable reply: {failure!r}"
        self._failure = RuntimeError(f"replay fold: {error}")
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.done():
                waiting.set_exception(self._failure)

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(_EXIT_WAIT_S):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._replies is not None:
            self._replies.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replies
