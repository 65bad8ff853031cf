"""``hub replay``: rebuild projected tables from the stream into shadow tables, then swap.

Analysts keep reading the old tables until ``EXCHANGE TABLES`` swaps each one with its
rebuilt shadow, atomically. With ``--from-seq N`` the rows below N are copied over and only
the rest is re-projected (the state is still folded from the first event, since sessions
and bills depend on everything before N). When the hub is running, the runner is held for
the final catch-up and swap only, so the gateway never stops and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, NamedTuple

import msgspec
import structlog

from hub.bus import Connection
from projections import refusals, store
from projections.backends import Backend, BackendError
from projections.events_log import event_row, undecodable_row
from projections.fold import folds
from projections.fold_process import FoldProcess, Spare
from projections.rows import TABLES, EventRow, Output
from projections.runner import Fenced, Runner, retrying
from projections.schema import ALIASES, GROUPS, PROJECTED, table_ddl
from projections.store import ERRORS, Encoded
from projections.stream_reader import StreamReader
from schemas.events import decode_event

log = structlog.get_logger("projections.replay")

SHADOW: Final = "__replay"
# Events per batch, one INSERT per table each: few, large parts. chDB merges a table's parts
# in the background once there are more than a few, and that rewrites them: 100k events in
# 8 batches cost chDB 10 µs an event, in 4 batches 7, in one 6.
BATCH: Final = 50_000
# Towards the end of the stream a batch ends once what is left to read is at most a third of
# it, so the last one, stored after the fold is done, is small; storing a batch costs about a
# third of folding it, so each store is done while the next (smaller) batch is folded.
_TAIL: Final = 3
# But never smaller than this: a store costs about 0.1 s whatever its size (an INSERT per
# table, each ~8 ms in chDB), which is the fold of some 4,000 events. Two small batches at the
# end were two such stores in a row after the fold was done, a tenth of a 100k replay.
_LAST_AT_LEAST: Final = 10_000
# Messages the stream reader buffers ahead of the fold.
_READ_AHEAD: Final = 20_000
# Events per message to the fold process: it folds a batch as it is read, not once whole.
CHUNK: Final = 2_000
# The first chunks are smaller, doubling up to CHUNK: the fold process, the stage every
# other waits for, starts on the first events read instead of after 2,000 are decoded.
_FIRST_CHUNK: Final = 125
# Events decoded between two turns of the event loop.
_YIELD_EVERY: Final = 250
_NOTHING: Final = 1 << 62
_GLOB: Final = re.compile(r"[*?{}\[\]]")


class Folded(NamedTuple):
    """A batch on its way to the store: its INSERT bodies once the fold process is done,
    and the events log's, done already."""

    bodies: asyncio.Future[dict[str, Encoded]]
    events_log: dict[str, Encoded]
    first: int
    last: int
    events: int


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    done: int
    total: int
    events_per_s: float
    eta_s: float
    finished: bool = False
    error: str = ""


