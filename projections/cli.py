"""``hub query``, ``hub replay``, ``hub status``, ``hub tariffs``, and the projections inside
``hub up``."""

from __future__ import annotations

import argparse
import getpass
import sys
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Final

import msgspec
import nats.errors

from hub.api.money_rules import (
    Invalid,
    Origin,
    TariffBody,
    add_limit_flags,
    body_from,
    effective_from_ms,
    tariff_set,
)
from hub.config import Settings
from hub.follower import fold_once
from hub.nats_server import redacted, servers
from hub.ops import all_ready, role_statuses, roles_text
from hub.runtime import admin_backbone, running_hub_url
from projections.backends import BackendError, open_backend
from projections.query import FORMATS, QueryRefused, QueryReply, QueryRequest, run_query
from projections.replay import Progress, failure_text, replay, tables_of
from projections.schema import GROUPS, check_database
from projections.service import (
    QUERY_SUBJECT,
    REPLAY_SUBJECT,
    STATUS_SUBJECT,
    ReplayRequest,
    Status,
)
from schemas.events import Event, SessionLimits, TariffSet

COMMANDS: Final = frozenset({"query", "replay", "tariffs", "status"})
_STATUS_TIMEOUT_S: Final = 10.0
_QUERY_TIMEOUT_S: Final = 60.0


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    query = commands.add_parser(
        "query", parents=[common], help="read-only SQL on the projections (ClickHouse/chDB)"
    )
    query.add_argument("sql")
    query.add_argument("--format", choices=sorted(FORMATS), default="table")

    replay_parser = commands.add_parser(
        "replay", parents=[common], help="rebuild projections from the stream, then swap them in"
    )
    replay_parser.add_argument(
        "--projection",
        action="append",
        default=[],
        metavar="NAME",
        help=f"repeatable; one of {', '.join(GROUPS)} (default: all)",
    )
    replay_parser.add_argument("--from-seq", type=int, default=1, help="keep rows below N")

    status = commands.add_parser(
        "status",
        parents=[common],
        help="each process's health, lag and versions; how far the projections are behind",
    )
    status.add_argument("--json", action="store_true", help="the hub's answer as JSON")

    tariffs = commands.add_parser("tariffs", help="prices that billing applies")
    tariff_commands = tariffs.add_subparsers(dest="action", required=True)
    set_parser = tariff_commands.add_parser(
        "set", parents=[common], help="put a tariff in force (an audited event)"
    )
    set_parser.add_argument("tariff_id")
    set_parser.add_argument("--currency", default="EUR")
    set_parser.add_argument("--per-kwh", default="0", help="price per kWh, e.g. 0.35")
    set_parser.add_argument("--per-minute", default="0", help="price per minute plugged in")
    set_parser.add_argument("--session-fee", default="0", help="fixed price per session")
    set_parser.add_argument(
        "--idle-per-minute", default="0", help="price per minute plugged in after charging ended"
    )
    set_parser.add_argument(
        "--idle-grace-minutes", type=int, default=0, help="idle minutes not billed"
    )
    add_limit_flags(set_parser)
    set_parser.add_argument(
        "--band",
        action="append",
        default=[],
        metavar="HH:MM-HH:MM=PER_KWH[/PER_MINUTE]",
        help="time-of-day prices (UTC), repeatable, e.g. 22:00-06:00=0.20/0",
    )
    set_parser.add_argument("--charger", default="", help="only this charger (default: all)")
    set_parser.add_argument("--effective-from", default="", help="ISO 8601; default: now")
    tariff_commands.add_parser("list", parents=[common], help="tariffs recorded so far")


def _band(spec: str) -> SimpleNamespace:
    window, sep, prices = spec.partition("=")
    start, dash, end = window.partition("-")
    if not sep or not dash:
        raise ValueError(f"--band {spec!r}: expected HH:MM-HH:MM=PER_KWH[/PER_MINUTE]")
    per_kwh, _, per_minute = prices.partition("/")
    return SimpleNamespace(
        start=start, end=end, per_kwh=per_kwh or "0", per_minute=per_minute or "0"
    )


def _flag(field: str, args: argparse.Namespace) -> str:
    """A body field's path (``bands[1].per_kwh``) as the operator typed it."""
    if field.startswith("bands["):
        return f"--band {args.band[int(field[6 : field.index(']')])]!r}"
    if field == "tariff_id":
        return f"tariff id {args.tariff_id!r}"
    name = {"charge_point_id": "charger"}.get(field, field.removeprefix("limits."))
    return "--" + name.replace("_", "-")


