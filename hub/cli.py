"""``hub``: run the hub, manage chargers, id tags and wallets, simulate chargers."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import msgspec
import structlog
import uvloop

from hub import logs, roles
from hub.api import cli as api_cli
from hub.api.credentials import (
    Busy,
    NotRegistered,
    RegistrationBody,
    RotationBody,
    charger_accepted,
    registration,
    rotate,
    rotation_secret,
)
from hub.api.money_rules import (
    Conflict,
    CreditBody,
    Invalid,
    NoWallet,
    Origin,
    WalletBody,
    add_limit_flags,
    check_id_tag,
    limits_from_flags,
    wallet_configured,
    wallet_credited,
)
from hub.api.money_state import WALLET_SUBJECTS, WalletBook, iso
from hub.bus import Connection, EventStore
from hub.ca import DEFAULT_SUBJECT as DEFAULT_CA_SUBJECT
from hub.ca import CaExists, ca_dir, init_local_ca
from hub.children import supervised
from hub.clock import now_ms
from hub.config import (
    CONFIG_VARIABLE,
    ConfigFile,
    Settings,
    check_ocpp_versions,
    config_file,
    from_environment,
    with_client_ca,
    with_gateway_id,
)
from hub.domain.charger_ids import id_problem
from hub.domain.credentials import BadSecret
from hub.domain.security_profiles import BadRegistration
from hub.fanout import cli as fanout_cli
from hub.follower import Follower, fold_once
from hub.gc_policy import gc_policy
from hub.nats_server import kill_servers, redacted
from hub.ops import serving_ops
from hub.registry import REGISTRY_SUBJECTS, Registry, format_time, parse_time
from hub.runtime import (
    DataDirInUse,
    HubUnreachable,
    admin_backbone,
    data_dir_lock,
    nats_server_for,
    running_gateway,
)
from hub.subjects import opened_subject
from projections import cli as projections_cli
from schemas.events import (
    AdminEvent,
    ChargerConnected,
    ChargerUnregistered,
    Event,
    IdTagRemoved,
    IdTagUpserted,
    WalletConfigured,
    WalletCredited,
    WalletCreditKind,
)


def _common_flags() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-dir", type=Path, help="where embedded NATS keeps its data")
    parser.add_argument("--nats-url", help="use this NATS server instead of the embedded one")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error")
    parser.add_argument("--log-format", choices=["auto", "console", "json"], default=None)
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"TOML settings file (or {CONFIG_VARIABLE}); flags and HUB_* variables override it",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return _loaded(args)[0]


def _loaded(args: argparse.Namespace) -> tuple[Settings, ConfigFile | None]:
    """Flags over HUB_* variables over the settings file over the defaults."""
    config = config_file(getattr(args, "config", None))
    settings = from_environment(config=config)
    changes: dict[str, object] = {}
    if args.data_dir is not None:
        changes["data_dir"] = args.data_dir
    if args.nats_url:
        changes["nats_url"] = args.nats_url
    if args.log_level:
        changes["log_level"] = args.log_level
    if args.log_format:
        changes["log_format"] = args.log_format
    gateway: dict[str, object] = {}
    for flag, field in (
        ("host", "host"),
        ("port", "port"),
        ("boot_policy", "boot_policy"),
        ("authorize_policy", "authorize_policy"),
        ("heartbeat_interval", "heartbeat_interval_s"),
        ("max_frame_bytes", "max_frame_bytes"),
        ("tls_cert", "tls_cert"),
        ("tls_key", "tls_key"),
        ("tls_client_ca", "tls_client_ca"),
        ("gateway_id", "gateway_id"),
        ("ocpp_versions", "ocpp_versions"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            gateway[field] = value
    ops: dict[str, object] = {}
    if getattr(args, "metrics_host", None):
        ops["host"] = args.metrics_host
    if getattr(args, "metrics_port", None) is not None:
        ops["port"] = args.metrics_port
    if ops:
        changes["ops"] = msgspec.structs.replace(settings.ops, **ops)
    if getattr(args, "allow_unknown_chargers", False):
        gateway["allow_unknown_chargers"] = True
    if vendors := getattr(args, "data_transfer_vendor", None):
        gateway["data_transfer_vendors"] = _vendor_policy(vendors)
    if gateway:
        changes["gateway"] = replaced = msgspec.structs.replace(settings.gateway, **gateway)
        check_ocpp_versions(replaced, "--ocpp-versions")
    settings = msgspec.structs.replace(settings, **changes)
    settings = fanout_cli.apply_flags(settings, args)
    return with_gateway_id(with_client_ca(settings)), config


def _vendor_policy(specs: list[str]) -> dict[str, list[str]]:
    policy: dict[str, list[str]] = {}
    for spec in specs:
        vendor, _, messages = spec.partition(":")
        if not vendor:
            raise ValueError(f"--data-transfer-vendor {spec!r}: the vendorId is empty")
        policy.setdefault(vendor, []).extend(
            [message for message in messages.split(",") if message] or ["*"]
        )
    return policy


def _gateway_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address the gateway binds (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="gateway port (default 9000, 0 picks one)")
    parser.add_argument("--gateway-id", help="stable id of this gateway instance")
    parser.add_argument(
        "--allow-unknown-chargers",
        action="store_true",
        help="accept chargers that were never registered (off by default)",
    )
    parser.add_argument("--boot-policy", choices=["accept", "known", "pending"])
    parser.add_argument("--authorize-policy", choices=["accept", "list"])
    parser.add_argument("--heartbeat-interval", type=int, help="seconds, sent in Boot answers")
    parser.add_argument("--max-frame-bytes", type=int, help="larger frames get a CALLERROR")
    parser.add_argument(
        "--data-transfer-vendor",
        action="append",
        metavar="VENDOR[:MESSAGE,...]",
        help="accept DataTransfer from this vendorId (only these messageIds if given); "
        "repeatable; without any, every vendor is accepted. The data is kept either way.",
    )
    parser.add_argument(
        "--ocpp-versions",
        metavar="VERSION,...",
        help="OCPP versions the gateway negotiates, of 1.6, 2.0.1 and 2.1 (default 1.6; 2.x "
        "CALLs are answered NotImplemented until their handlers exist)",
    )
    parser.add_argument("--tls-cert", help="PEM certificate: serve wss:// (security profile 2)")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        help="PEM CA bundle that signs chargers' client certificates (security profile 3; "
        "default: <data dir>/ca/ca.crt if the hub's CA exists)",
    )


def _ops_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-host", help="address /metrics, /healthz and /readyz bind (default 127.0.0.1)"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="port of /metrics, /healthz and /readyz (default 0: a free one; under hub up, "
        "the gateway's, and the children take the next ones)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    common = _common_flags()

    up = commands.add_parser("up", parents=[common], help="run the whole hub on embedded defaults")
    _gateway_flags(up)

    chargers = commands.add_parser("chargers", help="register and list chargers")
    charger_commands = chargers.add_subparsers(dest="action", required=True)
    add = charger_commands.add_parser(
        "add", help="register a charger (an audited event)", parents=[common]
    )
    add.add_argument("charge_point_id")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument(
        "--password",
        help="HTTP Basic password (security profiles 1 and 2), 16 to 40 printable characters",
    )
    secret.add_argument(
        "--key",
        help="binary AuthorizationKey as hex, 16 to 20 bytes (OCPP 1.6 security whitepaper)",
    )
    secret.add_argument(
        "--generate-password",
        action="store_true",
        help="generate a random 24-character password and print it",
    )
    add.add_argument(
        "--security-profile",
        type=int,
        choices=[0, 1, 2, 3],
        help="how it must authenticate: 0 none, 1 Basic, 2 Basic over TLS, 3 TLS client "
        "certificate (default: Basic if it has a password, else none)",
    )
    add.add_argument(
        "--ocpp-versions",
        dest="charger_ocpp_versions",
        metavar="VERSION,...",
        help="OCPP versions it may connect with, within the gateway's --ocpp-versions "
        "(default: the gateway's)",
    )
    remove = charger_commands.add_parser("remove", help="unregister a charger", parents=[common])
    remove.add_argument("charge_point_id")
    accept = charger_commands.add_parser(
        "accept",
        help="accept a charger the pending boot policy holds (an audited event)",
        parents=[common],
    )
    accept.add_argument("charge_point_id")
    rotate = charger_commands.add_parser(
        "rotate-password",
        help="give a connected charger a new password (ChangeConfiguration AuthorizationKey)",
        parents=[common],
    )
    rotate.add_argument("charge_point_id")
    new_secret = rotate.add_mutually_exclusive_group()
    new_secret.add_argument("--password", help="the new password (default: a generated key)")
    new_secret.add_argument("--key", help="the new binary key, as hex")
    rotate.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the charger's answer"
    )
    charger_commands.add_parser("list", help="list registered chargers", parents=[common])

    idtags = commands.add_parser("idtags", help="manage the id-tag list used by Authorize")
    tag_commands = idtags.add_subparsers(dest="action", required=True)
    tag_add = tag_commands.add_parser("add", help="add or change an id tag", parents=[common])
    tag_add.add_argument("id_tag")
    tag_add.add_argument(
        "--status", choices=["Accepted", "Blocked", "Expired", "Invalid"], default="Accepted"
    )
    tag_add.add_argument("--expiry", default="", help="ISO 8601 expiry date")
    tag_add.add_argument("--parent", default="", help="parent id tag (group)")
    # Every add replaces the tag's record: limits not given here are lifted.
    add_limit_flags(tag_add)
    tag_remove = tag_commands.add_parser("remove", help="remove an id tag", parents=[common])
    tag_remove.add_argument("id_tag")
    tag_commands.add_parser("list", help="list id tags", parents=[common])
    _wallet_commands(commands, common)
    _ca_commands(commands, common)

    fanout_cli.add_commands(commands, common)
    gateway = commands.add_parser(
        "gateway", parents=[common], help="run only a gateway against HUB_NATS_URL"
    )
    _gateway_flags(gateway)
    commands.add_parser(
        "project", parents=[common], help="run only the projections against HUB_NATS_URL"
    )
    commands.add_parser(
        "supervise", parents=[common], help="run only the supervisor against HUB_NATS_URL"
    )
    api_cli.add_commands(commands, common)
    api_cli.add_profile_commands(commands, common)
    api_cli.add_site_commands(commands, common)
    projections_cli.add_commands(commands, common)
    for role in ("up", "fanout", *roles.ROLES):
        _ops_flags(commands.choices[role])

    simulate = commands.add_parser(
        "simulate", help="run a fleet of simulated OCPP chargers (1.6J, 2.0.1, 2.1)"
    )
    from tools.simulator import add_simulate_arguments

    add_simulate_arguments(simulate)
    return parser


def _wallet_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    wallets = commands.add_parser("wallets", help="prepaid wallets of id tags")
    actions = wallets.add_subparsers(dest="action", required=True)
    config = actions.add_parser(
        "config", parents=[common], help="make an id tag pay from a prepaid wallet (an event)"
    )
    config.add_argument("id_tag")
    config.add_argument("--hold", default="", help="held at each start (default: all of it)")
    config.add_argument(
        "--min-balance", default="0", help="refuse the tag while its balance is not above this"
    )
    config.add_argument("--currency", help="ISO 4217 code (default: the wallet's, else EUR)")
    for name, help_text in (
        ("topup", "put money into a wallet (an event)"),
        ("adjust", "correct a wallet by a signed amount (an event)"),
    ):
        credit = actions.add_parser(name, parents=[common], help=help_text)
        credit.add_argument("id_tag")
        credit.add_argument("amount", help="decimal, at most 4 places (adjust: may be negative)")
        credit.add_argument(
            "--reference",
            required=name == "adjust",
            help="idempotency key: the same reference again records nothing new",
        )
        credit.add_argument("--note", default="", help="why, for the audit trail")
    show = actions.add_parser("show", parents=[common], help="balance and recent ledger")
    show.add_argument("id_tag")


def _ca_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    ca = commands.add_parser("ca", help="the local CA that signs chargers' certificates")
    actions = ca.add_subparsers(dest="action", required=True)
    init = actions.add_parser(
        "init",
        parents=[common],
        help="make the local CA (<data dir>/ca/ca.key and ca.crt); never overwrites one",
    )
    init.add_argument("--days", type=int, default=3650, help="validity of the CA (3650)")
    init.add_argument(
        "--subject", default=DEFAULT_CA_SUBJECT, help=f"RFC 4514 (default {DEFAULT_CA_SUBJECT!r})"
    )
    init.add_argument(
        "--key-type", choices=["ec", "rsa"], default="ec", help="EC P-256 (default) or RSA 3072"
    )


def _ca_main(settings: Settings, args: argparse.Namespace) -> int:
    if not 1 <= args.days <= 36500:
        print("hub: --days: must be from 1 to 36500", file=sys.stderr)
        return 2
    try:
        made = init_local_ca(
            ca_dir(settings.data_dir), days=args.days, subject=args.subject, key_type=args.key_type
        )
    except CaExists as error:
        print(f"hub: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"hub: --subject: {error}", file=sys.stderr)
        return 2
    print(f"CA {made.subject}, valid until {made.not_after:%Y-%m-%d}")
    print(f"certificate {made.cert} (chargers' client certificates chain to it)")
    print(f"private key {made.key} (mode 0600: back it up, keep it secret)")
    return 0


# -- hub up ------------------------------------------------------------------------------------


def _up_main(settings: Settings) -> int:
    """``hub up``, holding the data directory for its whole life: one hub per directory."""
    with data_dir_lock(settings.data_dir) as lock_fd:
        return uvloop.run(_up(settings, lock_fd))


def _overdue(grace: float) -> None:
    # Whatever still waits (events for a NATS that is gone, a child that hangs) has had its
    # time; nothing unstored was answered, so chargers send it again to the next hub.
    structlog.get_logger("hub").error("hub.shutdown_overdue", grace_s=grace)
    kill_servers()
    os._exit(1)


async def _up(settings: Settings, lock_fd: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    grace = settings.shutdown_grace_s

    def on_signal() -> None:
        # Armed by the first signal, even one during start-up (a NATS that never comes).
        if not stop.is_set():
            structlog.get_logger("hub").info("hub.stopping", grace_s=grace)
            loop.call_later(grace, _overdue, grace)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    async with (
        # The steps that wait on NATS get parts of the grace; the watchdog below bounds the
        # rest (the children: the fan-out, the projections, the supervisor).
        nats_server_for(settings, lock_fd=lock_fd, shutdown_grace=grace / 4) as url,
        # The gateway answers chargers from this process: a full collection of its heap
        # (about 150 ms at 1,000 chargers) would hold every answer, and every UI message
        # passes through it first.
        gc_policy(),
        serving_ops("gateway", settings, url) as ops,
        running_gateway(settings, url, close_grace=grace / 2, ops=ops) as gateway,
    ):
        await ops.serving()
        fanout = fanout_cli.optional_child(settings, url)
        children = [*([fanout] if fanout else []), *roles.role_children(settings, url)]
        async with supervised(*children):
            host = settings.gateway.host
            print(
                # Scripts read this line: what is added goes at its end.
                f"hub ready: gateway ws://{host}:{gateway.port}/ocpp/{{chargePointId}} "
                f"nats {redacted(url)} data {settings.data_dir} ops {ops.url}",
                flush=True,
            )
            if fanout is not None:
                print(fanout_cli.ready_lines(settings, fanout), flush=True)
            await stop.wait()
    return 0


# -- admin commands ---------------------------------------------------------------------------


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def admin_event(args: argparse.Namespace) -> tuple[AdminEvent | None, str]:
    """The event a command records, and what to tell the operator once it is stored."""
    event_id, received_at, actor = uuid.uuid4().hex, now_ms(), _actor()
    match args.command, args.action:
        case "chargers", "add":
            if problem := id_problem(args.charge_point_id):
                raise SystemExit(
                    f"hub: invalid charge point id {args.charge_point_id!r}: {problem}"
                )
            password = secrets.token_urlsafe(18) if args.generate_password else args.password
            listed = args.charger_ocpp_versions
            versions = listed.split(",") if listed is not None else None
            body = RegistrationBody(
                password=password,
                key=args.key,
                security_profile=args.security_profile,
                ocpp_versions=versions,
            )
            try:
                event = registration(
                    args.charge_point_id, body, Origin(event_id, received_at, actor)
                )
            except (BadSecret, BadRegistration) as error:
                flag = error.field.replace("_", "-")
                raise SystemExit(f"hub: --{flag}: {error.problem}") from None
            message = f"registered {args.charge_point_id}"
            if args.security_profile is not None:
                message += f" (security profile {args.security_profile})"
            if event.ocpp_versions:
                message += f" (OCPP {', '.join(event.ocpp_versions)})"
            if args.generate_password:
                message += f"\npassword: {password}"
            return event, message
        case "chargers", "accept":
            if problem := id_problem(args.charge_point_id):
                raise SystemExit(
                    f"hub: invalid charge point id {args.charge_point_id!r}: {problem}"
                )
            return charger_accepted(args.charge_point_id, Origin(event_id, received_at, actor)), (
                f"accepted {args.charge_point_id}: its next BootNotification is answered "
                "Accepted (a connected charger is asked for one now)"
            )
        case "chargers", "remove":
            return ChargerUnregistered(
                id=event_id,
                received_at=received_at,
                actor=actor,
                charge_point_id=args.charge_point_id,
            ), (f"unregistered {args.charge_point_id}")
        case "idtags", "add":
            try:
                check_id_tag(args.id_tag)
                if args.parent:
                    check_id_tag(args.parent)
            except Invalid as error:
                raise SystemExit(f"hub: id tag {error.problem}") from None
            try:
                expiry = format_time(parse_time(args.expiry)) if args.expiry else ""
            except ValueError:
                raise SystemExit(
                    f"hub: --expiry {args.expiry!r} is not an ISO 8601 date-time"
                ) from None
            try:
                limits = limits_from_flags(args)
            except ValueError as error:
                raise SystemExit(f"hub: {error}") from None
            return IdTagUpserted(
                id=event_id,
                received_at=received_at,
                actor=actor,
                id_tag=args.id_tag,
                status=args.status,
                expiry_date=expiry,
                parent_id_tag=args.parent,
                limits=limits,
            ), f"id tag {args.id_tag}: {args.status}"
        case "idtags", "remove":
            return IdTagRemoved(
                id=event_id, received_at=received_at, actor=actor, id_tag=args.id_tag
            ), f"removed id tag {args.id_tag}"
    return None, ""


async def _admin(settings: Settings, args: argparse.Namespace) -> int:
    event, message = (None, "") if args.action == "rotate-password" else admin_event(args)
    async with admin_backbone(settings) as (connection, store):
        if event is not None:
            await store.store([event])
            print(message)
            return 0
        registry = Registry()
        await fold_once(
            connection, settings.stream.name, REGISTRY_SUBJECTS, registry.apply, name="registry"
        )
        if args.action == "rotate-password":
            stream = settings.stream.name
            return await _rotate_password(connection, stream, store, registry, args)
        if args.command == "chargers":
            for charge_point_id, record in sorted(registry.chargers.items()):
                auth = "password" if record.password_hash else "no password"
                print(f"{charge_point_id}\t{auth}")
        else:
            for id_tag, tag in sorted(registry.id_tags.items()):
                expiry = format_time(tag.expires_at) if tag.expires_at else "-"
                print(f"{id_tag}\t{tag.status}\t{expiry}\t{tag.parent_id_tag or '-'}")
    return 0


async def _rotate_password(
    connection: Connection,
    stream: str,
    store: EventStore,
    registry: Registry,
    args: argparse.Namespace,
) -> int:
    """``hub chargers rotate-password``: the REST endpoint's rules and steps, from here."""
    body = RotationBody(password=args.password, key=args.key)
    try:
        secret, generated = rotation_secret(registry, args.charge_point_id, body)
    except BadSecret as error:
        print(f"hub: --{error.field}: {error.problem}", file=sys.stderr)
        return 2
    except (NotRegistered, Busy) as error:
        print(f"hub: {error}", file=sys.stderr)
        return 1

    async def stored(event: Event) -> int:
        [seq] = await store.store([event])
        return seq

    latest = {"ocpp_version": ""}  # of the charger's latest connection ("": none yet)

    def opened(event: Event, seq: int) -> None:
        if isinstance(event, ChargerConnected):
            latest["ocpp_version"] = event.ocpp_version

    subjects = [opened_subject(args.charge_point_id)]
    await fold_once(connection, stream, subjects, opened, name="connections")
    view = await rotate(
        connection.client,
        stored,
        args.charge_point_id,
        secret,
        Origin(uuid.uuid4().hex, now_ms(), _actor()),
        ocpp_version=latest["ocpp_version"],
        timeout_s=args.timeout,
        show_key=generated,
    )
    what = {
        "accepted": "took the new password; the old one works until it logs in with it",
        "rejected": f"refused the new password ({view.detail}); the old one stays",
        "timeout": "did not answer in time; the old password stays",
        "failed": f"could not be reached ({view.detail}); the old password stays",
        "completed": "logs in with the new password",
    }[view.state]
    print(f"{args.charge_point_id} {what} (rotation {view.rotation_id})")
    if view.key:
        print(f"key: {view.key}")
    return 0 if view.state in ("accepted", "completed") else 1


