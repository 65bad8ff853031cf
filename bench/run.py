"""Benchmark orchestrator: `python -m bench.run ingest [--sizes 100,1000,5000] [--quick]
[--ocpp 1.6,2.0.1]`.

Starts every target server in its own process, drives each with a separate
bench.load process, and writes bench/reports/ingest-latest.{md,json}. The
machine is shared and noisy, so targets are run interleaved (per size and
scenario, one after the other, alternating order) and the report leads with
ratios between targets measured minutes apart rather than absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.baselines import READY_MARKER
from tools.simulator import raise_nofile_limit

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "reports"
ALL_TARGETS = ("hub", "hub_full", "ocpp_lib", "echo")
HUB_TARGETS = ("hub", "hub_full")
SCENARIOS = ("idle", "rate", "saturation")
OCPP_VERSIONS = ("1.6", "2.0.1")
# The targets that also run with 2.0.1 chargers: the hub as users run it, and its baseline.
V201_TARGETS = ("hub_full", "ocpp_lib")
HUB_READY_MARKER = "hub ready"
HUB_TARGET_P99_MS = 25.0
HUB_TARGET_N = 1000
# Issue #11: `hub up` with everything on should turn around at least twice the MeterValues
# per second of a plain ocpp-library CSMS.
HUB_FULL_GOAL_RATIO = 2.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------- /proc helpers


def _read_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses; fields resume after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (e.g. the hub's embedded nats-server)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _read_stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def rss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float:
    fields = _read_stat(pid)
    if fields is None:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def process_name(pid: int) -> str:
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
    if name.startswith("python"):
        # The hub's children are `python -m hub.cli fanout`, `... project`, `... supervise`.
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            for child in (b"fanout", b"project", b"supervise"):
                if b"hub.cli" in argv and child in argv:
                    return f"hub {child.decode()}"
            if b"projections.fold_child" in argv:
                # `hub project`'s spare fold process, waiting for a replay.
                return "fold child"
    return name


@dataclass(frozen=True, slots=True)
class ProcessSample:
    pid: int
    name: str
    role: str
    rss_kib: int


def sample_tree(pid: int) -> list[ProcessSample]:
    samples = [ProcessSample(pid, process_name(pid), "server", rss_kib(pid) or 0)]
    for child in descendants(pid):
        rss = rss_kib(child)
        if rss is not None:
            samples.append(ProcessSample(child, process_name(child), "child", rss))
    return samples


def tree_cpu_seconds(pid: int) -> float:
    return cpu_seconds(pid) + sum(cpu_seconds(c) for c in descendants(pid))


def tree_cpu_by_process(pid: int) -> dict[int, tuple[str, str, float]]:
    """{pid: (name, role, CPU seconds)} for `pid` and its live descendants."""
    found = {pid: (process_name(pid), "server", cpu_seconds(pid))}
    for child in descendants(pid):
        found[child] = (process_name(child), "child", cpu_seconds(child))
    return found


def cpu_by_process(
    start: dict[int, tuple[str, str, float]],
    end: dict[int, tuple[str, str, float]],
    messages: int,
) -> list[dict[str, Any]]:
    """What each process spent in the window: where a message's cost goes (e.g. the
    gateway, nats-server, the projections child), far less noisy than throughput."""
    rows = []
    for pid, (name, role, cpu_end) in end.items():
        # A process born inside the window counts from zero; one gone by its end, not at all.
        cpu = cpu_end - (start[pid][2] if pid in start else 0.0)
        rows.append(
            {
                "pid": pid,
                "name": name,
                "role": role,
                "cpu_seconds": round(cpu, 3),
                "us_per_msg": round(cpu * 1e6 / messages, 1) if messages else None,
            }
        )
    return rows


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -------------------------------------------------------------------- targets


@dataclass(slots=True)
class TargetSpec:
    name: str
    command: list[str]
    ready_marker: str
    url_path: str
    env: dict[str, str] = field(default_factory=dict)


def _hub_executable() -> Path:
    return Path(sys.executable).parent / "hub"


def hub_up_spec(
    data_dir: Path, port: int, ui_port: int, env: dict[str, str] | None = None
) -> TargetSpec:
    """``hub up`` with the UI and API on ``ui_port``, accepting any charger."""
    command = [
        str(_hub_executable()),
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--allow-unknown-chargers",
    ]
    return TargetSpec("hub", command, HUB_READY_MARKER, "/ocpp", env=env or {})


def probe_hub() -> tuple[bool, str]:
    """Is `hub up` there yet? (It is being built alongside this harness.)"""
    exe = _hub_executable()
    if not exe.exists():
        return False, f"{exe} not found"
    try:
        done = subprocess.run(
            [str(exe), "up", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`hub up --help` failed: {exc!r}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return False, f"`hub up --help` exited {done.returncode}: {tail[0][:200]}"
    return True, ""


def target_label(name: str, ocpp: str) -> str:
    """How a target is named in the report: 1.6 targets by their name alone, as before."""
    return name if ocpp == "1.6" else f"{name}@{ocpp}"


def split_label(label: str) -> tuple[str, str]:
    """(target name, OCPP version) of a report label."""
    name, _, ocpp = label.partition("@")
    return name, ocpp or "1.6"


def target_labels(targets: Sequence[str], versions: Sequence[str]) -> list[str]:
    """Every target at 1.6, then those with a 2.0.1 counterpart at 2.0.1."""
    return [
        target_label(name, ocpp)
        for ocpp in versions
        for name in targets
        if ocpp == "1.6" or name in V201_TARGETS
    ]


def target_spec(
    name: str, port: int, data_dir: Path, hub_url_path: str, ocpp: str = "1.6"
) -> TargetSpec:
    python = sys.executable
    label = target_label(name, ocpp)
    if name in HUB_TARGETS:
        command = [
            str(_hub_executable()),
            "up",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--allow-unknown-chargers",
        ]
        if ocpp != "1.6":
            command += ["--ocpp-versions", f"{ocpp},1.6"]
        if name == "hub":
            # As the earlier reports ran it: no fan-out child, comparable across reports.
            return TargetSpec(label, [*command, "--no-ui"], HUB_READY_MARKER, hub_url_path)
        # `./dev up` as users run it: the fan-out child (on a free port), the projections
        # on chDB and the supervisor, whatever the environment says.
        return TargetSpec(
            label,
            [*command, "--ui-port", "0"],
            HUB_READY_MARKER,
            hub_url_path,
            env={"HUB_FANOUT": "true", "HUB_PROJECTIONS": "true", "HUB_SUPERVISOR": "true"},
        )
    module = {
        "ocpp_lib": "bench.baselines.ocpp_lib_csms",
        "ocpp_lib@2.0.1": "bench.baselines.ocpp_lib_csms_v201",
        "echo": "bench.baselines.echo_server",
    }
    return TargetSpec(
        label,
        [python, "-m", module[label], "--host", "127.0.0.1", "--port", str(port)],
        READY_MARKER,
        "/ocpp",
    )


class ServerProcess:
    """One target server: started fresh, watched for readiness, stopped politely."""

    def __init__(self, spec: TargetSpec, port: int, log_path: Path) -> None:
        self.spec = spec
        self.port = port
        self.log_path = log_path
        self.url = f"ws://127.0.0.1:{port}{spec.url_path}"
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._seen_ready = asyncio.Event()
        self._output_done = asyncio.Event()
        self.start_seconds = 0.0

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    async def start(self, ready_within: float) -> None:
        started = time.perf_counter()
        self._proc = await asyncio.create_subprocess_exec(
            *self.spec.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.spec.env},
            # Keep terminal Ctrl-C away from servers; we stop them ourselves.
            start_new_session=True,
        )
        self._drain = asyncio.create_task(self._drain_output(), name=f"drain:{self.spec.name}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ready_within):
                await self._seen_ready.wait()
        if not self._seen_ready.is_set() or self._output_done.is_set():
            await self.stop()
            raise RuntimeError(
                f"{self.spec.name} did not print {self.spec.ready_marker!r} within "
                f"{ready_within:.0f}s; log tail:\n{self.log_tail()}"
            )
        self.start_seconds = time.perf_counter() - started

    async def _drain_output(self) -> None:
        # The pipe must be read for the server's whole life, or it blocks on
        # a full pipe buffer as soon as it logs enough.
        assert self._proc is not None and self._proc.stdout is not None
        marker = self.spec.ready_marker.encode()
        tail = b""
        try:
            with self.log_path.open("ab") as log:
                # Chunks, not lines: a line longer than the reader's limit must not stop the
                # draining (a server blocked on its log looks like a hung server).
                while chunk := await self._proc.stdout.read(1 << 16):
                    log.write(chunk)
                    log.flush()
                    if marker in tail + chunk:
                        self._seen_ready.set()
                    tail = chunk[-len(marker) :]
        finally:
            self._output_done.set()
            self._seen_ready.set()  # wake start() on early exit

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def sample(self) -> list[ProcessSample]:
        return sample_tree(self.pid) if self.running else []

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pid) if self.running else 0.0

    def cpu_by_process(self) -> dict[int, tuple[str, str, float]]:
        return tree_cpu_by_process(self.pid) if self.running else {}

    async def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            children = descendants(proc.pid)
            for sig, grace in ((signal.SIGINT, 20.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(grace):
                        await proc.wait()
                    break
            # Our server's own children (nats-server) must not outlive it.
            for child in children:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(child, signal.SIGTERM)
        if self._drain is not None:
            await self._drain
            self._drain = None


# ------------------------------------------------------------------ scenarios


@dataclass(slots=True)
class Settings:
    sizes: list[int]
    targets: list[str]
    quick: bool
    warmup: float
    window: float
    rate_interval: float
    settle: float
    ramp: int
    out_dir: Path
    hub_url_path: str
    keep_logs: bool
    ocpp: list[str] = field(default_factory=lambda: ["1.6"])
    """The chargers' OCPP versions; 2.0.1 runs V201_TARGETS with 2.0.1 chargers."""