def failure_text(error: BaseException) -> str:
    """What stopped a replay, for the operator: the first error a task group holds."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return str(error) or type(error).__name__


def tables_of(names: list[str]) -> tuple[str, ...]:
    """The tables behind projection names (all when empty); ``ValueError`` names the unknown."""
    if not names:
        return tuple(table for group in GROUPS.values() for table in group)
    tables: list[str] = []
    for name in names:
        group = ALIASES.get(name, name)
        if group not in GROUPS:
            choices = ", ".join([*GROUPS, *ALIASES])
            raise ValueError(f"--projection {name!r}: not a projection (one of {choices})")
        tables += [table for table in GROUPS[group] if table not in tables]
    return tuple(tables)


async def _stream_end(connection: Connection, stream: str) -> int:
    info = await connection.js.stream_info(stream)
    end: int = info.state.last_seq
    return end


class _Reader:
    """The whole stream through an ephemeral consumer, no acks: replay only reads."""

    def __init__(self, connection: Connection, stream: str) -> None:
        self.source = StreamReader(connection, stream, batch_size=_READ_AHEAD)
        self.next_seq = 1
        self.chunk = _FIRST_CHUNK
        # Read past the end of one catch-up (a gap in seqs): the start of the next one.
        self.held: list[tuple[int, bytes]] = []

    async def open(self) -> None:
        await self.source.start()

    async def read_until(self, end: int) -> list[tuple[int, bytes]]:
        """The next chunk, none past ``end``."""
        if self.next_seq > end:
            return []
        if self.held:
            messages, self.held = self.held, []
        else:
            wanted = min(self.chunk, end - self.next_seq + 1)
            self.chunk = min(CHUNK, self.chunk * 2)
            messages = await self.source.take(wanted, wait_s=5.0)
        if messages and messages[-1][0] > end:
            self.held = [(seq, data) for seq, data in messages if seq > end]
            messages = [(seq, data) for seq, data in messages if seq <= end]
            # Delivered in order: nothing at or below ``end`` is left to read.
            self.next_seq = end + 1
        elif messages:
            self.next_seq = messages[-1][0] + 1
        return messages

    async def close(self) -> None:
        await self.source.close()


async def replay(
    backend: Backend,
    connection: Connection,
    *,
    database: str,
    stream: str,
    projections: list[str],
    from_seq: int = 1,
    runner: Runner | None = None,
    on_progress: Callable[[Progress], None] = lambda _: None,
    spool_in: Path | None = None,
    spare: Spare | None = None,
) -> Progress:
    """Rebuild ``projections`` (all when empty). Batches on their way from the fold process
    to the store wait as files (about 35 MB each, at most four) in a temporary directory
    under ``spool_in``: the hub and the CLI pass their data directory; without one, it is
    the system's temporary directory. The fold process is ``spare``'s, if it has one."""
    tables = tables_of(projections)
    db = database
    # Rows only for the rebuilt tables, and only from from_seq on. The events log needs no
    # state: it is made as the stream is read, and the fold process (the slowest stage)
    # skips it.
    skip = {table: _NOTHING for table in TABLES}
    skip.update({table: from_seq - 1 for table in tables if table != "events"})
    if spool_in is not None and _GLOB.search(str(spool_in)):
        # ClickHouse's file() reads such characters as a pattern, not as the name.
        spool_in = None
    with tempfile.TemporaryDirectory(prefix="replay-spool-", dir=spool_in) as spool:
        folder = FoldProcess(skip, tables, Path(spool), spare)
        await folder.start()
        try:
            return await _replay(
                backend,
                connection,
                folder,
                Path(spool),
                db=db,
                stream=stream,
                tables=tables,
                from_seq=from_seq,
                runner=runner,
                on_progress=on_progress,
            )
        finally:
            await folder.close()


async def _replay(
    backend: Backend,
    connection: Connection,
    folder: FoldProcess,
    spool: Path,
    *,
    db: str,
    stream: str,
    tables: tuple[str, ...],
    from_seq: int,
    runner: Runner | None,
    on_progress: Callable[[Progress], None],
) -> Progress:
    async def prepare() -> dict[str, str]:
        """The shadow tables, and how their rows' files are read."""
        await retrying("schema", lambda: store.ensure_schema(backend, db))
        shadows = [table + SHADOW for table in tables]
        # Only a replay that stopped half-way leaves shadows behind: one look finds them,
        # instead of a DROP for each (each statement costs chDB milliseconds, and about 30
        # of them ran while the first batch was folded, on the fold's machine).
        left = await store.columns_of(backend, db, shadows)
        for table in tables:
            if table + SHADOW in left:
                await backend.execute(f"DROP TABLE IF EXISTS {db}.{table}{SHADOW}")
            await backend.execute(table_ddl(db, table, table + SHADOW))
            if from_seq > 1:
                await backend.execute(
                    f"INSERT INTO {db}.{table}{SHADOW} SELECT * FROM {db}.{table} "
                    f"WHERE seq < {int(from_seq)}"
                )
        structures = await store.columns_of(backend, db, shadows)
        return {table: structures[table + SHADOW] for table in tables}

    # The DDL (about a second of chDB's time) goes on while the first batches are read and
    # folded; only storing waits for it.
    preparing = asyncio.create_task(prepare(), name="replay-prepare")
    reader = _Reader(connection, stream)
    started = time.monotonic()

    def stage(name: str, **ids: int) -> None:
        # The replay's timeline (where a stage waits for another), at debug level.
        log.debug("replay.stage", stage=name, at_s=round(time.monotonic() - started, 3), **ids)

    done = 0
    # The shadow tables' positions, carried from batch to batch (read back after a failure).
    # Rows copied below from_seq are below every body's rows.
    known: dict[str, int] | None = {}

    async def store_one(
        bodies: dict[str, Encoded],
        first: int,
        last: int,
        structures: dict[str, str],
        screen: bool = True,
    ) -> None:
        nonlocal known
        current, known = known, None
        stored = await store.store_encoded(
            backend,
            db,
            bodies,
            first,
            last,
            suffix=SHADOW,
            known=current,
            structures=structures,
            # Without its own projection_errors, a replay only logs the rows the store
            # refuses: the runner recorded them when it stored the live table.
            keeps_errors=ERRORS in tables,
            screen=screen,
        )
        # After a failure only these tables' positions were read: the others default to
        # 0, right for bodies not sent yet (a failed one is retried with positions read).
        known = stored

    async def store_log(item: Folded, structures: dict[str, str]) -> bool:
        """The batch's events log, made as it was read, stored while the fold process
        still folds the batch: storing it was a third of the store's time, and the last
        batches' waited for the fold's end. False if the store refuses some of its rows:
        then it goes with the fold's bodies, whose projection_errors records them."""
        logged = True

        async def attempt() -> None:
            nonlocal logged
            try:
                await store_one(item.events_log, item.first, item.last, structures, screen=False)
            except BackendError as error:
                if not refusals.refused(error):
                    raise  # an outage: waited out
                logged = False

        await retrying("replay insert", attempt)
        return logged

    def events_rows() -> Output:
        return Output({"events": from_seq - 1 if "events" in tables else _NOTHING})

    async def read_to(target: int) -> None:
        """Three stages that overlap: read from NATS (and make the events log), fold (in
        the fold process, as the chunks come), store (chDB's thread); at most two folded
        batches wait for the store."""
        storing: asyncio.Queue[Folded | None] = asyncio.Queue(2)

        async def read() -> None:
            first, last, events = 0, 0, 0
            rows = events_rows()

            async def flush() -> None:
                nonlocal first, last, events, rows
                folded = await folder.flush(first)
                folded.add_done_callback(functools.partial(_folded, stage, first))
                stage("read", first=first, last=last)
                logged = await asyncio.to_thread(store.spool_rows, rows, ("events",), spool, first)
                await storing.put(Folded(folded, logged, first, last, events))
                first, last, events, rows = 0, 0, 0, events_rows()

            while reader.next_seq <= target:
                chunk = await reader.read_until(target)
                if not chunk:
                    if reader.source.drained:
                        # What is left up to the target was deleted (limits, or by hand).
                        break
                    if await _stream_end(connection, stream) >= target:
                        continue
                    break
                if needed := await _logged(chunk, rows):
                    await folder.add(needed)
                first, last, events = first or chunk[0][0], chunk[-1][0], events + len(chunk)
                # Batches shrink towards the end, so that the last one stored after the fold
                # is done is small; what is too little for a store of its own joins the batch.
                left = target - last
                if events >= min(BATCH, max(CHUNK, _TAIL * left)) and left >= _LAST_AT_LEAST:
                    await flush()
            if events:
                await flush()
            await storing.put(None)

        async def write() -> None:
            nonlocal done
            # Outside ``retrying``: tables that could not be made fail the replay, not
            # stall it like an outage.
            structures = await preparing
            stage("tables_made")
            while (item := await storing.get()) is not None:
                logged = not item.events_log or await store_log(item, structures)
                bodies = await item.bodies
                if not logged:
                    bodies |= item.events_log
                await retrying(
                    "replay insert",
                    functools.partial(store_one, bodies, item.first, item.last, structures),
                )
                await asyncio.to_thread(_remove, bodies | item.events_log)
                done += item.events
                stage("stored", first=item.first, last=item.last)
                elapsed = max(time.monotonic() - started, 1e-6)
                rate = done / elapsed
                total = max(target, done)
                on_progress(
                    Progress(
                        done=done,
                        total=total,
                        events_per_s=rate,
                        eta_s=max(0, total - done) / rate if rate else 0.0,
                    )
                )

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(read(), name="replay-read")
            tasks.create_task(write(), name="replay-write")

    try:
        await reader.open()
        await read_to(await _stream_end(connection, stream))
        # An empty stream stores nothing, so nothing has waited for the tables yet.
        await preparing
        if runner is None:
            await _swap(backend, db, tables, from_seq)
            stage("swapped")
        else:
            async with runner.paused():
                # The runner stands between batches: catch up to exactly where it is, then
                # swap, so the rebuilt tables continue where the live ones were.
                position = runner.projected_seq
                await read_to(position)
                # A process that lost its lease swaps nothing more in: the tables are the
                # holder's, and its runner may not go on from positions they no longer match.
                try:
                    await _swap(backend, db, tables, from_seq, runner.check_fence)
                except Fenced:
                    runner.fence_for_good()
                    raise
                for table in tables:
                    runner.skip_until(table, max(position, reader.next_seq - 1))
    finally:
        preparing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            # Its failure, if any, is the replay's already.
            await preparing
        await reader.close()
    elapsed = max(time.monotonic() - started, 1e-6)
    result = Progress(done=done, total=done, events_per_s=done / elapsed, eta_s=0.0, finished=True)
    on_progress(result)
    log.info("replay.done", tables=list(tables), events=done, events_per_s=round(done / elapsed))
    return result


