"""Each process's operations endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on a small
HTTP server of its own, and its address in the ``OCPP_OPS`` key-value bucket.

Every role (``hub gateway``, ``hub fanout``, ``hub project``, ``hub supervise``, and the
gateway inside ``hub up``) serves one, on ``--metrics-host``/``--metrics-port``
(``HUB_METRICS_HOST``/``HUB_METRICS_PORT``; port 0, the default, picks a free one). The
server starts before the role connects to NATS, so ``/readyz`` can say that it waits for
NATS rather than not answering at all.

The process records where it serves in the bucket ``OCPP_OPS``, one key per process,
refreshed every ``REFRESH_S``; the bucket forgets a key ``TTL_S`` after its last refresh,
so a process that died leaves nothing for long. ``hub status`` reads the bucket and asks
each process's ``/readyz``: it finds roles on any machine that shares the NATS.

The ops server has a NATS connection of its own: the role's may not exist yet (it is still
connecting), and a fan-out's lives inside its web app.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Final

import aiohttp
import msgspec
import nats.errors
import nats.js.errors
import structlog
from aiohttp import web
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from hub.bus import Connection, EventStore, connect
from hub.config import Settings
from hub.follower import Follower
from hub.lease import KvLease
from hub.metrics import Collected, Histogram, Role, family, labelled, sample, watch_loop_lag
from hub.tasks import stop_task

log = structlog.get_logger("hub.ops")

BUCKET: Final = "OCPP_OPS"
TTL_S: Final = 30.0
REFRESH_S: Final = 10.0
# How long /readyz waits for NATS to say whether the stream exists.
STREAM_CHECK_S: Final = 1.0
# What `hub status` waits for one process's /readyz.
ASK_WITHIN_S: Final = 3.0
# How long a role that started waits for its record to be written (its NATS is up by then).
RECORD_WITHIN_S: Final = 5.0
# Under `hub up`, a fixed HUB_METRICS_PORT is the gateway's; each child takes its own offset
# from it, so four processes on one machine never ask for one port.
PORT_OFFSETS: Final[dict[Role, int]] = {"gateway": 0, "fanout": 1, "project": 2, "supervise": 3}

_KEY_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_=-]")


def hub_version() -> str:
    try:
        return importlib.metadata.version("ocpp-hub")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def role_port(role: Role, base: int) -> int:
    """The ops port of ``role`` under ``hub up`` when the gateway's is ``base`` (0: any)."""
    return base + PORT_OFFSETS[role] if base else 0


class Lag(msgspec.Struct, frozen=True):
    events: int
    seconds: float


class _Process(msgspec.Struct, frozen=True, kw_only=True):
    """Which process: its role, its instance, the ocpp-hub version, the OCPP versions it
    allows (a gateway's; empty for the others)."""

    role: str
    instance: str
    version: str
    ocpp_versions: str = ""


class OpsRecord(_Process, frozen=True, kw_only=True):
    """What a process records in ``OCPP_OPS``: who it is and where it serves."""

    url: str
    host: str = ""
    pid: int = 0
    started_at: int = 0  # Unix ms


class Readiness(_Process, frozen=True, kw_only=True):
    """The body of ``/readyz``: 200 when ``ready``, 503 with the ``reasons`` otherwise."""

    ready: bool
    reasons: list[str] = []
    # By follower (or "projections"): how far behind the stream it is.
    lag: dict[str, Lag] = {}
    # A role with one writer among several (``hub supervise``, ``hub project``): "active"
    # while this process holds the lease, "standby" while it waits for it.
    lease: str = ""


# A readiness check: why the process is not ready (nothing when it is).
Check = Callable[[], Iterable[str]]
Families = Callable[[], Iterable[Metric]]


