"""The seeds' UI design, as a baseline: a consumer writes charger state into a database and a
backend polls that database every 2 s and broadcasts what changed to WebSocket clients.

Here the database is SQLite (standing in for the seeds' MySQL), written by a consumer of the
same JetStream stream the hub's fan-out follows, so both see the same frames. UI clients
connect to ``/ws/chargers/{id}`` and receive ``status`` messages shaped like the hub's.

    HUB_NATS_URL=nats://hub:PASSWORD@HOST:PORT python -m bench.baselines.poll_broadcast --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import nats
from aiohttp import web
from nats.js.api import DeliverPolicy

from bench.baselines import READY_MARKER
from schemas.events import OcppFrame, decode_event
from tools.simulator import raise_nofile_limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS status (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    charge_point_id TEXT NOT NULL,
    connector_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    info TEXT NOT NULL,
    received_at INTEGER NOT NULL
)
"""
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class Database:
    """One SQLite file, used from one worker thread at a time (the event loop never blocks)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._lock = asyncio.Lock()

    async def insert(self, rows: list[tuple[str, int, str, str, int]]) -> None:
        async with self._lock:
            await asyncio.to_thread(self._insert, rows)

    def _insert(self, rows: list[tuple[str, int, str, str, int]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT INTO status (charge_point_id, connector_id, status, info, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    async def since(self, last_id: int) -> list[tuple[Any, ...]]:
        async with self._lock:
            return await asyncio.to_thread(self._since, last_id)

    def _since(self, last_id: int) -> list[tuple[Any, ...]]:
        return self._db.execute(
            "SELECT id, charge_point_id, connector_id, status, info, received_at FROM status"
            " WHERE id > ? ORDER BY id",
            (last_id,),
        ).fetchall()


async def consume(nats_url: str, database: Database) -> None:
    """Frames → rows, batched the way a backend's writer would."""
    client = await nats.connect(nats_url)
    batch: list[tuple[str, int, str, str, int]] = []
    wake = asyncio.Event()

    async def on_message(msg: Any) -> None:
        event = decode_event(msg.data)
        if isinstance(event, OcppFrame) and event.message_type == "CALL":
            payload = _decode(event.payload)
            batch.append(
                (
                    event.charge_point_id,
                    int(payload.get("connectorId", 0)),
                    str(payload.get("status", "")),
                    str(payload.get("info", "")),
                    event.received_at,
                )
            )
            wake.set()

    try:
        js = client.jetstream()
        await js.subscribe(
            "ev.cp.*.in.StatusNotification",
            cb=on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            stream="OCPP_EVENTS",
        )
        while True:
            await wake.wait()
            wake.clear()
            rows, batch[:] = list(batch), []
            await database.insert(rows)
    finally:
        await client.close()


async def poll(
    database: Database, subscribers: dict[str, set[web.WebSocketResponse]], interval: float
) -> None:
    last_id = 0
    while True:
        await asyncio.sleep(interval)
        rows = await database.since(last_id)
        for row_id, cp, connector, status, info, received_at in rows:
            last_id = row_id
            targets = subscribers.get(cp)
            if not targets:
                continue
            text = _encode(
                {
                    "type": "status",
                    "chargePointId": cp,
                    "connectorId": connector,
                    "status": status,
                    "info": info,
                    "receivedAt": received_at,
                }
            ).decode()
            # The seeds' broadcast: one send after the other.
            for ws in list(targets):
                with contextlib.suppress(ConnectionError):
                    await ws.send_str(text)


async def serve(nats_url: str, host: str, port: int, interval: float) -> int:
    subscribers: dict[str, set[web.WebSocketResponse]] = {}

    async def chargers(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        cp = request.match_info["charge_point_id"]
        subscribers.setdefault(cp, set()).add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            subscribers[cp].discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws/chargers/{charge_point_id}", chargers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with tempfile.TemporaryDirectory(prefix="poll-broadcast-") as directory:
        database = Database(Path(directory) / "state.db")
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=4096)
        await site.start()
        async with asyncio.TaskGroup() as group:
            consumer = group.create_task(consume(nats_url, database))
            poller = group.create_task(poll(database, subscribers, interval))
            bound = runner.addresses[0]
            print(f"{READY_MARKER} on {bound[0]}:{bound[1]}", flush=True)
            await stop.wait()
            consumer.cancel()
            poller.cancel()
        await runner.cleanup()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    # The URL carries the hub's NATS password: from the environment, where only its owner
    # can read it, rather than the command line.
    parser.add_argument("--nats-url", default=os.environ.get("HUB_NATS_URL", ""))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    args = parser.parse_args()
    raise_nofile_limit()
    return asyncio.run(serve(args.nats_url, args.host, args.port, args.interval))


if __name__ == "__main__":
    raise SystemExit(main())