def tariff_event(args: argparse.Namespace, now_ms: int) -> TariffSet:
    """The event ``hub tariffs set`` records, by the rules ``PUT /api/v1/tariffs/{id}``
    applies (``hub.api.money_rules``); ``ValueError`` names the bad argument."""
    limits = SimpleNamespace(
        max_energy_wh=args.max_energy_wh, max_duration_s=args.max_duration_s, max_cost=args.max_cost
    )
    fields = SimpleNamespace(
        charge_point_id=args.charger,
        currency=args.currency.upper(),
        per_kwh=args.per_kwh,
        per_minute=args.per_minute,
        session_fee=args.session_fee,
        idle_per_minute=args.idle_per_minute,
        idle_grace_minutes=args.idle_grace_minutes,
        bands=[_band(spec) for spec in args.band],
        effective_from=args.effective_from or None,
        limits=limits,
    )
    try:
        body = body_from(TariffBody, fields)
        origin = Origin(uuid.uuid4().hex, now_ms, f"cli:{getpass.getuser()}")
        return tariff_set(args.tariff_id, body, effective_from_ms(body.effective_from), origin)
    except Invalid as error:
        raise ValueError(f"{_flag(error.field, args)}: {error.problem}") from None


def _print_progress(progress: Progress) -> None:
    width = 30
    share = progress.done / progress.total if progress.total else 1.0
    filled = int(width * share)
    bar = "#" * filled + "-" * (width - filled)
    line = (
        f"\r[{bar}] {share:6.1%} {progress.done}/{progress.total} events "
        f"{progress.events_per_s:,.0f} ev/s ETA {progress.eta_s:,.0f}s"
    )
    print(line, end="\n" if progress.finished else "", file=sys.stderr, flush=True)


async def _query(settings: Settings, args: argparse.Namespace) -> int:
    db = check_database(settings.projections.database)
    del db
    if not settings.projections.clickhouse_url:
        url = await running_hub_url(settings)
        if url:
            answered = await _ask_hub(url, args.sql, args.format)
            if answered is not None:
                return answered
    backend = open_backend(settings.projections.clickhouse_url, settings.data_dir)
    try:
        data = await run_query(backend, args.sql, args.format)
    except QueryRefused as error:
        print(f"hub: {error}", file=sys.stderr)
        return 2
    except BackendError as error:
        print(f"hub: query failed: {error}", file=sys.stderr)
        return 1
    finally:
        await backend.close()
    sys.stdout.write(data.decode(errors="replace"))
    return 0


async def _ask_hub(url: str, sql: str, fmt: str) -> int | None:
    """Ask the running hub, which owns chDB; None if no hub answers queries there."""
    client = await nats.connect(servers(url), name="hub-query", max_reconnect_attempts=0)
    try:
        request = msgspec.json.encode(QueryRequest(sql=sql, format=fmt))
        try:
            msg = await client.request(QUERY_SUBJECT, request, timeout=_QUERY_TIMEOUT_S)
        except nats.errors.NoRespondersError:
            return None
        except nats.errors.TimeoutError:
            print("hub: the hub did not answer the query in time", file=sys.stderr)
            return 1
    finally:
        await client.close()
    reply = msgspec.json.decode(msg.data, type=QueryReply)
    if not reply.ok:
        print(f"hub: {reply.error}", file=sys.stderr)
        return 2 if "read-only" in reply.error or "one statement" in reply.error else 1
    sys.stdout.write(reply.data)
    return 0


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    try:
        tables_of(args.projection)
    except ValueError as error:
        print(f"hub: {error}", file=sys.stderr)
        return 2
    if args.from_seq < 1:
        print("hub: --from-seq must be 1 or more", file=sys.stderr)
        return 2
    url = "" if settings.projections.clickhouse_url else await running_hub_url(settings)
    if url:
        answered = await _replay_in_hub(url, args)
        if answered is not None:
            return answered
    failed = False
    async with admin_backbone(settings) as (connection, _):
        backend = open_backend(settings.projections.clickhouse_url, settings.data_dir)
        try:
            await replay(
                backend,
                connection,
                database=check_database(settings.projections.database),
                stream=settings.stream.name,
                projections=args.projection,
                from_seq=args.from_seq,
                on_progress=_print_progress,
                spool_in=settings.data_dir,
            )
        except* Exception as errors:
            print(f"\nhub: replay failed: {failure_text(errors)}", file=sys.stderr)
            failed = True
        finally:
            await backend.close()
    return 1 if failed else 0


async def _replay_in_hub(url: str, args: argparse.Namespace) -> int | None:
    """Let the running hub replay (it owns chDB); progress comes back on an inbox."""
    client = await nats.connect(servers(url), name="hub-replay", max_reconnect_attempts=0)
    try:
        inbox = client.new_inbox()
        updates = await client.subscribe(inbox, max_msgs=0)
        request = ReplayRequest(
            projections=args.projection, from_seq=args.from_seq, progress_subject=inbox
        )
        try:
            await client.request(REPLAY_SUBJECT, msgspec.json.encode(request), timeout=10)
        except nats.errors.NoRespondersError:
            return None
        while True:
            try:
                msg = await updates.next_msg(timeout=120)
            except nats.errors.TimeoutError:
                print("\nhub: no progress from the hub for 120 s", file=sys.stderr)
                return 1
            progress = msgspec.json.decode(msg.data, type=Progress)
            if progress.error:
                print(f"\nhub: replay failed: {progress.error}", file=sys.stderr)
                return 1
            _print_progress(progress)
            if progress.finished:
                return 0
    finally:
        await client.close()


