"""The OpenAPI 3.1 document of the command and money APIs, generated from their msgspec types.

Component schemas come from ``msgspec.json.schema_components`` over the very types that
decode request bodies and encode answers, so the document cannot drift from the code.
Every status code an endpoint can answer is listed (docs/command-api.md, docs/money-api.md).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final

import msgspec
from aiohttp import web

from hub.api.credentials import (
    AcceptanceView,
    RegistrationBody,
    RegistrationView,
    RotationBody,
    RotationView,
)
from hub.api.endpoints import ENDPOINTS, Endpoint
from hub.api.money_rules import CreditBody, Limits, TariffBody, WalletBody
from hub.api.money_state import CreditView, LimitsView, TariffList, TariffView, WalletView
from hub.domain.command_tracking import CommandView
from hub.domain.device_model import ReportView

STATIC: Final = Path(__file__).resolve().parent / "static"
REF: Final = "#/components/schemas/{name}"


def _ref(kind: type[Any]) -> dict[str, str]:
    return {"$ref": REF.format(name=kind.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    from hub.api.http import ErrorBody

    return _json(_ref(ErrorBody), description)


def _path(name: str, schema: dict[str, Any], example: object) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "example": example}


CHARGER: Final = _path("charge_point_id", {"type": "string", "minLength": 1}, "CP-1")


Refs = dict[type[Any], dict[str, Any]]


def _per_version(types: list[type[Any]], refs: Refs) -> dict[str, Any]:
    """One version's type, or any of several (a body may be valid in more than one: anyOf,
    not oneOf, which would refuse it). ``refs``: msgspec's names, which qualify a name that
    two versions' types share (``schemas.ocpp.v201.ResetRequest``)."""
    if len(types) == 1:
        return refs[types[0]]
    return {"anyOf": [refs[kind] for kind in types]}


def _operation(endpoint: Endpoint, refs: Refs) -> dict[str, Any]:
    from hub.api.http import ErrorBody

    responses = [endpoint.response_type(version) for version in endpoint.versions]
    answered = {
        "allOf": [
            _ref(CommandView),
            {"type": "object", "properties": {"response": _per_version(responses, refs)}},
        ]
    }
    parameters: list[dict[str, Any]] = [
        CHARGER,
        {
            "name": "wait",
            "in": "query",
            "description": "false: answer 202 with the command id at once; poll "
            "GET /api/v1/commands/{id}",
            "schema": {"type": "boolean", "default": True},
        },
        {
            "name": "timeout",
            "in": "query",
            "description": "seconds to wait for the charger's answer",
            "schema": {"type": "number", "minimum": 0.1, "maximum": 300, "default": 30},
        },
    ]
    operation: dict[str, Any] = {
        "operationId": f"{endpoint.method.lower()}_{endpoint.name.replace('-', '_')}",
        "summary": endpoint.summary,
        "description": f"Sends the `{endpoint.action}` CALL to a charger connected with "
        f"{endpoint.serves} and returns the charger's answer. The body is the OCPP request "
        "payload of the charger's version; a charger of another version answers 409 "
        "(outcome `wrong_version`).",
        "tags": ["commands"],
        "parameters": parameters,
        "responses": {
            "200": _json(answered, "the charger answered (status accepted or rejected)"),
            "202": _json(_ref(CommandView), "wait=false: queued; the body has the command id"),
            "400": _json(
                {"anyOf": [_ref(ErrorBody), _ref(CommandView)]},
                "a bad body or query parameter; the message names the field (ErrorBody); or a "
                "body valid for another of the endpoint's versions than the charger's, which "
                "its gateway refused (CommandView, outcome invalid)"
                + (PROFILE_REFUSED if endpoint.action == "SetChargingProfile" else ""),
            ),
            "401": _error("no valid token (audited)"),
            "403": _error("the token's role or charger scope does not allow it (audited)"),
            "404": _error("the hub has never seen this charger"),
            "409": _json(
                _ref(CommandView),
                "the charger is known but offline (outcome offline), or connected with an "
                "OCPP version the endpoint does not serve (outcome wrong_version)",
            ),
            "429": _json(_ref(CommandView), "too many commands queued for this charger"),
            "502": _json(
                _ref(CommandView),
                "the charger answered with a CALLERROR, or an "
                "answer that breaks the schema; error holds its code and description",
            ),
            "503": _error("the event store did not acknowledge the audit event in time"),
            "504": _json(_ref(CommandView), "no answer from the charger within the timeout"),
        },
    }
    if endpoint.has_body:
        operation["requestBody"] = {
            "required": endpoint.method != "DELETE",
            "content": {
                "application/json": {
                    "schema": _per_version(
                        [endpoint.request_type(version) for version in endpoint.versions], refs
                    )
                }
            },
        }
    else:
        parameters.append(
            {
                "name": "key",
                "in": "query",
                "description": "configuration keys to read (repeatable); none: all",
                "schema": {"type": "array", "items": {"type": "string", "maxLength": 50}},
                "style": "form",
                "explode": True,
            }
        )
    return operation


