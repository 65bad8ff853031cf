"""``hub gateway``, ``hub project`` and ``hub supervise``: the gateway, the projections and the
supervisor, each a role that runs in a process of its own against a NATS URL (``hub fanout``
is the fourth). ``hub up`` runs the gateway in its own process and starts one child of each
other role (``hub.children``) beside it. Several gateways may run side by side against one
NATS; each takes its own gateway id.

Both only follow the stream and write back to it (rows to ClickHouse, derived events and
commands to NATS); neither answers a charger. In the gateway's process their folds and
chDB's inserts took turns with the gateway on one GIL: with 1,000 chargers the hub's
processes used 95 % CPU of the machine's 200 %, and answered barely more MeterValues per
second than a CSMS that keeps nothing. As children they run beside it.

chDB allows one process per data path, so it is ``hub project`` that answers ``hub query``,
``hub replay`` and ``hub status`` (on their NATS subjects) while the hub runs.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Final

from prometheus_client.core import Metric

from hub.bus import event_backbone
from hub.children import ChildProcess, hub_command, until_stopped
from hub.config import Settings
from hub.gc_policy import gc_policy
from hub.metrics import Role, labelled, sample
from hub.nats_server import redacted
from hub.ops import Lag, Ops, serving_ops
from hub.runtime import running_gateway, running_hub_url
from hub.supervisor.service import running_supervisor
from projections.fold_process import Spare
from projections.runner import Runner
from projections.service import leased_projections


@contextlib.asynccontextmanager
async def _gateway(settings: Settings, nats_url: str, ops: Ops) -> AsyncIterator[str]:
    # SIGTERM drains the gateway within the grace an orchestrator is told to allow.
    async with running_gateway(
        settings, nats_url, close_grace=settings.shutdown_grace_s, ops=ops
    ) as gateway:
        yield f"ws://{settings.gateway.host}:{gateway.port}/ocpp/{{chargePointId}} "


@contextlib.asynccontextmanager
async def _project(settings: Settings, nats_url: str, ops: Ops) -> AsyncIterator[str]:
    async with (
        Spare() as spare,
        leased_projections(settings, nats_url, spare=spare) as projecting,
    ):
        ops.leased(projecting.lease)
        watch_projections(
            ops, lambda: None if projecting.active is None else projecting.active.runner
        )
        yield ""


def watch_projections(ops: Ops, running: Callable[[], Runner | None]) -> None:
    """The projections' lag and stalls in ``ops``: not ready while the runner has not caught
    up, is stalled, or is more than ``ready_max_lag_events`` behind. A standby (no runner)
    has none of these."""
    bound = ops.settings.ops.ready_max_lag_events

    def families() -> Iterator[Metric]:
        runner = running()
        if runner is None:
            return
        yield sample("ocpp_hub_projection_lag_events", runner.lag_events)
        yield sample("ocpp_hub_projection_lag_seconds", runner.lag_seconds)
        yield sample("ocpp_hub_projection_seq", runner.projected_seq)
        yield sample("ocpp_hub_projection_stalled", float(runner.health.stalled.is_set()))
        yield sample("ocpp_hub_projection_refused_rows_total", runner.health.refused_rows)

    def check() -> Iterator[str]:
        runner = running()
        if runner is None:
            return
        if runner.health.stalled.is_set():
            yield f"projections: stalled ({runner.health.last_error[:200]})"
        elif not runner.ready.is_set():
            yield "projections: catching up with the stream"
        elif runner.lag_events > bound:
            yield f"projections: {runner.lag_events} events behind (more than {bound})"

    def lag() -> Lag:
        runner = running()
        return (
            Lag(0, 0.0) if runner is None else Lag(runner.lag_events, round(runner.lag_seconds, 3))
        )

    ops.collect(families)
    ops.check(check)
    ops.lag("projections", lag)


@contextlib.asynccontextmanager
async def _supervise(settings: Settings, nats_url: str, ops: Ops) -> AsyncIterator[str]:
    async with (
        event_backbone(settings, nats_url, name="hub-supervisor") as (connection, store),
        running_supervisor(connection, store, settings) as service,
    ):
        ops.watch_store(store)
        if service.lease is not None:
            ops.leased(service.lease)
        if service.following is not None:
            ops.follow(service.following)
        ops.collect(lambda: [labelled("ocpp_hub_supervisor_alerts_total", service.alerts.values)])
        yield ""


# A role: what runs in its process while it is up, its metrics and readiness in the ops
# given; it yields what its ready line tells.
Run = Callable[[Settings, str, Ops], contextlib.AbstractAsyncContextManager[str]]

ROLES: Final[dict[Role, Run]] = {"gateway": _gateway, "project": _project, "supervise": _supervise}


def ready(role: str) -> str:
    return f"{role} ready: "


def enabled(settings: Settings) -> list[Role]:
    """The roles ``hub up`` starts as children: those its settings leave on."""
    on: dict[Role, bool] = {
        "project": settings.projections.enabled,
        "supervise": settings.supervisor.enabled,
    }
    return [role for role, wanted in on.items() if wanted]


async def role_main(role: Role, settings: Settings, nats_url: str) -> int:
    async with (
        until_stopped() as stop,
        gc_policy(),
        serving_ops(role, settings, nats_url) as ops,
        ROLES[role](settings, nats_url, ops) as where,
    ):
        await ops.serving()
        print(f"{ready(role)}{where}nats {redacted(nats_url)} ops {ops.url}", flush=True)
        await stop.wait()
    return 0


async def role_command(
    role: Role, settings: Settings, main: Callable[[Settings, str], Awaitable[int]] | None = None
) -> int:
    """``hub ROLE``: HUB_NATS_URL, or the NATS of a hub running on this data directory, then
    ``main`` (``hub fanout`` brings its own), else the role's part of ``ROLES``."""
    url = await running_hub_url(settings)
    if not url:
        print(
            f"hub: {role} needs a NATS with the event stream: set HUB_NATS_URL (or --nats-url), "
            "or run `hub up` on this data directory",
            file=sys.stderr,
        )
        return 2
    if main is not None:
        return await main(settings, url)
    return await role_main(role, settings, url)


def role_children(settings: Settings, nats_url: str) -> list[ChildProcess]:
    """For ``hub up``: one child per enabled role."""

    def child(role: Role) -> ChildProcess:
        def command(ready_line: str) -> Sequence[str]:
            del ready_line  # a restarted child needs nothing from the last one
            return hub_command(role, settings)

        nice = settings.projections.nice if role == "project" else 0
        return ChildProcess(role, command, ready(role), nats_url, nice=nice)

    return [child(role) for role in enabled(settings)]
