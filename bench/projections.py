"""Projection benchmark: ``python -m bench.run projections [--events N] [--quick]``.

Measured in one run, on one stream, on the same machine:

- **raw read**: the stream read by a nats-py ordered consumer, each event decoded, nothing
  else: the ceiling for anything that follows the stream;
- **raw insert**: the rows the projections produce from that stream, inserted into the same
  chDB in the same batch size, with no fold: the ceiling of the store;
- **replay**: ``projections.replay.replay`` over the whole stream (read, fold, insert into
  shadow tables, swap), reported as events/s and as a ratio of the raw read rate (goal
  >= 50 %);
- **incremental lag**: ``hub simulate`` chargers drive a real gateway at the ingest
  benchmark's rate scenario (N chargers, one message per 2 s each), and the runner's delay
  from each event's ``received_at`` to its rows being stored is recorded (goal p99 < 1 s);
- memory: the benchmark process's peak RSS (it hosts chDB, the fold and the gateway).

Writes bench/reports/projections-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats
import uvloop
from nats.js.api import DeliverPolicy

from bench.run import cpu_seconds, descendants, process_name
from hub import logs
from hub.bus import Connection, event_backbone
from hub.config import GatewaySettings, ProjectionSettings, Settings, StreamSettings
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from projections import store
from projections.backends.embedded import ChdbBackend
from projections.fold import fold_batch
from projections.fold_process import Spare
from projections.replay import BATCH, replay
from projections.reshapes import RESHAPES
from projections.rows import TABLES
from projections.service import running_projections
from projections.state import State
from schemas.events import Event, OcppFrame, TariffSet, decode_event

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "reports"


def _frames(
    cp: str, action: str, request: dict[str, Any], answer: dict[str, Any], n: int, t: int
) -> list[Event]:
    call = OcppFrame(
        id=f"{cp}-{n}-in",
        received_at=t,
        charge_point_id=cp,
        gateway_id="gw-bench",
        connection_id=f"c-{cp}",
        ocpp_version="1.6",
        direction="in",
        message_type="CALL",
        unique_id=f"{n}",
        action=action,
        payload=msgspec.Raw(msgspec.json.encode(request)),
    )
    result = msgspec.structs.replace(
        call,
        id=f"{cp}-{n}-out",
        direction="out",
        message_type="CALLRESULT",
        payload=msgspec.Raw(msgspec.json.encode(answer)),
    )
    return [call, result]


def synthetic_stream(events: int) -> list[Event]:
    """Whole sessions like the simulator's: Start, MeterValues with 6 samples, Stop."""
    out: list[Event] = [
        TariffSet(id="tariff", received_at=1, actor="bench", tariff_id="std", per_kwh="0.3")
    ]
    n = 0
    txid = 0
    chargers = max(10, events // 2000)
    base = 1_795_000_000_000
    while len(out) < events:
        for c in range(chargers):
            cp = f"BENCH-{c:05d}"
            n += 1
            txid += 1
            t0 = base + n * 60_000
            stamp = datetime.fromtimestamp(t0 / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out += _frames(
                cp,
                "StartTransaction",
                {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": stamp},
                {"transactionId": txid, "idTagInfo": {"status": "Accepted"}},
                n,
                t0,
            )
            for k in range(1, 11):
                when = datetime.fromtimestamp((t0 + k * 60_000) / 1000, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                samples = [
                    {
                        "value": f"{k * 120}",
                        "measurand": "Energy.Active.Import.Register",
                        "unit": "Wh",
                    },
                    {"value": "7200.0", "measurand": "Power.Active.Import", "unit": "W"},
                    *(
                        {"value": "16.0", "measurand": "Current.Import", "phase": p, "unit": "A"}
                        for p in ("L1", "L2", "L3")
                    ),
                    {"value": f"{40 + k}", "measurand": "SoC", "unit": "Percent", "location": "EV"},
                ]
                n += 1
                out += _frames(
                    cp,
                    "MeterValues",
                    {
                        "connectorId": 1,
                        "transactionId": txid,
                        "meterValue": [{"timestamp": when, "sampledValue": samples}],
                    },
                    {},
                    n,
                    t0 + k,
                )
            n += 1
            stop = datetime.fromtimestamp((t0 + 660_000) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out += _frames(
                cp,
                "StopTransaction",
                {"transactionId": txid, "meterStop": 1320, "timestamp": stop},
                {},
                n,
                t0 + 20,
            )
            if len(out) >= events:
                break
    return out[:events]


async def raw_read(url: str, expected: int) -> float:
    client = await nats.connect(url)
    done = asyncio.Event()
    count = 0

    async def on_message(msg: Any) -> None:
        nonlocal count
        decode_event(msg.data)
        count += 1
        if count >= expected:
            done.set()

    started = time.perf_counter()
    sub = await client.jetstream().subscribe(
        "ev.>",
        cb=on_message,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
        stream="OCPP_EVENTS",
        pending_msgs_limit=1_000_000,
    )
    await done.wait()
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    await client.close()
    return expected / elapsed


async def raw_insert(backend: ChdbBackend, events: list[Event], batch: int) -> tuple[float, int]:
    """Rows of the whole stream, folded beforehand (not timed), inserted batch by batch."""
    db = "bench_raw"
    await store.ensure_schema(backend, db)
    state = State()
    encoded = [(seq, msgspec.json.encode(event)) for seq, event in enumerate(events, 1)]
    batches = []
    for start in range(0, len(encoded), batch):
        out, _ = fold_batch(state, {}, encoded[start : start + batch])
        batches.append(
            {table: store.encode_rows(out.rows[table]) for table in TABLES if out.rows[table]}
        )
    started = time.perf_counter()
    for index, tables in enumerate(batches):
        for table, body in tables.items():
            reshape = RESHAPES.get(table)
            await backend.insert(f"{db}.{table}", body, token=f"{table}:{index}", reshape=reshape)
    elapsed = time.perf_counter() - started
    # The rows the tables hold: a meter_values body row stands for a row per sample.
    counts = await backend.query(
        " UNION ALL ".join(f"SELECT count() FROM {db}.{table}" for table in TABLES), fmt="CSV"
    )
    stored = sum(int(line) for line in counts.split())
    await backend.execute(f"DROP DATABASE {db}")
    return len(events) / elapsed, stored


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class CpuClock:
    """CPU seconds of everything a stage runs on: this process's event loop thread, its
    other threads (chDB's own and the chDB executor: the store), child processes that
    have exited (replay's fold process), and the nats-server. Differences of two readings
    say where a stage's time went, which is what bounds it on a 2-core machine."""

    def __init__(self) -> None:
        self._nats = [pid for pid in descendants(os.getpid()) if process_name(pid) == "nats-server"]

    def read(self) -> dict[str, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        main = threading.main_thread().native_id
        return {
            "event_loop": _thread_cpu(main) if main is not None else 0.0,
            "process": me.ru_utime + me.ru_stime,
            "fold_process": children.ru_utime + children.ru_stime,
            "nats_server": sum(cpu_seconds(pid) for pid in self._nats),
        }

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, Any]:
        """µs of CPU per event, by where it ran."""
        seconds = {name: after[name] - before[name] for name in after}
        per_event = {
            "event_loop": seconds["event_loop"],
            # Every other thread of this process: chDB's (the store), the fold thread.
            "other_threads": max(0.0, seconds["process"] - seconds["event_loop"]),
            "fold_process": seconds["fold_process"],
            "nats_server": seconds["nats_server"],
        }
        total = sum(per_event.values())
        return {
            "cpu_s": round(total, 2),
            "us_per_event": {
                name: round(value / events * 1e6, 1) for name, value in per_event.items()
            },
            "us_per_event_total": round(total / events * 1e6, 1),
        }


def _thread_cpu(tid: int) -> float:
    try:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def incremental_lag(workdir: Path, chargers: int, window: float) -> dict[str, Any]:
    settings = Settings(
        data_dir=workdir / "live",
        stream=StreamSettings(),
        gateway=GatewaySettings(port=0, gateway_id="gw-bench", allow_unknown_chargers=True),
        projections=ProjectionSettings(),
    )
    settings.data_dir.mkdir(parents=True)
    delays: list[float] = []

    def on_stored(_: int, received: list[int]) -> None:
        now = time.time() * 1000
        delays.extend((now - ms) / 1000 for ms in received if ms)

    async with (
        EmbeddedNats(settings.data_dir / "nats") as server,
        running_gateway(settings, server.url) as gateway,
        running_projections(settings, server.url, on_stored=on_stored) as projections,
    ):
        simulator = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "hub"),
            "simulate",
            "--chargers",
            str(chargers),
            "--interval",
            "2",
            "--duration",
            str(window),
            "--url",
            f"ws://127.0.0.1:{gateway.port}/ocpp",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await simulator.wait()
        timings = list(projections.runner.timings)
    folds = [timing.fold_s * 1000 for timing in timings]
    stores = [timing.store_s * 1000 for timing in timings]
    return {
        "chargers": chargers,
        "window_s": window,
        "events": len(delays),
        "lag_p50_s": round(_percentile(delays, 0.50), 3),
        "lag_p99_s": round(_percentile(delays, 0.99), 3),
        "lag_max_s": round(max(delays, default=0.0), 3),
        "linger_s": settings.projections.linger_s,
        "batches": len(timings),
        "events_per_batch": round(sum(t.events for t in timings) / max(len(timings), 1)),
        "fold_ms_p50": round(_percentile(folds, 0.50), 1),
        "fold_ms_p99": round(_percentile(folds, 0.99), 1),
        "store_ms_p50": round(_percentile(stores, 0.50), 1),
        "store_ms_p99": round(_percentile(stores, 0.99), 1),
    }


def _peak_rss_mib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _settle(backend: ChdbBackend, limit_s: float = 60.0) -> None:
    """Until chDB merges nothing: the parts an earlier round wrote are merged in the
    background, and would otherwise take their CPU from the next round's measurements."""
    deadline = time.monotonic() + limit_s
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        busy = await backend.query("SELECT count() AS n FROM system.merges", fmt="CSV")
        quiet = quiet + 1 if busy.strip() == b"0" else 0
        await asyncio.sleep(0.5)


async def _round(
    clock: CpuClock, url: str, backend: ChdbBackend, connection: Connection, events: int
) -> dict[str, Any]:
    """One raw read of the stream, then one replay of it, from a quiet store."""
    await _settle(backend)
    before = clock.read()
    read_rate = await raw_read(url, events)
    read_cpu = CpuClock.spent(before, clock.read(), events)
    # As in `hub project`, where replays run: a fold process started ahead waits for it,
    # its imports done.
    async with Spare() as spare:
        await spare.warm()
        before = clock.read()
        started = time.perf_counter()
        await replay(
            backend,
            connection,
            database="ocpp",
            stream="OCPP_EVENTS",
            projections=[],
            spare=spare,
        )
        replay_rate = events / (time.perf_counter() - started)
    return {
        "raw_read_events_per_s": round(read_rate),
        "raw_read_cpu": read_cpu,
        "replay_events_per_s": round(replay_rate),
        "replay_cpu": CpuClock.spent(before, clock.read(), events),
        "replay_vs_raw_read": round(replay_rate / read_rate, 3),
    }


async def run(events: int, batch: int, chargers: int, window: float, rounds: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-projections-"))
    try:
        stream = synthetic_stream(events)
        settings = Settings(data_dir=workdir)
        async with EmbeddedNats(workdir / "nats") as server:
            async with event_backbone(settings, server.url, name="bench") as (_, event_store):
                for start in range(0, len(stream), 1000):
                    await event_store.store(stream[start : start + 1000])
            clock = CpuClock()
            backend = ChdbBackend(workdir / "clickhouse")
            try:
                insert_rate, rows = await raw_insert(backend, stream, batch)
                async with event_backbone(settings, server.url, name="bench-replay") as (
                    connection,
                    _,
                ):
                    # A replay as users run one rebuilds tables the hub made when it started:
                    # the first in this process would also make the live schema (a tenth of
                    # a second of chDB), and fault in the fold's and the store's first pages.
                    await _round(clock, server.url, backend, connection, len(stream))
                    # The machine is shared: raw read and replay side by side, several times.
                    measured = [
                        await _round(clock, server.url, backend, connection, len(stream))
                        for _ in range(rounds)
                    ]
            finally:
                await backend.close()
        lag = await incremental_lag(workdir, chargers, window)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # The round with the median ratio speaks for the run.
    median = sorted(measured, key=lambda each: each["replay_vs_raw_read"])[len(measured) // 2]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0],
        },
        "events": len(stream),
        "rows": rows,
        "rounds": measured,
        **median,
        "raw_insert_events_per_s": round(insert_rate),
        "raw_insert_rows_per_s": round(insert_rate * rows / len(stream)),
        # What the replay's CPU per event allows if it had both cores to itself.
        "replay_cpu_ceiling_events_per_s": round(
            (os.cpu_count() or 1) * 1e6 / median["replay_cpu"]["us_per_event_total"]
        ),
        "replay_vs_raw_insert": round(median["replay_events_per_s"] / insert_rate, 3),
        "goal_replay_ge_50pct_of_read": median["replay_vs_raw_read"] >= 0.5,
        "incremental": lag,
        "goal_lag_p99_lt_1s": lag["lag_p99_s"] < 1.0,
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }


def render(report: dict[str, Any]) -> str:
    lag = report["incremental"]
    machine = report["machine"]
    read = report["raw_read_events_per_s"]
    insert = report["raw_insert_events_per_s"]
    replayed = report["replay_events_per_s"]
    replay_goal = "met" if report["goal_replay_ge_50pct_of_read"] else "NOT met"
    lag_goal = "met" if report["goal_lag_p99_lt_1s"] else "NOT met"
    return "\n".join(
        [
            "# Projections benchmark",
            "",
            f"{report['generated_at']}, {machine['cpus']} CPUs, "
            f"load {machine['loadavg_1m']:.2f}; {report['events']} events -> "
            f"{report['rows']} rows, chDB embedded.",
            "",
            "| measure | events/s | vs raw read |",
            "|---|---:|---:|",
            f"| raw read (ordered consumer, decode only) | {read:,} | 1.00 |",
            f"| raw insert of the produced rows ({report['raw_insert_rows_per_s']:,} rows/s) "
            f"| {insert:,} | {insert / read:.2f} |",
            f"| **replay** (read + fold + insert + swap) | {replayed:,} "
            f"| **{report['replay_vs_raw_read']:.2f}** |",
            "",
            f"Goal replay >= 50 % of raw read: **{replay_goal}**. The machine is shared, so "
            f"raw read and replay ran side by side {len(report['rounds'])} times, after a "
            "first round not counted (it also makes the live schema, as `hub up` does before "
            "any replay); the tables show the round with the median ratio. Every round, "
            "replay / raw read (events/s):",
            "",
            ", ".join(
                f"{each['replay_vs_raw_read']:.2f} ({each['replay_events_per_s']:,} / "
                f"{each['raw_read_events_per_s']:,})"
                for each in report["rounds"]
            )
            + ".",
            "",
            "CPU per event, by where it ran (µs). The raw read's event loop reads with nats-py;",
            "replay's reads with its own stream reader and writes the events log, its child",
            "process folds the rest, and the other threads are chDB's:",
            "",
            "| | event loop | other threads | fold process | nats-server | total |",
            "|---|---:|---:|---:|---:|---:|",
            _cpu_row("raw read", report["raw_read_cpu"]),
            _cpu_row("replay", report["replay_cpu"]),
            "",
            f"With both cores to itself, the replay's CPU per event allows "
            f"{report['replay_cpu_ceiling_events_per_s']:,} events/s "
            f"({report['replay_cpu_ceiling_events_per_s'] / read:.2f} of the raw read rate).",
            "",
            f"Incremental lag, {lag['chargers']} simulated chargers at one message per 2 s "
            f"each for {lag['window_s']:.0f} s ({lag['events']} events): "
            f"p50 {lag['lag_p50_s']} s, p99 **{lag['lag_p99_s']} s**, max {lag['lag_max_s']} s. "
            f"Goal p99 < 1 s: **{lag_goal}**.",
            "",
            f"Runner stages (linger {lag['linger_s']} s): {lag['batches']} batches of "
            f"{lag['events_per_batch']} events on average; fold p50 {lag['fold_ms_p50']} ms, "
            f"p99 {lag['fold_ms_p99']} ms; store (one INSERT per table, progress row) "
            f"p50 {lag['store_ms_p50']} ms, p99 {lag['store_ms_p99']} ms.",
            "",
            f"Peak RSS of the benchmark process (chDB, fold, gateway): "
            f"{report['peak_rss_mib']} MiB.",
            "",
        ]
    )


def _cpu_row(name: str, cpu: dict[str, Any]) -> str:
    each = cpu["us_per_event"]
    return (
        f"| {name} | {each['event_loop']} | {each['other_threads']} | {each['fold_process']} "
        f"| {each['nats_server']} | **{cpu['us_per_event_total']}** |"
    )


def build_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "projections", help="projection replay rate, raw baselines, incremental lag"
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--batch", type=int, default=BATCH, help="events per insert batch (raw insert)"
    )
    parser.add_argument(
        "--chargers", type=int, default=1000, help="simulated chargers for the lag run"
    )
    parser.add_argument("--window", type=float, default=20.0, help="seconds of simulated load")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="raw read and replay, side by side, this often (odd: the median is a round), "
        "after one round that is not counted",
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--out-dir", type=Path, default=OUT)


def main(args: argparse.Namespace) -> int:
    logs.configure("warning")
    if args.rounds < 1:
        raise SystemExit("bench: --rounds must be 1 or more")
    if args.quick:
        args.events, args.chargers, args.window, args.rounds = 5000, 50, 3.0, 1
    # The hub replays on uvloop (in `hub up`, or `hub replay` on its own): so does the
    # benchmark, raw read and replay alike.
    report = uvloop.run(run(args.events, args.batch, args.chargers, args.window, args.rounds))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in (
        (args.out_dir / "projections-latest.json", json.dumps(report, indent=2) + "\n"),
        (args.out_dir / "projections-latest.md", render(report)),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    print(render(report))
    return 0