def _report() -> dict[str, Any]:
    return {
        "operationId": "get_report",
        "summary": "A 2.x station's device model report, assembled from its NotifyReport parts",
        "tags": ["commands"],
        "parameters": [
            CHARGER,
            _path("request_id", {"type": "integer"}, 7),
        ],
        "responses": {
            "200": _json(_ref(ReportView), "every part is in (status complete)"),
            "202": _json(_ref(ReportView), "asked for, parts still missing (status pending)"),
            "400": _error("a request id that is not an integer"),
            "401": _error("no valid token (audited)"),
            "403": _error("the charger is outside the token's scope (audited)"),
            "404": _error("no such report: never asked for nor sent, or evicted"),
            "409": _json(
                _ref(ReportView), "the station refused it or the command failed (status refused)"
            ),
        },
    }


# -- smart charging (hub/api/profiles.py) ------------------------------------------------------

PROFILE_REFUSED: Final = (
    "; or a profile that breaks a smart-charging rule against what the hub knows of the "
    "charger (its profiles, its advertised limits, the transaction running): `rule` names it "
    "(docs/smart-charging.md), nothing is stored or sent"
)
CONNECTOR: Final = _path("connector_id", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}, 1)


def _profile_paths() -> dict[str, dict[str, Any]]:
    from hub.api.profile_state import MAX_DURATION_S, ProfileList
    from hub.api.profiles import ScheduleAnswer

    errors = {
        "400": _error("a bad query parameter; the message names it"),
        "401": _error("no valid token (audited)"),
        "403": _error(
            "the charger is outside the token's scope, or a viewer asked the charger (audited)"
        ),
        "404": _error("the hub has never seen this charger"),
    }
    asked = {
        code: _json(_ref(ScheduleAnswer), f"askCharger: {what}; the hub's schedule is there")
        for code, what in (
            ("409", "the charger is offline"),
            ("429", "too many commands queued for this charger"),
            ("502", "the charger answered a CALLERROR or an invalid answer"),
            ("504", "the charger did not answer in time"),
        )
    }
    return {
        "/api/v1/chargers/{charge_point_id}/profiles": {
            "get": {
                "operationId": "list_profiles",
                "summary": "The charging profiles the hub knows the charger holds (accepted, "
                "not cleared, replaced or ended), oldest first, its advertised limits, and "
                "a 2.x station's latest report of what it holds, compared with them",
                "tags": ["smart-charging"],
                "parameters": [
                    CHARGER,
                    {
                        "name": "connectorId",
                        "in": "query",
                        "description": "only this connector's (0: the charger as a whole)",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                    },
                ],
                "responses": {"200": _json(_ref(ProfileList), "the installed profiles"), **errors},
            }
        },
        "/api/v1/chargers/{charge_point_id}/connectors/{connector_id}/schedule": {
            "get": {
                "operationId": "get_schedule",
                "summary": "The connector's composite schedule from now, as the hub computes "
                "it; with askCharger also the charger's answer to GetCompositeSchedule (sent "
                "as an audited command; operator) and where the two differ",
                "tags": ["smart-charging"],
                "parameters": [
                    CHARGER,
                    CONNECTOR,
                    {
                        "name": "duration",
                        "in": "query",
                        "required": True,
                        "description": "seconds from now",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DURATION_S},
                    },
                    {
                        "name": "chargingRateUnit",
                        "in": "query",
                        "description": "default: the charger's if it advertised one only, else A",
                        "schema": {"type": "string", "enum": ["A", "W"]},
                    },
                    {
                        "name": "askCharger",
                        "in": "query",
                        "schema": {"type": "boolean", "default": False},
                    },
                    {
                        "name": "timeout",
                        "in": "query",
                        "description": "seconds to wait for the charger's answer",
                        "schema": {"type": "number", "minimum": 0.1, "maximum": 300, "default": 30},
                    },
                ],
                "responses": {
                    "200": _json(_ref(ScheduleAnswer), "the hub's schedule (and the charger's)"),
                    **errors,
                    **asked,
                },
            }
        },
    }


