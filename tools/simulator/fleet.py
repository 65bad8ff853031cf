"""Drive many simulated chargers from one event loop and measure round trips."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tools.simulator.charger import CallError, ChargerDisconnected, ChargerLink, SimulatedCharger
from tools.simulator.ocpp2 import (
    STATION_VERSIONS,
    SimulatedStation,
    StopTrigger,
    run_station_session,
    station_saturation_load,
)
from tools.simulator.session import (
    Pace,
    SessionPlan,
    SessionResult,
    run_session,
    saturation_load,
)
from tools.simulator.stats import LatencyRecorder, LatencySummary

__all__ = [
    "OCPP_VERSIONS",
    "FleetHooks",
    "FleetMode",
    "FleetOptions",
    "FleetProgress",
    "FleetReport",
    "raise_nofile_limit",
    "run_fleet",
]

log = logging.getLogger(__name__)

FleetMode = Literal["interval", "saturate", "idle"]
OcppVersion = Literal["1.6", "2.0.1", "2.1"]
OCPP_VERSIONS: tuple[OcppVersion, ...] = ("1.6", *STATION_VERSIONS)

# How often a saturating charger that is offline produces a message: it has
# no round trip to wait for, and must not spin the event loop.
_OFFLINE_SATURATE_PACE_S = 1.0
_LAG_PROBE_S = 0.05


def raise_nofile_limit() -> tuple[int, int]:
    """Lift the soft fd limit to the hard one; thousands of sockets need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft, hard


@dataclass(slots=True)
class FleetOptions:
    chargers: int = 10
    url: str = "ws://127.0.0.1:9000/ocpp"
    prefix: str = "SIM-"
    start_index: int = 0
    mode: FleetMode = "interval"
    ocpp: OcppVersion = "1.6"
    interval: float = 5.0
    """Mean seconds between messages per charger in interval mode (jittered ±50 %)."""
    duration: float | None = None
    """Measured window after warm-up; None runs until `stop` is set."""
    warmup: float = 0.0
    password: str | None = None
    connectors: int = 1
    ramp_concurrency: int = 50
    connect_attempts: int = 3
    connect_timeout: float = 10.0
    call_timeout: float = 30.0
    offline_every: float | None = None
    offline_for: float = 10.0
    meter_values_per_session: tuple[int, int] = (10, 30)
    max_offline_queue: int = 1000
    progress_interval: float | None = None
    seed: int | None = None
    tune_gc: bool = False
    """After the ramp, freeze the (long-lived) connection objects out of the
    cyclic GC and collect far less often. With thousands of chargers a full
    collection otherwise stalls the loop for hundreds of milliseconds, which
    shows up as RTT. Process-wide while the fleet runs; restored afterwards."""

    def charger_ids(self) -> list[str]:
        return [f"{self.prefix}{self.start_index + i:05d}" for i in range(self.chargers)]


@dataclass(frozen=True, slots=True)
class FleetProgress:
    elapsed_s: float
    online: int
    chargers: int
    messages: int
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    queued: int

    def format_line(self) -> str:
        return (
            f"[{self.elapsed_s:7.1f}s] online {self.online}/{self.chargers}  "
            f"{self.msgs_per_s:8.1f} msg/s  p50 {self.p50_ms:7.2f} ms  "
            f"p99 {self.p99_ms:7.2f} ms  total {self.messages}  errors {self.errors}  "
            f"queued {self.queued}"
        )


@dataclass(slots=True)
class FleetHooks:
    """Callbacks that let an orchestrator (the benchmark) step through phases."""

    on_connected: Callable[[int, int], Awaitable[None]] | None = None
    """(connected, failed) once the ramp is done; the fleet waits for it to return."""
    on_window_start: Callable[[], Awaitable[None]] | None = None
    on_window_end: Callable[[], Awaitable[None]] | None = None
    on_progress: Callable[[FleetProgress], None] | None = None