class Ops:
    """A process's metrics registry and readiness; ``serving_ops`` serves them."""

    def __init__(self, role: Role, settings: Settings, *, instance: str = "") -> None:
        self.role = role
        self.settings = settings
        self.instance = instance or _default_instance(role, settings)
        self.version = hub_version()
        self.ocpp_versions = settings.gateway.ocpp_versions if role == "gateway" else ""
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.loop_lag = Histogram()
        self.connection: Connection | None = None
        # Set once the role has started and serves; until then /readyz says it is starting.
        self.up = False
        # Set once the ops connection is up and the record was written (or failed to be).
        self.recorded = asyncio.Event()
        self.url = ""
        self._sources: list[Families] = [self._own]
        self._checks: list[Check] = []
        self._lags: dict[str, Callable[[], Lag]] = {}
        self._lease: KvLease | None = None
        self.registry.register(Collected(self._collect))

    @property
    def key(self) -> str:
        return f"{self.role}.{_KEY_UNSAFE.sub('_', self.instance)}"

    async def serving(self, within_s: float = RECORD_WITHIN_S) -> None:
        """The role has started. Waits, a bounded while, until the process is recorded, so
        that ``hub status`` finds it as soon as the role says it is ready."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self.recorded.wait()
        self.up = True

    # -- what roles add ------------------------------------------------------------------------

    def collect(self, families: Families) -> None:
        """``families`` is called on each scrape; it renders counts kept elsewhere."""
        self._sources.append(families)

    def check(self, check: Check) -> None:
        self._checks.append(check)

    def lag(self, name: str, lag: Callable[[], Lag]) -> None:
        """A lag ``/readyz`` and ``hub status`` report under ``name``."""
        self._lags[name] = lag

    def leased(self, lease: KvLease) -> None:
        """Whether this process holds ``lease`` (active) or waits for it (standby), in the
        metrics and ``/readyz``. A standby is ready: it is what it should be."""
        self._lease = lease
        self.collect(lambda: [sample("ocpp_hub_lease_held", float(lease.holds()))])

    def follow(self, follower: Follower) -> None:
        """A follower's lag in the metrics and ``/readyz``; not ready until it caught up
        and while it is more than ``ready_max_lag_events`` behind."""
        bound = self.settings.ops.ready_max_lag_events
        name = follower.name
        self.lag(name, lambda: Lag(follower.pending, round(follower.lag_seconds, 3)))

        def check() -> Iterator[str]:
            if not follower.caught_up.is_set():
                yield f"{name}: catching up with the stream ({follower.pending} events to go)"
            elif follower.pending > bound:
                yield f"{name}: {follower.pending} events behind (more than {bound})"

        def families() -> Iterator[Metric]:
            yield labelled("ocpp_hub_follower_lag_events", {(name,): follower.pending})
            yield labelled("ocpp_hub_follower_lag_seconds", {(name,): follower.lag_seconds})
            yield labelled("ocpp_hub_follower_seq", {(name,): follower.seq})
            yield labelled("ocpp_hub_follower_lost_deliveries_total", {(name,): follower.lost})

        self.check(check)
        self.collect(families)

    def watch_store(self, store: EventStore) -> None:
        def families() -> Iterator[Metric]:
            yield store.puback_wait.family("ocpp_hub_puback_wait_seconds")
            yield sample("ocpp_hub_storage_stall_seconds_total", store.stall_seconds)
            yield sample("ocpp_hub_storage_stalled", float(store.stalled))
            yield sample("ocpp_hub_store_retries_total", store.retries)

        def check() -> Iterator[str]:
            if store.stalled:
                yield "storage: events wait for NATS"

        self.collect(families)
        self.check(check)

    # -- rendering -----------------------------------------------------------------------------

    def _own(self) -> Iterator[Metric]:
        info = family("ocpp_hub_info")
        info.add_metric([self.role, self.version, self.ocpp_versions], 1)
        yield info
        yield self.loop_lag.family("ocpp_hub_event_loop_lag_seconds")
        connected = self.connection is not None and self.connection.client.is_connected
        yield sample("ocpp_hub_nats_connected", float(connected))

    def _collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def readiness(self) -> Readiness:
        reasons = await self._nats_reasons()
        if not self.up:
            reasons.append(f"{self.role}: starting")
        for check in self._checks:
            reasons.extend(check())
        return Readiness(
            ready=not reasons,
            role=self.role,
            instance=self.instance,
            version=self.version,
            ocpp_versions=self.ocpp_versions,
            reasons=reasons,
            lag={name: lag() for name, lag in self._lags.items()},
            lease=self._lease_state(),
        )

    def _lease_state(self) -> str:
        if self._lease is None:
            return ""
        return "active" if self._lease.holds() else "standby"

    async def _nats_reasons(self) -> list[str]:
        connection = self.connection
        if connection is None or not connection.client.is_connected:
            return ["nats: not connected"]
        stream = self.settings.stream.name
        try:
            async with asyncio.timeout(STREAM_CHECK_S):
                await connection.js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            return [f"nats: stream {stream} does not exist"]
        except (TimeoutError, nats.errors.Error) as error:
            return [f"nats: no answer about stream {stream} ({type(error).__name__})"]
        return []

    def record(self) -> OpsRecord:
        return OpsRecord(
            role=self.role,
            instance=self.instance,
            url=self.url,
            version=self.version,
            ocpp_versions=self.ocpp_versions,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=int(time.time() * 1000),
        )


def _default_instance(role: Role, settings: Settings) -> str:
    if role == "gateway" and settings.gateway.gateway_id:
        return settings.gateway.gateway_id
    return f"{socket.gethostname()}-{os.getpid()}"


# -- the HTTP side -------------------------------------------------------------------------------

_OPS: Final = web.AppKey("ops", Ops)
_json: Final = msgspec.json.Encoder()


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[_OPS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def _healthz(request: web.Request) -> web.Response:
    # Answered at all means the event loop runs; nothing here waits on anything else.
    ops = request.app[_OPS]
    return web.json_response({"status": "ok", "role": ops.role, "instance": ops.instance})


async def _readyz(request: web.Request) -> web.Response:
    readiness = await request.app[_OPS].readiness()
    return web.Response(
        body=_json.encode(readiness),
        status=200 if readiness.ready else 503,
        content_type="application/json",
    )


def _advertised(host: str) -> str:
    # A wildcard bind is reached by the machine's name from elsewhere.
    return socket.gethostname() if host in ("", "0.0.0.0", "::") else host


@contextlib.asynccontextmanager
async def serving_ops(
    role: Role, settings: Settings, nats_url: str, *, port: int | None = None
) -> AsyncIterator[Ops]:
    """``role``'s ops server, listening before anything waits on NATS, and recorded in
    ``OCPP_OPS`` once NATS answers; ``port`` overrides the settings' (``hub up``'s gateway)."""
    ops = Ops(role, settings)
    app = web.Application()
    app[_OPS] = ops
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    tasks: list[asyncio.Task[None]] = []
    try:
        host = settings.ops.host
        site = web.TCPSite(runner, host, settings.ops.port if port is None else port)
        await site.start()
        bound = int(runner.addresses[0][1])
        ops.url = f"http://{_advertised(host)}:{bound}"
        log.info("ops.listening", role=role, url=ops.url)
        tasks = [
            asyncio.create_task(watch_loop_lag(ops.loop_lag), name="ops.loop_lag"),
            asyncio.create_task(_recorded(ops, nats_url), name="ops.record"),
        ]
        yield ops
    finally:
        for task in tasks:
            await stop_task(task)
            if not task.cancelled():
                task.exception()  # what stopped it is no news at shutdown
        if ops.connection is not None:
            await _forget(ops)
            await ops.connection.close(grace=1.0)
        await runner.cleanup()


async def _bucket(connection: Connection, replicas: int) -> KeyValue:
    config = KeyValueConfig(
        bucket=BUCKET, history=1, ttl=TTL_S, storage=StorageType.MEMORY, replicas=replicas
    )
    try:
        return await connection.js.create_key_value(config)
    except BadRequestError:
        # It exists with other limits (another version made it): it still holds addresses.
        return await connection.js.key_value(BUCKET)


async def _recorded(ops: Ops, nats_url: str) -> None:
    """Connects (waiting for NATS as long as it takes), then keeps the record fresh."""
    ops.connection = connection = await connect(nats_url, name=f"hub-ops-{ops.role}")
    record = msgspec.json.encode(ops.record())
    kv: KeyValue | None = None
    failing = False
    while True:
        try:
            if kv is None:
                kv = await _bucket(connection, ops.settings.stream.replicas)
            await kv.put(ops.key, record)
            failing = False
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as error:
            # One line per outage: the next refresh tries again.
            if not failing:
                log.warning("ops.record_failed", key=ops.key, error=str(error) or repr(error))
            failing = True
        ops.recorded.set()
        await asyncio.sleep(REFRESH_S)


async def _forget(ops: Ops) -> None:
    """A process that stops takes its record with it; one that dies leaves it to the TTL."""
    assert ops.connection is not None
    if not ops.connection.client.is_connected:
        return  # nothing to wait for: NATS is gone, the TTL will do
    with contextlib.suppress(TimeoutError, nats.errors.Error, nats.js.errors.Error):
        async with asyncio.timeout(1.0):
            kv = await ops.connection.js.key_value(BUCKET)
            await kv.purge(ops.key)


# -- hub status ----------------------------------------------------------------------------------


class RoleStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One process as ``hub status`` saw it: its record, and its ``/readyz`` if it answered."""

    record: OpsRecord
    readiness: Readiness | None = None
    error: str = ""


