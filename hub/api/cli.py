"""``hub cmd <chargePointId> <operation> [--flags]``: one command through the REST API;
``hub profiles list`` and ``hub schedule``, the smart-charging reads; and ``hub sites``, the
sites and their limits (docs/smart-charging.md).

Flags are the OCPP request's fields in kebab-case (``--connector-id 1``, ``--id-tag T1``);
values are converted to the field's type, objects and arrays are given as JSON. ``--body``
takes the whole payload as JSON instead. It prints the charger's answer as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import msgspec

from hub.api.endpoints import ENDPOINTS, Endpoint
from hub.config import Settings

# Operation names: the endpoint's, except where one path serves two actions.
_RENAMED: Final = {
    ("GET", "configuration"): "get-configuration",
    ("PUT", "configuration"): "change-configuration",
    ("POST", "charging-profiles"): "set-charging-profile",
    ("DELETE", "charging-profiles"): "clear-charging-profile",
}
OPERATIONS: Final[dict[str, Endpoint]] = {
    _RENAMED.get((e.method, e.name), e.name): e for e in ENDPOINTS
}
CLI_TOKEN_TTL_S: Final = 300.0


class UsageError(Exception):
    """A bad operation or flag; ``str()`` says which, for the one error line."""


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser(
        "cmd",
        parents=[common],
        help="send a command to a charger through the command API and print its answer",
        description="Operations: " + ", ".join(sorted(OPERATIONS)),
    )
    cmd.add_argument("charge_point_id")
    cmd.add_argument("operation", help="e.g. reset, remote-start, get-configuration, get-variables")
    cmd.add_argument(
        "flags",
        nargs=argparse.REMAINDER,
        help="the request's fields (--connector-id 1), or --body JSON; and --no-wait, "
        "--timeout S, --api-url URL (HUB_API_URL), --token JWT (HUB_API_TOKEN; default: an "
        "operator token minted from the data directory's secret)",
    )


def _options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub cmd", add_help=False, allow_abbrev=False)
    parser.add_argument("--body")
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--api-url")
    parser.add_argument("--token")
    return parser


def _camel(flag: str) -> str:
    head, *rest = flag.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def build_request(
    endpoint: Endpoint, flags: list[str], body: str | None
) -> tuple[bytes | None, list[tuple[str, str]]]:
    """The HTTP body and query for ``flags`` (``--name value`` pairs); raises UsageError.

    The flags are converted to the request type of the first of the endpoint's versions that
    takes them (``reset --type Soft`` is 1.6's, ``--type Immediate`` 2.x's); the charger's
    version is checked where its connection is."""
    types = [endpoint.request_type(version) for version in endpoint.versions]
    fields = {f.encode_name: f for kind in types for f in msgspec.structs.fields(kind)}
    values: dict[str, Any] = {}
    keys: list[str] = []
    position = 0
    while position < len(flags):
        flag = flags[position]
        match = re.fullmatch(r"--([a-z][a-z0-9-]*)(?:=(.*))?", flag)
        if match is None:
            raise UsageError(f"unexpected argument {flag!r}; flags look like --connector-id 1")
        name, value = _camel(match[1]), match[2]
        if value is None:
            position += 1
            if position >= len(flags):
                raise UsageError(f"{flag}: needs a value")
            value = flags[position]
        position += 1
        if not endpoint.has_body and name == "key":
            keys.append(value)
            continue
        if name not in fields:
            accepted = ", ".join(f"--{_kebab(n)}" for n in fields) or "none"
            raise UsageError(f"{endpoint.action} has no field {flag!r}; it takes: {accepted}")
        values[name] = _value(value)
    if not endpoint.has_body:
        return None, [("key", key) for key in keys]
    if body is not None:
        if values:
            raise UsageError("give either --body or field flags, not both")
        return body.encode(), []
    errors: list[str] = []
    for kind in types:
        try:
            payload = msgspec.convert(values, kind, strict=False)
        except msgspec.ValidationError as error:
            errors.append(str(error))
            continue
        return msgspec.json.encode(payload), []
    raise UsageError(errors[0] if len(set(errors)) == 1 else "; ".join(errors))


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "-" + m[1].lower(), name)


def _value(text: str) -> Any:
    # Objects and arrays come as JSON; scalars as text, converted to the field's type.
    if text[:1] in ("{", "["):
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError as error:
            raise UsageError(f"{text[:40]!r}: not valid JSON ({error})") from None
    return text


def _token(settings: Settings, args: argparse.Namespace) -> str:
    token = args.token or os.environ.get("HUB_API_TOKEN", "")
    if token:
        return str(token)
    from hub.fanout.app import signing_key
    from hub.tokens import SECRET_FILE, mint

    fanout = settings.fanout
    secret_file = settings.data_dir / SECRET_FILE
    if fanout.jwt_algorithm == "HS256" and not fanout.jwt_secret and not secret_file.exists():
        raise UsageError(
            f"no token: give --token or HUB_API_TOKEN (no {secret_file} to mint one from)"
        )

    # Whoever can read the data directory's secret is an admin of this hub anyway.
    return mint(
        signing_key(settings),
        settings.fanout.jwt_algorithm,
        chargers="*",
        ttl_s=CLI_TOKEN_TTL_S,
        role="operator",
        subject=f"cli:{getpass.getuser()}",
    )


async def _send(
    url: str, method: str, token: str, body: bytes | None, query: list[tuple[str, str]]
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.request(method, url, data=body, params=query, headers=headers) as r:
            return r.status, await r.read()


def cmd_main(settings: Settings, parsed: argparse.Namespace) -> int:
    endpoint = OPERATIONS.get(parsed.operation)
    try:
        args, extra = _options().parse_known_args(parsed.flags)
        args.operation, args.charge_point_id = parsed.operation, parsed.charge_point_id
        if endpoint is None:
            raise UsageError(
                f"unknown operation {args.operation!r}; one of: {', '.join(sorted(OPERATIONS))}"
            )
        body, query = build_request(endpoint, extra, args.body)
    except UsageError as error:
        print(f"hub: cmd: {error}", file=sys.stderr)
        return 2
    if args.no_wait:
        query.append(("wait", "false"))
    if args.timeout is not None:
        query.append(("timeout", str(args.timeout)))
    path = f"/api/v1/chargers/{quote(args.charge_point_id, safe='')}/{endpoint.name}"
    status = call_api(settings, args, "cmd", endpoint.method, path, body, query)
    return status if status in (1, 2) else 0 if status in (200, 202) else 1


def call_api(
    settings: Settings,
    args: argparse.Namespace,
    command: str,
    method: str,
    path: str,
    body: bytes | None,
    query: list[tuple[str, str]],
) -> int:
    """Call the API (``--api-url``, ``--token``) and print its answer as JSON; the HTTP
    status, or 2 for no token and 1 for an API out of reach (each said on stderr)."""
    base = args.api_url or os.environ.get("HUB_API_URL", "")
    if not base:
        base = f"http://{settings.fanout.host}:{settings.fanout.port}"
    try:
        token = _token(settings, args)
    except UsageError as error:
        print(f"hub: {command}: {error}", file=sys.stderr)
        return 2
    try:
        status, answer = asyncio.run(_send(base.rstrip("/") + path, method, token, body, query))
    except (aiohttp.ClientError, OSError) as error:
        print(f"hub: {command}: cannot reach the API at {base}: {error}", file=sys.stderr)
        return 1
    try:
        text = msgspec.json.format(answer, indent=2).decode()
    except msgspec.DecodeError:
        text = answer.decode(errors="replace")
    print(text)
    return status


# -- hub profiles list, hub schedule: the smart-charging reads (docs/smart-charging.md) --------

PROFILE_COMMANDS: Final = ("profiles", "schedule")


def _api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", help="the API (HUB_API_URL; default: the UI host and port)")
    parser.add_argument("--token", help="a JWT (HUB_API_TOKEN; default: minted, operator)")


def add_profile_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    profiles = commands.add_parser("profiles", help="charging profiles the hub knows chargers hold")
    actions = profiles.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", parents=[common], help="a charger's installed profiles and advertised limits"
    )
    listing.add_argument("charge_point_id")
    listing.add_argument(
        "--connector-id", type=int, help="only this connector's (0: the charger's)"
    )
    _api_options(listing)
    schedule = commands.add_parser(
        "schedule",
        parents=[common],
        help="a connector's composite schedule as the hub computes it (and the charger's)",
    )
    schedule.add_argument("charge_point_id")
    schedule.add_argument("connector_id", type=int)
    schedule.add_argument("--duration", type=int, required=True, help="seconds from now")
    schedule.add_argument("--charging-rate-unit", choices=("A", "W"))
    schedule.add_argument(
        "--ask-charger",
        action="store_true",
        help="send GetCompositeSchedule too and report where the charger's answer differs",
    )
    schedule.add_argument("--timeout", type=float, help="seconds to wait for the charger")
    _api_options(schedule)


def _profiles_request(args: argparse.Namespace) -> tuple[str, list[tuple[str, str]]]:
    charger = quote(args.charge_point_id, safe="")
    if args.command == "profiles":
        query = [] if args.connector_id is None else [("connectorId", str(args.connector_id))]
        return f"/api/v1/chargers/{charger}/profiles", query
    query = [("duration", str(args.duration))]
    if args.charging_rate_unit:
        query.append(("chargingRateUnit", args.charging_rate_unit))
    if args.ask_charger:
        query.append(("askCharger", "true"))
    if args.timeout is not None:
        query.append(("timeout", str(args.timeout)))
    return f"/api/v1/chargers/{charger}/connectors/{args.connector_id}/schedule", query


def profiles_main(settings: Settings, args: argparse.Namespace) -> int:
    """Print what the API answers; exit 0 for a 200, 1 otherwise, 2 for a usage error."""
    path, query = _profiles_request(args)
    status = call_api(settings, args, args.command, "GET", path, None, query)
    return status if status in (1, 2) else 0 if status == 200 else 1


# -- hub sites: site load management (docs/smart-charging.md) -----------------------------------

_AMOUNT: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(kW|W|A)")


def parse_amount(text: str) -> tuple[float, str]:
    """``200kW`` -> (200000, "W"); ``290A`` -> (290, "A"); ArgumentTypeError otherwise."""
    found = _AMOUNT.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a number and A, W or kW (290A, 200kW)"
        )
    amount, unit = float(found[1]), found[2]
    return (amount * 1000, "W") if unit == "kW" else (amount, unit)


def add_site_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    sites = commands.add_parser("sites", help="sites, their limits and their connectors")
    actions = sites.add_subparsers(dest="action", required=True)
    put = actions.add_parser("set", parents=[common], help="add or change a node (an event)")
    put.add_argument("node_id")
    put.add_argument("--limit", type=parse_amount, required=True, help="290A or 200kW")
    put.add_argument("--parent", default="", help="the node above it (none: a site's root)")
    put.add_argument("--phases", type=int, choices=(1, 3), default=3)
    put.add_argument("--voltage", type=float, default=230.0)
    put.add_argument(
        "--daily",
        action="append",
        default=[],
        metavar="HH:MM=LIMIT",
        help="from this time of day (UTC) on, this limit in the node's unit (repeatable)",
    )
    _api_options(put)
    remove = actions.add_parser("remove", parents=[common], help="remove a node (an event)")
    remove.add_argument("node_id")
    _api_options(remove)
    live = actions.add_parser("limit", parents=[common], help="set or clear a live limit")
    live.add_argument("node_id")
    live.add_argument("limit", type=parse_amount, nargs="?", help="150kW or 200A")
    live.add_argument("--clear", action="store_true", help="clear the live limit")
    _api_options(live)
    assign = actions.add_parser(
        "assign", parents=[common], help='hang a connector below a node ("" unassigns)'
    )
    assign.add_argument("charge_point_id")
    assign.add_argument("connector_id", type=int, help="0: every connector of the charger")
    assign.add_argument("node_id")
    assign.add_argument("--priority", type=int, default=0)
    assign.add_argument("--min-a", type=float, default=6.0)
    assign.add_argument("--max-a", type=float, default=32.0)
    assign.add_argument("--phases", type=int, choices=(1, 3), default=3)
    _api_options(assign)
    show = actions.add_parser("show", parents=[common], help="limits, loads and allocations")
    _api_options(show)


def _site_request(args: argparse.Namespace) -> tuple[str, str, object]:
    node = quote(getattr(args, "node_id", ""), safe="")
    if args.action == "set":
        limit, unit = args.limit
        daily = []
        for entry in args.daily:
            start, _, amount = entry.partition("=")
            try:
                daily.append({"from": start, "limit": float(amount)})
            except ValueError:
                raise UsageError(f"--daily {entry!r}: expected HH:MM=LIMIT") from None
        body = {
            "parent": args.parent,
            "limit": limit,
            "unit": unit,
            "phases": args.phases,
            "voltage": args.voltage,
            "daily": daily,
        }
        return "PUT", f"/api/v1/sites/nodes/{node}", body
    if args.action == "remove":
        return "DELETE", f"/api/v1/sites/nodes/{node}", None
    if args.action == "limit":
        if args.clear == (args.limit is not None):
            raise UsageError("give a limit (150kW, 200A) or --clear")
        limit, unit = args.limit if args.limit is not None else (None, "A")
        return "PUT", f"/api/v1/sites/nodes/{node}/limit", {"limit": limit, "unit": unit}
    if args.action == "assign":
        charger = quote(args.charge_point_id, safe="")
        body = {
            "nodeId": args.node_id,
            "priority": args.priority,
            "minA": args.min_a,
            "maxA": args.max_a,
            "phases": args.phases,
        }
        return "PUT", f"/api/v1/chargers/{charger}/connectors/{args.connector_id}/site", body
    return "GET", "/api/v1/sites", None


def sites_main(settings: Settings, args: argparse.Namespace) -> int:
    """Print what the API answers; exit 0 for a 200, 1 otherwise, 2 for a usage error."""
    try:
        method, path, body = _site_request(args)
    except UsageError as error:
        print(f"hub: sites: {error}", file=sys.stderr)
        return 2
    data = None if body is None else msgspec.json.encode(body)
    status = call_api(settings, args, "sites", method, path, data, [])
    return status if status in (1, 2) else 0 if status == 200 else 1