@dataclass(slots=True)
class RunResult:
    target: str
    n: int
    scenario: str
    ok: bool = False
    error: str | None = None
    connected: int = 0
    connect_failures: int = 0
    connect_seconds: float = 0.0
    window_seconds: float = 0.0
    messages: int = 0
    msgs_per_s: float = 0.0
    latency: dict[str, Any] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    client_cpu_percent: float = 0.0
    client_loop_lag_p99_ms: float = 0.0
    server_cpu_percent: float | None = None
    server_cpu_ms_per_1k_msgs: float | None = None
    memory: dict[str, Any] | None = None
    cpu_by_process: list[dict[str, Any]] = field(default_factory=list)
    loadavg_1m: float = 0.0
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _memory_result(
    before: list[ProcessSample], after: list[ProcessSample], connected: int
) -> dict[str, Any]:
    by_pid = {s.pid: s for s in before}
    processes = []
    for s in after:
        prior = by_pid.get(s.pid)
        base = prior.rss_kib if prior is not None else 0
        processes.append(
            {
                "pid": s.pid,
                "name": s.name,
                "role": s.role,
                "rss_before_kib": base,
                "rss_after_kib": s.rss_kib,
                "kib_per_connection": round((s.rss_kib - base) / connected, 2)
                if connected
                else None,
            }
        )
    total_before = sum(s.rss_kib for s in before)
    total_after = sum(s.rss_kib for s in after)
    return {
        "rss_before_kib": total_before,
        "rss_after_kib": total_after,
        "kib_per_connection": round((total_after - total_before) / connected, 2)
        if connected
        else None,
        "processes": processes,
    }


