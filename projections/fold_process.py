"""Replay's fold in a process of its own, so that it does not take turns with reading.

Reading the stream (and making the events log, about 13 µs an event) and folding it (about
30 µs) are both pure Python: in one process they share one GIL, whatever the threads, and
replay ran at a sixth of the raw read rate. Replay needs no state back from its fold, only
rows, so a child process folds and encodes each batch into one INSERT body per table, each
in a file that chDB reads itself; the parent reads the next batch meanwhile, and chDB
(which releases the GIL) stores the last.

The child is ``python -m projections.fold_process``, talking length-prefixed msgpack over
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
import gc
import os
import sys
from pathlib import Path
from typing import IO, BinaryIO, Final

import msgspec

from projections.fold import apply_message
from projections.rows import Output
from projections.state import State
from projections.store import Encoded, spool_rows

_LENGTH: Final = 4
_PIPE_BYTES: Final = 1 << 20
_EXIT_WAIT_S: Final = 5.0


class _Start(msgspec.Struct, frozen=True):
    skip: dict[str, int]
    tables: tuple[str, ...]
    # Where each batch's INSERT bodies go, one file per table.
    spool: str


# Table -> (file of its INSERT body, seq of its last row).
_Bodies = dict[str, tuple[str, int]]


class _Fold(msgspec.Struct, frozen=True, tag="fold"):
    """Events to fold into the batch being built."""

    events: list[tuple[int, bytes]]


class _Flush(msgspec.Struct, frozen=True, tag="flush"):
    """The batch is complete: its rows into files, and a reply naming them."""

    first_seq: int


class _Reply(msgspec.Struct, frozen=True):
    bodies: _Bodies = {}
    error: str = ""


_encoder: Final = msgspec.msgpack.Encoder()
_request_decoder: Final = msgspec.msgpack.Decoder(_Fold | _Flush)
_reply_decoder: Final = msgspec.msgpack.Decoder(_Reply)


def _widen(pipe: IO[bytes] | None) -> None:
    """A pipe that holds a whole chunk of events (about 1 MB): at Linux's default 64 kB,
    each chunk took a dozen hand-overs between the processes, a twentieth of the fold's
    time."""
    if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(_LENGTH, "big") + data


class FoldProcess:
    """The parent's side: ``add`` sends events as they are read, ``flush`` ends a batch
    and gets the future of its INSERT bodies. The child folds while the parent reads on,
    so a batch can be large (few parts) without the fold waiting for all of it."""

    def __init__(self, skip: dict[str, int], tables: tuple[str, ...], spool: Path) -> None:
        self._start = _Start(skip=skip, tables=tables, spool=str(spool))
        self._process: asyncio.subprocess.Process | None = None
        self._replies: asyncio.Task[None] | None = None
        self._waiting: collections.deque[asyncio.Future[dict[str, Encoded]]] = collections.deque()
        self._failure: RuntimeError | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "projections.fold_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdin is not None
        _widen(self._process.stdin.transport.get_extra_info("pipe"))
        self._process.stdin.write(_frame(_encoder.encode(self._start)))
        self._replies = asyncio.create_task(self._read_replies(), name="replay-fold-replies")

    async def add(self, events: list[tuple[int, bytes]]) -> None:
        """Fold ``events`` into the current batch (waiting while the pipe is full)."""
        await self._send(_Fold(events))

    async def flush(self, first_seq: int) -> asyncio.Future[dict[str, Encoded]]:
        """End the batch that began at ``first_seq``; the future is its bodies."""
        future: asyncio.Future[dict[str, Encoded]] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        await self._send(_Flush(first_seq))
        return future

    async def _send(self, message: _Fold | _Flush) -> None:
        assert self._process is not None and self._process.stdin is not None
        if self._failure is not None:
            raise self._failure
        self._process.stdin.write(_frame(_encoder.encode(message)))
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
            while True:
                size = int.from_bytes(await stdout.readexactly(_LENGTH), "big")
                reply = _reply_decoder.decode(await stdout.readexactly(size))
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


def _read(stream: BinaryIO) -> bytes | None:
    head = stream.read(_LENGTH)
    if len(head) < _LENGTH:
        return None
    return stream.read(int.from_bytes(head, "big"))


def main() -> None:
    """The child: fold what comes on stdin, answer each flush on stdout, until stdin ends."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # Anything printed by accident goes to stderr, not into the replies.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    start = _read(requests)
    if start is None:
        return
    settings = msgspec.msgpack.decode(start, type=_Start)
    state = State()
    spool = Path(settings.spool)
    out = Output(settings.skip)
    while (data := _read(requests)) is not None:
        try:
            request = _request_decoder.decode(data)
            if isinstance(request, _Fold):
                for seq, event in request.events:
                    apply_message(state, out, seq, event)
                continue
            files = spool_rows(out, settings.tables, spool, request.first_seq)
            reply = _Reply(
                bodies={table: (str(file.body), file.last_seq) for table, file in files.items()}
            )
        except Exception as error:  # a bug in the fold: the parent fails the replay with it
            replies.write(_frame(_encoder.encode(_Reply(error=repr(error)[:2000]))))
            replies.flush()
            raise
        replies.write(_frame(_encoder.encode(reply)))
        replies.flush()
        out = Output(settings.skip)
        # The fold's state is long-lived and free of cycles: left to the collector, its full
        # passes walk all of it again and again as it grows. Frozen, they walk only what
        # the next batch makes (refcounting still frees what the state lets go).
        gc.freeze()


if __name__ == "__main__":
    main()