# -- tariffs, wallets and session limits (hub/api/money.py) ------------------------------------

TARIFF_ID: Final = _path("tariff_id", {"type": "string", "minLength": 1, "maxLength": 64}, "std")
ID_TAG: Final = _path("id_tag", {"type": "string", "minLength": 1, "maxLength": 20}, "TAG-1")
TRANSACTION_ID: Final = _path(
    "transaction_id",
    {
        "anyOf": [
            {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
            {"type": "string", "minLength": 1, "maxLength": 36, "pattern": "^[ -~]+$"},
        ],
        "description": "OCPP 1.6's integer id, or OCPP 2.x's string id",
    },
    42,
)
IDEMPOTENCY_KEY: Final = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "the credit's reference, when the body has none: a retry with the same key "
    "is stored once and answered the same",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[ -~]+$"},
}
MONEY_ERRORS: Final = {
    "400": "a bad body or path parameter; the message names the field",
    "401": "no valid token (audited)",
    "403": "the token's role or charger scope does not allow it (audited); wallets and "
    "default tariffs need a token for all chargers",
    "404": "no such tariff, wallet or charger",
    "409": "contradicts the stream: a wallet's currency with money in it, or a reference "
    "reused for a different credit",
    "503": "the event store did not acknowledge in time",
}
MONEY_TYPES: Final = (
    TariffBody,
    WalletBody,
    CreditBody,
    Limits,
    TariffView,
    TariffList,
    WalletView,
    CreditView,
    LimitsView,
)