async def _read_event(stream: asyncio.StreamReader, within: float) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            line = await stream.readline()
            if not line:
                raise RuntimeError("load generator exited early")
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and "event" in event:
                    return event


async def run_scenario(
    server: ServerProcess, n: int, scenario: str, settings: Settings, logs: Path
) -> RunResult:
    result = RunResult(server.spec.name, n, scenario, loadavg_1m=round(os.getloadavg()[0], 2))
    started = time.perf_counter()
    if not server.running:
        result.error = "server is not running"
        return result
    warmup = settings.warmup
    if scenario == "rate" and not settings.quick:
        # Chargers start at random offsets within one interval; steady state
        # only exists after that.
        warmup = max(warmup, settings.rate_interval)
    command = [
        sys.executable,
        "-m",
        "bench.load",
        "--url",
        server.url,
        "--chargers",
        str(n),
        "--scenario",
        scenario,
        "--prefix",
        f"B{n}{scenario[0].upper()}-",
        "--ocpp",
        split_label(server.spec.name)[1],
        "--warmup",
        str(warmup),
        "--window",
        str(settings.window),
        "--interval",
        str(settings.rate_interval),
        "--ramp",
        str(settings.ramp),
    ]
    connect_budget = 60.0 + n / 20.0
    before = server.sample() if scenario == "idle" else []
    log_path = logs / f"load-{server.spec.name}-{n}-{scenario}.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=REPO,
            start_new_session=True,
        )
    assert proc.stdin is not None and proc.stdout is not None
    cpu_start = cpu_end = 0.0
    by_process_start: dict[int, tuple[str, str, float]] = {}
    by_process_end: dict[int, tuple[str, str, float]] = {}
    try:
        event = await _read_event(proc.stdout, connect_budget)
        if event["event"] != "connected":
            raise RuntimeError(f"unexpected {event}")
        if scenario == "idle":
            await asyncio.sleep(settings.settle)  # let allocator and GC settle
            result.memory = _memory_result(before, server.sample(), int(event["connected"]))
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        run_budget = warmup + settings.window + 60.0
        while True:
            event = await _read_event(proc.stdout, run_budget)
            if event["event"] == "window_start":
                by_process_start = server.cpu_by_process()
                cpu_start = sum(cpu for _, _, cpu in by_process_start.values())
            elif event["event"] == "window_end":
                by_process_end = server.cpu_by_process()
                cpu_end = sum(cpu for _, _, cpu in by_process_end.values())
            elif event["event"] == "report":
                _apply_report(result, event["report"])
                break
        async with asyncio.timeout(60.0 + n / 50.0):
            await proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"load generator exited {proc.returncode}")
        result.ok = result.connect_failures == 0
        if not result.ok:
            result.error = f"{result.connect_failures} chargers failed to connect"
    except (RuntimeError, TimeoutError, OSError, KeyError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        tail = log_path.read_text(errors="replace").splitlines()[-5:]
        if tail:
            result.error += " | load log: " + " / ".join(tail)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if scenario != "idle" and result.window_seconds > 0 and cpu_end > cpu_start:
        cpu = cpu_end - cpu_start
        result.server_cpu_percent = round(100.0 * cpu / result.window_seconds, 1)
        if result.messages:
            result.server_cpu_ms_per_1k_msgs = round(cpu * 1e6 / result.messages, 2)
    if by_process_end:
        result.cpu_by_process = cpu_by_process(by_process_start, by_process_end, result.messages)
    result.wall_seconds = round(time.perf_counter() - started, 2)
    return result


def _apply_report(result: RunResult, report: dict[str, Any]) -> None:
    result.connected = int(report["connected"])
    result.connect_failures = int(report["connect_failures"])
    result.connect_seconds = float(report["connect_seconds"])
    result.window_seconds = float(report["window_seconds"])
    result.messages = int(report["messages"])
    result.msgs_per_s = float(report["msgs_per_s"])
    result.latency = dict(report["latency"])
    result.actions = dict(report["actions"])
    result.client_cpu_percent = float(report["client_cpu_percent"])
    result.client_loop_lag_p99_ms = float(report["loop_lag"]["p99_ms"])


# -------------------------------------------------------------------- driver


async def _start_server(
    name: str, n: int, logs: Path, data_root: Path, settings: Settings, attempt: int = 0
) -> ServerProcess | str:
    """A running server, or why there is none."""
    port = free_port()
    data_dir = data_root / f"{name}-{n}-{attempt}"
    data_dir.mkdir(parents=True, exist_ok=True)
    target, ocpp = split_label(name)
    spec = target_spec(target, port, data_dir, settings.hub_url_path, ocpp)
    server = ServerProcess(spec, port, logs / f"server-{name}-{n}-{attempt}.log")
    try:
        await server.start(ready_within=120.0 if target in HUB_TARGETS else 30.0)
    except (RuntimeError, OSError) as exc:
        return f"failed to start: {exc}"
    return server


async def _start_servers(
    names: Sequence[str], n: int, logs: Path, data_root: Path, settings: Settings
) -> dict[str, ServerProcess | str]:
    """Fresh servers per size, so idle memory is measured on a clean process."""
    return {name: await _start_server(name, n, logs, data_root, settings) for name in names}


async def ingest(settings: Settings) -> dict[str, Any]:
    raise_nofile_limit()
    names: list[str] = []
    target_info: dict[str, dict[str, Any]] = {}
    for name in target_labels(settings.targets, settings.ocpp):
        available, reason = probe_hub() if split_label(name)[0] in HUB_TARGETS else (True, "")
        target_info[name] = {"available": available, "reason": reason}
        if available:
            names.append(name)
        else:
            print(f"[bench] skipping {name}: {reason}", file=sys.stderr, flush=True)

    environment = _environment()
    results: list[RunResult] = []
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    data_root = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        for n in settings.sizes:
            servers = await _start_servers(names, n, logs, data_root, settings)
            restarts: dict[str, int] = {}
            try:
                for index, scenario in enumerate(SCENARIOS):
                    # Alternate the order so no target always runs first (or
                    # always right after the most expensive one).
                    order = list(servers.items())
                    if index % 2:
                        order.reverse()
                    for name, server in order:
                        notes: list[str] = []
                        if isinstance(server, ServerProcess) and not server.running:
                            # A crash (or someone else's cleanup on a shared
                            # machine) must not cost the rest of the run.
                            notes.append(
                                f"server had exited with code {server.returncode}; "
                                "restarted before this run"
                            )
                            print(f"[bench] {name}: {notes[-1]}", file=sys.stderr, flush=True)
                            await server.stop()
                            restarts[name] = restarts.get(name, 0) + 1
                            server = await _start_server(
                                name, n, logs, data_root, settings, restarts[name]
                            )
                            servers[name] = server
                        if isinstance(server, str):
                            results.append(RunResult(name, n, scenario, error=server, notes=notes))
                            continue
                        print(
                            f"[bench] N={n} {scenario:<10} {name:<8} ...",
                            file=sys.stderr,
                            end="",
                            flush=True,
                        )
                        outcome = await run_scenario(server, n, scenario, settings, logs)
                        outcome.notes.extend(notes)
                        if not server.running:
                            outcome.notes.append(
                                f"server exited with code {server.returncode} during this run"
                            )
                        results.append(outcome)
                        print(" " + _one_line(outcome), file=sys.stderr, flush=True)
            finally:
                for server in servers.values():
                    if isinstance(server, ServerProcess):
                        await server.stop()
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
        if not settings.keep_logs:
            shutil.rmtree(logs, ignore_errors=True)
    environment["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    summary = summarize(results, settings.sizes)
    report: dict[str, Any] = {
        "benchmark": "ingest",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "environment": environment,
        "settings": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in asdict(settings).items()
        },
        "targets": target_info,
        "results": [asdict(r) for r in results],
    }
    report["summary"] = summary
    report["ratios"] = ratios(summary)
    report["checks"] = checks(summary)
    if settings.keep_logs:
        report["logs_dir"] = str(logs)
    return report


def _one_line(r: RunResult) -> str:
    if r.error and not r.messages and not r.memory:
        return f"ERROR {r.error}"
    if r.scenario == "idle" and r.memory:
        return f"{r.memory['kib_per_connection']} KiB/conn ({r.connected} connected)"
    lat = r.latency
    text = (
        f"{r.msgs_per_s:.0f} msg/s p50 {lat.get('p50_ms', 0):.2f} ms "
        f"p99 {lat.get('p99_ms', 0):.2f} ms errors {lat.get('errors', 0)}"
    )
    return text + (f" ({r.error})" if r.error else "")


def _environment() -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "websockets": version("websockets"),
        "ocpp": version("ocpp"),
        "msgspec": version("msgspec"),
        "nofile_limit": list(raise_nofile_limit()),
    }


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=10,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return None