async def recorded_roles(js: JetStreamContext) -> list[OpsRecord]:
    """Every process recorded in ``OCPP_OPS`` now, by role and instance."""
    try:
        kv = await js.key_value(BUCKET)
        keys = await kv.keys()
    except (nats.js.errors.NotFoundError, nats.js.errors.NoKeysError):
        return []
    records = []
    for key in keys:
        with contextlib.suppress(nats.js.errors.NotFoundError, msgspec.DecodeError):
            entry = await kv.get(key)
            if entry.value:
                records.append(msgspec.json.decode(entry.value, type=OpsRecord))
    order = list(PORT_OFFSETS)
    return sorted(
        records, key=lambda r: (order.index(r.role) if r.role in order else len(order), r.instance)
    )


async def ask(record: OpsRecord, session: aiohttp.ClientSession) -> RoleStatus:
    """``record``'s process, as its ``/readyz`` answers within ``ASK_WITHIN_S``."""
    try:
        async with (
            asyncio.timeout(ASK_WITHIN_S),
            session.get(f"{record.url}/readyz") as response,
        ):
            body = await response.read()
        return RoleStatus(record=record, readiness=msgspec.json.decode(body, type=Readiness))
    except (TimeoutError, aiohttp.ClientError, msgspec.DecodeError) as error:
        return RoleStatus(record=record, error=str(error) or type(error).__name__)


