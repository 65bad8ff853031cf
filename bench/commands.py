"""``python -m bench.run commands``: command round trip through the REST API vs. straight to
the gateway over NATS, with N simulated chargers connected.

One ``hub up`` (gateway, UI fan-out and command API, embedded NATS) and one ``hub simulate``
fleet process. In the same run, interleaved one request at a time on random chargers:

- ``direct``: ``hub.commands.send_command`` over NATS to the gateway holding the charger
  (the baseline: NATS request/reply, the CALL stored, sent, answered, the answer stored);
- ``api``: ``POST /api/v1/chargers/{id}/reset``, which adds the token check, the audit event
  stored before sending, the finished event stored after, and HTTP.

Then the same with ``concurrency`` requests in flight (throughput). Memory is the hub's
process tree RSS (hub + nats-server) with the fleet connected, before and after the runs.
Writes bench/reports/commands-latest.{md,json}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats

from bench.run import (
    REPO,
    ServerProcess,
    _environment,
    _git_commit,
    _hub_executable,
    free_port,
    hub_up_spec,
    sample_tree,
)
from hub.commands import send_command
from hub.runtime import announced_url
from hub.tokens import mint
from tools.simulator import raise_nofile_limit

SECRET = "bench-commands-secret-" + "x" * 24
PREFIX = "BENCH-"
PAYLOAD = b'{"type":"Soft"}'


@dataclass(slots=True)
class CommandSettings:
    chargers: int
    requests: int
    concurrency: int
    out_dir: Path


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(latencies_ms: list[float], failures: int) -> dict[str, Any]:
    return {
        "n": len(latencies_ms),
        "failures": failures,
        "p50_ms": round(_percentile(latencies_ms, 0.50), 3),
        "p99_ms": round(_percentile(latencies_ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies_ms), 3),
    }


def _rss_mib(pid: int) -> float:
    return round(sum(s.rss_kib for s in sample_tree(pid)) / 1024, 1)


async def _wait_connected(nats_url: str, expected: int, within: float) -> None:
    """Until every simulated charger's connection.opened has been stored."""
    client = await nats.connect(nats_url)
    seen: set[str] = set()
    done = asyncio.Event()

    async def on_message(msg: Any) -> None:
        seen.add(msg.subject)
        if len(seen) >= expected:
            done.set()

    try:
        js = client.jetstream()
        await js.subscribe("ev.cp.*.conn.opened", cb=on_message, ordered_consumer=True)
        async with asyncio.timeout(within):
            await done.wait()
    finally:
        await client.close()


