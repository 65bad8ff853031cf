"""`hub simulate`: argparse wiring around run_fleet."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from tools.simulator.fleet import (
    OCPP_VERSIONS,
    FleetHooks,
    FleetOptions,
    FleetProgress,
    raise_nofile_limit,
    run_fleet,
)

__all__ = ["add_simulate_arguments", "simulate_main"]


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `hub simulate`; pair with simulate_main()."""
    parser.add_argument("--chargers", type=_positive_int, default=10, help="fleet size")
    parser.add_argument(
        "--ocpp",
        choices=OCPP_VERSIONS,
        default="1.6",
        help="OCPP version the chargers speak (default 1.6); 2.0.1 and 2.1 stations report "
        "sessions as TransactionEvents",
    )
    parser.add_argument(
        "--url",
        default="ws://127.0.0.1:9000/ocpp",
        help="base URL; each charger connects to URL/<percent-encoded id>",
    )
    parser.add_argument("--prefix", default="SIM-", help="charger id prefix (ids are PREFIX00000…)")
    parser.add_argument(
        "--interval",
        type=_positive_float,
        default=5.0,
        help="mean seconds between messages per charger (jittered ±50%%)",
    )
    parser.add_argument(
        "--saturate",
        action="store_true",
        help="closed loop: each charger sends its next CALL as soon as the answer arrives",
    )
    parser.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        help="seconds to run after connecting (default: until Ctrl-C)",
    )
    parser.add_argument("--password", default=None, help="HTTP Basic auth password (profile 1)")
    parser.add_argument(
        "--offline-every",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="periodically drop a random charger offline to exercise queue flushing",
    )
    parser.add_argument(
        "--offline-for",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="how long a dropped charger stays offline (default 10)",
    )
    parser.add_argument(
        "--connectors",
        type=_positive_int,
        default=1,
        help="connectors per charger (2.x: EVSEs, one connector each)",
    )
    parser.add_argument(
        "--ramp",
        type=_positive_int,
        default=50,
        help="concurrent connection attempts while ramping",
    )
    parser.add_argument(
        "--call-timeout", type=_positive_float, default=30.0, help="seconds to wait for an answer"
    )
    parser.add_argument(
        "--progress", type=_positive_float, default=5.0, help="seconds between progress lines"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible jitter")
    parser.add_argument("--json", action="store_true", help="print the final report as JSON")


def _options_from_args(args: argparse.Namespace) -> FleetOptions:
    return FleetOptions(
        chargers=args.chargers,
        url=args.url,
        prefix=args.prefix,
        mode="saturate" if args.saturate else "interval",
        ocpp=args.ocpp,
        interval=args.interval,
        duration=args.duration,
        password=args.password,
        connectors=args.connectors,
        ramp_concurrency=args.ramp,
        call_timeout=args.call_timeout,
        offline_every=args.offline_every,
        offline_for=args.offline_for,
        progress_interval=args.progress,
        seed=args.seed,
        tune_gc=True,
    )


def _print_progress(progress: FleetProgress) -> None:
    print(progress.format_line(), file=sys.stderr, flush=True)


async def simulate_main(args: argparse.Namespace) -> int:
    """Run the fleet; returns a process exit code (1 if no charger connected)."""
    raise_nofile_limit()
    options = _options_from_args(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            continue  # not the main thread, or not a Unix loop: Ctrl-C just cancels
        installed.append(sig)
    try:
        report = await run_fleet(options, stop=stop, hooks=FleetHooks(on_progress=_print_progress))
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    if args.json:
        data = report.to_dict()
        data.pop("histogram", None)
        print(json.dumps(data, indent=2))
    else:
        print(report.format())
    return 0 if report.connected else 1
