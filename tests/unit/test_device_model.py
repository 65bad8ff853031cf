"""The device model fold: NotifyReport parts become facts, and reports assemble per
(station, requestId) whatever order the parts come in; pure functions, no sockets."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from hub.domain.charging import Charging
from hub.domain.device_model import Reports, report_part
from hub.domain.facts import Problem, ReportedVariable, ReportPart
from schemas.events import CommandFinished, CommandRequested, OcppFrame


def _frame(seq_no: int, tbc: bool, *names: str, request_id: int = 7) -> OcppFrame:
    payload = {
        "requestId": request_id,
        "generatedAt": "2027-01-01T00:00:00Z",
        "seqNo": seq_no,
        "tbc": tbc,
        "reportData": [
            {
                "component": {"name": name, "evse": {"id": 1, "connectorId": 2}},
                "variable": {"name": "Enabled", "instance": "x"},
                "variableAttribute": [{"value": "true"}, {"type": "Target", "value": "false"}],
                "variableCharacteristics": {
                    "dataType": "boolean",
                    "supportsMonitoring": True,
                    "minLimit": 0,
                },
            }
            for name in names
        ],
    }
    return OcppFrame(
        id=f"f{seq_no}",
        received_at=1_000 + seq_no,
        charge_point_id="CP-1",
        gateway_id="gw",
        connection_id="c",
        ocpp_version="2.0.1",
        direction="in",
        message_type="CALL",
        unique_id=f"u{seq_no}",
        action="NotifyReport",
        payload=msgspec.Raw(json.dumps(payload).encode()),
    )


def _part(seq_no: int, tbc: bool, *names: str) -> ReportPart:
    fact = report_part(seq_no, _frame(seq_no, tbc, *names))
    assert isinstance(fact, ReportPart)
    return fact


def _command(action: str, body: dict[str, Any], status: str, answer: dict[str, Any]) -> Any:
    common = {"actor": "alice", "command_id": "c1", "charge_point_id": "CP-1", "action": action}
    requested = CommandRequested(
        id="c1:requested", received_at=1, payload=msgspec.Raw(json.dumps(body).encode()), **common
    )
    finished = CommandFinished(
        id="c1:finished",
        received_at=2,
        status=status,
        payload=msgspec.Raw(json.dumps(answer).encode()),
        **common,
    )
    return requested, finished


def test_a_part_is_a_fact_with_one_entry_per_attribute_and_the_charging_fold_says_so() -> None:
    fact = _part(0, True, "EVSE")
    assert (fact.request_id, fact.seq_no, fact.tbc) == (7, 0, True)
    assert fact.generated_at_ms == 1_798_761_600_000
    actual = ReportedVariable(
        component="EVSE",
        evse_id=1,
        connector_id=2,
        variable="Enabled",
        variable_instance="x",
        value="true",
        data_type="boolean",
        supports_monitoring=True,
        min_limit=0.0,
    )
    target = msgspec.structs.replace(actual, attribute_type="Target", value="false")
    assert fact.variables == (actual, target)
    assert Charging().apply(5, _frame(0, True, "EVSE")) == [msgspec.structs.replace(fact, seq=5)]
    broken = msgspec.structs.replace(_frame(0, True), payload=msgspec.Raw(b'{"seqNo": 0}'))
    assert isinstance(report_part(1, broken), Problem)


def test_parts_assemble_in_seq_no_order_once_the_last_and_every_one_before_are_in() -> None:
    reports = Reports()
    requested, finished = _command(
        "GetBaseReport",
        {"requestId": 7, "reportBase": "FullInventory"},
        "answered",
        {"status": "Accepted"},
    )
    reports.requested(requested)
    reports.finished(finished)
    assert reports.get("CP-1", 7) is not None and reports.get("CP-1", 7).status == "pending"  # type: ignore[union-attr]
    assert reports.part(_part(2, False, "C")) is None
    assert reports.part(_part(0, True, "A")) is None
    assert reports.part(_part(0, True, "A")) is None  # a duplicate counts once
    done = reports.part(_part(1, True, "B"))
    assert done is not None and done.status == "complete" and done.parts == 3
    assert [v.component for v in done.variables] == ["A", "A", "B", "B", "C", "C"]
    assert (done.action, done.answer, done.requested_at, done.completed_at) == (
        "GetBaseReport",
        "Accepted",
        1,
        1_001,
    )
    assert reports.get("CP-2", 7) is None and reports.get("CP-1", 8) is None


def test_an_empty_result_set_is_complete_and_a_refusal_is_refused() -> None:
    reports = Reports()
    requested, finished = _command(
        "GetReport", {"requestId": 7}, "answered", {"status": "EmptyResultSet"}
    )
    reports.requested(requested)
    reports.finished(finished)
    view = reports.get("CP-1", 7)
    assert view is not None and view.status == "complete" and view.variables == []
    refused = Reports()
    requested, finished = _command("GetReport", {"requestId": 7}, "callerror", {})
    refused.requested(requested)
    refused.finished(msgspec.structs.replace(finished, error_code="NotImplemented"))
    view = refused.get("CP-1", 7)
    assert view is not None and view.status == "refused" and view.answer == "NotImplemented"


def test_the_fold_is_bounded_in_reports_and_in_variables_and_says_when_it_cut() -> None:
    reports = Reports(capacity=2, max_variables=3)
    for request_id in (1, 2, 3):
        reports.part(msgspec.structs.replace(_part(0, True, "A"), request_id=request_id))
    assert reports.get("CP-1", 1) is None and reports.get("CP-1", 3) is not None
    reports.part(_part(0, True, "A", "B"))
    done = reports.part(_part(1, False, "C"))
    assert done is not None and done.truncated and len(done.variables) == 3
