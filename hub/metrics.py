"""Prometheus metrics: every name a hub process exports, counted in place, rendered on scrape.

A frame's counters are a dict entry and an int each (``Counts``, ``Histogram``): the hot path
pays no lock, no label lookup and no object per sample. ``prometheus_client`` only sees them
when ``/metrics`` is scraped, through a ``Collected`` collector on the process's own
registry (``hub.ops``), so several roles in one test process never share a metric.

``METRICS`` is the one list of names, types and labels: ``family`` refuses any other name,
docs/operations.md lists exactly these (a test holds the two together), and the Grafana
dashboards are built from them.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final, Literal, NamedTuple

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

Kind = Literal["counter", "gauge", "histogram"]
Role = Literal["gateway", "fanout", "project", "supervise"]

ROLES: Final[tuple[Role, ...]] = ("gateway", "fanout", "project", "supervise")
# Processes that store events (an EventStore) and those that follow the stream (a Follower).
_STORING: Final[tuple[Role, ...]] = ("gateway", "supervise")
_FOLLOWING: Final[tuple[Role, ...]] = ("gateway", "fanout", "supervise")

# A bounded label's value when what was seen is none of the known ones (a charger may send
# any action or error code: each new string would be a new time series).
OTHER: Final = "other"


class Spec(NamedTuple):
    name: str
    kind: Kind
    labels: tuple[str, ...]
    roles: tuple[Role, ...]
    help: str


METRICS: Final[tuple[Spec, ...]] = (
    # -- every process
    Spec(
        "ocpp_hub_info",
        "gauge",
        ("role", "version", "ocpp_versions"),
        ROLES,
        "Always 1: the process's role, the ocpp-hub version, the OCPP versions it allows",
    ),
    Spec(
        "ocpp_hub_event_loop_lag_seconds",
        "histogram",
        (),
        ROLES,
        "How much later than planned the event loop ran a timer",
    ),
    Spec(
        "ocpp_hub_nats_connected",
        "gauge",
        (),
        ROLES,
        "1 while the process's NATS connection is up",
    ),
    Spec("process_cpu_seconds_total", "counter", (), ROLES, "CPU time (user and system)"),
    Spec("process_resident_memory_bytes", "gauge", (), ROLES, "Resident memory"),
    Spec("process_virtual_memory_bytes", "gauge", (), ROLES, "Virtual memory"),
    Spec("process_start_time_seconds", "gauge", (), ROLES, "Start time, Unix seconds"),
    Spec("process_open_fds", "gauge", (), ROLES, "Open file descriptors"),
    Spec("process_max_fds", "gauge", (), ROLES, "Limit of open file descriptors"),
    # -- the gateway
    Spec(
        "ocpp_hub_chargers_connected",
        "gauge",
        ("ocpp_version",),
        ("gateway",),
        "Chargers connected to this gateway",
    ),
    Spec(
        "ocpp_hub_frames_total",
        "counter",
        ("ocpp_version", "action", "outcome"),
        ("gateway",),
        "Frames received from chargers, by what the gateway made of them",
    ),
    Spec(
        "ocpp_hub_frame_store_seconds",
        "histogram",
        (),
        ("gateway",),
        "From taking up a received frame to its events stored (PubAck), before the answer",
    ),
    Spec(
        "ocpp_hub_callerrors_total",
        "counter",
        ("direction", "code"),
        ("gateway",),
        "CALLERRORs sent to chargers (out) and received from them (in)",
    ),
    Spec(
        "ocpp_hub_commands_total",
        "counter",
        ("action", "outcome"),
        ("gateway",),
        "CALLs the hub sent to chargers (commands), by outcome",
    ),
    # -- processes that store events
    Spec(
        "ocpp_hub_puback_wait_seconds",
        "histogram",
        (),
        _STORING,
        "From publishing a batch of events to JetStream's last PubAck for it",
    ),
    Spec(
        "ocpp_hub_storage_stall_seconds_total",
        "counter",
        (),
        _STORING,
        "Time during which some event waited for NATS to come back",
    ),
    Spec("ocpp_hub_storage_stalled", "gauge", (), _STORING, "1 while storing events stalls"),
    Spec(
        "ocpp_hub_store_retries_total",
        "counter",
        (),
        _STORING,
        "Attempts to store events that failed and were retried",
    ),
    # -- processes that follow the stream
    Spec(
        "ocpp_hub_follower_lag_events",
        "gauge",
        ("follower",),
        _FOLLOWING,
        "Events under the follower's subjects not folded yet",
    ),
    Spec(
        "ocpp_hub_follower_lag_seconds",
        "gauge",
        ("follower",),
        _FOLLOWING,
        "Age of the last event folded while more wait (0 when caught up)",
    ),
    Spec(
        "ocpp_hub_follower_seq",
        "gauge",
        ("follower",),
        _FOLLOWING,
        "Stream sequence of the last event folded",
    ),
    Spec(
        "ocpp_hub_follower_lost_deliveries_total",
        "counter",
        ("follower",),
        _FOLLOWING,
        "Deliveries lost on the way and fetched again from a new consumer",
    ),
    Spec(
        "ocpp_hub_lease_held",
        "gauge",
        (),
        ("project", "supervise"),
        "1 while this process holds its role's lease (active), 0 while standby",
    ),
    # -- the projections
    Spec(
        "ocpp_hub_projection_lag_events",
        "gauge",
        (),
        ("project",),
        "Events in the stream not yet in the ClickHouse tables",
    ),
    Spec(
        "ocpp_hub_projection_lag_seconds",
        "gauge",
        (),
        ("project",),
        "Age of the oldest event not yet in the tables",
    ),
    Spec(
        "ocpp_hub_projection_seq",
        "gauge",
        (),
        ("project",),
        "Stream sequence up to which the tables are complete",
    ),
    Spec(
        "ocpp_hub_projection_stalled",
        "gauge",
        (),
        ("project",),
        "1 while the backend keeps failing",
    ),
    Spec(
        "ocpp_hub_projection_refused_rows_total",
        "counter",
        (),
        ("project",),
        "Rows the backend refused for their content (in ocpp.projection_errors)",
    ),
    # -- the UI fan-out
    Spec("ocpp_hub_ui_clients", "gauge", (), ("fanout",), "UI WebSocket clients connected"),
    Spec(
        "ocpp_hub_ui_queue_drops_total",
        "counter",
        ("reason",),
        ("fanout",),
        "UI messages a client's queue dropped: merged into a newer one (coalesced), or "
        "discarded with a client closed as too slow (too_slow)",
    ),
    Spec(
        "ocpp_hub_ui_slow_client_closes_total",
        "counter",
        (),
        ("fanout",),
        "UI clients closed (4000) for falling too far behind",
    ),
    # -- the supervisor
    Spec(
        "ocpp_hub_supervisor_alerts_total",
        "counter",
        ("kind",),
        ("supervise",),
        "Integrity anomalies this supervisor detected and stored (integrity.detected)",
    ),
)

_BY_NAME: Final[Mapping[str, Spec]] = {spec.name: spec for spec in METRICS}

# Seconds: from half a millisecond (a PubAck on an idle local NATS) to a stalled store.
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def names_for(role: Role) -> frozenset[str]:
    """The names a process of ``role`` exports."""
    return frozenset(spec.name for spec in METRICS if role in spec.roles)


def family(name: str) -> CounterMetricFamily | GaugeMetricFamily:
    """An empty family of the counter or gauge ``name`` (KeyError for a name not in
    ``METRICS``)."""
    spec = _BY_NAME[name]
    labels = list(spec.labels)
    if spec.kind == "counter":
        return CounterMetricFamily(name, spec.help, labels=labels)
    if spec.kind == "gauge":
        return GaugeMetricFamily(name, spec.help, labels=labels)
    raise ValueError(f"{name} is a {spec.kind}")


def sample(name: str, value: float) -> Metric:
    """A family of one unlabelled counter or gauge sample."""
    metric = family(name)
    metric.add_metric([], value)
    return metric


def labelled(name: str, counts: Mapping[tuple[str, ...], float]) -> Metric:
    """A family with one sample per label tuple in ``counts``."""
    metric = family(name)
    for labels, value in counts.items():
        metric.add_metric(list(labels), value)
    return metric


def bounded(value: str, known: frozenset[str]) -> str:
    return value if value in known else OTHER


class Counts:
    """Counters by label tuple, counted in place: ``counts.add(key)``."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict[tuple[str, ...], int] = {}

    def add(self, key: tuple[str, ...], amount: int = 1) -> None:
        values = self.values
        values[key] = values.get(key, 0) + amount


