"""The OpenAPI 3.1 document of the command API, generated from the msgspec types it uses.

Component schemas come from ``msgspec.json.schema_components`` over the very types that
decode request bodies and encode answers, so the document cannot drift from the code.
Every status code a command endpoint can answer is listed (docs/command-api.md).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final

import msgspec
from aiohttp import web

from hub.api.endpoints import ENDPOINTS, Endpoint
from hub.api.tracking import CommandView

STATIC: Final = Path(__file__).resolve().parent / "static"
REF: Final = "#/components/schemas/{name}"


def _ref(kind: type[Any]) -> dict[str, str]:
    return {"$ref": REF.format(name=kind.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    from hub.api.http import ErrorBody

    return _json(_ref(ErrorBody), description)


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    answered = {
        "allOf": [
            _ref(CommandView),
            {"type": "object", "properties": {"response": _ref(endpoint.response_type)}},
        ]
    }
    parameters: list[dict[str, Any]] = [
        {
            "name": "charge_point_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
            "example": "CP-1",
        },
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
        "description": f"Sends the OCPP 1.6 `{endpoint.action}` CALL and returns the "
        "charger's answer. The body is the OCPP request payload.",
        "tags": ["commands"],
        "parameters": parameters,
        "responses": {
            "200": _json(answered, "the charger answered (status accepted or rejected)"),
            "202": _json(_ref(CommandView), "wait=false: queued; the body has the command id"),
            "400": _error("a bad body or query parameter; the message names the field"),
            "401": _error("no valid token (audited)"),
            "403": _error("the token's role or charger scope does not allow it (audited)"),
            "404": _error("the hub has never seen this charger"),
            "409": _json(_ref(CommandView), "the charger is known but offline"),
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
            "content": {"application/json": {"schema": _ref(endpoint.request_type)}},
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


@functools.cache
def document() -> dict[str, Any]:
    from hub.api.http import ErrorBody

    types: list[Any] = [CommandView, ErrorBody]
    for endpoint in ENDPOINTS:
        types += [endpoint.request_type, endpoint.response_type]
    _, components = msgspec.json.schema_components(types, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        path = paths.setdefault(f"/api/v1/chargers/{{charge_point_id}}/{endpoint.name}", {})
        path[endpoint.method.lower()] = _operation(endpoint)
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
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ocpp-hub command API",
            "version": "1",
            "description": "Server-initiated OCPP 1.6 operations, routed to the gateway that "
            "holds the charger. Tokens: JWT bearer with `role` (operator/admin send commands, "
            "viewer only reads) and `chargers` (ids or *).",
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
