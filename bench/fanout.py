"""``python -m bench.run fanout``: charger frame sent → UI message received, hub vs. the seeds.

Two targets, measured one after the other in the same run, each fresh:

- ``hub``: ``hub up`` with its UI fan-out (a child process); subscribers use
  ``/ws/chargers/{id}`` with a token.
- ``poll``: the seeds' design (``bench/baselines/poll_broadcast.py``): ``hub up --no-ui`` stores
  the frames, a consumer writes them into SQLite, a backend polls it every 2 s and broadcasts.

For each: N chargers (``tools.simulator``, one load process) send a StatusNotification every
``interval`` seconds, stamped with the wall-clock time it was sent; S subscribers (another load
process, S/N per charger) time its arrival. Memory per subscriber is the RSS growth of the
server's whole process tree (``hub up`` runs the fan-out as a child) while the subscribers
connect, divided by their number. Writes bench/reports/fanout-latest.*.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.baselines import READY_MARKER
from bench.run import (
    HUB_READY_MARKER,
    REPO,
    ServerProcess,
    TargetSpec,
    _environment,
    _hub_executable,
    _read_event,
    free_port,
)
from hub.runtime import announced_url
from hub.tokens import mint
from tools.simulator import raise_nofile_limit

SECRET = "bench-fanout-secret-" + "x" * 24
HUB_GOAL_P99_MS = 10.0
REQUIREMENT_P99_MS = 100.0


@dataclass(slots=True)
class FanoutSettings:
    chargers: int
    per_charger: int
    interval: float
    window: float
    settle: float
    out_dir: Path
    targets: list[str]


class LoadProcess:
    """One bench.fanout_load process, stepped over its stdin and stdout."""

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.command = command
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=REPO,
                start_new_session=True,
            )

    async def event(self, within: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        return await _read_event(self.proc.stdout, within)

    async def say(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(OSError, BrokenPipeError):
            await self.say("stop")
            assert proc.stdin is not None
            proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await proc.wait()
                return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _rss_kib(samples: list[Any], role: str | None = None) -> int:
    return sum(s.rss_kib for s in samples if role is None or s.role == role)


async def run_target(name: str, settings: FanoutSettings, work: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"target": name, "ok": False, "error": None}
    data_dir = work / f"data-{name}"
    gateway_port, ui_port = free_port(), free_port()
    command = [
        str(_hub_executable()),
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        str(gateway_port),
        "--allow-unknown-chargers",
    ]
    command += ["--ui-port", str(ui_port)] if name == "hub" else ["--no-ui"]
    hub = ServerProcess(
        TargetSpec("hub", command, HUB_READY_MARKER, "/ocpp"),
        gateway_port,
        work / f"server-{name}.log",
    )
    poller: ServerProcess | None = None
    loads: list[LoadProcess] = []
    try:
        await hub.start(ready_within=120)
        measured = hub
        ui_url = f"http://127.0.0.1:{ui_port}"
        if name == "poll":
            # With the credentials `hub up` made: nats.url alone is refused.
            nats_url = announced_url(data_dir)
            poll_port = free_port()
            poller = ServerProcess(
                TargetSpec(
                    "poll",
                    [
                        sys.executable,
                        "-m",
                        "bench.baselines.poll_broadcast",
                        "--port",
                        str(poll_port),
                    ],
                    READY_MARKER,
                    "",
                    env={"HUB_NATS_URL": nats_url},
                ),
                poll_port,
                work / "server-poll-broadcast.log",
            )
            await poller.start(ready_within=60)
            measured = poller
            ui_url = f"http://127.0.0.1:{poll_port}"
        common = ["--chargers", str(settings.chargers), "--prefix", "FB-"]
        chargers = LoadProcess(
            [
                sys.executable,
                "-m",
                "bench.fanout_load",
                "chargers",
                "--url",
                f"ws://127.0.0.1:{gateway_port}/ocpp",
                *common,
                "--interval",
                str(settings.interval),
                "--window",
                str(settings.window),
            ],
            work / f"load-chargers-{name}.log",
        )
        loads.append(chargers)
        await chargers.start()
        connected = await chargers.event(60 + settings.chargers / 20)
        result["chargers_connected"] = connected["connected"]
        await asyncio.sleep(settings.settle)
        before = measured.sample()
        token = mint(SECRET, "HS256", chargers="*", ttl_s=3600, role="viewer", subject="bench")
        subscribers = LoadProcess(
            [
                sys.executable,
                "-m",
                "bench.fanout_load",
                "subscribers",
                "--url",
                ui_url,
                *common,
                "--per-charger",
                str(settings.per_charger),
                "--token",
                token,
                "--ramp",
                "200",
            ],
            work / f"load-subscribers-{name}.log",
        )
        loads.append(subscribers)
        await subscribers.start()
        total = settings.chargers * settings.per_charger
        joined = await subscribers.event(120 + total / 50)
        result["subscribers_connected"] = joined["connected"]
        result["subscribers_failed"] = joined["failed"]
        await asyncio.sleep(settings.settle)
        after = measured.sample()
        # The whole process tree: `hub up` runs the fan-out as a child (and nats-server).
        grown = _rss_kib(after) - _rss_kib(before)
        result["memory"] = {
            "server_rss_before_kib": _rss_kib(before),
            "server_rss_after_kib": _rss_kib(after),
            "kib_per_subscriber": round(grown / max(1, joined["connected"]), 2),
        }
        cpu_start = measured.cpu() + (hub.cpu() if measured is not hub else 0.0)
        started = time.perf_counter()
        await subscribers.say("go")
        await chargers.say("go")
        sent = await chargers.event(settings.window + 120)
        # The poller needs up to one interval to pass on the last frames.
        await asyncio.sleep(settings.interval + 1.0)
        await subscribers.say("stop")
        report = await subscribers.event(60)
        elapsed = time.perf_counter() - started
        cpu = measured.cpu() + (hub.cpu() if measured is not hub else 0.0) - cpu_start
        result.update(
            frames_sent=sent["sent"],
            frame_errors=sent["errors"],
            ui_messages=report["received"],
            latency=report["latency"],
            latency_after_receipt=report["after_receipt"],
            max_ms_by_second=report["max_ms_by_second"],
            window_first_second=report["first_second"],
            expected_ui_messages=sent["sent"] * settings.per_charger,
            server_cpu_percent=round(100 * cpu / elapsed, 1),
        )
        result["ok"] = report["received"] > 0
    except (RuntimeError, TimeoutError, OSError, KeyError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
    finally:
        for load in loads:
            await load.stop()
        if poller is not None:
            await poller.stop()
        stopping = time.perf_counter()
        await hub.stop()
        # `hub up` must stop by itself on SIGINT, 10,000 clients or not (a kill is -9).
        result["server_stop"] = {
            "seconds": round(time.perf_counter() - stopping, 1),
            "exit_code": hub.returncode,
        }
    return result


@contextlib.contextmanager
def _work_dir() -> Iterator[Path]:
    """A temporary directory, or ``BENCH_FANOUT_KEEP`` to keep the servers' and load
    processes' logs and data for a look afterwards."""
    keep = os.environ.get("BENCH_FANOUT_KEEP")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as directory:
        yield Path(directory)