# ------------------------------------------------------------------ analysis


def summarize(results: Sequence[RunResult], sizes: Sequence[int]) -> dict[str, Any]:
    """{N: {target: headline numbers}}; None where a run failed or was skipped."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        row = summary.setdefault(str(r.n), {}).setdefault(
            r.target,
            {
                "saturation_msgs_per_s": None,
                "saturation_p50_ms": None,
                "saturation_p99_ms": None,
                "rate_msgs_per_s": None,
                "rate_p50_ms": None,
                "rate_p99_ms": None,
                "idle_kib_per_connection": None,
                "errors": [],
            },
        )
        if r.error:
            row["errors"].append(f"{r.scenario}: {r.error}")
        if r.scenario == "idle":
            if r.memory is not None:
                row["idle_kib_per_connection"] = r.memory["kib_per_connection"]
        elif r.messages:
            row[f"{r.scenario}_msgs_per_s"] = r.msgs_per_s
            row[f"{r.scenario}_p50_ms"] = r.latency["p50_ms"]
            row[f"{r.scenario}_p99_ms"] = r.latency["p99_ms"]
    return {str(n): summary.get(str(n), {}) for n in sizes}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


RATIO_PAIRS = (
    ("hub_full", "ocpp_lib"),
    ("hub_full@2.0.1", "ocpp_lib@2.0.1"),
    ("hub", "ocpp_lib"),
    ("hub_full", "hub"),
    ("hub_full", "echo"),
    ("hub", "echo"),
    ("ocpp_lib", "echo"),
    # What 2.0.1 costs each side against the same load in 1.6.
    ("hub_full@2.0.1", "hub_full"),
    ("ocpp_lib@2.0.1", "ocpp_lib"),
)


def ratios(summary: dict[str, Any]) -> dict[str, Any]:
    """Same-run ratios: throughput >1 is better for the numerator, latency <1 is."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for n, rows in summary.items():
        for num, den in RATIO_PAIRS:
            if num not in rows or den not in rows:
                continue
            a, b = rows[num], rows[den]
            out.setdefault(n, {})[f"{num}/{den}"] = {
                "saturation_throughput": _ratio(
                    a["saturation_msgs_per_s"], b["saturation_msgs_per_s"]
                ),
                "saturation_p50": _ratio(a["saturation_p50_ms"], b["saturation_p50_ms"]),
                "saturation_p99": _ratio(a["saturation_p99_ms"], b["saturation_p99_ms"]),
                "rate_p50": _ratio(a["rate_p50_ms"], b["rate_p50_ms"]),
                "rate_p99": _ratio(a["rate_p99_ms"], b["rate_p99_ms"]),
                "idle_memory": _ratio(a["idle_kib_per_connection"], b["idle_kib_per_connection"]),
            }
    return out


