"""``python -m bench.run integrity``: how long the hub takes to flag a session gone wrong,
against the seeds' design (a service polling the database), measured in the same run.

One ``hub up`` (fresh data dir, fan-out, projections, supervisor ticking every second, the
timed detectors at a few seconds, no actions). A clean fleet (``bench.integrity_load``, its
own process) runs whole sessions throughout, so the numbers are under load, and counts every
alert the hub raises about it: a false alert. For each scenario of ``tools.simulator.anomalies``,
R chargers of this process run it, their triggers spread over one poll interval, while a UI
socket per charger times the ``alert``: latency = alert received - triggering frame sent.
Meanwhile the baseline (``bench.integrity_poll``) runs ``hub query`` every P seconds and times
when an answer first lists each charger. Writes bench/reports/integrity-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.fanout import LoadProcess
from bench.integrity_load import AlertWatcher
from bench.integrity_poll import POLLED_KINDS, SEED_KINDS, Poller, detection_sql, query_json
from bench.run import (
    DEFAULT_OUT,
    HUB_READY_MARKER,
    ServerProcess,
    TargetSpec,
    _environment,
    _git_commit,
    _hub_executable,
    free_port,
    sample_tree,
)
from hub.config import SupervisorSettings
from hub.tokens import mint
from tools.simulator import SimulatedCharger, raise_nofile_limit
from tools.simulator.anomalies import SCENARIOS

SECRET = "bench-integrity-secret-" + "x" * 24
SCENARIO_PREFIX = "INT-"
FLEET_PREFIX = "FLEET-"
TIMED = ("orphaned", "ghost", "stale")
# Seed 002: "Database sync: every 60 seconds; Orphan detection: every 2 minutes".
SEED_SYNC_S = 60.0
SEED_ORPHAN_SCAN_S = 120.0
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("max", 1.0))


@dataclass(slots=True, frozen=True)
class IntegritySettings:
    per_scenario: int
    fleet: int
    fleet_interval: float
    poll_interval: float
    threshold: float
    tick: float
    warmup: float
    slack: float
    """How long past its threshold and two poll intervals a detection may still arrive."""
    out_dir: Path
    keep_logs: Path | None = None


def hub_environment(settings: IntegritySettings) -> dict[str, str]:
    seconds = f"{settings.threshold:g}"
    return {
        "HUB_JWT_SECRET": SECRET,
        "HUB_LOG_LEVEL": "warning",
        "HUB_TICK_INTERVAL": f"{settings.tick:g}",
        "HUB_ORPHANED_AFTER": seconds,
        "HUB_GHOST_AFTER": seconds,
        "HUB_STALE_AFTER": seconds,
        "HUB_INTEGRITY_ACTIONS": "",
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: with 20 samples p95 is the 19th, max the 20th."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_summary(latencies_ms: list[float], expected: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"n": len(latencies_ms), "missed": expected - len(latencies_ms)}
    for name, q in QUANTILES:
        summary[f"{name}_ms"] = round(percentile(latencies_ms, q), 1) if latencies_ms else None
    summary["mean_ms"] = round(statistics.fmean(latencies_ms), 1) if latencies_ms else None
    return summary


def poller_model_ms(kind: str, threshold_s: float, interval_s: float) -> dict[str, float]:
    """A poller's latency if projections and queries took no time: threshold + U(0, P)."""
    base = threshold_s if kind in TIMED else 0.0
    return {f"{name}_ms": round((base + q * interval_s) * 1000, 1) for name, q in QUANTILES}


# ----------------------------------------------------------------------- run


@dataclass(slots=True)
class KindRun:
    kind: str
    sent: dict[str, float]
    hub_seen: dict[str, float]
    poll_seen: dict[str, float]
    errors: list[str]


