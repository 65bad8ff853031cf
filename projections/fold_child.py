"""Replay's fold process itself: ``python -m projections.fold_child`` (``fold_process`` is the
parent's side). It imports only the fold and the encoding of rows, so it starts in a tenth of
a second, not in the quarter of one that the store's logging and the parent's asyncio cost:
the parent waits for a child that has not started yet.

Length-prefixed msgpack on stdin (a ``Start``, then ``Fold`` and ``Flush`` requests) and on
stdout (an empty frame once imported, then a ``Reply`` per flush, in order).
"""

from __future__ import annotations

import gc
import os
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

import msgspec

from projections.bodies import Spool
from projections.fold import apply_message
from projections.rows import Output
from projections.state import State

LENGTH: Final = 4


class Start(msgspec.Struct, frozen=True):
    skip: dict[str, int]
    tables: tuple[str, ...]
    # Where each batch's INSERT bodies go, one file per table.
    spool: str


# Table -> (file of its INSERT body, seq of its last row).
Bodies = dict[str, tuple[str, int]]


class Fold(msgspec.Struct, frozen=True, tag="fold"):
    """Events to fold into the batch being built."""

    events: list[tuple[int, bytes]]


class Flush(msgspec.Struct, frozen=True, tag="flush"):
    """The batch is complete: its rows into files, and a reply naming them."""

    first_seq: int


class Reply(msgspec.Struct, frozen=True):
    bodies: Bodies = {}
    error: str = ""


encoder: Final = msgspec.msgpack.Encoder()
reply_decoder: Final = msgspec.msgpack.Decoder(Reply)
_request_decoder: Final = msgspec.msgpack.Decoder(Fold | Flush)


def frame(data: bytes) -> bytes:
    return len(data).to_bytes(LENGTH, "big") + data


def _read(stream: BinaryIO) -> bytes | None:
    head = stream.read(LENGTH)
    if len(head) < LENGTH:
        return None
    return stream.read(int.from_bytes(head, "big"))


# Requests read ahead of the fold (each up to a chunk of events, about 1 MB).
_READ_AHEAD: Final = 8


def _read_ahead(stream: BinaryIO) -> Iterator[bytes]:
    """The requests on ``stream``, read by a thread of their own while the fold works.

    A pipe holds 1 MB at most (about 50 ms of folding), and it is refilled only when the
    parent's event loop gets to run: each time that loop was busy or waited for a core,
    the fold waited for it, a twentieth of a replay. Read on at once, the pipe makes
    room for the parent's next write, and the requests wait here instead."""
    requests: queue.Queue[bytes | None] = queue.Queue(_READ_AHEAD)

    def read() -> None:
        try:
            while (data := _read(stream)) is not None:
                requests.put(data)
        finally:
            requests.put(None)

    threading.Thread(target=read, name="fold-read-ahead", daemon=True).start()
    while (data := requests.get()) is not None:
        yield data


class Folder:
    """The child's work, apart from its pipes: each request in, a reply per flush out."""

    def __init__(self, settings: Start) -> None:
        self._settings = settings
        self._state = State()
        self._out = Output(settings.skip)
        self._batches = 0
        self._spool: Spool | None = None

    def handle(self, request: Fold | Flush) -> Reply | None:
        if isinstance(request, Fold):
            for seq, event in request.events:
                apply_message(self._state, self._out, seq, event)
            if self._spool is None:
                self._spool = Spool(
                    self._settings.tables, Path(self._settings.spool), f"fold{self._batches}"
                )
            self._spool.take(self._out)
            return None
        files = self._spool.close() if self._spool is not None else {}
        self._spool = None
        self._batches += 1
        # The fold's state is long-lived and free of cycles: left to the collector, its full
        # passes walk all of it again and again as it grows. Frozen, they walk only what
        # the next batch makes (refcounting still frees what the state lets go).
        gc.freeze()
        return Reply(
            bodies={table: (str(file.body), file.last_seq) for table, file in files.items()}
        )


def main() -> None:
    """The child: fold what comes on stdin, answer each flush on stdout, until stdin ends."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # Anything printed by accident goes to stderr, not into the replies.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    # Imported: a parent that keeps this process waiting may count on it being quick now.
    replies.write(frame(b""))
    replies.flush()
    start = _read(requests)
    if start is None:
        return
    folder = Folder(msgspec.msgpack.decode(start, type=Start))
    for data in _read_ahead(requests):
        try:
            reply = folder.handle(_request_decoder.decode(data))
        except Exception as error:  # a bug in the fold: the parent fails the replay with it
            replies.write(frame(encoder.encode(Reply(error=repr(error)[:2000]))))
            replies.flush()
            raise
        if reply is not None:
            replies.write(frame(encoder.encode(reply)))
            replies.flush()
    replies.close()
    sys.stderr.flush()
    # Every reply is out: the state goes with the process, not freed object by object (a
    # tenth of a second after 100,000 events, which the replay waited for).
    os._exit(0)


if __name__ == "__main__":
    main()