@dataclass(slots=True)
class FleetReport:
    mode: str
    chargers: int
    connected: int
    connect_failures: int
    connect_errors: dict[str, int]
    connect_seconds: float
    window_seconds: float
    messages: int
    msgs_per_s: float
    latency: LatencySummary
    actions: dict[str, int]
    loop_lag: LatencySummary
    client_cpu_seconds: float
    client_cpu_percent: float
    offline_events: int = 0
    offline_queued: int = 0
    offline_flushed: int = 0
    offline_dropped: int = 0
    reconnects: int = 0
    histogram: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lat = self.latency
        lines = [
            f"mode {self.mode}: {self.connected}/{self.chargers} chargers connected "
            f"in {self.connect_seconds:.1f}s ({self.connect_failures} failed)",
            f"window {self.window_seconds:.1f}s: {self.messages} round trips, "
            f"{self.msgs_per_s:.1f} msg/s, errors {lat.errors} {lat.error_kinds or ''}",
            f"RTT ms: p50 {lat.p50_ms:.2f}  p90 {lat.p90_ms:.2f}  p99 {lat.p99_ms:.2f}  "
            f"p99.9 {lat.p999_ms:.2f}  max {lat.max_ms:.2f}  mean {lat.mean_ms:.2f}",
            f"client: cpu {self.client_cpu_percent:.0f}%  loop lag p99 "
            f"{self.loop_lag.p99_ms:.1f} ms max {self.loop_lag.max_ms:.1f} ms",
            "actions: " + ", ".join(f"{k} {v}" for k, v in sorted(self.actions.items())),
        ]
        if self.offline_events or self.offline_queued:
            lines.append(
                f"offline: events {self.offline_events}  queued {self.offline_queued}  "
                f"flushed {self.offline_flushed}  dropped {self.offline_dropped}  "
                f"reconnects {self.reconnects}"
            )
        if self.connect_errors:
            lines.append(f"connect errors: {self.connect_errors}")
        return "\n".join(lines)


@dataclass(slots=True)
class _Counters:
    connect_errors: Counter[str] = field(default_factory=Counter)
    offline_events: int = 0
    reconnects: int = 0


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True if `stop` was set first."""
    if stop.is_set():
        return True
    if seconds <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


async def _bring_up(
    charger: ChargerLink,
    options: FleetOptions,
    gate: asyncio.Semaphore,
    stop: asyncio.Event,
    counters: _Counters,
    rng: random.Random,
) -> bool:
    async with gate:
        for attempt in range(options.connect_attempts):
            if stop.is_set():
                return False
            try:
                await charger.come_online()
                await charger.announce()
                return True
            except Exception as exc:  # any failure to come up is a data point
                counters.connect_errors[type(exc).__name__] += 1
                log.debug(
                    "%s: connect attempt %d failed: %r", charger.charge_point_id, attempt, exc
                )
                with contextlib.suppress(Exception):
                    await charger.go_offline(abrupt=True)
                if await _wait_or_stop(stop, 0.2 * 2**attempt * (0.5 + rng.random())):
                    return False
        return False


async def _reconnect(
    charger: ChargerLink, rng: random.Random, counters: _Counters, stop: asyncio.Event
) -> None:
    delay = 0.5
    while charger.wants_online and not stop.is_set():
        try:
            await charger.come_online()
            await charger.announce()
        except Exception as exc:
            log.debug("%s: reconnect failed: %r", charger.charge_point_id, exc)
            await _wait_or_stop(stop, delay * (0.5 + rng.random()))
            delay = min(delay * 2, 30.0)
        else:
            counters.reconnects += 1
            return


def _make_pace(charger: ChargerLink, options: FleetOptions, rng: random.Random) -> Pace:
    saturate = options.mode == "saturate"
    interval = options.interval
    first = True

    async def pace() -> None:
        nonlocal first
        if saturate:
            if charger.online:
                return
            await asyncio.sleep(_OFFLINE_SATURATE_PACE_S * (0.5 + rng.random()))
            return
        if first:
            # Spread first messages uniformly over one interval so N chargers
            # do not fire in lock-step bursts right after the ramp.
            first = False
            await asyncio.sleep(interval * rng.random())
            return
        await asyncio.sleep(interval * (0.5 + rng.random()))

    return pace


# Saturation draws each message from this fixed distribution instead of walking through
# sessions: a session's early messages (Status, Authorize, Start) cost a server far less than
# its MeterValues, so a walk would hand a slower target an easier mix in a short window.
SATURATION_MIX: tuple[tuple[str, float], ...] = (
    ("MeterValues", 0.60),
    ("StatusNotification", 0.15),
    ("Heartbeat", 0.05),
    ("Authorize", 0.05),
    ("DataTransfer", 0.05),
    ("StartStop", 0.10),
)


async def _drive_stationary(
    charger: ChargerLink, index: int, options: FleetOptions, rng: random.Random
) -> None:
    """Closed loop over SATURATION_MIX, the same mix whatever the server's speed; each
    action is its version's message (a 2.x meter sample is a TransactionEvent Updated)."""
    actions = [action for action, _ in SATURATION_MIX]
    weights = [weight for _, weight in SATURATION_MIX]
    id_tag = f"TAG{options.start_index + index:05d}"
    if isinstance(charger, SimulatedStation):
        send = station_saturation_load(charger, id_tag, rng)
    else:
        assert isinstance(charger, SimulatedCharger)
        send = saturation_load(charger, id_tag, rng)
    while True:
        action = rng.choices(actions, weights)[0]
        with contextlib.suppress(CallError, TimeoutError):
            await send(action)