async def run_kind(
    kind: str,
    settings: IntegritySettings,
    gateway_url: str,
    watcher: AlertWatcher,
    poller: Poller,
    progress: asyncio.Event,
) -> KindRun:
    """One scenario on R fresh chargers; waits until the hub and the poller have flagged each,
    or for long enough that one which did not has missed it."""
    ids = [f"{SCENARIO_PREFIX}{kind}-{index:03d}" for index in range(settings.per_scenario)]

    async def connected(charge_point_id: str) -> SimulatedCharger:
        await watcher.watch(charge_point_id)
        charger = SimulatedCharger(
            charge_point_id, gateway_url, call_timeout=30, connect_timeout=30
        )
        await charger.come_online()
        return charger

    # Triggers spread over one poll interval, so the poller's phase is sampled evenly (as it
    # would be in the field), and the hub's tick phase with it.
    step = settings.poll_interval / len(ids)

    async def trigger(index: int, charger: SimulatedCharger) -> float:
        await asyncio.sleep(index * step)
        return await SCENARIOS[kind](charger)

    # A charger that fails (a busy machine) is an error of the run, not of the others.
    ready = await asyncio.gather(*(connected(cp) for cp in ids), return_exceptions=True)
    chargers = {cp: c for cp, c in zip(ids, ready, strict=True) if isinstance(c, SimulatedCharger)}
    outcomes = await asyncio.gather(
        *(trigger(ids.index(cp), c) for cp, c in chargers.items()), return_exceptions=True
    )
    sent = {cp: t for cp, t in zip(chargers, outcomes, strict=True) if isinstance(t, float)}
    errors = [
        f"{cp}: {describe(e)}"
        for cp, e in [*zip(ids, ready, strict=True), *zip(chargers, outcomes, strict=True)]
        if isinstance(e, BaseException)
    ]
    threshold = settings.threshold if kind in TIMED else 0.0
    deadline = time.monotonic() + threshold + 2 * settings.poll_interval + settings.slack

    def done() -> bool:
        return all((cp, kind) in watcher.first for cp in sent) and (
            kind not in POLLED_KINDS or all((kind, cp) in poller.first_seen for cp in sent)
        )

    while not done() and time.monotonic() < deadline:
        progress.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline - time.monotonic()):
                await progress.wait()
    for charger in chargers.values():
        with contextlib.suppress(Exception):
            await charger.go_offline()
    return KindRun(
        kind,
        sent,
        {cp: watcher.first[(cp, kind)] for cp in sent if (cp, kind) in watcher.first},
        {cp: poller.first_seen[(kind, cp)] for cp in sent if (kind, cp) in poller.first_seen},
        errors,
    )