async def fanout(settings: FanoutSettings) -> dict[str, Any]:
    raise_nofile_limit()
    os.environ["HUB_JWT_SECRET"] = SECRET
    environment = _environment()
    environment["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    results = []
    with _work_dir() as directory:
        for name in settings.targets:
            print(f"[bench] fanout {name} ...", file=sys.stderr, flush=True)
            result = await run_target(name, settings, directory)
            print(f"[bench] fanout {name}: {_line(result)}", file=sys.stderr, flush=True)
            results.append(result)
    environment["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    by_name = {r["target"]: r for r in results}
    ratios: dict[str, Any] = {}
    hub, poll = by_name.get("hub"), by_name.get("poll")
    if hub and poll and hub["ok"] and poll["ok"]:
        for key in ("p50_ms", "p99_ms"):
            ratios[f"poll/hub {key}"] = round(poll["latency"][key] / hub["latency"][key], 1)
    hub_p99 = hub["latency"]["p99_ms"] if hub and hub["ok"] else None
    return {
        "benchmark": "fanout",
        "environment": environment,
        "settings": {
            "chargers": settings.chargers,
            "subscribers": settings.chargers * settings.per_charger,
            "interval_s": settings.interval,
            "window_s": settings.window,
        },
        "results": results,
        "ratios": ratios,
        "checks": {
            "hub_p99_under_10ms": None if hub_p99 is None else hub_p99 < HUB_GOAL_P99_MS,
            "hub_p99_under_100ms": None if hub_p99 is None else hub_p99 < REQUIREMENT_P99_MS,
        },
    }


def _line(result: dict[str, Any]) -> str:
    if not result["ok"]:
        return f"error {result['error']}"
    latency = result["latency"]
    return (
        f"p50 {latency['p50_ms']:.2f} ms p99 {latency['p99_ms']:.2f} ms, "
        f"{result['ui_messages']}/{result['expected_ui_messages']} UI messages, "
        f"{result['memory']['kib_per_subscriber']} KiB/subscriber"
    )


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# Fan-out benchmark: charger frame sent → UI message received",
        "",
        f"{s['chargers']} chargers, one StatusNotification each every {s['interval_s']} s "
        f"(jittered ±50 %), {s['subscribers']} UI subscribers "
        f"({s['subscribers'] // max(1, s['chargers'])} per charger), {s['window_s']} s window. "
        f"Load average at the start: {report['environment'].get('loadavg_start')}, "
        f"at the end: {report['environment'].get('loadavg_end')}.",
        "",
        "| target | p50 ms | p99 ms | p99.9 ms | max ms | UI messages (expected) | "
        "KiB per subscriber | server CPU % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if not r["ok"]:
            lines.append(f"| {r['target']} | error: {r['error']} | | | | | | |")
            continue
        lat = r["latency"]
        lines.append(
            f"| {r['target']} | {lat['p50_ms']:.2f} | {lat['p99_ms']:.2f} | "
            f"{lat['p999_ms']:.2f} | {lat['max_ms']:.2f} | {r['ui_messages']} "
            f"({r['expected_ui_messages']}) | {r['memory']['kib_per_subscriber']} | "
            f"{r['server_cpu_percent']} |"
        )
    lines.append("")
    for r in report["results"]:
        if r["ok"]:
            stop = r.get("server_stop", {})
            after = r.get("latency_after_receipt", {})
            lines.append(
                f"- {r['target']}: from the gateway's receipt of the frame (its `receivedAt`, "
                f"whole ms) to arrival: p50 {after.get('p50_ms', 0):.2f} ms, p99 "
                f"{after.get('p99_ms', 0):.2f} ms; slowest arrival per second of the window (ms): "
                f"{r.get('max_ms_by_second')}; the server stopped in {stop.get('seconds')} s "
                f"(exit code {stop.get('exit_code')})"
            )
    lines += ["", "Ratios (same run): " + json.dumps(report["ratios"]), ""]
    lines.append("Checks: " + json.dumps(report["checks"]))
    lines += [
        "",
        "`hub` is `hub up`, which runs its fan-out as a child process; `poll` is the seeds' "
        "design: `hub up --no-ui`, a consumer writing SQLite, a backend polling it every 2 s "
        "and broadcasting. The window starts 5 s after the last subscriber connected. The "
        "subscribers' and chargers' load processes share the machine's two cores with the "
        "servers (they collect no garbage during the window); latency includes their "
        "event-loop delays. Memory is over the process tree the subscribers connect to; "
        "server CPU too, and `poll`'s includes the hub that stores the frames. "
        'docs/ui-messages.md, "Latency under load", explains the numbers.',
    ]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / "fanout-latest.md", out_dir / "fanout-latest.json"
    md_path.write_text(render_markdown(report))
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    return md_path, json_path


def main(args: Any) -> int:
    """Entry from ``bench.run``'s ``fanout`` sub-command."""
    quick = bool(args.quick)
    settings = FanoutSettings(
        chargers=20 if quick else args.chargers,
        per_charger=5 if quick else args.per_charger,
        interval=1.0 if quick else args.interval,
        window=3.0 if quick else args.window,
        # After 10,000 connections the server gets a moment: the window measures it settled.
        settle=0.5 if quick else 5.0,
        out_dir=args.out_dir,
        targets=[t.strip() for t in args.targets.split(",") if t.strip() in ("hub", "poll")],
    )
    report = asyncio.run(fanout(settings))
    md_path, json_path = write_report(report, settings.out_dir)
    print(render_markdown(report))
    print(f"[bench] wrote {md_path} and {json_path}", file=sys.stderr)
    return 0 if all(r["ok"] for r in report["results"]) else 1