async def _session(
    charger: ChargerLink,
    connector: int,
    id_tag: str,
    meter_values: int,
    pace: Pace,
    rng: random.Random,
) -> SessionResult:
    """One whole session in the charger's version, with a car drawn at random."""
    plan = SessionPlan(
        meter_values=meter_values,
        start_soc=rng.uniform(10.0, 60.0),
        power_w=rng.choice((7_400.0, 11_000.0, 22_000.0)),
        data_transfer=rng.random() < 0.5,
    )
    if isinstance(charger, SimulatedStation):
        # Most drivers just unplug; some end it at the station with their card first.
        stop: StopTrigger = "StopAuthorized" if rng.random() < 0.2 else "EVDeparted"
        return await run_station_session(
            charger,
            plan,
            evse_id=connector,
            id_token=id_tag,
            stop=stop,
            boot=False,
            pace=pace,
            rng=rng,
        )
    assert isinstance(charger, SimulatedCharger)
    return await run_session(
        charger, plan, connector_id=connector, id_tag=id_tag, boot=False, pace=pace, rng=rng
    )


async def _drive(
    charger: ChargerLink,
    index: int,
    options: FleetOptions,
    rng: random.Random,
    counters: _Counters,
    stop: asyncio.Event,
) -> None:
    if options.mode == "saturate" and options.offline_every is None:
        await _drive_stationary(charger, index, options, rng)
        return
    pace = _make_pace(charger, options, rng)
    low, high = options.meter_values_per_session
    id_tag = f"TAG{options.start_index + index:05d}"
    session = 0
    while True:
        if not charger.online and charger.wants_online:
            await _reconnect(charger, rng, counters, stop)
            if not charger.online:
                # Stopped while reconnecting; wait to be cancelled.
                await stop.wait()
            continue
        # Errors are already counted by the recorder; a real charger carries on.
        with contextlib.suppress(CallError, TimeoutError, ChargerDisconnected):
            connector = session % charger.connectors + 1
            await _session(charger, connector, id_tag, rng.randint(low, high), pace, rng)
        session += 1


async def _make_trouble(
    chargers: Sequence[ChargerLink],
    options: FleetOptions,
    rng: random.Random,
    counters: _Counters,
    stop: asyncio.Event,
) -> None:
    """Take one random charger offline at a time, then bring it back to flush."""
    assert options.offline_every is not None
    while not await _wait_or_stop(stop, options.offline_every):
        candidates = [c for c in chargers if c.online and c.wants_online]
        if not candidates:
            continue
        victim = rng.choice(candidates)
        await victim.go_offline(abrupt=rng.random() < 0.5)
        counters.offline_events += 1
        if await _wait_or_stop(stop, options.offline_for):
            return
        try:
            await victim.come_online()
            await victim.announce()
        except Exception as exc:
            # wants_online is set again, so its driver keeps retrying.
            log.debug("%s: come_online failed: %r", victim.charge_point_id, exc)


async def _monitor_lag(recorder: LatencyRecorder) -> None:
    """Measure how late the loop wakes us: RTTs include this client-side delay."""
    probe_ns = int(_LAG_PROBE_S * 1e9)
    while True:
        started = time.perf_counter_ns()
        await asyncio.sleep(_LAG_PROBE_S)
        recorder.record(max(0, time.perf_counter_ns() - started - probe_ns))


async def _report_progress(
    chargers: Sequence[ChargerLink],
    recorder: LatencyRecorder,
    options: FleetOptions,
    hooks: FleetHooks,
    started: float,
) -> None:
    assert options.progress_interval is not None and hooks.on_progress is not None
    last_count, last_t = 0, time.perf_counter()
    while True:
        await asyncio.sleep(options.progress_interval)
        now = time.perf_counter()
        count = recorder.count
        if count < last_count:  # the recorder was reset at the window start
            last_count = 0
        hooks.on_progress(
            FleetProgress(
                elapsed_s=now - started,
                online=sum(1 for c in chargers if c.online),
                chargers=len(chargers),
                messages=count,
                msgs_per_s=(count - last_count) / (now - last_t),
                p50_ms=recorder.percentile_ns(50) / 1e6,
                p99_ms=recorder.percentile_ns(99) / 1e6,
                errors=recorder.error_count,
                queued=sum(c.offline_queue_length for c in chargers),
            )
        )
        last_count, last_t = count, now