async def _measure(settings: CommandSettings, work: Path) -> dict[str, Any]:
    hub_port, ui_port = free_port(), free_port()
    data_dir = work / "data"
    spec = hub_up_spec(data_dir, hub_port, ui_port)
    os.environ["HUB_JWT_SECRET"] = SECRET
    os.environ["HUB_PROJECTIONS"] = "false"  # measure the command path, not ClickHouse
    os.environ["HUB_LOG_LEVEL"] = "warning"
    hub = ServerProcess(spec, hub_port, work / "hub.log")
    await hub.start(ready_within=60)
    fleet: asyncio.subprocess.Process | None = None
    try:
        rss_idle = _rss_mib(hub.pid)
        nats_url = announced_url(data_dir)
        waiting = asyncio.create_task(_wait_connected(nats_url, settings.chargers, 180))
        fleet = await asyncio.create_subprocess_exec(
            str(_hub_executable()),
            "simulate",
            "--chargers",
            str(settings.chargers),
            "--url",
            f"ws://127.0.0.1:{hub_port}/ocpp",
            "--prefix",
            PREFIX,
            "--interval",
            "60",
            "--ramp",
            "100",
            "--progress",
            "3600",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,
        )
        await waiting
        rss_connected = _rss_mib(hub.pid)
        token = mint(SECRET, "HS256", chargers="*", ttl_s=3600, role="operator", subject="bench")
        ids = [f"{PREFIX}{n:05d}" for n in range(settings.chargers)]
        rng = random.Random(1)
        client = await nats.connect(nats_url)
        headers = {"Authorization": f"Bearer {token}"}
        api = f"http://127.0.0.1:{ui_port}/api/v1/chargers"
        try:
            async with aiohttp.ClientSession(headers=headers) as session:

                async def direct(cp: str) -> bool:
                    reply = await send_command(client, cp, "Reset", PAYLOAD, timeout_s=10)
                    return reply.status == "answered"

                async def through_api(cp: str) -> bool:
                    async with session.post(f"{api}/{cp}/reset", data=PAYLOAD) as response:
                        await response.read()
                        return response.status == 200

                methods = {"direct": direct, "api": through_api}
                # Warm both paths (connections, JIT-free but caches and pools).
                for method in methods.values():
                    for cp in ids[:20]:
                        await method(cp)
                latencies: dict[str, list[float]] = {name: [] for name in methods}
                failures = dict.fromkeys(methods, 0)
                for _ in range(settings.requests):
                    cp = rng.choice(ids)
                    order = list(methods)
                    rng.shuffle(order)
                    for name in order:
                        started = time.perf_counter()
                        ok = await methods[name](cp)
                        latencies[name].append((time.perf_counter() - started) * 1000)
                        failures[name] += not ok
                throughput: dict[str, float] = {}
                for name, method in methods.items():
                    queue = [rng.choice(ids) for _ in range(settings.requests)]

                    async def worker(method: Any = method, queue: list[str] = queue) -> None:
                        while queue:
                            await method(queue.pop())

                    started = time.perf_counter()
                    async with asyncio.TaskGroup() as group:
                        for _ in range(settings.concurrency):
                            group.create_task(worker())
                    throughput[name] = round(settings.requests / (time.perf_counter() - started), 1)
        finally:
            await client.close()
        rss_after = _rss_mib(hub.pid)
    finally:
        if fleet is not None and fleet.returncode is None:
            fleet.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(20):
                    await fleet.wait()
            if fleet.returncode is None:
                fleet.kill()
        await hub.stop()
    results = {name: _summary(latencies[name], failures[name]) for name in latencies}
    for name in results:
        results[name]["throughput_per_s"] = throughput[name]
    direct_p50, api_p50 = results["direct"]["p50_ms"], results["api"]["p50_ms"]
    return {
        "results": results,
        "ratios": {
            "api_over_direct_p50": round(api_p50 / direct_p50, 2),
            "api_over_direct_p99": round(results["api"]["p99_ms"] / results["direct"]["p99_ms"], 2),
            "api_over_direct_throughput": round(throughput["api"] / throughput["direct"], 2),
        },
        "memory_mib": {
            "hub_idle": rss_idle,
            "hub_with_fleet": rss_connected,
            "hub_after_commands": rss_after,
        },
    }


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# Command round trip: REST API vs. direct NATS request to the gateway",
        "",
        f"{report['generated_at']} · commit {report.get('commit') or '?'} · "
        f"{s['chargers']} simulated chargers connected · {s['requests']} requests per path, "
        f"interleaved · throughput with {s['concurrency']} in flight",
        "",
        "| path | p50 ms | p99 ms | mean ms | throughput /s | failures |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {r['p50_ms']} | {r['p99_ms']} | {r['mean_ms']} | "
            f"{r['throughput_per_s']} | {r['failures']} |"
        )
    ratios, memory = report["ratios"], report["memory_mib"]
    lines += [
        "",
        f"API / direct: p50 x{ratios['api_over_direct_p50']}, p99 "
        f"x{ratios['api_over_direct_p99']}, throughput x{ratios['api_over_direct_throughput']}.",
        "",
        f"Hub RSS (hub + nats-server): idle {memory['hub_idle']} MiB, with the fleet "
        f"{memory['hub_with_fleet']} MiB, after the commands {memory['hub_after_commands']} MiB.",
        "",
        "`direct` is `hub.commands.send_command` over NATS: the gateway stores the CALL, sends "
        "it, stores the answer and replies. `api` adds the JWT check, `admin.command.requested` "
        "stored before sending, `admin.command.finished` stored after, and HTTP. Both measured "
        "in the same run on the same shared 2-core machine, so read the ratios first.",
        "",
    ]
    return "\n".join(lines)


def main(args: Any) -> int:
    raise_nofile_limit()
    settings = CommandSettings(
        chargers=10 if args.quick else args.chargers,
        requests=30 if args.quick else args.requests,
        concurrency=args.concurrency,
        out_dir=args.out_dir,
    )
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as work:
        measured = asyncio.run(_measure(settings, Path(work)))
    report = {
        "benchmark": "commands",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "environment": _environment(),
        "settings": {
            "chargers": settings.chargers,
            "requests": settings.requests,
            "concurrency": settings.concurrency,
        },
        **measured,
    }
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(report)
    (settings.out_dir / "commands-latest.md").write_text(markdown)
    (settings.out_dir / "commands-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown)
    failed = sum(r["failures"] for r in report["results"].values())
    return 1 if failed else 0
