"""The command API for OCPP 2.0.1 and 2.1 stations (issue #12, item 6): REST -> NATS -> the
gateway holding the station -> an ocpp-library v201 or v21 ChargePoint, and back; one path
for an operation every version has, a 409 naming the versions for one the station's
version lacks, secrets redacted in the stream. Real nats-server, real gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from projections.service import Projections, running_projections
from schemas.events import CommandFinished, CommandRequested, OcppFrame
from tests.integration.api_helpers import Api, api_client, online
from tests.integration.helpers import charger_events, stored_events
from tests.integration.test_ocpp2_gateway import gateway, ui_port
from tests.integration.v2_helpers import PASSWORD, VARIABLE, station_online
from tests.projections.helpers import last_seq, rows

__all__ = ["gateway", "ui_port"]  # fixtures: imported for pytest, which finds them here


def _out_calls(events: list[Any]) -> list[OcppFrame]:
    return [
        e
        for e in events
        if isinstance(e, OcppFrame) and e.direction == "out" and e.message_type == "CALL"
    ]


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
async def test_2x_commands_round_trip_with_schema_valid_answers(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats, version: str
) -> None:
    cp = f"CP-V{version.replace('.', '')}"
    base = f"/api/v1/chargers/{cp}"
    commands: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "reset", {"type": "Immediate"}),
        ("POST", "get-variables", {"getVariableData": [VARIABLE]}),
        (
            "POST",
            "set-variables",
            {
                "setVariableData": [
                    {**VARIABLE, "attributeValue": "60"},
                    {**PASSWORD, "attributeValue": "s3cret-password-16"},
                ]
            },
        ),
        (
            "POST",
            "request-start-transaction",
            {"idToken": {"idToken": "TAG-1", "type": "ISO14443"}, "remoteStartId": 7},
        ),
        ("POST", "request-stop-transaction", {"transactionId": "tx-1"}),
        ("POST", "get-transaction-status", {"transactionId": "tx-1"}),
        ("POST", "change-availability", {"operationalStatus": "Inoperative"}),
    ]
    async with (
        station_online(gateway.port, ui_port, cp, version) as station,
        api_client(ui_port) as api,
    ):
        answers = [
            await api.call(method, f"{base}/{name}", body) for method, name, body in commands
        ]
    for (_, name, _), (status, answer) in zip(commands, answers, strict=True):
        assert status == 200, (name, answer)
        assert answer["status"] == "accepted", (name, answer)
    actions = ["Reset", "GetVariables", "SetVariables", "RequestStartTransaction"]
    actions += ["RequestStopTransaction", "GetTransactionStatus", "ChangeAvailability"]
    assert [action for action, _ in station.received] == actions
    assert answers[1][1]["response"]["getVariableResult"][0]["attributeValue"] == "300"
    assert answers[3][1]["response"] == {"status": "Accepted", "transactionId": "tx-1"}
    # The station got the password; the stream keeps none of it.
    assert station.received[2][1]["set_variable_data"][1]["attribute_value"] == "s3cret-password-16"
    events = await charger_events(nats_server.url, cp)
    assert [f.action for f in _out_calls(events)] == actions
    admin = [e for _, e in await stored_events(nats_server.url, "ev.admin.command.>")]
    stored = b"".join(
        bytes(e.payload) for e in [*events, *admin] if isinstance(e, OcppFrame | CommandRequested)
    )
    assert b"s3cret-password-16" not in stored
    [requested] = [
        e for e in admin if isinstance(e, CommandRequested) and e.action == "SetVariables"
    ]
    data = msgspec.json.decode(requested.payload)["setVariableData"]
    assert [item["attributeValue"] for item in data] == ["60", "***"]
    assert {e.status for e in admin if isinstance(e, CommandFinished)} == {"answered"}


async def test_an_endpoint_of_another_version_answers_409_naming_the_versions(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats
) -> None:
    async with api_client(ui_port) as api:
        async with station_online(gateway.port, ui_port, "CP-201", "2.0.1") as station:
            to_201 = [
                await api.call("GET", "/api/v1/chargers/CP-201/configuration"),
                await api.call("POST", "/api/v1/chargers/CP-201/remote-start", {"idTag": "T"}),
                await api.call(
                    "POST",
                    "/api/v1/chargers/CP-201/afrr-signal",
                    {"timestamp": "2027-01-01T00:00:00Z", "signal": 1},
                ),
                # A path both versions have, with a 1.6 body: checked against 2.0.1's schema.
                await api.call("POST", "/api/v1/chargers/CP-201/reset", {"type": "Soft"}),
            ]
        async with online(gateway.port, ui_port, "CP-16") as charger:
            to_16 = await api.call(
                "POST", "/api/v1/chargers/CP-16/get-variables", {"getVariableData": [VARIABLE]}
            )
    assert [status for status, _ in to_201] == [409, 409, 409, 400]
    for _, answer in to_201[:3]:
        assert answer["outcome"] == "wrong_version" and answer["status"] == "failed"
        assert "OCPP 2.0.1" in answer["error"]["description"]
    assert "for OCPP 1.6" in to_201[0][1]["error"]["description"]
    assert "for OCPP 2.1" in to_201[2][1]["error"]["description"]
    assert to_201[3][1]["outcome"] == "invalid"
    assert "Invalid enum value 'Soft' - at `$.type`" in to_201[3][1]["error"]["description"]
    assert to_16[0] == 409 and to_16[1]["outcome"] == "wrong_version"
    assert "connected with OCPP 1.6" in to_16[1]["error"]["description"]
    assert "for OCPP 2.0.1, 2.1" in to_16[1]["error"]["description"]
    assert station.received == [] and charger is not None
    for cp in ("CP-201", "CP-16"):
        assert _out_calls(await charger_events(nats_server.url, cp)) == []


@pytest.fixture
async def projections(
    nats_server: EmbeddedNats, settings: Settings, gateway: Gateway
) -> AsyncIterator[Projections]:
    async with running_projections(settings, nats_server.url) as running:
        yield running


def _report_data(name: str, value: str, **extra: Any) -> dict[str, Any]:
    return {
        "component": {"name": name, **extra},
        "variable": {"name": "Enabled"},
        "variable_attribute": [{"type": "Actual", "value": value, "mutability": "ReadWrite"}],
        "variable_characteristics": {"data_type": "boolean", "supports_monitoring": False},
    }


async def _report_when(
    api: Api, path: str, done: Callable[[int, dict[str, Any]], bool]
) -> tuple[int, dict[str, Any]]:
    """GET the report until ``done`` says the API has folded what the test stored."""
    async with asyncio.timeout(10):
        while True:
            status, body = await api.call("GET", path)
            if done(status, body):
                return status, body
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
async def test_get_base_report_then_notify_report_in_three_parts_is_assembled_and_projected(
    gateway: Gateway,
    ui_port: int,
    nats_server: EmbeddedNats,
    projections: Projections,
    version: str,
) -> None:
    calls = call201 if version == "2.0.1" else call21
    path = "/api/v1/chargers/CP-DM/reports/7"
    parts = [
        (0, True, [_report_data("EVSE", "true", evse={"id": 1})]),
        (2, False, [_report_data("Connector", "false", evse={"id": 1, "connector_id": 1})]),
        (1, True, [_report_data("OCPPCommCtrlr", "true"), _report_data("AuthCtrlr", "false")]),
    ]
    async with (
        station_online(gateway.port, ui_port, "CP-DM", version) as station,
        api_client(ui_port) as api,
    ):
        unknown = await api.call("GET", path)
        asked = await api.call(
            "POST",
            "/api/v1/chargers/CP-DM/get-base-report",
            {"requestId": 7, "reportBase": "FullInventory"},
        )
        before = await api.call("GET", path)
        seen = []
        for seq_no, tbc, data in parts:
            answer = await station.call(
                calls.NotifyReport(
                    request_id=7,
                    generated_at="2027-01-01T00:00:00Z",
                    seq_no=seq_no,
                    tbc=tbc,
                    report_data=data,
                ),
                suppress=False,
            )
            assert answer is not None  # the library checked it against NotifyReportResponse
            count = len(seen) + 1
            seen.append(
                await _report_when(api, path, lambda _, body, n=count: body.get("parts") == n)
            )
    assert unknown[0] == 404
    assert asked[0] == 200 and asked[1]["response"] == {"status": "Accepted"}
    assert before[0] == 202 and before[1]["status"] == "pending"
    assert before[1]["action"] == "GetBaseReport" and before[1]["answer"] == "Accepted"
    # The last part came second: still missing part 1, so still pending.
    assert [status for status, _ in seen] == [202, 202, 200]
    report = seen[-1][1]
    assert report["status"] == "complete" and report["parts"] == 3
    assert [(v["component"], v["value"]) for v in report["variables"]] == [
        ("EVSE", "true"),
        ("OCPPCommCtrlr", "true"),
        ("AuthCtrlr", "false"),
        ("Connector", "false"),
    ]
    assert report["variables"][3]["evseId"] == 1 and report["variables"][3]["connectorId"] == 1
    await projections.runner.wait_for(await last_seq(nats_server.url))
    table = await rows(
        projections.backend,
        "SELECT request_id, seq_no, tbc, component, evse_id, connector_id, variable, "
        "attribute_type, value, mutability, data_type FROM ocpp.device_model "
        "WHERE charge_point_id = 'CP-DM' ORDER BY seq, component",
    )
    assert [(r["seq_no"], r["component"], r["value"]) for r in table] == [
        (0, "EVSE", "true"),
        (2, "Connector", "false"),
        (1, "AuthCtrlr", "false"),
        (1, "OCPPCommCtrlr", "true"),
    ]
    assert table[1] == {
        "request_id": 7,
        "seq_no": 2,
        "tbc": False,
        "component": "Connector",
        "evse_id": 1,
        "connector_id": 1,
        "variable": "Enabled",
        "attribute_type": "Actual",
        "value": "false",
        "mutability": "ReadWrite",
        "data_type": "boolean",
    }
    latest = await rows(
        projections.backend,
        "SELECT component, value FROM ocpp.device_variables WHERE charge_point_id = 'CP-DM' "
        "ORDER BY component",
    )
    assert [r["component"] for r in latest] == ["AuthCtrlr", "Connector", "EVSE", "OCPPCommCtrlr"]