def describe(error: BaseException) -> str:
    """The error and where it was raised: a bare TimeoutError says nothing by itself."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _latencies_ms(sent: dict[str, float], seen: dict[str, float]) -> list[float]:
    return [(seen[cp] - sent[cp]) * 1000 for cp in sent if cp in seen]


def kind_result(run: KindRun, settings: IntegritySettings) -> dict[str, Any]:
    expected = len(run.sent)
    hub_ms = _latencies_ms(run.sent, run.hub_seen)
    timed = run.kind in TIMED
    threshold_ms = settings.threshold * 1000 if timed else 0.0
    result: dict[str, Any] = {
        "kind": run.kind,
        "threshold_s": settings.threshold if timed else None,
        "chargers": settings.per_scenario,
        "errors": run.errors,
        "hub": latency_summary(hub_ms, expected),
        "hub_minus_threshold": latency_summary([v - threshold_ms for v in hub_ms], expected)
        if timed
        else None,
        "in_seed": run.kind in SEED_KINDS,
        "poll": None,
        "poll_model": poller_model_ms(run.kind, settings.threshold, settings.poll_interval),
        "seed_model": poller_model_ms(
            run.kind,
            settings.threshold,
            SEED_ORPHAN_SCAN_S if run.kind in SEED_KINDS else SEED_SYNC_S,
        ),
        "seed_model_60s": poller_model_ms(run.kind, settings.threshold, SEED_SYNC_S),
        "ratios": {},
        "hub_latencies_ms": [round(v, 1) for v in hub_ms],
    }
    if run.kind in POLLED_KINDS:
        poll_ms = _latencies_ms(run.sent, run.poll_seen)
        result["poll"] = latency_summary(poll_ms, expected)
        result["poll_latencies_ms"] = [round(v, 1) for v in poll_ms]
        if timed:
            result["poll_minus_threshold"] = latency_summary(
                [v - threshold_ms for v in poll_ms], expected
            )
    hub = result["hub"]
    for name, _ in QUANTILES[:2]:
        key = f"{name}_ms"
        if hub[key]:
            if result["poll"] and result["poll"][key] is not None:
                result["ratios"][f"poll/hub {name}"] = round(result["poll"][key] / hub[key], 1)
            result["ratios"][f"seed 60 s/hub {name}"] = round(
                result["seed_model_60s"][key] / hub[key], 1
            )
    # Both wait out the same threshold; past it, the tick and the poll interval differ.
    beyond_hub, beyond_poll = result["hub_minus_threshold"], result.get("poll_minus_threshold")
    if beyond_hub and beyond_poll and beyond_hub["p50_ms"] and beyond_poll["p50_ms"] is not None:
        result["ratios"]["poll/hub beyond threshold p50"] = round(
            beyond_poll["p50_ms"] / beyond_hub["p50_ms"], 1
        )
    if beyond_hub and beyond_hub["p50_ms"]:
        result["ratios"]["seed 60 s/hub beyond threshold p50"] = round(
            SEED_SYNC_S * 1000 * 0.5 / beyond_hub["p50_ms"],
            1,  # the median of U(0, 60 s)
        )
    return result


async def measure(settings: IntegritySettings, work: Path) -> dict[str, Any]:
    os.environ.update(hub_environment(settings))
    gateway_port, ui_port = free_port(), free_port()
    data_dir = work / "data"
    hub_exe = _hub_executable()
    command = [
        str(hub_exe),
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        str(gateway_port),
        "--ui-port",
        str(ui_port),
        "--allow-unknown-chargers",
        "--log-level",
        "warning",
    ]
    hub = ServerProcess(
        TargetSpec("hub", command, HUB_READY_MARKER, "/ocpp"), gateway_port, work / "hub.log"
    )
    gateway_url = f"ws://127.0.0.1:{gateway_port}/ocpp"
    ui_url = f"http://127.0.0.1:{ui_port}"
    token = mint(SECRET, "HS256", chargers="*", ttl_s=3600, role="viewer", subject="bench")
    max_power_w = SupervisorSettings().max_power_w
    progress = asyncio.Event()  # set whenever the hub or the poller flags something
    sql = detection_sql(settings.threshold, max_power_w)
    poller = Poller(hub_exe, data_dir, sql, settings.poll_interval, progress)
    out: dict[str, Any] = {"error": None, "kinds": {}}
    fleet: LoadProcess | None = None
    stop = asyncio.Event()
    polling: asyncio.Task[None] | None = None
    try:
        await hub.start(ready_within=120)
        out["memory_start"] = [asdict(s) for s in sample_tree(hub.pid)]
        if settings.fleet:
            fleet = LoadProcess(
                [
                    sys.executable,
                    "-m",
                    "bench.integrity_load",
                    "--url",
                    gateway_url,
                    "--ui-url",
                    ui_url,
                    "--token",
                    token,
                    "--chargers",
                    str(settings.fleet),
                    "--prefix",
                    FLEET_PREFIX,
                    "--interval",
                    str(settings.fleet_interval),
                ],
                work / "fleet.log",
            )
            await fleet.start()
            connected = await fleet.event(120 + settings.fleet / 10)
            out["fleet_connected"] = connected["connected"]
            out["fleet_connect_failures"] = connected["failed"]
            await asyncio.sleep(settings.warmup)
        polling = asyncio.create_task(poller.run(stop), name="integrity.poller")
        cpu_start, started = hub.cpu(), time.monotonic()
        # One socket per scenario charger stays open to the end: no pool limit (default 100).
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            watcher = AlertWatcher(session, ui_url, token, progress)
            try:
                for kind in SCENARIOS:
                    print(f"[bench] integrity {kind} ...", file=sys.stderr, flush=True)
                    try:
                        run = await run_kind(kind, settings, gateway_url, watcher, poller, progress)
                    except (TimeoutError, OSError, aiohttp.ClientError) as error:
                        run = KindRun(kind, {}, {}, {}, [describe(error)])
                    out["kinds"][kind] = kind_result(run, settings)
                    print(f"[bench] integrity {kind}: {_line(out['kinds'][kind])}", file=sys.stderr)
            finally:
                await watcher.close()
        elapsed = time.monotonic() - started
        out["hub_cpu_percent"] = round(100 * (hub.cpu() - cpu_start) / elapsed, 1)
        out["scenarios_seconds"] = round(elapsed, 1)
        stop.set()
        await polling
        out["poller"] = _poller_result(poller, elapsed)
        out["fleet"] = await _fleet_result(fleet, hub_exe, data_dir)
        out["memory_end"] = [asdict(s) for s in sample_tree(hub.pid)]
    except (RuntimeError, TimeoutError, OSError, KeyError, aiohttp.ClientError) as error:
        out["error"] = describe(error)
    finally:
        stop.set()
        if polling is not None and not polling.done():
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
        if fleet is not None:
            await fleet.stop()
        await hub.stop()
    return out


def _poller_result(poller: Poller, elapsed: float) -> dict[str, Any]:
    polls = len(poller.query_seconds)
    fleet_hits = sorted(
        {f"{kind}:{cp}" for kind, cp in poller.first_seen if cp.startswith(FLEET_PREFIX)}
    )
    return {
        "interval_s": poller.interval,
        "polls": polls,
        "failures": poller.failures,
        "query_p50_ms": round(percentile(poller.query_seconds, 0.5) * 1000) if polls else None,
        "query_max_ms": round(max(poller.query_seconds) * 1000) if polls else None,
        "cpu_s_per_poll": round(poller.cpu_seconds / max(1, polls), 2),
        "cpu_percent": round(100 * poller.cpu_seconds / elapsed, 1),
        "fleet_false_positives": len(fleet_hits),
        "fleet_false_positive_examples": fleet_hits[:10],
    }


async def _fleet_result(fleet: LoadProcess | None, hub_exe: Path, data_dir: Path) -> dict[str, Any]:
    if fleet is None:
        return {"chargers": 0}
    # Straight from the stream's projection too: an alert a UI socket missed still counts.
    rows = await query_json(
        hub_exe,
        data_dir,
        "SELECT JSONExtractString(payload, 'kind') AS kind, count() AS n FROM ocpp.events "
        f"WHERE type = 'integrity.detected' AND startsWith(charge_point_id, '{FLEET_PREFIX}') "
        "GROUP BY kind",
    )
    await fleet.say("stop")
    report = await fleet.event(60)
    alerts: dict[str, int] = report["alerts"]
    return {
        "chargers": report["chargers"],
        "sessions": report["sessions"],
        "messages": report["messages"],
        "errors": report["errors"],
        "disconnected": report["disconnected"],
        "ui_sockets_closed_early": report["ui_sockets_closed_early"],
        "false_alerts_ui": sum(alerts.values()),
        "false_alerts_ui_by_kind": alerts,
        "false_alerts_stream": sum(int(row["n"]) for row in rows),
        "false_alerts_stream_by_kind": {row["kind"]: int(row["n"]) for row in rows},
        "alerted_chargers": report["alerted_chargers"],
    }


def _line(result: dict[str, Any]) -> str:
    hub, poll = result["hub"], result["poll"] or {}
    return (
        f"hub p50 {hub['p50_ms']} ms max {hub['max_ms']} ms ({hub['missed']} missed); "
        f"poll p50 {poll.get('p50_ms')} ms"
    )


async def integrity(settings: IntegritySettings) -> dict[str, Any]:
    raise_nofile_limit()
    environment = _environment()
    if settings.keep_logs is not None:
        settings.keep_logs.mkdir(parents=True, exist_ok=True)
        measured = await measure(settings, settings.keep_logs)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-integrity-") as work:
            measured = await measure(settings, Path(work))
    environment["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    kinds = measured["kinds"]
    fleet = measured.get("fleet", {})
    return {
        "benchmark": "integrity",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "environment": environment,
        "settings": {
            **asdict(settings),
            "out_dir": str(settings.out_dir),
            "keep_logs": str(settings.keep_logs) if settings.keep_logs else None,
        },
        **measured,
        "checks": {
            "every_scenario_detected": bool(kinds)
            and all(k["hub"]["missed"] == 0 and not k["errors"] for k in kinds.values()),
            "fleet_false_alerts_zero": None
            if "false_alerts_ui" not in fleet
            else fleet["false_alerts_ui"] == 0 and fleet["false_alerts_stream"] == 0,
        },
    }


# ------------------------------------------------------------------ markdown


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _triple(summary: dict[str, Any] | None, scale: float = 1.0, digits: int = 0) -> str:
    if summary is None or summary.get("p50_ms") is None:
        return "—"
    return " / ".join(f"{summary[f'{n}_ms'] / scale:,.{digits}f}" for n, _ in QUANTILES)


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    env = report["environment"]
    lines = [
        "# Integrity benchmark: triggering frame sent → `alert` on the UI",
        "",
        f"{report['generated_at']} · commit {report.get('commit') or '?'} · "
        f"{env['cpu_count']} CPUs · load average {env['loadavg_start'][0]} at start, "
        f"{env['loadavg_end'][0]} at end",
        "",
        f"`hub up` with a tick every {s['tick']:g} s, the orphaned, ghost and stale thresholds "
        f"at {s['threshold']:g} s, no actions. {s['per_scenario']} chargers per scenario, their "
        f"triggers spread over {s['poll_interval']:g} s; a clean fleet of {s['fleet']} chargers "
        f"(one message each every {s['fleet_interval']:g} s) runs sessions throughout. The "
        f"baseline polls the projections with `hub query` every {s['poll_interval']:g} s.",
        "",
    ]
    if report.get("error"):
        lines += [f"**The run broke:** {report['error']}", ""]
    lines += [
        "## Hub",
        "",
        "Latency per charger: `alert` (state `detected`, that kind) received on "
        "`/ws/chargers/{id}` minus the scenario's triggering frame sent. For the timed "
        "detectors, latency minus threshold is what the hub adds: tick granularity plus the "
        "pipeline.",
        "",
        "| detector | threshold s | detected | p50 / p95 / max ms "
        "| minus threshold: p50 / p95 / max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, k in report["kinds"].items():
        hub = k["hub"]
        lines.append(
            f"| {kind} | {k['threshold_s'] if k['threshold_s'] is not None else 'at once'} "
            f"| {hub['n']}/{k['chargers']} | {_triple(hub)} | {_triple(k['hub_minus_threshold'])} |"
        )
    lines += [
        "",
        f"## Baseline: a poller (seed 002's sync service), same run, P = {s['poll_interval']:g} s",
        "",
        "Poll latency: first `hub query` answer listing the charger minus triggering frame sent. "
        "Model: threshold + U(0, P), i.e. nothing for projection lag and query time. "
        f"Seed 002 syncs every {SEED_SYNC_S:g} s and scans for orphans every "
        f"{SEED_ORPHAN_SCAN_S:g} s; the seed column applies the model to that (120 s for "
        "orphaned and ghost, 60 s for the rest), the 60-s ratio uses 60 s for all.",
        "",
        "| detector | in seed 002 | poll p50 / p95 / max s | model at P: p50 / p95 / max s "
        "| poll/hub p50 | poll/hub p95 | poll/hub p50 beyond threshold "
        "| seed: p50 / p95 / max s | seed 60 s/hub p50 | seed 60 s/hub beyond threshold |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, k in report["kinds"].items():
        ratios = k["ratios"]
        lines.append(
            f"| {kind} | {'yes' if k['in_seed'] else 'no (same poller, extra SQL)'} "
            f"| {_triple(k['poll'], 1000, 1)} | {_triple(k['poll_model'], 1000, 1)} "
            f"| {ratios.get('poll/hub p50', '—')} | {ratios.get('poll/hub p95', '—')} "
            f"| {ratios.get('poll/hub beyond threshold p50', '—')} "
            f"| {_triple(k['seed_model'], 1000, 0)} | {ratios.get('seed 60 s/hub p50', '—')} "
            f"| {ratios.get('seed 60 s/hub beyond threshold p50', '—')} |"
        )
    poller = report.get("poller")
    if poller:
        lines += [
            "",
            f"Poller: {poller['polls']} polls, `hub query` wall time p50 "
            f"{_ms(poller['query_p50_ms'])} ms (max {_ms(poller['query_max_ms'])} ms; mostly the "
            f"CLI's start-up: it adds to the grid's phase, not to the latency distribution), "
            f"{poller['cpu_s_per_poll']} CPU s per poll ({poller['cpu_percent']} % of a core), "
            f"{len(poller['failures'])} failed, {poller['fleet_false_positives']} false "
            "positives on the clean fleet.",
        ]
    lines += [
        "",
        "Every detector has an SQL counterpart over the projections (`bench/integrity_poll.py`): "
        "ghost and orphaned from `connector_status` and `sessions` (the seed's two), stale from "
        "the event of a session's latest reading, duplicate start as two ongoing sessions on "
        "one connector, meter backwards and power from consecutive `meter_values` readings. "
        "What the poller "
        "cannot do is act within seconds: it learns nothing between polls, and it reads the "
        "projections, so their lag adds too.",
    ]
    fleet = report.get("fleet")
    if fleet and fleet["chargers"]:
        lines += [
            "",
            "## Clean fleet",
            "",
            f"{report.get('fleet_connected', 0)} chargers connected "
            f"({report.get('fleet_connect_failures', 0)} failed), {fleet['sessions']} sessions "
            f"completed, {fleet['messages']} messages, {fleet['errors']} errors. "
            f"**False alerts: {fleet['false_alerts_ui']} on the UI sockets, "
            f"{fleet['false_alerts_stream']} `integrity.detected` events on the stream** "
            f"(by kind: {json.dumps(fleet['false_alerts_stream_by_kind'])}).",
        ]
    if "memory_end" in report:
        lines += ["", "## Memory and CPU", ""]
        for label in ("memory_start", "memory_end"):
            parts = [f"{p['name']} {p['rss_kib'] / 1024:.1f} MiB" for p in report[label]]
            lines.append(f"- hub RSS at {label.split('_')[1]}: " + ", ".join(parts))
        lines.append(
            f"- hub process tree CPU during the scenarios: {report['hub_cpu_percent']} % of a "
            f"core over {report['scenarios_seconds']} s"
        )
    lines += ["", "Checks: " + json.dumps(report["checks"]), ""]
    problems = [f"- {kind}: {e}" for kind, k in report["kinds"].items() for e in k["errors"]]
    if poller and poller["failures"]:
        problems += [f"- poller: {f}" for f in poller["failures"][:5]]
    if problems:
        lines += ["## Problems", "", *problems, ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / "integrity-latest.md", out_dir / "integrity-latest.json"
    md_path.write_text(render_markdown(report))
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    return md_path, json_path


# ----------------------------------------------------------------------- CLI


def build_parser(sub: Any) -> None:
    parser = sub.add_parser("integrity", help="detector latency: hub vs. a polling service")
    parser.add_argument("--chargers", type=int, default=20, help="per scenario (R)")
    parser.add_argument("--fleet", type=int, default=200, help="clean chargers running sessions")
    parser.add_argument("--fleet-interval", type=float, default=1.0, help="s between messages")
    parser.add_argument("--poll-interval", type=float, default=10.0, help="the baseline's P, s")
    parser.add_argument("--threshold", type=float, default=5.0, help="orphaned/ghost/stale, s")
    parser.add_argument("--tick", type=float, default=1.0, help="HUB_TICK_INTERVAL, s")
    parser.add_argument("--warmup", type=float, default=5.0, help="s of fleet load before")
    parser.add_argument("--quick", action="store_true", help="2 chargers, short thresholds")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep-logs", type=Path, default=None, metavar="DIR", help="work here")


def main(args: argparse.Namespace) -> int:
    quick = bool(args.quick)
    settings = IntegritySettings(
        per_scenario=2 if quick else args.chargers,
        fleet=3 if quick else args.fleet,
        fleet_interval=0.3 if quick else args.fleet_interval,
        poll_interval=1.0 if quick else args.poll_interval,
        threshold=2.0 if quick else args.threshold,
        tick=0.5 if quick else args.tick,
        warmup=0.5 if quick else args.warmup,
        slack=10.0 if quick else 30.0,
        out_dir=args.out_dir,
        keep_logs=args.keep_logs,
    )
    report = asyncio.run(integrity(settings))
    md_path, json_path = write_report(report, settings.out_dir)
    print(render_markdown(report))
    print(f"[bench] wrote {md_path} and {json_path}", file=sys.stderr)
    # Slow detectors and false alerts are results; only a broken run is a failure.
    return 1 if report["error"] else 0
