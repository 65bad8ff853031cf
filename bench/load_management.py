"""Site load management under load: ``python -m bench.run load``.

A site of 50 simulated chargers behind a 200 kW grid connection (``grid``, three phases of
230 V), with a 100 kW feeder (``feeder-1``) inside it: 25 chargers on the feeder, 25 on the
grid directly.
``hub up`` runs with everything on (a fresh data directory, ``--allow-unknown-chargers``);
the site is configured through the REST API; cars arrive and leave for ``--minutes`` (real
time) on chargers that obey the profiles they get (tools/simulator/site.py), demanding more
than the site has most of the time. At 1/3 of the run the grid's live limit goes to 150 kW,
at 2/3 it is cleared (back to the static 200 kW).

From the simulator's own record of every car's draw, second by second, and from the stream
(``allocation.decided`` events, the SetChargingProfile CALLs, the MeterValues that caused
them by ``cause_seq``), per node: time and energy above the limit (outside the settling
window after each change, with the settling time), utilisation of the limit while demand
exceeds it, fairness among equal-priority cars (Jain's index), profile messages per car per
hour, the latency from a meter value to the profile it causes (p50, p99), and the hub's RSS.
Then the same seed with ``HUB_LOAD_MANAGEMENT=false``: the baseline, how far it overshoots.

``--dry`` runs only the baseline (no sites, no allocator): the harness and the simulator
without the load-management API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import msgspec
import nats
from nats.js.api import DeliverPolicy

from bench import load_metrics as metrics
from bench.run import (
    DEFAULT_OUT,
    ServerProcess,
    _environment,
    _git_commit,
    free_port,
    hub_up_spec,
    publish_named_report,
    sample_tree,
    work_dir,
)
from hub.runtime import announced_url
from hub.tokens import mint
from tools.simulator import raise_nofile_limit
from tools.simulator.site import DrawLog, SiteFleetOptions, run_site_fleet

SECRET: Final = "bench-load-secret-" + "x" * 28
PREFIX: Final = "LM-"
VOLTAGE: Final = 230.0
GRID_W: Final = 200_000.0
FEEDER_W: Final = 100_000.0
REDUCED_W: Final = 150_000.0
GOAL_UTILISATION: Final = 0.95
MIN_A: Final = 6.0


@dataclass(frozen=True, slots=True)
class Options:
    minutes: float
    chargers: int
    seed: int
    reaction_s: float
    meter_interval_s: float
    settle_s: int
    dry: bool
    baseline: bool
    out_dir: Path
    keep: Path | None

    def charger_ids(self) -> list[str]:
        return [f"{PREFIX}{n:05d}" for n in range(self.chargers)]

    def node_of(self, charger_id: str) -> str:
        """The first half of the chargers hang on the feeder, the rest on the grid."""
        return "feeder-1" if self.charger_ids().index(charger_id) < self.chargers // 2 else "grid"


def amps(watts: float) -> float:
    return watts / (3 * VOLTAGE)


async def _configure_site(api: str, session: aiohttp.ClientSession, options: Options) -> None:
    async def put(path: str, body: dict[str, Any]) -> None:
        async with session.put(f"{api}{path}", json=body) as response:
            if response.status >= 300:
                text = await response.text()
                raise RuntimeError(f"PUT {path}: {response.status} {text[:300]}")

    await put("/sites/nodes/grid", {"parent": "", "limit": GRID_W, "unit": "W", "phases": 3})
    await put(
        "/sites/nodes/feeder-1", {"parent": "grid", "limit": FEEDER_W, "unit": "W", "phases": 3}
    )
    for charger_id in options.charger_ids():
        body = {"nodeId": options.node_of(charger_id), "priority": 0, "minA": 6, "maxA": 32}
        await put(f"/chargers/{charger_id}/connectors/1/site", {**body, "phases": 3})


async def _set_grid_limit(api: str, session: aiohttp.ClientSession, watts: float | None) -> int:
    """The live limit of the grid (None: cleared); the second it took effect."""
    body = {"limit": watts, "unit": "W"} if watts is not None else {"limit": None}
    async with session.put(f"{api}/sites/nodes/grid/limit", json=body) as response:
        if response.status >= 300:
            raise RuntimeError(f"PUT grid limit: {response.status} {(await response.text())[:300]}")
    return int(time.time())


# What the figures need of an event; the rest (payloads above all) is dropped as it is read.
_KEPT_FIELDS: Final = (
    "type",
    "received_at",
    "action",
    "direction",
    "message_type",
    "unique_id",
    "reason",
    "cause_seq",
    "command_id",
)


async def _read_stream(nats_url: str) -> dict[int, dict[str, Any]]:
    """Every event of the run by stream sequence, as plain mappings of the fields the figures
    need (read as stored, whatever types this checkout knows)."""
    client = await nats.connect(nats_url)
    kept: dict[int, dict[str, Any]] = {}
    try:
        js = client.jetstream()
        info = await js.stream_info("OCPP_EVENTS")
        last = info.state.last_seq
        done = asyncio.Event()
        decode = msgspec.json.Decoder(dict[str, Any]).decode

        async def on_message(msg: Any) -> None:
            seq = msg.metadata.sequence.stream
            event = decode(msg.data)
            kept[seq] = {key: event[key] for key in _KEPT_FIELDS if key in event}
            if seq >= last:
                done.set()

        if last:
            sub = await js.subscribe(
                "ev.>", cb=on_message, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            )
            async with asyncio.timeout(300):
                await done.wait()
            await sub.unsubscribe()
    finally:
        await client.close()
    return kept


async def run_once(options: Options, managed: bool, root: Path) -> dict[str, Any]:
    """One run: a fresh hub, the fleet for ``minutes``, the figures."""
    hub_port, ui_port = free_port(), free_port()
    data_dir = root / ("managed" if managed else "baseline")
    env = {
        "HUB_JWT_SECRET": SECRET,
        "HUB_LOG_LEVEL": "warning",
        "HUB_LOAD_MANAGEMENT": "true" if managed else "false",
    }
    spec = hub_up_spec(data_dir, hub_port, ui_port, env)
    hub = ServerProcess(spec, hub_port, root / f"hub-{'managed' if managed else 'baseline'}.log")
    await hub.start(ready_within=120)
    api = f"http://127.0.0.1:{ui_port}/api/v1"
    token = mint(SECRET, "HS256", chargers="*", ttl_s=7200, role="operator", subject="bench")
    draws = DrawLog()
    stop = asyncio.Event()
    duration = options.minutes * 60.0
    rss: list[float] = []
    changes: list[tuple[int, float]] = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            if not options.dry:
                await _configure_site(api, session, options)
            fleet_options = SiteFleetOptions(
                url=hub.url,
                charger_ids=options.charger_ids(),
                seed=options.seed,
                reaction_s=options.reaction_s,
                meter_interval_s=options.meter_interval_s,
            )
            started = int(time.time())
            fleet = asyncio.create_task(run_site_fleet(fleet_options, draws, stop))
            schedule = [(duration / 3, REDUCED_W), (2 * duration / 3, None)]
            t0 = time.monotonic()
            for at, watts in [*schedule, (duration, 0.0)]:
                while (left := at - (time.monotonic() - t0)) > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(left, 10.0)):
                            await asyncio.shield(fleet)
                    if fleet.done():
                        break
                    rss.append(sum(s.rss_kib for s in sample_tree(hub.pid)) / 1024)
                if fleet.done() or at >= duration:
                    break
                if options.dry:
                    changes.append((int(time.time()), amps(watts or GRID_W)))
                else:
                    changes.append(
                        (await _set_grid_limit(api, session, watts), amps(watts or GRID_W))
                    )
            ended = int(time.time())
            stop.set()
            chargers = await fleet
        events = await _read_stream(announced_url(data_dir))
    finally:
        stop.set()
        await hub.stop()
    return _figures(options, managed, draws, chargers, events, started, ended, changes, rss)


def _figures(
    options: Options,
    managed: bool,
    draws: DrawLog,
    chargers: Sequence[Any],
    events: dict[int, dict[str, Any]],
    started: int,
    ended: int,
    changes: list[tuple[int, float]],
    rss: list[float],
) -> dict[str, Any]:
    seconds = list(range(started, ended))
    by_second = metrics.seconds_by_car(
        metrics.Second(r.at_s, r.charge_point_id, r.wanted_a, r.drawn_a, r.phases)
        for r in draws.records
    )
    groups = {cp: options.node_of(cp) for cp in options.charger_ids()}
    paths = {cp: [node, "grid"] if node != "grid" else ["grid"] for cp, node in groups.items()}
    timelines = {
        "grid": metrics.LimitTimeline(((started, amps(GRID_W)), *changes)),
        "feeder-1": metrics.LimitTimeline(((started, amps(FEEDER_W)),)),
    }
    change_indices = [at - started for at, _ in changes]
    series = {
        node_id: metrics.node_series(by_second, paths, node_id, seconds) for node_id in timelines
    }
    limits = {node_id: [timeline.at(t) for t in seconds] for node_id, timeline in timelines.items()}
    # A phase's room: the limit less the load on that phase (the most loaded counts).
    room = {
        node_id: [
            limit - max(load.values())
            for load, limit in zip(series[node_id][0], limits[node_id], strict=True)
        ]
        for node_id in timelines
    }
    # The feeder binds in a second when no node above it is tighter: the grid has at least
    # the feeder's room left. (Room for one more car's minimum at the grid is not enough: in
    # the seconds after a car on the grid leaves, before the one that takes its place draws,
    # the grid has room, but it is the grid's share that holds the feeder's cars back.)
    binds = {
        "grid": None,
        "feeder-1": [
            grid >= feeder - 1e-6
            for grid, feeder in zip(room["grid"], room["feeder-1"], strict=True)
        ],
    }
    # The definition before: the grid has room for one more car's minimum.
    grid_has_room = [value >= MIN_A for value in room["grid"]]
    nodes = {}
    for node_id in timelines:
        loads, demands = series[node_id]
        nodes[node_id] = metrics.node_figures(
            loads, demands, limits[node_id], change_indices, options.settle_s, room=binds[node_id]
        )
        if node_id != "grid":
            before = metrics.node_figures(
                loads, demands, limits[node_id], change_indices, options.settle_s,
                room=grid_has_room,
            )  # fmt: skip
            nodes[node_id]["utilisation_grid_has_room"] = before["utilisation"]
            nodes[node_id]["binding_s_grid_has_room"] = before["binding_s"]
    profile_calls = metrics.profile_calls(events)
    car_hours = draws.plugged_s / 3600.0
    latencies = metrics.cause_to_profile_ms(events)
    reasons = Counter(
        (str(e.get("reason")), bool(e.get("command_id")))
        for e in events.values()
        if e.get("type") == "allocation.decided"
    )
    return {
        "managed": managed,
        "seconds": len(seconds),
        "sessions": draws.sessions,
        "car_hours": round(car_hours, 2),
        "draw_records": len(draws.records),
        "draw_records_dropped": draws.dropped,
        "limit_changes": [
            {"at_s": at - started, "grid_limit_a": round(limit, 1)} for at, limit in changes
        ],
        "nodes": nodes,
        "fairness": metrics.fairness(by_second, groups, seconds),
        "profile_calls": profile_calls,
        "profiles_per_car_hour": round(profile_calls / car_hours, 1) if car_hours else None,
        "profiles_answered_by_chargers": sum(c.control.profile_messages for c in chargers),
        "allocation_decisions": sum(
            1 for e in events.values() if e.get("type") == "allocation.decided"
        ),
        "decisions_by_reason": {
            reason: {"sent": reasons[reason, True], "not_sent": reasons[reason, False]}
            for reason in sorted({reason for reason, _ in reasons})
        },
        "meter_to_profile": metrics.percentiles(latencies.get("MeterValues", [])),
        "cause_to_profile": {
            cause: metrics.percentiles(values) for cause, values in sorted(latencies.items())
        },
        "skipped_meter_samples": sum(c.skipped_samples for c in chargers),
        "hub_rss_mib": {
            "max": round(max(rss), 1) if rss else None,
            "last": round(rss[-1], 1) if rss else None,
        },
    }


def _cell(value: object, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def _percent(share: float | None) -> str:
    return _cell(None if share is None else round(100 * share, 1), " %")


def render(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# Site load management",
        "",
        f"{report['generated_at']} · commit {report.get('commit') or '?'} · "
        f"{s['chargers']} chargers, {s['minutes']} min per run, seed {s['seed']}, reaction "
        f"delay {s['reaction_s']} s, a meter value every {s['meter_interval_s']} s, settling "
        f"window {s['settle_s']} s. Grid 200 kW (289.9 A per phase), feeder-1 100 kW "
        "(144.9 A) inside it; the grid's live limit 150 kW (217.4 A) from 1/3 to 2/3 of the run.",
        "",
    ]
    for run in report["runs"]:
        title = "load management on" if run["managed"] else "baseline: load management off"
        lines += [
            f"## {title}",
            "",
            f"{run['sessions']} sessions, {run['car_hours']} car-hours plugged in, "
            f"limit changes at {', '.join(str(c['at_s']) + ' s' for c in run['limit_changes'])}.",
            "",
            "| node | over the limit s (outside settling) | over Wh (outside) | over s (all) "
            "| over Wh (all) | worst excess A | settling s after each change "
            "| demand over limit s | utilisation (s it binds) | utilisation (all) | mean load A |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for node_id, f in run["nodes"].items():
            lines.append(
                f"| {node_id} | {f['over_s']} | {f['over_wh']} | {f['over_s_all']} | "
                f"{f['over_wh_all']} | {f['max_excess_a']} | "
                f"{', '.join(str(x) for x in f['settling_s'])} | {f['demand_exceeds_s']} | "
                f"{_percent(f['utilisation'])} ({f['binding_s']} s) | "
                f"{_percent(f['utilisation_all'])} | {f['mean_load_a']} |"
            )
        fair, latency = run["fairness"], run["meter_to_profile"]
        lines.append("")
        for node_id, f in run["nodes"].items():
            if f["over_at_s"]:
                shown = ", ".join(str(t) for t in f["over_at_s"][:40])
                more = " ..." if len(f["over_at_s"]) > 40 else ""
                lines.append(f"- {node_id} over its limit at (s into the run): {shown}{more}")
        lines += [
            "",
            f"Fairness (Jain's index among cars held back by their limits, per node and "
            f"second): {_cell(fair['jain_admitted'])} among cars charging, "
            f"{_cell(fair['jain_all'])} counting the waiting ones "
            f"({fair['waiting_car_s']} of {fair['constrained_car_s']} held-back car-seconds "
            "waiting at 0 A).",
            "",
            f"Profiles: {run['profile_calls']} SetChargingProfile sent, "
            f"{_cell(run['profiles_per_car_hour'])} per car per hour; "
            f"{run['allocation_decisions']} allocation decisions. Meter value → profile "
            f"(stored to stored): p50 {_cell(latency['p50_ms'], ' ms')}, p99 "
            f"{_cell(latency['p99_ms'], ' ms')}, max {_cell(latency['max_ms'], ' ms')} "
            f"(n {latency['n']}).",
            "",
            "| decided on | profiles sent | not sent | cause stored → profile stored: "
            "p50 ms | p99 ms | n |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for reason, counts in run["decisions_by_reason"].items():
            lines.append(f"| {reason} | {counts['sent']} | {counts['not_sent']} | | | |")
        for cause, figures in run["cause_to_profile"].items():
            lines.append(
                f"| cause: {cause} | | | {_cell(figures['p50_ms'])} | "
                f"{_cell(figures['p99_ms'])} | {figures['n']} |"
            )
        lines += [
            "",
            "Hub RSS (hub, children, nats-server): max "
            f"{_cell(run['hub_rss_mib']['max'], ' MiB')}, "
            f"at the end {_cell(run['hub_rss_mib']['last'], ' MiB')}. Meter samples skipped "
            f"(a CALL still in flight): {run['skipped_meter_samples']}.",
            "",
        ]
    managed = [r for r in report["runs"] if r["managed"]]
    if managed:
        worst = min(
            (f["utilisation"] for f in managed[0]["nodes"].values() if f["utilisation"]),
            default=None,
        )
        over = sum(f["over_s"] for f in managed[0]["nodes"].values())
        lines += [
            "## Goals",
            "",
            f"- 0 s above any node's limit outside the settling windows: "
            f"**{'met' if over == 0 else 'NOT met'}** ({over} s).",
            f"- utilisation ≥ {GOAL_UTILISATION:.0%} while demand exceeds the limit: "
            f"**{'met' if worst is not None and worst >= GOAL_UTILISATION else 'NOT met'}** "
            f"(worst node {_percent(worst)}, over the seconds each node binds).",
        ]
        for node_id, f in managed[0]["nodes"].items():
            if "utilisation_grid_has_room" in f:
                lines.append(
                    f"  {node_id} binds when the grid has at least its room left; counted over "
                    "the seconds the grid had room for one more car's minimum (the definition "
                    f"before, which counts the seconds after a car on the grid leaves): "
                    f"{_percent(f['utilisation_grid_has_room'])} "
                    f"({f['binding_s_grid_has_room']} s)."
                )
        lines.append("")
    else:
        lines += ["`--dry`: the baseline only (no sites configured, no allocator).", ""]
    return "\n".join(lines)


async def bench(options: Options) -> dict[str, Any]:
    raise_nofile_limit()
    runs = []
    with work_dir("bench-load-", options.keep) as root:
        for managed in ([] if options.dry else [True]) + ([False] if options.baseline else []):
            print(f"[load] {'managed' if managed else 'baseline'} run", file=sys.stderr)
            runs.append(await run_once(options, managed, root))
    return {
        "benchmark": "load",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "environment": _environment(),
        "loadavg": round(os.getloadavg()[0], 2),
        "settings": {
            "chargers": options.chargers,
            "minutes": options.minutes,
            "seed": options.seed,
            "reaction_s": options.reaction_s,
            "meter_interval_s": options.meter_interval_s,
            "settle_s": options.settle_s,
            "dry": options.dry,
        },
        "runs": runs,
    }


def build_parser(sub: Any) -> None:
    parser = sub.add_parser("load", help="site load management: 50 chargers behind 200 kW")
    parser.add_argument("--minutes", type=float, default=10.0, help="real minutes per run")
    parser.add_argument("--quick", action="store_true", help="1 minute per run: a smoke run")
    parser.add_argument("--dry", action="store_true", help="the baseline only, no sites")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the run without load management"
    )
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reaction", type=float, default=2.0, help="chargers' delay, s")
    parser.add_argument("--meter-interval", type=float, default=10.0, help="s between samples")
    parser.add_argument("--settle", type=int, default=30, help="settling window, s")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", type=Path, default=None, help="keep logs and data here")


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        minutes=1.0 if args.quick else args.minutes,
        chargers=args.chargers,
        seed=args.seed,
        reaction_s=args.reaction,
        meter_interval_s=args.meter_interval,
        settle_s=args.settle,
        dry=bool(args.dry),
        baseline=bool(args.dry) or not args.no_baseline,
        out_dir=args.out_dir,
        keep=args.keep,
    )


def main(args: argparse.Namespace) -> int:
    options = options_from(args)
    report = asyncio.run(bench(options))
    publish_named_report("load", report, render(report), options.out_dir)
    return 0