# -- hub wallets -------------------------------------------------------------------------------

# How a refused field is called on the command line.
_WALLET_FLAGS = {
    "id_tag": "TAG",
    "amount": "AMOUNT",
    "hold_amount": "--hold",
    "min_balance": "--min-balance",
    "currency": "--currency",
    "reference": "--reference",
    "note": "--note",
}


def wallet_event(
    args: argparse.Namespace, book: WalletBook, origin: Origin
) -> tuple[WalletConfigured | WalletCredited | None, str]:
    """The event a wallets command records (None: already recorded) and what to print.

    Raises Invalid (a bad argument), NoWallet or Conflict, as the REST API refuses them."""
    tag = args.id_tag
    if args.action == "config":
        known = book.wallets.get(tag)
        currency = (args.currency or (known.currency if known else "EUR")).upper()
        body = WalletBody(
            currency=currency, hold_amount=args.hold or None, min_balance=args.min_balance
        )
        configured = wallet_configured(book.wallets, tag, body, origin)
        hold = configured.hold_amount or "the whole balance"
        return configured, (
            f"wallet {tag}: {currency}, holds {hold} at a start, "
            f"refused at or below {configured.min_balance}"
        )
    kind: WalletCreditKind = "topup" if args.action == "topup" else "adjustment"
    credit = CreditBody(amount=args.amount, reference=args.reference, note=args.note)
    event, replayed = wallet_credited(book.wallets, book.credits, tag, kind, credit, origin)
    what = f"{kind} of {event.amount} {event.currency} for {tag}"
    if replayed:
        return None, f"{what} was already recorded (reference {event.reference})"
    return event, f"{what} recorded"