@contextlib.contextmanager
def _gc_tuned(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    # Steady-state traffic makes almost no cyclic garbage (payloads die by
    # refcount), so rare young collections lose nothing.
    gc.set_threshold(50_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def _close_all(chargers: Sequence[ChargerLink], concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def close(charger: ChargerLink) -> None:
        async with gate:
            try:
                await charger.close()
            except Exception as exc:
                log.debug("%s: close failed: %r", charger.charge_point_id, exc)

    async with asyncio.TaskGroup() as tg:
        for charger in chargers:
            tg.create_task(close(charger))


def _make_charger(charger_id: str, options: FleetOptions, recorder: LatencyRecorder) -> ChargerLink:
    link: dict[str, Any] = {
        "password": options.password,
        "connectors": options.connectors,
        "call_timeout": options.call_timeout,
        "connect_timeout": options.connect_timeout,
        "recorder": recorder,
        "max_offline_queue": options.max_offline_queue,
    }
    if options.ocpp == "1.6":
        return SimulatedCharger(charger_id, options.url, **link)
    return SimulatedStation(charger_id, options.url, version=options.ocpp, **link)


async def run_fleet(
    options: FleetOptions,
    *,
    stop: asyncio.Event | None = None,
    hooks: FleetHooks | None = None,
) -> FleetReport:
    """Connect the fleet, run it for warm-up + window (or until `stop`), report."""
    if options.chargers < 1:
        raise ValueError("need at least one charger")
    stop = stop or asyncio.Event()
    hooks = hooks or FleetHooks()
    rng = random.Random(options.seed)
    recorder = LatencyRecorder()
    lag = LatencyRecorder()
    counters = _Counters()
    chargers = [
        _make_charger(charger_id, options, recorder) for charger_id in options.charger_ids()
    ]
    started = time.perf_counter()
    try:
        gate = asyncio.Semaphore(max(1, options.ramp_concurrency))
        async with asyncio.TaskGroup() as tg:
            ups = [
                tg.create_task(_bring_up(c, options, gate, stop, counters, rng)) for c in chargers
            ]
        connected = sum(1 for t in ups if t.result())
        connect_seconds = time.perf_counter() - started
        if hooks.on_connected is not None:
            await hooks.on_connected(connected, len(chargers) - connected)

        with _gc_tuned(options.tune_gc):
            async with asyncio.TaskGroup() as tg:
                background = [tg.create_task(_monitor_lag(lag))]
                if options.progress_interval and hooks.on_progress is not None:
                    background.append(
                        tg.create_task(
                            _report_progress(chargers, recorder, options, hooks, started)
                        )
                    )
                if options.mode != "idle":
                    background.extend(
                        tg.create_task(_drive(c, i, options, rng, counters, stop))
                        for i, c in enumerate(chargers)
                        if c.online
                    )
                if options.offline_every:
                    background.append(
                        tg.create_task(_make_trouble(chargers, options, rng, counters, stop))
                    )

                await _wait_or_stop(stop, options.warmup)
                recorder.reset()
                lag.reset()
                if hooks.on_window_start is not None:
                    await hooks.on_window_start()
                window_started = time.perf_counter()
                cpu_started = time.process_time()
                if options.duration is None:
                    await stop.wait()
                else:
                    await _wait_or_stop(stop, options.duration)
                # Snapshot before cancelling, so teardown noise stays out of the numbers.
                window = time.perf_counter() - window_started
                cpu = time.process_time() - cpu_started
                latency = recorder.summary()
                histogram = recorder.to_dict()
                actions = dict(recorder.actions)
                loop_lag = lag.summary()
                if hooks.on_window_end is not None:
                    await hooks.on_window_end()
                for task in background:
                    task.cancel()
    finally:
        await _close_all(chargers, max(50, options.ramp_concurrency))

    return FleetReport(
        mode=options.mode,
        chargers=len(chargers),
        connected=connected,
        connect_failures=len(chargers) - connected,
        connect_errors=dict(counters.connect_errors),
        connect_seconds=round(connect_seconds, 3),
        window_seconds=round(window, 3),
        messages=latency.count,
        msgs_per_s=round(latency.count / window, 1) if window >= 0.1 else 0.0,
        latency=latency,
        actions=actions,
        loop_lag=loop_lag,
        client_cpu_seconds=round(cpu, 3),
        # A near-zero window (idle mode) would turn scheduler noise into a percentage.
        client_cpu_percent=round(100.0 * cpu / window, 1) if window >= 0.1 else 0.0,
        offline_events=counters.offline_events,
        offline_queued=sum(c.offline_queued for c in chargers),
        offline_flushed=sum(c.offline_flushed for c in chargers),
        offline_dropped=sum(c.offline_dropped for c in chargers),
        reconnects=counters.reconnects,
        histogram=histogram,
    )
