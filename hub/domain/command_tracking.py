"""Command tracking: a pure fold over ``admin.command.*`` events, bounded in memory.

``GET /api/v1/commands/{id}`` reads it. Because it is rebuilt from the stream at startup,
a command's state survives a restart of the API. The fold is idempotent and tolerates a
``finished`` before its ``requested`` (the API applies its own events as soon as they are
stored, and sees them again when the stream delivers them).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from schemas.events import CommandFinished, CommandRequested, Event
from schemas.ui import Command

TrackingStatus = Literal["pending", "accepted", "rejected", "failed", "timeout"]

# Answers whose ``status`` means the charger does (or will do) what it was asked.
ACCEPTING: Final = frozenset(
    {"Accepted", "Unlocked", "Scheduled", "RebootRequired", "AcceptedCanceled"}
)
DEFAULT_CAPACITY: Final = 10_000

_json: Final = msgspec.json.Decoder()


class CommandError(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Why a command has no usable answer: the charger's CALLERROR, or the hub's reason."""

    code: str
    description: str = ""


class CommandView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """A command as ``GET /api/v1/commands/{id}`` and the command endpoints return it."""

    command_id: str
    charge_point_id: str
    action: str
    status: TrackingStatus
    # The reply as the gateway gave it: answered, callerror, timeout, offline, busy, invalid,
    # invalid_answer; empty while pending.
    outcome: str = ""
    response: dict[str, Any] | None = None
    error: CommandError | None = None
    actor: str = ""
    requested_at: int = 0
    finished_at: int = 0


def tracking_status(outcome: str, response: Any) -> TrackingStatus:
    """Map a gateway reply (and the charger's payload) onto what an operator cares about."""
    if outcome == "answered":
        status = response.get("status") if isinstance(response, dict) else None
        # Answers without a status (GetConfiguration, GetDiagnostics, ...) are answers.
        return "accepted" if status is None or status in ACCEPTING else "rejected"
    if outcome == "timeout":
        return "timeout"
    return "failed"


def _payload(raw: msgspec.Raw) -> dict[str, Any] | None:
    try:
        value = _json.decode(raw)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(slots=True)
class _Record:
    view: CommandView
    finished: bool = False


class Tracker:
    """The last ``capacity`` commands, oldest evicted first (they answer 404 afterwards)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._capacity = max(1, capacity)

    def __len__(self) -> int:
        return len(self._records)

    def get(self, command_id: str) -> CommandView | None:
        record = self._records.get(command_id)
        return record.view if record is not None else None

    def apply(self, event: Event) -> None:
        match event:
            case CommandRequested():
                record = self._records.get(event.command_id)
                if record is None:
                    self._insert(
                        event.command_id,
                        _Record(
                            CommandView(
                                command_id=event.command_id,
                                charge_point_id=event.charge_point_id,
                                action=event.action,
                                status="pending",
                                actor=event.actor,
                                requested_at=event.received_at,
                            )
                        ),
                    )
                elif not record.view.requested_at:
                    record.view = msgspec.structs.replace(
                        record.view, actor=event.actor, requested_at=event.received_at
                    )
            case CommandFinished():
                record = self._records.get(event.command_id)
                if record is not None and record.finished:
                    return
                finished = finished_view(event)
                if record is None:
                    self._insert(event.command_id, _Record(finished, finished=True))
                else:
                    record.view = msgspec.structs.replace(
                        finished,
                        actor=record.view.actor,
                        requested_at=record.view.requested_at,
                    )
                    record.finished = True

    def _insert(self, command_id: str, record: _Record) -> None:
        self._records[command_id] = record
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)


def finished_view(event: CommandFinished) -> CommandView:
    response = _payload(event.payload) if event.status == "answered" else None
    error = None
    if event.status != "answered":
        error = CommandError(
            code=event.error_code or event.status, description=event.error_description
        )
    return CommandView(
        command_id=event.command_id,
        charge_point_id=event.charge_point_id,
        action=event.action,
        status=tracking_status(event.status, response),
        outcome=event.status,
        response=response,
        error=error,
        actor=event.actor,
        finished_at=event.received_at,
    )


def command_message(event: CommandFinished, seq: int) -> Command:
    """The ``command`` UI message a charger's subscribers get when a command finishes."""
    view = finished_view(event)
    detail: Any = view.response
    if view.error is not None:
        detail = {"code": view.error.code, "description": view.error.description}
    return Command(
        charge_point_id=event.charge_point_id,
        seq=seq,
        received_at=event.received_at,
        command_id=event.command_id,
        action=event.action,
        status=view.status,
        detail=detail,
    )