def _saturation_ratios(summary: dict[str, Any], num: str, den: str) -> dict[str, float | None]:
    """{N: num's saturation throughput / den's} for every N both ran at."""
    return {
        n: _ratio(rows[num]["saturation_msgs_per_s"], rows[den]["saturation_msgs_per_s"])
        for n, rows in summary.items()
        if num in rows and den in rows
    }


def checks(summary: dict[str, Any]) -> dict[str, Any]:
    hub = summary.get(str(HUB_TARGET_N), {}).get("hub")
    p99 = hub["rate_p99_ms"] if hub else None
    full_ratios = _saturation_ratios(summary, "hub_full", "ocpp_lib")
    measured = [r for r in full_ratios.values() if r is not None]
    return {
        "hub_rate_p99_under_25ms_at_1000": {
            "p99_ms": p99,
            "limit_ms": HUB_TARGET_P99_MS,
            "passed": None if p99 is None else p99 < HUB_TARGET_P99_MS,
        },
        "hub_full_saturation_at_least_2x_ocpp_lib": {
            "ratios": full_ratios,
            "goal": HUB_FULL_GOAL_RATIO,
            "passed": min(measured) >= HUB_FULL_GOAL_RATIO if measured else None,
        },
        # Issue #12: the same comparison with 2.0.1 stations, reported without a goal.
        "hub_full_2.0.1_saturation_vs_ocpp_lib_2.0.1": {
            "ratios": _saturation_ratios(summary, "hub_full@2.0.1", "ocpp_lib@2.0.1"),
        },
    }


