"""The fan-out's command-line pieces: ``hub up`` flags, ``hub fanout``, ``hub token``."""

from __future__ import annotations

import argparse
from typing import Any, Final

import msgspec

from hub.children import ChildProcess, until_stopped
from hub.config import Settings
from hub.fanout.app import running_fanout, signing_key
from hub.fanout.child import READY, fanout_child, port_of
from hub.nats_server import redacted
from hub.ops import serving_ops
from hub.tokens import mint

DEMO_TOKEN_TTL_S: Final = 7 * 24 * 3600


def add_ui_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ui-host", help="address the UI fan-out binds (default 127.0.0.1)")
    parser.add_argument("--ui-port", type=int, help="UI fan-out port (default 8080, 0 picks one)")


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """``hub fanout`` and ``hub token``; ``commands`` is the parser's subparsers action."""
    fanout = commands.add_parser(
        "fanout", parents=[common], help="run only the UI fan-out against HUB_NATS_URL"
    )
    add_ui_flags(fanout)
    token = commands.add_parser("token", parents=[common], help="mint a UI access token (JWT)")
    token.add_argument(
        "--chargers", default="*", help="comma-separated charger ids, or * (default) for all"
    )
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds until it expires")
    token.add_argument("--role", choices=["viewer", "operator", "admin"], default="viewer")
    token.add_argument("--subject", default="", help="who the token is for (the sub claim)")
    add_up = commands.choices.get("up")
    if add_up is not None:
        add_ui_flags(add_up)
        add_up.add_argument("--no-ui", action="store_true", help="do not start the UI fan-out")


def apply_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    changes: dict[str, object] = {}
    if getattr(args, "ui_host", None):
        changes["host"] = args.ui_host
    if getattr(args, "ui_port", None) is not None:
        changes["port"] = args.ui_port
    if getattr(args, "no_ui", False):
        changes["enabled"] = False
    if not changes:
        return settings
    return msgspec.structs.replace(
        settings, fanout=msgspec.structs.replace(settings.fanout, **changes)
    )


def demo_token(settings: Settings) -> str:
    return mint(
        signing_key(settings),
        settings.fanout.jwt_algorithm,
        chargers="*",
        ttl_s=DEMO_TOKEN_TTL_S,
        role="admin",
        subject="hub-up",
    )


def optional_child(settings: Settings, nats_url: str) -> ChildProcess | None:
    """For ``hub up``: the fan-out, if enabled, in a process of its own (``hub.fanout.child``)."""
    return fanout_child(settings, nats_url) if settings.fanout.enabled else None


def ready_lines(settings: Settings, child: ChildProcess) -> str:
    """What ``hub up`` prints about its fan-out once it is ready: where, and a token."""
    token = demo_token(settings)
    base = f"http://{settings.fanout.host}:{port_of(child.ready_line)}"
    return (
        f"ui: {base}/#token={token}\n"
        f"admin token (expires in {DEMO_TOKEN_TTL_S // 86400} days; `hub token` mints more): "
        f"{token}"
    )


def token_main(settings: Settings, args: argparse.Namespace) -> int:
    chargers: list[str] | str = "*"
    if args.chargers.strip() != "*":
        chargers = [c.strip() for c in args.chargers.split(",") if c.strip()]
        if not chargers:
            raise SystemExit("hub: --chargers: give charger ids or *")
    if args.ttl <= 0:
        raise SystemExit("hub: --ttl must be positive")
    scope: Any = chargers
    print(
        mint(
            signing_key(settings),
            settings.fanout.jwt_algorithm,
            chargers=scope,
            ttl_s=args.ttl,
            role=args.role,
            subject=args.subject,
        )
    )
    return 0


async def fanout_main(settings: Settings, nats_url: str) -> int:
    async with (
        until_stopped() as stop,
        serving_ops("fanout", settings, nats_url) as ops,
        running_fanout(settings, nats_url, ops=ops) as port,
    ):
        await ops.serving()
        shown = redacted(nats_url)
        where = f"http://{settings.fanout.host}:{port}/"
        print(f"{READY}{where} nats {shown} ops {ops.url}", flush=True)
        await stop.wait()
    return 0