async def _logged(chunk: list[tuple[int, bytes]], rows: Output) -> list[tuple[int, bytes]]:
    """The chunk's rows of the events log into ``rows``; returns what the fold process
    needs of it (the events ``fold.folds`` names, and any it cannot decode)."""
    needed: list[tuple[int, bytes]] = []
    # This loop runs for every event of a replay: names looked up once.
    keep, decode, row_of, folded = needed.append, decode_event, event_row, folds
    logged = rows.rows["events"].append
    # Seqs only grow: a chunk whose first row is kept keeps all (nearly always so), one
    # whose last is not keeps none (a replay of other tables).
    every = bool(chunk) and rows.keeps(EventRow, chunk[0][0])
    some = bool(chunk) and rows.keeps(EventRow, chunk[-1][0])
    for start in range(0, len(chunk), _YIELD_EVERY):
        # A running hub's gateway shares this loop: a few ms at a time, not a chunk's 20.
        await asyncio.sleep(0)
        for message in chunk[start : start + _YIELD_EVERY]:
            seq, data = message
            try:
                event = decode(data)
            except msgspec.DecodeError:
                rows.add(undecodable_row(seq, data))
                keep(message)
                continue
            if every:
                logged(row_of(seq, event))
            elif some and rows.keeps(EventRow, seq):
                rows.add(row_of(seq, event))
            if folded(event):
                # The message itself, not a new tuple of its parts.
                keep(message)
    return needed


