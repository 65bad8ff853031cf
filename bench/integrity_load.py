"""The clean fleet for ``bench.run integrity``, and the UI sockets that time ``alert`` messages.

    python -m bench.integrity_load --url ws://.../ocpp --ui-url http://... --token T --chargers 200

Each charger runs whole, plausible sessions (``tools.simulator.run_session``), one message every
``--interval`` seconds (±10 %), and a UI socket on ``/ws/chargers/{id}`` counts every ``alert``
the hub raises about it. A clean fleet must raise none. Prints ``{"event": "connected", ...}``
once connected, then runs until ``stop`` arrives on stdin and prints ``{"event": "report", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import msgspec

from tools.simulator import SimulatedCharger, raise_nofile_limit
from tools.simulator.charger import CallError, ChargerDisconnected
from tools.simulator.session import SessionPlan, run_session

_decode = msgspec.json.Decoder().decode


class AlertWatcher:
    """One UI socket per charger; remembers when the first ``detected`` alert of each kind
    about that charger arrived (``time.monotonic()``, comparable with the scenarios' clock)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ui_url: str,
        token: str,
        progress: asyncio.Event | None = None,
    ) -> None:
        self._session = session
        self._progress = progress or asyncio.Event()
        self._ui_url = ui_url
        self._params = {"token": token}
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._readers: list[asyncio.Task[None]] = []
        self.first: dict[tuple[str, str], float] = {}
        self.alerts: Counter[str] = Counter()
        self.closed_early = 0

    async def watch(self, charge_point_id: str) -> None:
        ws = await self._session.ws_connect(
            f"{self._ui_url}/ws/chargers/{charge_point_id}", params=self._params, compress=0
        )
        self._sockets.append(ws)
        self._readers.append(asyncio.create_task(self._read(ws, charge_point_id)))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, charge_point_id: str) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            arrived = time.monotonic()
            data = _decode(message.data)
            if data.get("type") == "alert" and data.get("state") == "detected":
                kind = str(data.get("kind"))
                self.alerts[kind] += 1
                self.first.setdefault((charge_point_id, kind), arrived)
                self._progress.set()
        self.closed_early += 1

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self._sockets), return_exceptions=True)
        self._readers.clear()
        self._sockets.clear()


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class _Counts:
    def __init__(self) -> None:
        self.sessions = 0
        self.messages = 0
        self.errors = 0
        self.disconnected = 0


async def _drive(charger: SimulatedCharger, interval: float, counts: _Counts) -> None:
    rng = random.Random(charger.charge_point_id)
    first = True

    async def pace() -> None:
        nonlocal first
        # Spread the fleet over one interval, then keep each charger's rhythm steady: two
        # gaps (Start, Charging, first MeterValues) must stay well under the stale threshold.
        await asyncio.sleep(interval * (rng.random() if first else rng.uniform(0.9, 1.1)))
        first = False

    while True:
        try:
            plan = SessionPlan(
                meter_values=rng.randint(5, 15),
                power_w=rng.choice((7_400.0, 11_000.0, 22_000.0)),
                start_soc=rng.uniform(10.0, 60.0),
                # Energy per reading matches the time between readings, so the implied power
                # is the charger's real one (the power detector reads charger timestamps).
                sample_interval_s=interval,
                data_transfer=rng.random() < 0.5,
            )
            result = await run_session(
                charger,
                plan,
                id_tag=f"FLEET{rng.randrange(10_000):04d}",
                boot=False,
                pace=pace,
                rng=rng,
            )
        except (CallError, TimeoutError):
            counts.errors += 1
            continue
        except ChargerDisconnected:
            counts.disconnected += 1
            return
        counts.sessions += 1
        counts.messages += result.messages


async def fleet(args: argparse.Namespace) -> int:
    ids = [f"{args.prefix}{index:05d}" for index in range(args.chargers)]
    semaphore = asyncio.Semaphore(args.ramp)
    chargers: list[SimulatedCharger] = []
    failed = 0
    counts = _Counts()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        watcher = AlertWatcher(session, args.ui_url, args.token)

        async def open_one(charge_point_id: str) -> None:
            nonlocal failed
            async with semaphore:
                charger = SimulatedCharger(charge_point_id, args.url, call_timeout=30)
                try:
                    await watcher.watch(charge_point_id)
                    await charger.come_online()
                except (OSError, aiohttp.ClientError, TimeoutError, CallError):
                    failed += 1
                    return
                chargers.append(charger)

        await asyncio.gather(*(open_one(cp) for cp in ids))
        drives = [asyncio.create_task(_drive(c, args.interval, counts)) for c in chargers]
        _emit("connected", connected=len(chargers), failed=failed)
        await asyncio.to_thread(sys.stdin.readline)  # "stop"
        for drive in drives:
            drive.cancel()
        await asyncio.gather(*drives, return_exceptions=True)
        _emit(
            "report",
            chargers=len(chargers),
            sessions=counts.sessions,
            messages=counts.messages,
            errors=counts.errors,
            disconnected=counts.disconnected,
            alerts=dict(watcher.alerts),
            alerted_chargers=sorted({cp for cp, _ in watcher.first})[:20],
            ui_sockets_closed_early=watcher.closed_early,
        )
        await watcher.close()
        for charger in chargers:
            with contextlib.suppress(Exception):
                await charger.go_offline()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.integrity_load", description=__doc__)
    parser.add_argument("--url", required=True, help="the hub's OCPP base URL")
    parser.add_argument("--ui-url", required=True, help="the hub's fan-out base URL")
    parser.add_argument("--token", required=True)
    parser.add_argument("--chargers", type=int, required=True)
    parser.add_argument("--prefix", default="FLEET-")
    parser.add_argument("--interval", type=float, default=1.0, help="s between messages")
    parser.add_argument("--ramp", type=int, default=50, help="concurrent connects")
    return parser


def main() -> int:
    raise_nofile_limit()
    return asyncio.run(fleet(build_parser().parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