async def _tariffs(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "set":
        try:
            event = tariff_event(args, int(datetime.now(UTC).timestamp() * 1000))
        except ValueError as error:
            print(f"hub: {error}", file=sys.stderr)
            return 2
        async with admin_backbone(settings) as (_, store):
            await store.store([event])
        scope = event.charge_point_id or "all chargers"
        print(f"tariff {event.tariff_id} in force for {scope}")
        return 0
    found: list[TariffSet] = []

    def collect(event: Event, _: int) -> None:
        if isinstance(event, TariffSet):
            found.append(event)

    async with admin_backbone(settings) as (connection, _):
        await fold_once(
            connection, settings.stream.name, ("ev.admin.tariff.>",), collect, name="tariffs"
        )
    for tariff in found:
        effective = datetime.fromtimestamp(
            (tariff.effective_from or tariff.received_at) / 1000, UTC
        ).strftime("%Y-%m-%dT%H:%M:%SZ")
        bands = ",".join(f"{b.start}-{b.end}={b.per_kwh}/{b.per_minute}" for b in tariff.bands)
        idle = f"idle {tariff.idle_per_minute} after {tariff.idle_grace_minutes} min"
        print(
            f"{tariff.tariff_id}\t{tariff.charge_point_id or '*'}\t{effective}\t"
            f"{tariff.currency}\tkWh {tariff.per_kwh}\tmin {tariff.per_minute}\t"
            f"fee {tariff.session_fee}\t{idle}\t{bands or '-'}\t{_limits_text(tariff.limits)}"
        )
    return 0


def _limits_text(limits: SessionLimits | None) -> str:
    if limits is None:
        return "no limits"
    parts = [
        f"max {name} {value}"
        for name, value in (
            ("Wh", limits.max_energy_wh),
            ("s", limits.max_duration_s),
            ("cost", limits.max_cost),
        )
        if value is not None
    ]
    return ", ".join(parts) or "no limits"


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    """Ask the running hub's projections how far behind they are (``ctl.projections.status``)
    and every process recorded in ``OCPP_OPS`` whether it is ready (``/readyz``); exit 1 if
    no hub answers, the runner is stalled or a process is not ready, so scripts can alert."""
    url = await running_hub_url(settings)
    if not url:
        print("hub: no running hub found (start it with `hub up`)", file=sys.stderr)
        return 1
    client = await nats.connect(servers(url), name="hub-status", max_reconnect_attempts=0)
    status: Status | None = None
    try:
        try:
            msg = await client.request(STATUS_SUBJECT, b"", timeout=_STATUS_TIMEOUT_S)
            status = msgspec.json.decode(msg.data, type=Status)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            pass
        roles = await role_statuses(client.jetstream())
    finally:
        await client.close()
    if args.json:
        shown = msgspec.to_builtins(status) if status is not None else {}
        print(msgspec.json.encode({**shown, "roles": roles}).decode())
    else:
        print("\n".join([*([status_text(status)] if status else []), roles_text(roles)]))
    if status is None:
        print(
            f"hub: no projections answer at {redacted(url)} (HUB_PROJECTIONS=false?)",
            file=sys.stderr,
        )
        return 1
    return 1 if status.stalled or not all_ready(roles) else 0


def status_text(status: Status) -> str:
    """``hub status`` for people: one line per fact, the stall's cause when stalled."""
    lines = [
        f"backend        {status.backend}",
        f"projected seq  {status.projected_seq}",
        f"lag            {status.lag_events} events, {status.lag_seconds:.1f} s",
    ]
    if status.stalled:
        lines.append(
            f"stalled        yes: {status.retries} failed attempts, the latest "
            f"{status.last_error_age_s:.1f} s ago: {status.last_error}"
        )
    else:
        lines.append("stalled        no")
        if status.last_error:
            lines.append(f"last error     {status.last_error_age_s:.0f} s ago: {status.last_error}")
    lines.append(f"refused rows   {status.refused_rows} (in ocpp.projection_errors)")
    if status.last_refusal:
        lines.append(f"last refused   {status.last_refusal}")
    return "\n".join(lines)


async def main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        check_database(settings.projections.database)
    except ValueError as error:
        print(f"hub: HUB_CLICKHOUSE_DATABASE: {error}", file=sys.stderr)
        return 2
    if args.command == "query":
        return await _query(settings, args)
    if args.command == "replay":
        return await _replay(settings, args)
    if args.command == "status":
        return await _status(settings, args)
    return await _tariffs(settings, args)