class Histogram:
    """Observations in buckets: one bisect and two additions each; cumulated on scrape."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self._bounds = tuple(bounds)
        # One more than the bounds: what is above the largest goes to +Inf only.
        self.counts = [0] * (len(self._bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect.bisect_left(self._bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def family(self, name: str) -> Metric:
        spec = _BY_NAME[name]
        if spec.kind != "histogram":
            raise ValueError(f"{name} is a {spec.kind}")
        metric = HistogramMetricFamily(name, spec.help, labels=[])
        cumulative = list(itertools.accumulate(self.counts))
        buckets = [
            (str(bound), float(count))
            for bound, count in zip(self._bounds, cumulative[:-1], strict=True)
        ]
        buckets.append(("+Inf", float(cumulative[-1])))
        metric.add_metric([], buckets, self.total)
        return metric


class Collected(Collector):
    """A collector whose families ``collect`` makes on each scrape."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield from self._collect()

    def describe(self) -> list[Metric]:
        # Nothing up front: the registry must not run ``collect`` when it is registered.
        return []


LOOP_LAG_EVERY_S: Final = 0.25


async def watch_loop_lag(histogram: Histogram, every_s: float = LOOP_LAG_EVERY_S) -> None:
    """Observes, every ``every_s``, how late the loop woke a sleeper: what any ready task
    waits at that moment. Four wake-ups a second, one observation each."""
    loop = asyncio.get_running_loop()
    while True:
        planned = loop.time() + every_s
        await asyncio.sleep(every_s)
        histogram.observe(max(0.0, loop.time() - planned))
