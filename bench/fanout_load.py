"""Load processes for ``bench.run fanout``: simulated chargers, or many UI subscribers.

    python -m bench.fanout_load chargers --url ws://.../ocpp --chargers 1000 --interval 2
    python -m bench.fanout_load subscribers --url http://... --chargers 1000 --per-charger 10

Both print one JSON object per stdout line: ``{"event": "connected", ...}``, then wait for
``go`` on stdin; chargers then send StatusNotifications for ``--window`` seconds, each with
``info`` = ``t<wall-clock ns>`` when it was sent; subscribers measure, for every ``status``
message carrying such an ``info``, the time from that send to its arrival, until ``stop``
arrives on stdin, and print ``{"event": "report", ...}``. Chargers and subscribers run in
separate processes so neither's CPU use delays the other's clock readings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import msgspec

from tools.simulator import LatencyRecorder, SimulatedCharger, raise_nofile_limit

_decode = msgspec.json.Decoder().decode


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def _line() -> str:
    # A thread, because asyncio has no portable non-blocking stdin reader.
    line: str = await asyncio.to_thread(sys.stdin.readline)
    return line.strip()


def _quiet_gc() -> None:
    """Thousands of long-lived connections make every full collection stall the loop for
    hundreds of milliseconds, which would be measured as fan-out latency: move them out of
    the collector's sight, and collect nothing while measuring (see ``_measuring``)."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def _measuring() -> Iterator[None]:
    """The load processes are the measuring instrument: a collection in them during the
    window would be reported as the server's latency. The window is seconds long and what
    it leaves behind is collected right after."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def _ids(args: argparse.Namespace) -> list[str]:
    return [f"{args.prefix}{index:05d}" for index in range(args.chargers)]


async def chargers(args: argparse.Namespace) -> int:
    semaphore = asyncio.Semaphore(args.ramp)
    fleet: list[SimulatedCharger] = []
    failed = 0

    async def open_one(charge_point_id: str) -> None:
        nonlocal failed
        async with semaphore:
            charger = SimulatedCharger(charge_point_id, args.url, call_timeout=30)
            try:
                await charger.connect()
                await charger.boot()
            except (OSError, ConnectionError, TimeoutError):
                failed += 1
                return
            fleet.append(charger)

    await asyncio.gather(*(open_one(cp) for cp in _ids(args)))
    _quiet_gc()
    _emit("connected", connected=len(fleet), failed=failed)
    if await _line() != "go":
        return 0
    sent = 0
    errors = 0
    deadline = time.monotonic() + args.window

    async def drive(charger: SimulatedCharger) -> None:
        nonlocal sent, errors
        rng = random.Random(charger.charge_point_id)
        await asyncio.sleep(rng.uniform(0, args.interval))
        while time.monotonic() < deadline:
            try:
                await charger.status(1, "Charging", info=f"t{time.time_ns()}")
                sent += 1
            except (OSError, ConnectionError, TimeoutError):
                errors += 1
            await asyncio.sleep(args.interval * rng.uniform(0.5, 1.5))

    with _measuring():
        await asyncio.gather(*(drive(charger) for charger in fleet))
    _emit("report", sent=sent, errors=errors)
    await _line()
    await asyncio.gather(*(charger.close() for charger in fleet), return_exceptions=True)
    return 0


async def subscribers(args: argparse.Namespace) -> int:
    recorder = LatencyRecorder()
    # From the hub's receipt of the frame (the message's receivedAt, whole ms) to arrival: the
    # part of the latency after the gateway read the frame.
    after_receipt = LatencyRecorder()
    worst_by_second: dict[int, int] = {}  # send time (s) -> the slowest arrival of it, ns
    measuring = False
    received = 0
    connector = aiohttp.TCPConnector(limit=0)
    params = {"token": args.token} if args.token else {}
    async with aiohttp.ClientSession(connector=connector) as session:
        semaphore = asyncio.Semaphore(args.ramp)
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        failed = 0

        async def open_one(charge_point_id: str) -> None:
            nonlocal failed
            async with semaphore:
                try:
                    ws = await session.ws_connect(
                        f"{args.url}/ws/chargers/{charge_point_id}",
                        params=params,
                        autoping=True,
                        compress=0,
                    )
                except (aiohttp.ClientError, OSError, TimeoutError):
                    failed += 1
                    return
                sockets.append(ws)

        wanted = [cp for cp in _ids(args) for _ in range(args.per_charger)]
        await asyncio.gather(*(open_one(cp) for cp in wanted))

        async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal received
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                arrived = time.time_ns()
                data = _decode(message.data)
                info = data.get("info", "")
                if measuring and data.get("type") == "status" and info.startswith("t"):
                    sent = int(info[1:])
                    latency = arrived - sent
                    recorder.record(latency)
                    after_receipt.record(arrived - int(data.get("receivedAt", 0)) * 1_000_000)
                    received += 1
                    second = sent // 1_000_000_000
                    if latency > worst_by_second.get(second, 0):
                        worst_by_second[second] = latency

        async with asyncio.TaskGroup() as group:
            readers = [group.create_task(read(ws)) for ws in sockets]
            _quiet_gc()
            _emit("connected", connected=len(sockets), failed=failed)
            if await _line() == "go":
                with _measuring():
                    measuring = True
                    await _line()  # "stop"
            measuring = False
            _emit(
                "report",
                received=received,
                latency=recorder.summary().to_dict(),
                after_receipt=after_receipt.summary().to_dict(),
                max_ms_by_second=[
                    round(worst_by_second[second] / 1e6, 1) for second in sorted(worst_by_second)
                ],
                first_second=min(worst_by_second, default=0),  # Unix time, to match logs
            )
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            for reader in readers:
                reader.cancel()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_load", description=__doc__)
    parser.add_argument("role", choices=["chargers", "subscribers"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--chargers", type=int, required=True)
    parser.add_argument("--prefix", default="FB-")
    parser.add_argument("--per-charger", type=int, default=10)
    parser.add_argument("--token", default="")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--ramp", type=int, default=100)
    return parser


def main() -> int:
    args = build_parser().parse_args()
    raise_nofile_limit()
    role = chargers if args.role == "chargers" else subscribers
    return asyncio.run(role(args))


if __name__ == "__main__":
    raise SystemExit(main())