def _money(
    name: str,
    summary: str,
    parameters: list[dict[str, Any]],
    answer: tuple[str, type[Any]],
    errors: str,
    body: type[Any] | None = None,
    *,
    tag: str = "money",
    meanings: dict[str, str] = MONEY_ERRORS,
) -> dict[str, Any]:
    """An operation; ``errors`` lists the error statuses it can answer, e.g. "400 401 503"."""
    status, kind = answer
    responses = {status: _json(_ref(kind), summary)}
    responses.update({code: _error(meanings[code]) for code in errors.split()})
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": summary,
        "tags": [tag],
        "parameters": parameters,
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = {
            # Optional for a rotation: no body, and the hub generates the key.
            "required": tag in ("money", "sites"),
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


# -- charger credentials and acceptance (hub/api/credentials.py) -------------------------------

CREDENTIAL_ERRORS: Final = {
    "400": "a bad body or query parameter: a password or key too short or too long, a "
    "security profile that the secret given cannot serve, an invalid charger id",
    "401": "no valid token (audited)",
    "403": "the token's role or charger scope does not allow it (audited)",
    "404": "a charger the hub does not know, or (rotation) without a password",
    "409": "a rotation is under way already, or the charger is offline (state failed)",
    "503": "the event store did not acknowledge in time",
    "504": "the charger did not answer the ChangeConfiguration in time (state timeout)",
}


def _credential_paths() -> dict[str, dict[str, Any]]:
    timeout = {
        "name": "timeout",
        "in": "query",
        "description": "seconds to wait for the charger's answer (0.1 to 300, default 30)",
        "schema": {"type": "number", "minimum": 0.1, "maximum": 300},
    }
    return {
        "/api/v1/chargers/{charge_point_id}/registration": {
            "put": _money(
                "register_charger",
                "Register a charger, or register it again: its password or key and its "
                "security profile (stores admin.charger.registered)",
                [CHARGER],
                ("200", RegistrationView),
                "400 401 403 503",
                RegistrationBody,
                tag="chargers",
                meanings=CREDENTIAL_ERRORS,
            )
        },
        "/api/v1/chargers/{charge_point_id}/password-rotation": {
            "post": _money(
                "rotate_password",
                "Give a charger a new password (ChangeConfiguration AuthorizationKey); "
                "stores admin.charger.password.rotating and .rotated",
                [CHARGER, timeout],
                ("200", RotationView),
                "400 401 403 404 409 503 504",
                RotationBody,
                tag="chargers",
                meanings=CREDENTIAL_ERRORS,
            )
        },
        "/api/v1/chargers/{charge_point_id}/accept": {
            "post": _money(
                "accept_charger",
                "Accept a charger the pending boot policy holds (stores admin.charger.accepted)",
                [CHARGER],
                ("200", AcceptanceView),
                "401 403 404 503",
                tag="chargers",
                meanings=CREDENTIAL_ERRORS,
            )
        },
    }


def _money_paths() -> dict[str, dict[str, Any]]:
    write = "400 401 403 503"
    credit = "400 401 403 404 409 503"
    return {
        "/api/v1/tariffs": {
            "get": _money(
                "list_tariffs",
                "Every tariff version stored, oldest first (those the token's chargers see)",
                [],
                ("200", TariffList),
                "401 503",
            )
        },
        "/api/v1/tariffs/{tariff_id}": {
            "get": _money(
                "get_tariff",
                "A tariff's latest version",
                [TARIFF_ID],
                ("200", TariffView),
                "401 404 503",
            ),
            "put": _money(
                "put_tariff",
                "Put a tariff in force (stores admin.tariff.set; operator)",
                [TARIFF_ID],
                ("200", TariffView),
                write,
                TariffBody,
            ),
        },
        "/api/v1/wallets/{id_tag}": {
            "get": _money(
                "get_wallet",
                "A wallet's balance, settings and recent ledger",
                [ID_TAG],
                ("200", WalletView),
                "400 401 403 404 503",
            ),
            "put": _money(
                "put_wallet",
                "Make an id tag pay from a prepaid wallet (stores admin.wallet.configured)",
                [ID_TAG],
                ("200", WalletView),
                "400 401 403 409 503",
                WalletBody,
            ),
        },
        "/api/v1/wallets/{id_tag}/topups": {
            "post": _money(
                "post_topup",
                "Top a wallet up (stores admin.wallet.credited; idempotent with a reference)",
                [ID_TAG, IDEMPOTENCY_KEY],
                ("201", CreditView),
                credit,
                CreditBody,
            )
        },
        "/api/v1/wallets/{id_tag}/adjustments": {
            "post": _money(
                "post_adjustment",
                "Correct a wallet by a signed amount (a reference is required)",
                [ID_TAG, IDEMPOTENCY_KEY],
                ("201", CreditView),
                credit,
                CreditBody,
            )
        },
        "/api/v1/chargers/{charge_point_id}/transactions/{transaction_id}/limits": {
            "put": _money(
                "put_session_limits",
                "Limit a running transaction (stores admin.session.limits)",
                [CHARGER, TRANSACTION_ID],
                ("200", LimitsView),
                "400 401 403 404 503",
                Limits,
            )
        },
    }


# -- sites, live limits and assignments (hub/api/sites.py) -------------------------------------

NODE_ID: Final = _path("node_id", {"type": "string", "minLength": 1, "maxLength": 64}, "feeder-1")
CONNECTOR_ID: Final = _path(
    "connector_id", {"type": "integer", "minimum": 0, "maximum": 1000}, 1
)  # fmt: skip
SITE_ERRORS: Final = {
    "400": "a bad body or path parameter (a parent that does not exist or is below the node, "
    "a limit not above 0, ...); the message names the field",
    "401": "no valid token (audited)",
    "403": "the token's role or charger scope does not allow it (audited); nodes and live "
    "limits need a token for all chargers",
    "404": "no such node",
    "409": "the node still has nodes or connectors below it",
    "503": "the event store did not acknowledge in time",
}


def _site_paths() -> dict[str, dict[str, Any]]:
    from hub.api.sites import AssignBody, LiveBody, NodeBody, SiteChange, SitesView

    def operation(
        name: str,
        summary: str,
        parameters: list[dict[str, Any]],
        errors: str,
        body: type[Any] | None = None,
        answer: type[Any] = SiteChange,
    ) -> dict[str, Any]:
        return _money(
            name,
            summary,
            parameters,
            ("200", answer),
            errors,
            body,
            tag="sites",
            meanings=SITE_ERRORS,
        )

    return {
        "/api/v1/sites": {
            "get": operation(
                "get_sites",
                "Every node with its effective limit, load and allocation; every assigned "
                "connector (of the token's chargers) with the allocator's last word on it",
                [],
                "401 503",
                answer=SitesView,
            )
        },
        "/api/v1/sites/nodes/{node_id}": {
            "put": operation(
                "put_site_node",
                "Add or change a node (stores admin.site.node.set; operator)",
                [NODE_ID],
                "400 401 403 503",
                NodeBody,
            ),
            "delete": operation(
                "delete_site_node",
                "Remove a node (stores admin.site.node.removed; operator)",
                [NODE_ID],
                "400 401 403 404 409 503",
            ),
        },
        "/api/v1/sites/nodes/{node_id}/limit": {
            "put": operation(
                "put_site_limit",
                "Set or clear a node's live limit (stores admin.site.limit.set; operator)",
                [NODE_ID],
                "400 401 403 404 503",
                LiveBody,
            )
        },
        "/api/v1/chargers/{charge_point_id}/connectors/{connector_id}/site": {
            "put": operation(
                "put_connector_site",
                "Assign a connector (0: every connector of the charger) to a node, with its "
                "priority and rates (stores admin.site.connector.assigned; operator)",
                [CHARGER, CONNECTOR_ID],
                "400 401 403 503",
                AssignBody,
            )
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    from hub.api.http import ErrorBody
    from hub.api.profile_state import ProfileList
    from hub.api.profiles import ScheduleAnswer
    from hub.api.sites import SITE_TYPES

    types: list[Any] = [
        ProfileList,
        ScheduleAnswer,
        CommandView,
        ErrorBody,
        ReportView,
        *MONEY_TYPES,
        RotationBody,
        RotationView,
        AcceptanceView,
        RegistrationBody,
        RegistrationView,
        *SITE_TYPES,
    ]
    for endpoint in ENDPOINTS:
        for version in endpoint.versions:
            types += [endpoint.request_type(version), endpoint.response_type(version)]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        path = paths.setdefault(f"/api/v1/chargers/{{charge_point_id}}/{endpoint.name}", {})
        path[endpoint.method.lower()] = _operation(endpoint, refs)
    paths["/api/v1/commands/{command_id}"] = {
        "get": {
            "operationId": "get_command",
            "summary": "A command's state: pending, accepted, rejected, failed or timeout",
            "tags": ["commands"],
            "parameters": [
                {"name": "command_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": _json(_ref(CommandView), "the command as tracked from the event stream"),
                "401": _error("no valid token (audited)"),
                "403": _error("the command's charger is outside the token's scope (audited)"),
                "404": _error("no such command (or evicted from the bounded tracker)"),
            },
        }
    }
    paths["/api/v1/chargers/{charge_point_id}/reports/{request_id}"] = {"get": _report()}
    paths.update(_money_paths())
    paths.update(_credential_paths())
    paths.update(_profile_paths())
    paths.update(_site_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ocpp-hub command API",
            "version": "1",
            "description": "Server-initiated OCPP 1.6, 2.0.1 and 2.1 operations, routed to the "
            "gateway that holds the charger; tariffs, prepaid wallets and session limits, sites "
            "and their limits, each change an audited event. Tokens: JWT bearer with `role` "
            "(operator/admin send commands and make changes, viewer only reads) and `chargers` "
            "(ids or *).",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(body=msgspec.json.encode(document()), content_type="application/json")


async def _docs(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "docs.html")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", _openapi)
    app.router.add_get("/api/v1/docs", _docs)
