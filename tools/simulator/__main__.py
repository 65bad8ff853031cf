"""`python -m tools.simulator`: the same as `hub simulate`, without the hub CLI."""

from __future__ import annotations

import argparse
import asyncio

from tools.simulator.cli import add_simulate_arguments, simulate_main


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.simulator",
        description="Simulated OCPP charger fleet (1.6J, 2.0.1, 2.1)",
    )
    add_simulate_arguments(parser)
    return asyncio.run(simulate_main(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
