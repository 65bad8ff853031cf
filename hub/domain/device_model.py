"""The device model of OCPP 2.0.1 and 2.1 stations: what their NotifyReports say, and the
reports assembled from them.

A station answers a GetBaseReport or GetReport (``requestId`` N) with its status, then sends
its report as NotifyReport parts ``seqNo`` 0, 1, ... under the same ``requestId``, each with
``tbc`` (to be continued) true but the last. ``report_part`` turns one part into a
``report.part`` fact (the charging fold does, for every consumer); ``Reports`` is the pure
fold that assembles them per (station, requestId): complete once the part with ``tbc``
false and every part before it are in, whatever order they were stored in.

``Reports`` is bounded: the last ``MAX_REPORTS`` reports, and at most ``MAX_VARIABLES``
attributes in one; beyond that a report is marked ``truncated`` (its table rows are all
there: the projection writes every part as it comes).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final, Literal

import msgspec

from hub.domain.facts import Problem, ReportedVariable, ReportPart
from hub.domain.timeutil import parse_ms
from schemas.events import CommandFinished, CommandRequested, OcppFrame
from schemas.ocpp import PayloadError, v21, v201, validate_call

# The hub's CALLs a report answers, and what their answers' status means.
REPORT_REQUESTS: Final = frozenset({"GetBaseReport", "GetReport"})
MAX_REPORTS: Final = 1_000
MAX_VARIABLES: Final = 100_000

_NotifyReport = v201.NotifyReportRequest | v21.NotifyReportRequest
_UNSET: Final = msgspec.UNSET


def _given(value: Any, default: Any = None) -> Any:
    return default if value is _UNSET else value


def variables_of(request: _NotifyReport) -> tuple[ReportedVariable, ...]:
    """One entry per attribute of every variable a NotifyReport carries."""
    out: list[ReportedVariable] = []
    for data in _given(request.report_data, ()):
        component, variable = data.component, data.variable
        evse = _given(component.evse)
        characteristics = _given(data.variable_characteristics)
        common: dict[str, Any] = {
            "component": component.name,
            "component_instance": _given(component.instance, ""),
            "evse_id": None if evse is None else evse.id,
            "connector_id": None if evse is None else _given(evse.connector_id),
            "variable": variable.name,
            "variable_instance": _given(variable.instance, ""),
        }
        if characteristics is not None:
            common.update(
                data_type=characteristics.data_type,
                unit=_given(characteristics.unit, ""),
                min_limit=_float(_given(characteristics.min_limit)),
                max_limit=_float(_given(characteristics.max_limit)),
                values_list=_given(characteristics.values_list, ""),
                supports_monitoring=characteristics.supports_monitoring,
            )
        for attribute in data.variable_attribute:
            out.append(
                ReportedVariable(
                    **common,
                    attribute_type=_given(attribute.type, "Actual"),
                    value=_given(attribute.value),
                    mutability=_given(attribute.mutability, ""),
                    persistent=_given(attribute.persistent),
                    constant=_given(attribute.constant),
                )
            )
    return tuple(out)


def _float(value: int | float | None) -> float | None:
    return None if value is None else float(value)


def report_part(seq: int, frame: OcppFrame) -> ReportPart | Problem:
    """The fact of a NotifyReport CALL a station sent (the gateway stored it valid)."""
    request = validate_call(frame.ocpp_version, frame.action, frame.payload)
    if isinstance(request, PayloadError) or not isinstance(request, _NotifyReport):
        return Problem(
            seq=seq,
            at=frame.received_at,
            charge_point_id=frame.charge_point_id,
            reason=f"NotifyReport: {request}",
        )
    try:
        generated_at: int | None = parse_ms(request.generated_at)
    except ValueError:
        generated_at = None
    return ReportPart(
        seq=seq,
        at=frame.received_at,
        charge_point_id=frame.charge_point_id,
        request_id=request.request_id,
        seq_no=request.seq_no,
        tbc=_given(request.tbc, False),
        generated_at_ms=generated_at,
        variables=variables_of(request),
    )


def is_report_part(event: object) -> bool:
    return (
        isinstance(event, OcppFrame)
        and event.action == "NotifyReport"
        and event.direction == "in"
        and event.message_type == "CALL"
    )


# pending: asked for (or some parts in), not complete; complete: every part is in (or the
# station answered EmptyResultSet); refused: the station will send none (Rejected,
# NotSupported, or the command failed).
ReportStatus = Literal["pending", "complete", "refused"]


class ReportView(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """A report as ``GET /api/v1/chargers/{id}/reports/{requestId}`` returns it."""

    charge_point_id: str
    request_id: int
    status: ReportStatus
    action: str = ""  # GetBaseReport or GetReport, when the hub asked
    answer: str = ""  # the station's status for it, or why there is none
    requested_at: int = 0
    parts: int = 0  # parts stored so far
    generated_at: int | None = None  # the first part's time (Unix ms)
    completed_at: int = 0  # when the last missing part was stored (Unix ms)
    truncated: bool = False
    variables: list[ReportedVariable] = []


class _Report(msgspec.Struct, kw_only=True):
    view: ReportView
    parts: dict[int, tuple[ReportedVariable, ...]] = {}
    last: int | None = None  # the seqNo of the part with tbc false
    held: int = 0  # variables in ``parts``


def requested_report(event: CommandRequested) -> int | None:
    """The requestId of a GetBaseReport or GetReport the hub was asked to send."""
    if event.action not in REPORT_REQUESTS:
        return None
    try:
        body = msgspec.json.decode(event.payload)
    except msgspec.DecodeError:
        return None
    request_id = body.get("requestId") if isinstance(body, dict) else None
    return request_id if type(request_id) is int else None


class Reports:
    """The fold: reports per (station, requestId), from the commands that asked for them and
    the parts that answer them. Idempotent (a part or command seen twice counts once)."""

    def __init__(self, capacity: int = MAX_REPORTS, max_variables: int = MAX_VARIABLES) -> None:
        self._reports: OrderedDict[tuple[str, int], _Report] = OrderedDict()
        self._asked: dict[str, tuple[str, int]] = {}  # command id -> its report's key
        self._capacity = capacity
        self._max_variables = max_variables

    def get(self, charge_point_id: str, request_id: int) -> ReportView | None:
        found = self._reports.get((charge_point_id, request_id))
        return None if found is None else found.view

    def requested(self, event: CommandRequested) -> None:
        request_id = requested_report(event)
        if request_id is None:
            return
        report = self._report(event.charge_point_id, request_id)
        report.view.action, report.view.requested_at = event.action, event.received_at
        self._asked[event.command_id] = (event.charge_point_id, request_id)

    def finished(self, event: CommandFinished) -> None:
        found = self._asked.pop(event.command_id, None)
        report = None if found is None else self._reports.get(found)
        if report is None or report.view.status == "complete":
            return
        status = ""
        if event.status == "answered":
            try:
                answer = msgspec.json.decode(event.payload)
            except msgspec.DecodeError:
                answer = None
            status = answer.get("status", "") if isinstance(answer, dict) else ""
        report.view.answer = status or event.error_code or event.status
        if status == "EmptyResultSet":
            report.view.status, report.view.completed_at = "complete", event.received_at
        elif status != "Accepted" and not report.parts:
            report.view.status = "refused"

    def part(self, fact: ReportPart) -> ReportView | None:
        """Fold one part; the report's view if this part completed it."""
        report = self._report(fact.charge_point_id, fact.request_id)
        if fact.seq_no in report.parts or report.view.status == "complete":
            return None
        view = report.view
        if len(report.parts) >= self._max_variables:
            view.truncated = True  # a station that never ends its report
            return None
        kept = fact.variables[: max(self._max_variables - report.held, 0)]
        view.truncated |= len(kept) < len(fact.variables)
        report.parts[fact.seq_no], report.held = kept, report.held + len(kept)
        view.parts = len(report.parts)
        if fact.seq_no == 0 or view.generated_at is None:
            view.generated_at = fact.generated_at_ms
        if not fact.tbc:
            report.last = fact.seq_no
        if view.status == "refused":
            view.status = "pending"
        if report.last is None or any(n not in report.parts for n in range(report.last + 1)):
            return None
        variables: list[ReportedVariable] = []
        for seq_no in range(report.last + 1):
            variables.extend(report.parts[seq_no])
        view.variables, view.status, view.completed_at = variables, "complete", fact.at
        report.parts = {n: () for n in report.parts}  # the view holds them now
        return view

    def _report(self, charge_point_id: str, request_id: int) -> _Report:
        key = (charge_point_id, request_id)
        found = self._reports.get(key)
        if found is None:
            found = self._reports[key] = _Report(
                view=ReportView(
                    charge_point_id=charge_point_id, request_id=request_id, status="pending"
                )
            )
            while len(self._reports) > self._capacity:
                self._reports.popitem(last=False)
            if len(self._asked) > self._capacity:
                del self._asked[next(iter(self._asked))]
        return found
