"""Scale-out on one machine: ``python -m bench.run scale``.

10,000 chargers (``--chargers``) at a realistic rate, against two ``hub gateway`` processes
sharing one NATS (the chargers split between them, as a TCP load balancer would), and, in
the same run, against one ``hub gateway`` holding them all. For each: memory per charger in
each gateway process (goal: at most 30 KiB), the answer time's p50 and p99, and CPU per
1,000 messages in the gateways and in nats-server.

The chargers come from two load-generator processes (``bench.load``, the ingest benchmark's)
of half the fleet each, in both targets, so the client side is the same. Each charger sends
one message every ``--interval`` seconds on average (default 30: a charger's MeterValues
period is typically 60 s, with StatusNotifications and Heartbeats between), the messages of
whole charging sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.run import (
    DEFAULT_OUT,
    REPO,
    ServerProcess,
    TargetSpec,
    _read_event,
    cpu_seconds,
    free_port,
    publish_named_report,
    rss_kib,
    work_dir,
)
from hub.nats_server import EmbeddedNats
from tools.simulator import raise_nofile_limit

GOAL_KIB_PER_CHARGER = 30.0
LOAD_GENERATORS = 2


@dataclass(slots=True)
class Options:
    chargers: int
    gateways: tuple[int, ...]
    interval: float
    warmup: float
    window: float
    ramp: int
    settle: float
    out_dir: Path
    keep: Path | None


@dataclass(slots=True)
class GatewayFigures:
    chargers: int
    rss_before_kib: int
    rss_after_kib: int
    cpu_s: float = 0.0

    @property
    def kib_per_charger(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / max(self.chargers, 1)


@dataclass(slots=True)
class TargetResult:
    gateways: int
    connected: int = 0
    connect_failures: int = 0
    connect_seconds: float = 0.0
    messages: int = 0
    window_seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: int = 0
    per_gateway: list[GatewayFigures] = field(default_factory=list)
    nats_kib_per_charger: float = 0.0
    nats_cpu_s: float = 0.0
    error: str = ""

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.window_seconds if self.window_seconds else 0.0

    def cpu_ms_per_1k(self, seconds: float) -> float:
        return seconds * 1e6 / self.messages if self.messages else 0.0

    @property
    def gateway_cpu_s(self) -> float:
        return sum(g.cpu_s for g in self.per_gateway)

    @property
    def worst_kib_per_charger(self) -> float:
        return max((g.kib_per_charger for g in self.per_gateway), default=0.0)


def _gateway_spec(index: int, port: int, data_dir: Path, nats_url: str) -> TargetSpec:
    command = [
        str(Path(sys.executable).parent / "hub"),
        "gateway",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--allow-unknown-chargers",
    ]
    env = {"HUB_NATS_URL": nats_url, "HUB_GATEWAY_ID": f"gw-{index}"}
    return TargetSpec(f"gateway-{index}", command, "gateway ready: ", "/ocpp", env=env)


@contextlib.asynccontextmanager
async def _gateways(count: int, root: Path, nats_url: str) -> AsyncIterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for index in range(count):
            port = free_port()
            data_dir = root / f"gateway-{index}"
            spec = _gateway_spec(index, port, data_dir, nats_url)
            server = ServerProcess(spec, port, root / f"gateway-{index}.log")
            await server.start(ready_within=120.0)
            started.append(server)
        yield started
    finally:
        for server in started:
            await server.stop()


async def _load(
    url: str, chargers: int, prefix: str, options: Options, log: Path
) -> asyncio.subprocess.Process:
    command = [
        sys.executable,
        "-m",
        "bench.load",
        "--url",
        url,
        "--chargers",
        str(chargers),
        "--scenario",
        "rate",
        "--prefix",
        prefix,
        "--warmup",
        str(options.warmup),
        "--window",
        str(options.window),
        "--interval",
        str(options.interval),
        "--ramp",
        str(options.ramp),
    ]
    with log.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=REPO,
            start_new_session=True,
        )


def _merge_latency(result: TargetResult, reports: Sequence[dict[str, Any]]) -> None:
    # Each generator reports its own percentiles over half the fleet; the fleet's p99 is
    # at most the worse of the two, which is what is reported (a conservative figure).
    result.connected = sum(int(r["connected"]) for r in reports)
    result.connect_failures = sum(int(r["connect_failures"]) for r in reports)
    result.connect_seconds = max(float(r["connect_seconds"]) for r in reports)
    result.messages = sum(int(r["messages"]) for r in reports)
    result.window_seconds = max(float(r["window_seconds"]) for r in reports)
    result.p50_ms = max(float(r["latency"]["p50_ms"]) for r in reports)
    result.p99_ms = max(float(r["latency"]["p99_ms"]) for r in reports)
    result.max_ms = max(float(r["latency"]["max_ms"]) for r in reports)
    result.errors = sum(int(r["latency"]["errors"]) for r in reports)


async def run_target(gateway_count: int, options: Options, root: Path) -> TargetResult:
    """One NATS, ``gateway_count`` gateways, the fleet split between the load generators
    and, round robin, between the gateways."""
    result = TargetResult(gateways=gateway_count)
    async with (
        EmbeddedNats(root / "nats") as nats,
        _gateways(gateway_count, root, nats.url) as gateways,
    ):
        assert nats.pid is not None
        nats_before = rss_kib(nats.pid) or 0
        before = [rss_kib(g.pid) or 0 for g in gateways]
        share = options.chargers // LOAD_GENERATORS
        loads = [
            await _load(
                gateways[index % gateway_count].url,
                share,
                f"S{gateway_count}G{index}-",
                options,
                root / f"load-{index}.log",
            )
            for index in range(LOAD_GENERATORS)
        ]
        try:
            budget = 120.0 + options.chargers / 20.0
            for load in loads:
                assert load.stdout is not None
                event = await _read_event(load.stdout, budget)
                assert event["event"] == "connected", event
            await asyncio.sleep(options.settle)  # the allocator and the GC settle
            chargers_on = [0] * gateway_count
            for index in range(LOAD_GENERATORS):
                chargers_on[index % gateway_count] += share
            result.per_gateway = [
                GatewayFigures(chargers_on[i], before[i], rss_kib(g.pid) or 0)
                for i, g in enumerate(gateways)
            ]
            result.nats_kib_per_charger = ((rss_kib(nats.pid) or 0) - nats_before) / max(
                options.chargers, 1
            )
            for load in loads:
                assert load.stdin is not None
                load.stdin.write(b"go\n")
                await load.stdin.drain()
            reports = await _measure(loads, gateways, nats.pid, result, options)
            _merge_latency(result, reports)
        except (RuntimeError, TimeoutError, AssertionError, KeyError) as error:
            result.error = f"{type(error).__name__}: {error}"
        finally:
            for load in loads:
                if load.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        load.kill()
                await load.wait()
    return result


async def _measure(
    loads: Sequence[asyncio.subprocess.Process],
    gateways: Sequence[ServerProcess],
    nats_pid: int,
    result: TargetResult,
    options: Options,
) -> list[dict[str, Any]]:
    """Read each generator's events; CPU is taken from the first window start to the
    last window end (the generators start within a moment of each other)."""
    budget = options.warmup + options.window + 120.0
    cpu_start: list[float] = []
    reports: list[dict[str, Any]] = []

    async def follow(load: asyncio.subprocess.Process) -> None:
        assert load.stdout is not None
        while True:
            event = await _read_event(load.stdout, budget)
            if event["event"] == "window_start" and not cpu_start:
                cpu_start.extend([*(g.cpu() for g in gateways), cpu_seconds(nats_pid)])
            elif event["event"] == "window_end":
                for figures, gateway, start in zip(
                    result.per_gateway, gateways, cpu_start, strict=False
                ):
                    figures.cpu_s = gateway.cpu() - start
                result.nats_cpu_s = cpu_seconds(nats_pid) - cpu_start[-1]
            elif event["event"] == "report":
                reports.append(event["report"])
                return

    await asyncio.gather(*(follow(load) for load in loads))
    return reports


def render(report: dict[str, Any]) -> str:
    rows = report["targets"]
    lines = [
        "# Scale-out benchmark",
        "",
        f"{report['started']}, {report['cpus']} CPUs, load {report['loadavg']}; "
        f"{report['chargers']} chargers, one message per {report['interval']} s each on "
        f"average, measured over {report['window']} s after {report['warmup']} s of warm-up.",
        "",
        "| gateways | connected | msg/s | p50 ms | p99 ms | max ms | gateway KiB/charger "
        "(worst) | nats KiB/charger | gateway CPU ms/1k msgs | nats CPU ms/1k msgs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['gateways']} | {row['connected']:,} | {row['msgs_per_s']:,.0f} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['max_ms']:.0f} | "
            f"{row['worst_kib_per_charger']:.1f} | {row['nats_kib_per_charger']:.1f} | "
            f"{row['gateway_cpu_ms_per_1k']:.0f} | {row['nats_cpu_ms_per_1k']:.0f} |"
        )
    for row in rows:
        if row["error"]:
            lines.append(f"\n{row['gateways']} gateway(s): **{row['error']}**")
    lines += [
        "",
        "Per gateway process:",
        "",
        "| gateways | gateway | chargers | RSS before MiB "
        "| RSS after MiB | KiB/charger | CPU s in window |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for index, g in enumerate(row["per_gateway"]):
            lines.append(
                f"| {row['gateways']} | {index} | {g['chargers']:,} | "
                f"{g['rss_before_kib'] / 1024:.1f} | {g['rss_after_kib'] / 1024:.1f} | "
                f"{g['kib_per_charger']:.1f} | {g['cpu_s']:.1f} |"
            )
    ratios = report["ratios"]
    if ratios:
        lines += [
            "",
            "Two gateways against one, same run (below 1: the split is cheaper or faster): "
            f"p99 {ratios['p99']:.2f}, gateway CPU per message {ratios['gateway_cpu']:.2f}, "
            f"worst memory per charger {ratios['memory']:.2f}.",
        ]
    worst = max((row["worst_kib_per_charger"] for row in rows), default=0.0)
    verdict = "met" if worst <= GOAL_KIB_PER_CHARGER else "NOT met"
    lines += [
        "",
        f"Goal: at most {GOAL_KIB_PER_CHARGER:.0f} KiB per charger in a gateway "
        f"process: **{verdict}** (worst {worst:.1f}).",
    ]
    return "\n".join(lines) + "\n"


def _row(result: TargetResult) -> dict[str, Any]:
    row = asdict(result)
    row["per_gateway"] = [
        {**asdict(g), "kib_per_charger": round(g.kib_per_charger, 2)} for g in result.per_gateway
    ]
    row["msgs_per_s"] = round(result.msgs_per_s, 1)
    row["worst_kib_per_charger"] = round(result.worst_kib_per_charger, 2)
    row["gateway_cpu_ms_per_1k"] = round(result.cpu_ms_per_1k(result.gateway_cpu_s), 1)
    row["nats_cpu_ms_per_1k"] = round(result.cpu_ms_per_1k(result.nats_cpu_s), 1)
    return row


async def scale(options: Options) -> dict[str, Any]:
    raise_nofile_limit()
    started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    results: list[TargetResult] = []
    with work_dir("hub-scale-", options.keep) as root:
        for count in options.gateways:
            print(f"[scale] {count} gateway(s), {options.chargers} chargers", file=sys.stderr)
            # Every directory of the run at once, before the loop is busy.
            target = root / f"{count}-gateways"
            for index in range(count):
                (target / f"gateway-{index}").mkdir(parents=True)
            results.append(await run_target(count, options, target))
    rows = [_row(result) for result in results]
    by_count = {row["gateways"]: row for row in rows if not row["error"]}
    ratios: dict[str, float] = {}
    if 1 in by_count and 2 in by_count:
        one, two = by_count[1], by_count[2]
        ratios = {
            "p99": two["p99_ms"] / one["p99_ms"] if one["p99_ms"] else 0.0,
            "gateway_cpu": two["gateway_cpu_ms_per_1k"] / one["gateway_cpu_ms_per_1k"]
            if one["gateway_cpu_ms_per_1k"]
            else 0.0,
            "memory": two["worst_kib_per_charger"] / one["worst_kib_per_charger"]
            if one["worst_kib_per_charger"]
            else 0.0,
        }
    return {
        "started": started,
        "cpus": os.cpu_count(),
        "loadavg": round(os.getloadavg()[0], 2),
        "chargers": options.chargers,
        "interval": options.interval,
        "warmup": options.warmup,
        "window": options.window,
        "targets": rows,
        "ratios": ratios,
    }


def build_parser(sub: Any) -> None:
    parser = sub.add_parser("scale", help="two gateways vs one, 10,000 chargers")
    parser.add_argument("--chargers", type=int, default=10_000)
    parser.add_argument(
        "--interval", type=float, default=30.0, help="s between a charger's messages"
    )
    parser.add_argument("--warmup", type=float, default=None, help="default: one interval")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--ramp", type=int, default=100, help="concurrent connects per generator")
    parser.add_argument("--quick", action="store_true", help="200 chargers, short: a smoke run")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", type=Path, default=None, help="keep logs and data here")


def options_from(args: argparse.Namespace) -> Options:
    quick = bool(args.quick)
    interval = 1.0 if quick else args.interval
    return Options(
        chargers=200 if quick else args.chargers,
        gateways=(2, 1),
        interval=interval,
        warmup=args.warmup if args.warmup is not None else interval,
        window=2.0 if quick else args.window,
        ramp=args.ramp,
        settle=0.3 if quick else 3.0,
        out_dir=args.out_dir,
        keep=args.keep,
    )


def main(args: argparse.Namespace) -> int:
    options = options_from(args)
    report = asyncio.run(scale(options))
    publish_named_report("scale", report, render(report), options.out_dir)
    return 1 if any(row["error"] for row in report["targets"]) else 0
