"""Fuzz campaign against ``hub up`` as users run it: `python -m bench.run fuzz --frames 1000000`.

One ``hub up`` (embedded nats-server, UI fan-out child, projections, supervisor), and in this
process: fuzzing chargers sending generated frames (``bench/fuzz_frames.py``) as fast as the
hub answers them, a canary charger sending one Heartbeat after another, bystander chargers
sending StatusNotifications that a UI client follows through the fan-out. Reported: frames
sent and per second, answers that break docs/gateway.md, crashes (the hub or a child gone or
restarted), hangs (an answer missing past a bound), disturbed bystanders, frames missing
from the stream, and each process's RSS and open files before and after (once settled).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.fuzz_frames import (
    MUTATIONS,
    UNREADABLE,
    FuzzFrame,
    RandomChooser,
    check_answer,
    closing_code,
    enabled,
    expected_answer,
    generate,
    recorded_as_frame,
)
from bench.run import (
    DEFAULT_OUT,
    HUB_READY_MARKER,
    ServerProcess,
    TargetSpec,
    _environment,
    _git_commit,
    _hub_executable,
    descendants,
    free_port,
    rss_kib,
    work_dir,
    write_named_report,
)
from hub.config import GatewaySettings
from hub.runtime import announced_url
from hub.subjects import encode_token
from hub.tokens import mint
from tools.simulator import raise_nofile_limit

SECRET: Final = "bench-fuzz-secret-" + "f" * 24
LIMIT: Final = GatewaySettings().max_frame_bytes
FUZZER_PREFIX: Final = "FUZZ-"
# How often each class is drawn: mostly small frames, so a million of them is a stream of
# about a gigabyte; the large classes (up to 200 KB a frame) still come by thousands.
WEIGHTS: Final[dict[str, int]] = {
    "valid": 60,
    **dict.fromkeys(("huge_string", "deep_nesting", "whole_nesting", "oversized"), 1),
    **dict.fromkeys(("message_type", "unique_id", "long_action", "result", "binary"), 5),
}
SMALL_WEIGHT: Final = 30
EXAMPLES_PER_CLASS: Final = 3
DISTURBANCES: Final = ("callerrors", "timeouts", "disconnects", "ui_missed")
HUB_CALL: Final = 2  # a frame the hub sends of its own accord, not an answer


@dataclass(frozen=True, slots=True)
class FuzzSettings:
    frames: int
    fuzzers: int
    bystanders: int
    seed: int
    answer_within: float  # s: a CALL not answered by then is a hang
    canary_interval: float
    settle: float  # s after the fuzzers stop before the "after" samples
    out_dir: Path
    keep_logs: Path | None = None


# ----------------------------------------------------------------------- processes


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def hub_processes(pid: int) -> dict[str, int]:
    """``hub up`` and the children it supervises, by role."""
    found = {"hub": pid}
    for child in descendants(pid):
        command = _cmdline(child)
        if "nats-server" in command:
            found["nats-server"] = child
        elif "hub.cli fanout" in command or command.endswith(" fanout") or " fanout " in command:
            found["fanout"] = child
    return found


def sample(processes: dict[str, int]) -> dict[str, dict[str, int | None]]:
    return {
        role: {"pid": pid, "rss_kib": rss_kib(pid), "fds": fd_count(pid)}
        for role, pid in processes.items()
    }


# ----------------------------------------------------------------------- the clients


@dataclass(slots=True)
class Findings:
    sent: int = 0
    frames: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    hangs: int = 0
    closes: Counter[str] = field(default_factory=Counter)
    reconnect_failures: int = 0
    hub_calls: Counter[str] = field(default_factory=Counter)
    distinct: dict[str, set[bytes]] = field(default_factory=dict)

    def violation(self, mutation: str, text: str) -> None:
        self.violations[mutation] += 1
        shown = self.examples.setdefault(mutation, [])
        if len(shown) < EXAMPLES_PER_CLASS:
            shown.append(text[:500])


def _shown(frame: FuzzFrame) -> str:
    data = frame.data if len(frame.data) <= 160 else frame.data[:160] + b"..."
    return f"{data!r} ({len(frame.data)} bytes{', binary' if frame.binary else ''})"


async def _open(url: str) -> ClientConnection:
    return await connect(url, subprotocols=["ocpp1.6"], max_size=None, open_timeout=30)


async def fuzzer(
    index: int, url: str, names: list[str], settings: FuzzSettings, out: Findings
) -> None:
    """Sends frames until the campaign has sent its total, waiting for each answer that is due."""
    charge_point_id = f"{FUZZER_PREFIX}{index}"
    chooser = RandomChooser(settings.seed * 1000 + index, prefix=f"{index}-")
    distinct = out.distinct.setdefault(charge_point_id, set())
    # Frames sent lately by their own (unique) id: an answer carrying one of those ids but
    # not the current frame's is a second answer, or an answer to a result.
    recent: dict[str, FuzzFrame] = {}
    ws = await _open(f"{url}/{charge_point_id}")
    try:
        while out.sent < settings.frames:
            frame = generate(chooser, names)
            out.sent += 1
            out.frames[frame.mutation] += 1
            if recorded_as_frame(frame):  # else only its connection's close is recorded
                distinct.add(hashlib.blake2b(frame.data, digest_size=8).digest())
            if len(recent) > 256:
                recent.clear()
            recent.update(dict.fromkeys(frame.ids - {UNREADABLE}, frame))
            # A frame after which the hub closes the connection is waited on until it does:
            # the next frame would be lost, whether or not this one was due an answer.
            closing = closing_code(frame)
            try:
                await (ws.send(frame.data) if frame.binary else ws.send(frame.data, text=True))
                if closing is None and expected_answer(frame, LIMIT) == "none":
                    continue
                reply = await _answer(ws, frame, recent, settings, out)
            except ConnectionClosed:
                code = ws.close_code
                out.closes[f"{frame.mutation}:{code}"] += 1
                if code != closing:
                    out.violation(frame.mutation, f"closed {code} after {_shown(frame)}")
                ws = await _reopen(ws, f"{url}/{charge_point_id}", out)
                continue
            except TimeoutError:
                out.hangs += 1
                out.violation(
                    frame.mutation, f"no answer in {settings.answer_within} s: {_shown(frame)}"
                )
                ws = await _reopen(ws, f"{url}/{charge_point_id}", out)
                continue
            if closing is not None:
                problem = f"answered {reply[:200]!r}, not closed with {closing}"
            else:
                problem = check_answer(frame, reply, LIMIT)
            if problem is not None:
                out.violation(frame.mutation, f"{problem} <- {_shown(frame)}")
        ws = await _probe(ws, f"{url}/{charge_point_id}", settings, out)
        distinct.add(b"probe")
    finally:
        await ws.close()


async def _probe(
    ws: ClientConnection, url: str, settings: FuzzSettings, out: Findings
) -> ClientConnection:
    """Everything sent before this Heartbeat is stored once it is answered."""
    for _ in range(3):
        try:
            await ws.send('[2,"probe-end","Heartbeat",{}]')
            async with asyncio.timeout(settings.answer_within):
                while json.loads(await ws.recv())[1] != "probe-end":
                    pass
            return ws
        except ConnectionClosed:
            ws = await _reopen(ws, url, out)
    raise RuntimeError("the hub closed every connection that sent the last Heartbeat")


async def _answer(
    ws: ClientConnection,
    frame: FuzzFrame,
    recent: dict[str, FuzzFrame],
    settings: FuzzSettings,
    out: Findings,
) -> bytes:
    """The answer to ``frame``; answers to frames sent before it are violations of theirs."""
    async with asyncio.timeout(settings.answer_within):
        while True:
            reply = await ws.recv(decode=False)
            answered = None
            with contextlib.suppress(ValueError, LookupError, TypeError):
                message = json.loads(reply)
                if message[0] == HUB_CALL:
                    # The supervisor's integrity policy sends the fuzzers CALLs too: not an
                    # answer to anything. Refused, as a charger without the action would.
                    out.hub_calls[message[2]] += 1
                    await ws.send(json.dumps([4, message[1], "NotSupported", "fuzzer", {}]))
                    continue
                answered = message[1]
            if not isinstance(answered, str) or answered in frame.ids:
                return reply
            earlier = recent.get(answered)
            if earlier is None or earlier is frame:
                return reply
            what = "a result was answered" if earlier.kind == "result" else "a second answer"
            out.violation(earlier.mutation, f"{what} {reply[:200]!r} <- {_shown(earlier)}")


async def _reopen(ws: ClientConnection, url: str, out: Findings) -> ClientConnection:
    await ws.close()
    for _ in range(5):
        try:
            return await _open(url)
        except (OSError, InvalidHandshake, TimeoutError):
            out.reconnect_failures += 1
    return await _open(url)


@dataclass(slots=True)
class Canary:
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0
    disconnects: int = 0


async def _call(
    ws: ClientConnection, unique_id: str, action: str, payload: Any, within: float
) -> list[Any] | None:
    """Sends a CALL and returns its answer; None if none came ``within`` seconds."""
    await ws.send(json.dumps([2, unique_id, action, payload]))
    try:
        async with asyncio.timeout(within):
            while (answer := json.loads(await ws.recv()))[1] != unique_id:
                pass
    except TimeoutError:
        return None
    return list(answer)


async def _well_behaved(
    url: str,
    stop: asyncio.Event,
    pause: float,
    step: Callable[[ClientConnection], Awaitable[None]],
    disconnected: Callable[[], None],
) -> None:
    """``step`` after ``step`` until ``stop``, a pause between them, reconnecting as needed."""
    while not stop.is_set():
        try:
            async with await _open(url) as ws:
                while not stop.is_set():
                    await step(ws)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(pause):
                            await stop.wait()
        except (ConnectionClosed, OSError, InvalidHandshake):
            disconnected()


async def canary(url: str, stop: asyncio.Event, settings: FuzzSettings, out: Canary) -> None:
    """A well-behaved charger: a Heartbeat, its answer, a pause, again."""
    serial = 0

    async def heartbeat(ws: ClientConnection) -> None:
        nonlocal serial
        serial += 1
        started = time.perf_counter()
        if await _call(ws, f"c{serial}", "Heartbeat", {}, settings.answer_within) is None:
            out.missing += 1
        else:
            out.latencies_ms.append((time.perf_counter() - started) * 1000)

    def disconnected() -> None:
        out.disconnects += 1

    await _well_behaved(
        f"{url}/FUZZ-CANARY", stop, settings.canary_interval, heartbeat, disconnected
    )


@dataclass(slots=True)
class Bystanders:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    timeouts: int = 0
    disconnects: int = 0
    ui_seen: set[str] = field(default_factory=set)
    sent_infos: set[str] = field(default_factory=set)


async def bystander(
    index: int, url: str, stop: asyncio.Event, settings: FuzzSettings, out: Bystanders
) -> None:
    """An ordinary charger: StatusNotifications with a serial in `info`, and Heartbeats."""
    serial = 0

    async def step(ws: ClientConnection) -> None:
        nonlocal serial
        serial += 1
        info = f"{index}-{serial}"
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available", "info": info}
        for action, payload in (("StatusNotification", status), ("Heartbeat", {})):
            out.sent += 1
            answer = await _call(
                ws, f"b{serial}{action[0]}", action, payload, settings.answer_within
            )
            if answer is None:
                out.timeouts += 1
            elif answer[0] != 3:
                out.errors += 1
            else:
                out.answered += 1
                if action == "StatusNotification":
                    out.sent_infos.add(info)

    def disconnected() -> None:
        out.disconnects += 1

    await _well_behaved(f"{url}/FUZZ-BYSTANDER-{index}", stop, 0.5, step, disconnected)


async def ui_watcher(ui_url: str, count: int, ready: asyncio.Event, out: Bystanders) -> None:
    """A UI client following the bystanders through the fan-out."""
    token = mint(SECRET, "HS256", chargers="*", ttl_s=86_400, role="viewer", subject="bench")
    ids = [f"FUZZ-BYSTANDER-{i}" for i in range(count)]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{ui_url.replace('http', 'ws')}/ws?token={token}") as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "chargers": ids}))
            ready.set()
            async for frame in ws:
                message = json.loads(frame.data)
                if message.get("type") == "status" and message.get("info"):
                    out.ui_seen.add(message["info"])


# ----------------------------------------------------------------------- the stream


async def recorded(nats_url: str, charge_point_id: str) -> int:
    """Frames from ``charge_point_id`` in the stream: accepted CALLs and refused frames."""
    client = await nats.connect(nats_url, allow_reconnect=False, connect_timeout=10)
    try:
        token = encode_token(charge_point_id)
        info = await client.jetstream().add_consumer(
            "OCPP_EVENTS",
            ConsumerConfig(
                filter_subjects=[f"ev.cp.{token}.in.>", f"ev.cp.{token}.rejected.>"],
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=30.0,
            ),
        )
        return int(info.num_pending or 0)
    finally:
        await client.close()


def log_summary(path: Path) -> dict[str, int]:
    """Warnings and errors ``hub up`` logged, by level and event, and its tracebacks."""
    counts: Counter[str] = Counter()
    with contextlib.suppress(OSError), path.open(errors="replace") as log:
        for line in log:
            if line.startswith("Traceback"):
                counts["traceback"] += 1
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("warning", "error", "critical"):
                    counts[f"{entry['level']}: {entry.get('event')}"] += 1
    return dict(counts.most_common(15))


# ----------------------------------------------------------------------- the run


def _weighted(names: tuple[str, ...]) -> list[str]:
    return [name for name in names for _ in range(WEIGHTS.get(name, SMALL_WEIGHT))]


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": round(ordered[-1], 2)}


async def campaign(settings: FuzzSettings, work: Path) -> dict[str, Any]:
    names = _weighted(enabled(list(MUTATIONS)))
    port, ui_port = free_port(), free_port()
    os.environ["HUB_JWT_SECRET"] = SECRET
    command = [
        str(_hub_executable()), "up", "--data-dir", str(work / "data"), "--port", str(port),
        "--ui-port", str(ui_port), "--allow-unknown-chargers", "--log-level", "warning",
        "--log-format", "json",
    ]  # fmt: skip
    hub = ServerProcess(
        TargetSpec("hub", command, HUB_READY_MARKER, "/ocpp"), port, work / "hub.log"
    )
    url, ui_url = f"ws://127.0.0.1:{port}/ocpp", f"http://127.0.0.1:{ui_port}"
    report: dict[str, Any] = {"error": None, "skipped": sorted(set(MUTATIONS) - set(names))}
    findings, canary_out, bystanders_out = Findings(), Canary(), Bystanders()
    stop = asyncio.Event()
    helpers: list[asyncio.Task[None]] = []
    try:
        await hub.start(ready_within=120)
        nats_url = announced_url(work / "data")
        ui_ready = asyncio.Event()
        helpers.append(
            asyncio.create_task(ui_watcher(ui_url, settings.bystanders, ui_ready, bystanders_out))
        )
        async with asyncio.timeout(60):
            await ui_ready.wait()
        helpers.append(asyncio.create_task(canary(url, stop, settings, canary_out)))
        helpers += [
            asyncio.create_task(bystander(i, url, stop, settings, bystanders_out))
            for i in range(settings.bystanders)
        ]
        await asyncio.sleep(min(2.0, settings.settle))  # the fleet connects, the heap warms up
        processes = hub_processes(hub.pid)
        report["before"] = sample(processes)
        print(
            f"[bench] fuzz: {settings.frames:,} frames, {settings.fuzzers} fuzzers", file=sys.stderr
        )
        started, cpu_start = time.monotonic(), hub.cpu()
        progress = asyncio.create_task(_progress(findings, settings))
        results = await asyncio.gather(
            *(fuzzer(i, url, names, settings, findings) for i in range(settings.fuzzers)),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
        report["fuzzer_errors"] = [repr(r) for r in results if isinstance(r, BaseException)]
        report["hub_cpu_percent"] = round(100 * (hub.cpu() - cpu_start) / elapsed, 1)
        stop.set()
        await asyncio.sleep(settings.settle)  # let the hub settle before the "after" samples
        now = hub_processes(hub.pid) if hub.running else {}
        report["after"] = sample(now)
        report["crashes"] = {
            role: "gone" if role not in now else "restarted"
            for role, pid in processes.items()
            if now.get(role) != pid
        }
        counts = {}
        # A hub that died took its nats-server along: nothing to count (the check fails).
        for charge_point_id, frames in findings.distinct.items() if hub.running else ():
            counts[charge_point_id] = {
                "distinct": len(frames),
                "recorded": await recorded(nats_url, charge_point_id),
            }
        report["recording"] = counts
        report["elapsed_s"] = round(elapsed, 1)
    except (
        RuntimeError,
        TimeoutError,
        OSError,
        KeyError,
        aiohttp.ClientError,
        nats.errors.Error,
    ) as error:
        report["error"] = f"{type(error).__name__}: {error}"
    finally:
        stop.set()
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        report["hub_alive_at_end"] = hub.running
        await hub.stop()
        report["hub_exit_code"] = hub.returncode
        report["hub_log"] = log_summary(work / "hub.log")
    report["frames"] = {"sent": findings.sent, "by_class": dict(findings.frames.most_common())}
    report["violations"] = dict(findings.violations.most_common())
    report["examples"] = findings.examples
    report["hangs"] = findings.hangs
    report["closes"] = dict(findings.closes.most_common())
    report["reconnect_failures"] = findings.reconnect_failures
    report["hub_calls"] = dict(findings.hub_calls.most_common())
    report["canary"] = {
        "answered": len(canary_out.latencies_ms),
        "missing": canary_out.missing,
        "disconnects": canary_out.disconnects,
        **_percentiles(canary_out.latencies_ms),
    }
    report["bystanders"] = {
        "chargers": settings.bystanders,
        "calls": bystanders_out.sent,
        "answered": bystanders_out.answered,
        "callerrors": bystanders_out.errors,
        "timeouts": bystanders_out.timeouts,
        "disconnects": bystanders_out.disconnects,
        "ui_missed": len(bystanders_out.sent_infos - bystanders_out.ui_seen),
    }
    return report


async def _progress(findings: Findings, settings: FuzzSettings) -> None:
    started = time.monotonic()
    while True:
        await asyncio.sleep(10)
        rate = findings.sent / (time.monotonic() - started)
        print(
            f"[bench] fuzz: {findings.sent:,} frames ({rate:,.0f}/s), "
            f"{sum(findings.violations.values())} violations, {findings.hangs} hangs",
            file=sys.stderr,
        )


def checks(report: dict[str, Any]) -> dict[str, bool]:
    recording = report.get("recording", {})
    by = report.get("bystanders", {})
    return {
        "no_crash": not report.get("crashes") and report.get("hub_alive_at_end", False),
        "no_hang": report.get("hangs", 1) == 0 and report.get("canary", {}).get("missing", 1) == 0,
        "answers_as_documented": not report.get("violations"),
        "bystanders_undisturbed": not any(by.get(k) for k in DISTURBANCES),
        "every_frame_recorded": bool(recording)
        and all(c["recorded"] >= c["distinct"] for c in recording.values()),
    }


async def fuzz(settings: FuzzSettings) -> dict[str, Any]:
    raise_nofile_limit()
    environment = _environment()
    with work_dir("bench-fuzz-", settings.keep_logs) as work:
        report = await campaign(settings, work)
    environment["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    sent, elapsed = report["frames"]["sent"], report.get("elapsed_s") or 0
    report["frames_per_s"] = round(sent / elapsed) if elapsed else None
    report["checks"] = checks(report)
    return {
        "benchmark": "fuzz",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "environment": environment,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars_of(settings).items()},
        **report,
    }


def vars_of(settings: FuzzSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


# ----------------------------------------------------------------------- the report


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def render_markdown(report: dict[str, Any]) -> str:
    s, env = report["settings"], report["environment"]
    lines = [
        f"# Fuzz campaign ({report['generated_at']})",
        "",
        f"Commit `{report['commit']}` · {env['cpu_count']} CPUs · load average "
        f"{env['loadavg_start'][0]} at start, {env['loadavg_end'][0]} at end · "
        f"Python {env['python']}",
        "",
        f"`hub up` with everything on (fan-out, projections, supervisor). {s['fuzzers']} fuzzing "
        f"chargers, seed {s['seed']}; a canary charger (a Heartbeat every "
        f"{s['canary_interval']} s) and {s['bystanders']} bystanders (a StatusNotification and a "
        f"Heartbeat every 0.5 s, followed by a UI client). An answer missing after "
        f"{s['answer_within']} s is a hang. After {s['settle']} s of settling, the samples.",
        "",
    ]
    if report["error"]:
        lines += [f"**The run broke:** {report['error']}", ""]
    verdicts = " · ".join(
        f"{k}: **{'PASS' if v else 'FAIL'}**" for k, v in report["checks"].items()
    )
    canary, by = report["canary"], report["bystanders"]
    lines += [
        verdicts,
        "",
        "| frames sent | frames/s | violations | crashes | hangs | canary p50 / p99 / max ms "
        "| canary missing | bystanders disturbed | hub CPU % |",
        "|---:|---:|---:|---|---:|---|---:|---:|---:|",
        f"| {report['frames']['sent']:,} | {report['frames_per_s'] or '-'} "
        f"| {sum(report['violations'].values()):,} | {report.get('crashes') or 'none'} "
        f"| {report['hangs']} | {canary['p50_ms']} / {canary['p99_ms']} / {canary['max_ms']} "
        f"| {canary['missing']} | {sum(by[k] for k in DISTURBANCES)} "
        f"| {report.get('hub_cpu_percent', '-')} |",
        "",
        "## Processes",
        "",
        "| process | RSS before MiB | RSS after MiB | open files before | open files after |",
        "|---|---:|---:|---:|---:|",
    ]
    before, after = report.get("before", {}), report.get("after", {})
    for role in before:
        b, a = before[role], after.get(role, {})
        lines.append(
            f"| {role} | {_mib(b['rss_kib'])} | {_mib(a.get('rss_kib'))} "
            f"| {b['fds']} | {a.get('fds', '-')} |"
        )
    lines += [
        "",
        f"Bystanders: {by['calls']:,} calls, {by['answered']:,} answered, {by['callerrors']} "
        f"CALLERRORs, {by['timeouts']} timeouts, {by['disconnects']} disconnects; statuses the UI "
        f"client missed: {by['ui_missed']}.",
        "",
        "## Frames by class",
        "",
        "| class | frames | violations |",
        "|---|---:|---:|",
    ]
    for name, count in report["frames"]["by_class"].items():
        lines.append(f"| {name} | {count:,} | {report['violations'].get(name, 0):,} |")
    if report["skipped"]:
        lines += ["", f"Left out (`HUB_FUZZ_SKIP`): {', '.join(report['skipped'])}."]
    recording = report.get("recording", {})
    if recording:
        missing = sum(max(0, c["distinct"] - c["recorded"]) for c in recording.values())
        lines += [
            "",
            f"Stream: {sum(c['recorded'] for c in recording.values()):,} frames recorded for "
            f"{sum(c['distinct'] for c in recording.values()):,} distinct frames sent "
            "(a frame sent twice is recorded twice; text frames that are not UTF-8 are not "
            f"counted: only their connection's close is recorded); missing: {missing:,}.",
        ]
    if report.get("hub_calls"):
        lines += [
            "",
            "CALLs the hub sent the fuzzers (answered NotSupported): "
            + ", ".join(f"{k} x{v}" for k, v in report["hub_calls"].items()),
        ]
    if report["closes"]:
        lines += [
            "",
            "Connections the hub closed (class:code): "
            + ", ".join(f"{k} x{v}" for k, v in report["closes"].items()),
        ]
    if report["examples"]:
        lines += ["", "## Examples of violations", ""]
        for name, examples in report["examples"].items():
            lines += [f"- **{name}**: `{e}`" for e in examples]
    if report.get("hub_log"):
        lines += [
            "",
            "`hub up` logged: " + ", ".join(f"{k} x{v}" for k, v in report["hub_log"].items()),
        ]
    if report.get("fuzzer_errors"):
        lines += ["", "Fuzzer errors: " + "; ".join(report["fuzzer_errors"][:5])]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------- CLI


def build_parser(sub: Any) -> None:
    parser = sub.add_parser("fuzz", help="generated frames against hub up: crashes, hangs, memory")
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--fuzzers", type=int, default=8, help="fuzzing chargers at once")
    parser.add_argument("--bystanders", type=int, default=4, help="ordinary chargers watched")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--answer-within", type=float, default=10.0, help="s before a hang")
    parser.add_argument("--settle", type=float, default=10.0, help="s before the after samples")
    parser.add_argument("--quick", action="store_true", help="2,000 frames: a smoke run")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep-logs", type=Path, default=None, metavar="DIR", help="work here")


def main(args: argparse.Namespace) -> int:
    quick = bool(args.quick)
    if args.frames < 1 or args.fuzzers < 1:
        print("bench: fuzz: --frames and --fuzzers must be 1 or more", file=sys.stderr)
        return 2
    settings = FuzzSettings(
        frames=2000 if quick else args.frames,
        fuzzers=2 if quick else args.fuzzers,
        bystanders=2 if quick else args.bystanders,
        seed=args.seed,
        answer_within=args.answer_within,
        canary_interval=0.1,
        settle=1.0 if quick else args.settle,
        out_dir=args.out_dir,
        keep_logs=args.keep_logs,
    )
    report = asyncio.run(fuzz(settings))
    md_path, json_path = write_named_report(
        "fuzz", report, render_markdown(report), settings.out_dir
    )
    print(render_markdown(report))
    print(f"[bench] wrote {md_path} and {json_path}", file=sys.stderr)
    # A broken run is 2; findings (a failed check) are 1, so a campaign can gate a change.
    if report["error"]:
        return 2
    return 0 if all(report["checks"].values()) else 1
