"""Load-generator process for bench.run: one simulated fleet, stepped over pipes.

Runs in its own process so that its CPU use never counts against the server
being measured. Protocol (one JSON object per stdout line):

    {"event": "connected", "connected": N, "failed": M}
        then waits for a line on stdin: "go" starts the run, anything else
        (or EOF) skips straight to shutdown. The pause is where bench.run
        samples the server's idle memory.
    {"event": "window_start"} / {"event": "window_end"}
        bracket the measured window, so bench.run can read server CPU time.
    {"event": "report", "report": {...FleetReport...}}

Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from tools.simulator import (
    OCPP_VERSIONS,
    FleetHooks,
    FleetMode,
    FleetOptions,
    raise_nofile_limit,
    run_fleet,
)

SCENARIO_MODES: dict[str, FleetMode] = {
    "saturation": "saturate",
    "rate": "interval",
    "idle": "idle",
}


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--chargers", type=int, required=True)
    parser.add_argument("--scenario", choices=sorted(SCENARIO_MODES), required=True)
    parser.add_argument("--prefix", default="BENCH-")
    parser.add_argument(
        "--ocpp",
        choices=OCPP_VERSIONS,
        default="1.6",
        help="the chargers' OCPP version: 2.x sends the same load as TransactionEvents",
    )
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=2.0, help="rate scenario only")
    parser.add_argument("--ramp", type=int, default=100, help="concurrent connects")
    parser.add_argument("--call-timeout", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    return parser


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()

    async def on_connected(connected: int, failed: int) -> None:
        _emit("connected", connected=connected, failed=failed)
        # A thread, because asyncio has no portable non-blocking stdin reader;
        # the orchestrator always answers or closes the pipe, so it returns.
        line = await asyncio.to_thread(sys.stdin.readline)
        if line.strip() != "go":
            stop.set()

    async def on_window_start() -> None:
        _emit("window_start")

    async def on_window_end() -> None:
        _emit("window_end")

    idle = args.scenario == "idle"
    options = FleetOptions(
        chargers=args.chargers,
        url=args.url,
        prefix=args.prefix,
        mode=SCENARIO_MODES[args.scenario],
        ocpp=args.ocpp,
        interval=args.interval,
        warmup=0.0 if idle else args.warmup,
        duration=0.0 if idle else args.window,
        ramp_concurrency=args.ramp,
        call_timeout=args.call_timeout,
        seed=args.seed,
        # Otherwise the client's own GC pauses at N=5000 show up as server RTT.
        tune_gc=True,
    )
    report = await run_fleet(
        options,
        stop=stop,
        hooks=FleetHooks(
            on_connected=on_connected,
            on_window_start=on_window_start,
            on_window_end=on_window_end,
        ),
    )
    _emit("report", report=report.to_dict())
    return 0 if report.connected else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raise_nofile_limit()
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