def _print_wallet(book: WalletBook, id_tag: str) -> int:
    view = book.view(id_tag)
    if view is None:
        print(f"hub: no wallet for id tag {id_tag!r}", file=sys.stderr)
        return 1
    hold = view.hold_amount or "all"
    state = "" if view.configured else "\t(not configured)"
    print(
        f"{id_tag}\t{view.currency}\tbalance {view.balance}\thold {hold}\t"
        f"min balance {view.min_balance}{state}"
    )
    for line in view.ledger:
        session = f"{line.charge_point_id}/{line.transaction_id}" if line.charge_point_id else "-"
        print(
            f"{iso(line.received_at)}\t{line.kind}\t{line.amount}\t{line.balance}\t"
            f"{session}\t{line.event_id}"
        )
    return 0


async def _wallets(settings: Settings, args: argparse.Namespace) -> int:
    book = WalletBook()
    async with (
        admin_backbone(settings) as (connection, store),
        Follower(
            connection, settings.stream.name, WALLET_SUBJECTS, book.apply, name="wallets"
        ) as followed,
    ):
        if args.action == "show":
            return _print_wallet(book, args.id_tag)
        try:
            event, message = wallet_event(args, book, Origin(uuid.uuid4().hex, now_ms(), _actor()))
        except Invalid as error:
            flag = _WALLET_FLAGS.get(error.field, error.field)
            print(f"hub: {flag}: {error.problem}", file=sys.stderr)
            return 2
        except (NoWallet, Conflict) as error:
            print(f"hub: {error}", file=sys.stderr)
            return 1
        if event is not None:
            [seq] = await store.store([event])
            await followed.reached(seq)
        print(message)
        view = book.view(args.id_tag)
        if view is not None:
            print(f"balance {view.balance} {view.currency}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except (DataDirInUse, HubUnreachable) as error:
        print(f"hub: {error}", file=sys.stderr)
        return 1


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        from tools.simulator import simulate_main

        logs.configure("warning")
        return asyncio.run(simulate_main(args))
    try:
        settings, config = _loaded(args)
    except ValueError as error:
        print(f"hub: {error}", file=sys.stderr)
        return 2
    # Admin commands print their result; their own logs only matter when something is wrong.
    default_level = "info" if args.command in ("up", "fanout", *roles.ROLES) else "warning"
    configured = config.document.get("log_level") if config else None
    level = args.log_level or os.environ.get("HUB_LOG_LEVEL") or configured or default_level
    logs.configure(level, settings.log_format)
    if args.command == "up":
        if config is not None:
            # hub up's children take their settings from the environment they inherit.
            os.environ[CONFIG_VARIABLE] = str(config.path.resolve())
        return _up_main(settings)
    if args.command == "fanout":
        return uvloop.run(roles.role_command("fanout", settings, fanout_cli.fanout_main))
    if args.command in roles.ROLES:
        return uvloop.run(roles.role_command(args.command, settings))
    if args.command == "token":
        return fanout_cli.token_main(settings, args)
    if args.command == "cmd":
        return api_cli.cmd_main(settings, args)
    if args.command in api_cli.PROFILE_COMMANDS:
        return api_cli.profiles_main(settings, args)
    if args.command == "sites":
        return api_cli.sites_main(settings, args)
    if args.command in projections_cli.COMMANDS:
        # A replay without a running hub reads the stream on this loop, as `hub up` does.
        return uvloop.run(projections_cli.main(settings, args))
    if args.command == "wallets":
        return asyncio.run(_wallets(settings, args))
    if args.command == "ca":
        return _ca_main(settings, args)
    return asyncio.run(_admin(settings, args))


if __name__ == "__main__":
    sys.exit(main())