# ------------------------------------------------------------------ markdown


def _fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def render_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    settings = report["settings"]
    lines = [
        f"# Ingest benchmark ({report['generated_at']})",
        "",
        f"Commit `{report['git_commit']}` · {env['cpu_count']} CPUs · load average "
        f"{env['loadavg_start'][0]} at start, {env['loadavg_end'][0]} at end · "
        f"Python {env['python']} · websockets {env['websockets']} · ocpp {env['ocpp']}",
        "",
        f"Settings: warm-up {settings['warmup']} s, window {settings['window']} s, "
        f"rate interval {settings['rate_interval']} s, quick={settings['quick']}, "
        f"OCPP {', '.join(settings.get('ocpp', ['1.6']))}. "
        "Targets ran interleaved in this one run; compare ratios, not absolute numbers "
        "from other runs (see bench/README.md).",
        "",
    ]
    for name, info in report["targets"].items():
        if not info["available"]:
            lines.append(f"- **{name} not measured**: {info['reason']}")
    lines += [
        "",
        "## Results",
        "",
        "| N | target | sat. msg/s | sat. p50 ms | sat. p99 ms | rate msg/s | rate p50 ms "
        "| rate p99 ms | idle KiB/conn |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, rows in report["summary"].items():
        for target, row in rows.items():
            lines.append(
                f"| {n} | {target} | {_fmt(row['saturation_msgs_per_s'], 0)} "
                f"| {_fmt(row['saturation_p50_ms'], 2)} | {_fmt(row['saturation_p99_ms'], 2)} "
                f"| {_fmt(row['rate_msgs_per_s'], 0)} | {_fmt(row['rate_p50_ms'], 2)} "
                f"| {_fmt(row['rate_p99_ms'], 2)} | {_fmt(row['idle_kib_per_connection'], 1)} |"
            )
    lines += [
        "",
        "## Ratios (same run)",
        "",
        "Throughput: higher is better for the left-hand target. Latency and memory: "
        "lower is better.",
        "",
        "| N | ratio | sat. throughput | sat. p50 | sat. p99 | rate p50 | rate p99 | idle memory |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, pairs in report["ratios"].items():
        for pair, r in pairs.items():
            lines.append(
                f"| {n} | {pair} | {_fmt(r['saturation_throughput'], 2)} "
                f"| {_fmt(r['saturation_p50'], 2)} | {_fmt(r['saturation_p99'], 2)} "
                f"| {_fmt(r['rate_p50'], 2)} | {_fmt(r['rate_p99'], 2)} "
                f"| {_fmt(r['idle_memory'], 2)} |"
            )
    verdicts = {True: "PASS", False: "FAIL", None: "not measured"}
    check = report["checks"]["hub_rate_p99_under_25ms_at_1000"]
    full = report["checks"]["hub_full_saturation_at_least_2x_ocpp_lib"]
    full_ratios = ", ".join(f"N={n}: {_fmt(r, 2)}" for n, r in full["ratios"].items())
    v201 = report["checks"].get("hub_full_2.0.1_saturation_vs_ocpp_lib_2.0.1", {"ratios": {}})
    v201_ratios = ", ".join(f"N={n}: {_fmt(r, 2)}" for n, r in v201["ratios"].items())
    lines += [
        "",
        f"Target — hub rate-scenario p99 < {check['limit_ms']:.0f} ms at N={HUB_TARGET_N}: "
        f"**{verdicts[check['passed']]}** (p99 {_fmt(check['p99_ms'], 2)} ms)",
        "",
        f"Goal — hub_full saturation throughput ≥ {full['goal']:.0f}x ocpp_lib: "
        f"**{verdicts[full['passed']]}**" + (f" ({full_ratios})" if full_ratios else ""),
        "",
        "OCPP 2.0.1 — hub_full@2.0.1 saturation throughput / ocpp_lib@2.0.1: "
        + (f"**{v201_ratios}**" if v201_ratios else "not measured"),
        "",
        "## Detail",
        "",
        "| N | scenario | target | msgs | errors | server CPU % | server CPU ms/1k msgs "
        "| client CPU % | client loop lag p99 ms | load avg | connect s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lat = r["latency"]
        # Idle runs have no measured window: their client figures mean nothing.
        idle = r["scenario"] == "idle"
        client_cpu = None if idle else r["client_cpu_percent"]
        client_lag = None if idle else r["client_loop_lag_p99_ms"]
        lines.append(
            f"| {r['n']} | {r['scenario']} | {r['target']} | {_fmt(r['messages'])} "
            f"| {_fmt(lat.get('errors'))} | {_fmt(r['server_cpu_percent'])} "
            f"| {_fmt(r['server_cpu_ms_per_1k_msgs'], 1)} | {_fmt(client_cpu)} "
            f"| {_fmt(client_lag, 1)} | {_fmt(r['loadavg_1m'], 2)} "
            f"| {_fmt(r['connect_seconds'], 2)} |"
        )
    lines += [
        "",
        "## CPU µs per message by process",
        "",
        "Each process's CPU time (user + system) over the measured window, divided by the "
        "messages answered in it.",
        "",
        "| N | scenario | target | process | CPU % | µs/msg |",
        "|---:|---|---|---|---:|---:|",
    ]
    for r in report["results"]:
        window = r["window_seconds"]
        for p in r.get("cpu_by_process", []):
            percent = 100.0 * p["cpu_seconds"] / window if window else None
            lines.append(
                f"| {r['n']} | {r['scenario']} | {r['target']} | {p['name']} ({p['role']}) "
                f"| {_fmt(percent, 1)} | {_fmt(p['us_per_msg'], 1)} |"
            )
    lines += [
        "",
        "## Idle memory by process",
        "",
        "| N | target | process | RSS before MiB | RSS after MiB | KiB/conn |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        if r["scenario"] != "idle" or not r["memory"]:
            continue
        for p in r["memory"]["processes"]:
            lines.append(
                f"| {r['n']} | {r['target']} | {p['name']} ({p['role']}) "
                f"| {_fmt(p['rss_before_kib'] / 1024, 1)} | {_fmt(p['rss_after_kib'] / 1024, 1)} "
                f"| {_fmt(p['kib_per_connection'], 1)} |"
            )
    problems = [
        f"- N={r['n']} {r['scenario']} {r['target']}: {r['error'] or ''} {'; '.join(r['notes'])}"
        for r in report["results"]
        if r["error"] or r["notes"]
    ]
    if problems:
        lines += ["", "## Problems", "", *problems]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "ingest-latest.json"
    md_path = out_dir / "ingest-latest.md"
    # Write-then-rename so a reader never sees half a report.
    for path, text in (
        (json_path, json.dumps(report, indent=2) + "\n"),
        (md_path, render_markdown(report)),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return md_path, json_path


@contextlib.contextmanager
def work_dir(prefix: str, keep: Path | None) -> Iterator[Path]:
    """``keep`` (made if need be, left in place) or a temporary directory removed after."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        yield Path(work)


def publish_named_report(name: str, report: dict[str, Any], markdown: str, out_dir: Path) -> None:
    """Write ``<name>-latest.md`` and ``.json``, print the markdown, say where they went."""
    md_path, json_path = write_named_report(name, report, markdown, out_dir)
    print(markdown)
    print(f"[bench] wrote {md_path} and {json_path}", file=sys.stderr)


def write_named_report(
    name: str, report: dict[str, Any], markdown: str, out_dir: Path
) -> tuple[Path, Path]:
    """``<name>-latest.md`` and ``.json`` in ``out_dir``, each written whole or not at all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / f"{name}-latest.md", out_dir / f"{name}-latest.json"
    for path, text in ((json_path, json.dumps(report, indent=2) + "\n"), (md_path, markdown)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return md_path, json_path


# ----------------------------------------------------------------------- CLI


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ints: {text}") from exc
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def _targets(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(names) - set(ALL_TARGETS)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"targets must be among {', '.join(ALL_TARGETS)}")
    return names


def _versions(text: str) -> list[str]:
    versions = [part.strip() for part in text.split(",") if part.strip()]
    if not versions or set(versions) - set(OCPP_VERSIONS):
        raise argparse.ArgumentTypeError(f"versions must be among {', '.join(OCPP_VERSIONS)}")
    return versions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    ingest_parser = sub.add_parser("ingest", help="OCPP ingest: throughput, latency, memory")
    ingest_parser.add_argument("--sizes", type=_sizes, default=[100, 1000, 5000])
    ingest_parser.add_argument("--quick", action="store_true", help="short windows (smoke runs)")
    ingest_parser.add_argument(
        "--targets", type=_targets, default=list(ALL_TARGETS), help="comma-separated subset"
    )
    ingest_parser.add_argument(
        "--ocpp",
        type=_versions,
        default=list(OCPP_VERSIONS),
        help="chargers' OCPP versions (default 1.6,2.0.1); 2.0.1 runs "
        f"{' and '.join(V201_TARGETS)} of --targets again with 2.0.1 chargers",
    )
    ingest_parser.add_argument("--warmup", type=float, default=None, help="seconds (default 3)")
    ingest_parser.add_argument("--window", type=float, default=None, help="seconds (default 10)")
    ingest_parser.add_argument("--rate-interval", type=float, default=2.0)
    ingest_parser.add_argument("--ramp", type=int, default=100, help="concurrent connects")
    ingest_parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    ingest_parser.add_argument(
        "--hub-url-path", default="/ocpp", help="path prefix of the hub's OCPP endpoint"
    )
    ingest_parser.add_argument("--keep-logs", action="store_true", help="keep server/load logs")
    fanout_parser = sub.add_parser("fanout", help="UI fan-out: frame sent -> UI message received")
    fanout_parser.add_argument("--chargers", type=int, default=1000)
    fanout_parser.add_argument("--per-charger", type=int, default=10, help="UI subscribers each")
    fanout_parser.add_argument("--interval", type=float, default=2.0, help="s between frames")
    fanout_parser.add_argument("--window", type=float, default=20.0, help="seconds measured")
    fanout_parser.add_argument("--targets", default="hub,poll", help="hub, poll or both")
    fanout_parser.add_argument("--quick", action="store_true", help="20 chargers, 3 s: a smoke run")
    fanout_parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    commands_parser = sub.add_parser("commands", help="command round trip: REST API vs NATS")
    commands_parser.add_argument("--chargers", type=int, default=1000)
    commands_parser.add_argument("--requests", type=int, default=1000, help="per path")
    commands_parser.add_argument("--concurrency", type=int, default=32, help="in flight")
    commands_parser.add_argument("--quick", action="store_true", help="10 chargers: a smoke run")
    commands_parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    from bench import fuzz, integrity, load_management, projections, scale

    projections.build_parser(sub)
    load_management.build_parser(sub)
    scale.build_parser(sub)
    integrity.build_parser(sub)
    fuzz.build_parser(sub)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    return Settings(
        sizes=args.sizes,
        targets=args.targets,
        quick=quick,
        warmup=args.warmup if args.warmup is not None else (0.5 if quick else 3.0),
        window=args.window if args.window is not None else (2.0 if quick else 10.0),
        rate_interval=args.rate_interval,
        settle=0.3 if quick else 2.0,
        ramp=args.ramp,
        out_dir=args.out_dir,
        hub_url_path=args.hub_url_path,
        keep_logs=args.keep_logs,
        ocpp=args.ocpp,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.benchmark == "fanout":
        from bench import fanout

        return fanout.main(args)
    if args.benchmark == "commands":
        from bench import commands

        return commands.main(args)
    if args.benchmark == "projections":
        from bench import projections

        return projections.main(args)
    if args.benchmark == "integrity":
        from bench import integrity

        return integrity.main(args)
    if args.benchmark == "scale":
        from bench import scale

        return scale.main(args)
    if args.benchmark == "load":
        from bench import load_management

        return load_management.main(args)
    if args.benchmark == "fuzz":
        from bench import fuzz

        return fuzz.main(args)
    settings = settings_from_args(args)
    report = asyncio.run(ingest(settings))
    md_path, json_path = write_report(report, settings.out_dir)
    print(render_markdown(report))
    print(f"[bench] wrote {md_path} and {json_path}", file=sys.stderr)
    # Slow or erroring targets are results; only runs that broke are failures.
    return 1 if any(r["error"] for r in report["results"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