async def role_statuses(js: JetStreamContext) -> list[RoleStatus]:
    records = await recorded_roles(js)
    if not records:
        return []
    async with aiohttp.ClientSession() as session:
        return list(await asyncio.gather(*(ask(record, session) for record in records)))


def roles_text(statuses: list[RoleStatus]) -> str:
    """``hub status``'s table of processes: one line each, then why one is not ready."""
    if not statuses:
        return f"roles          none recorded in {BUCKET}"
    rows = [("role", "instance", "health", "lease", "lag", "version", "ops")]
    why: list[str] = []
    for status in statuses:
        record, readiness = status.record, status.readiness
        version = record.version + (
            f", OCPP {record.ocpp_versions}" if record.ocpp_versions else ""
        )
        if readiness is None:
            health, lease, lag = "unreachable", "-", "-"
            why.append(f"{record.role} {record.instance}: {status.error}")
        else:
            health = "ready" if readiness.ready else "not ready"
            lease = readiness.lease or "-"
            lag = (
                ", ".join(
                    f"{name} {value.events} events {value.seconds:.1f} s"
                    for name, value in readiness.lag.items()
                )
                or "-"
            )
            why.extend(f"{record.role} {record.instance}: {r}" for r in readiness.reasons)
        rows.append((record.role, record.instance, health, lease, lag, version, record.url))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]]
        )
        for row in rows
    ]
    return "\n".join([*lines, *(f"  {line}" for line in why)])


def all_ready(statuses: list[RoleStatus]) -> bool:
    return all(s.readiness is not None and s.readiness.ready for s in statuses)