def _folded(stage: Callable[..., None], first: int, _: object) -> None:
    stage("folded", first=first)


def _remove(bodies: dict[str, Encoded]) -> None:
    """A stored batch's files: a replay keeps only the batches still on their way."""
    for body, _ in bodies.values():
        if isinstance(body, Path):
            body.unlink(missing_ok=True)


async def _swap(
    backend: Backend,
    db: str,
    tables: tuple[str, ...],
    from_seq: int,
    fence: Callable[[], None] = lambda: None,
) -> None:
    kept = [table for table in PROJECTED if table not in tables]
    if ERRORS in tables and kept:
        # The rows the store refused from tables not rebuilt are found only when those are
        # stored: they are kept as the live table has them.
        refused = ", ".join(f"'{refusals.PREFIX}{table}'" for table in kept)
        await backend.execute(
            f"INSERT INTO {db}.{ERRORS}{SHADOW} SELECT * FROM {db}.{ERRORS} "
            f"WHERE seq >= {int(from_seq)} AND `projection` IN ({refused})"
        )
    for table in tables:
        fence()
        await backend.execute(f"EXCHANGE TABLES {db}.{table} AND {db}.{table}{SHADOW}")
        await backend.execute(f"DROP TABLE IF EXISTS {db}.{table}{SHADOW}")
