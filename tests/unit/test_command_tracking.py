"""Command tracking is a pure, idempotent, bounded fold over admin.command.* events."""

from __future__ import annotations

import msgspec
import pytest

from hub.domain.command_tracking import Tracker, command_message, tracking_status
from schemas.events import CommandFinished, CommandRequested


def requested(command_id: str, at: int = 1_000) -> CommandRequested:
    return CommandRequested(
        id=f"{command_id}:requested",
        received_at=at,
        actor="alice",
        command_id=command_id,
        charge_point_id="CP-1",
        action="Reset",
        payload=msgspec.Raw(b'{"type":"Soft"}'),
    )


def finished(
    command_id: str, status: str = "answered", payload: bytes = b"{}", **kw: str
) -> CommandFinished:
    return CommandFinished(
        id=f"{command_id}:finished",
        received_at=2_000,
        actor="alice",
        command_id=command_id,
        charge_point_id="CP-1",
        action="Reset",
        status=status,
        payload=msgspec.Raw(payload),
        **kw,
    )


@pytest.mark.parametrize(
    ("outcome", "payload", "expected"),
    [
        ("answered", b'{"status":"Accepted"}', "accepted"),
        ("answered", b'{"status":"Unlocked"}', "accepted"),
        ("answered", b'{"status":"Rejected"}', "rejected"),
        ("answered", b'{"status":"NotSupported"}', "rejected"),
        ("answered", b'{"configurationKey":[]}', "accepted"),
        ("callerror", b"{}", "failed"),
        ("invalid_answer", b"{}", "failed"),
        ("offline", b"{}", "failed"),
        ("busy", b"{}", "failed"),
        ("timeout", b"{}", "timeout"),
    ],
)
def test_each_outcome_maps_to_one_tracking_status(
    outcome: str, payload: bytes, expected: str
) -> None:
    tracker = Tracker()
    tracker.apply(requested("c1"))
    pending = tracker.get("c1")
    assert pending is not None and pending.status == "pending"
    tracker.apply(finished("c1", outcome, payload))
    view = tracker.get("c1")
    assert view is not None and view.status == expected
    assert view.status == tracking_status(outcome, msgspec.json.decode(payload))


def test_replays_in_any_order_and_repeated_events_give_the_same_state() -> None:
    events = [requested("c1"), finished("c1", "callerror", error_code="InternalError")]
    in_order, reversed_, twice = Tracker(), Tracker(), Tracker()
    for event in events:
        in_order.apply(event)
    for event in reversed(events):
        reversed_.apply(event)
    for event in events + events:
        twice.apply(event)
    assert in_order.get("c1") == reversed_.get("c1") == twice.get("c1")
    view = in_order.get("c1")
    assert view is not None
    assert (view.actor, view.requested_at, view.finished_at) == ("alice", 1_000, 2_000)
    assert view.error is not None and view.error.code == "InternalError"


def test_a_later_finish_never_overrides_the_first() -> None:
    tracker = Tracker()
    tracker.apply(finished("c1", "answered", b'{"status":"Accepted"}'))
    tracker.apply(finished("c1", "timeout"))
    view = tracker.get("c1")
    assert view is not None and view.status == "accepted"


def test_the_oldest_commands_are_evicted_beyond_capacity() -> None:
    tracker = Tracker(capacity=3)
    for n in range(5):
        tracker.apply(requested(f"c{n}"))
    assert len(tracker) == 3
    assert [tracker.get(f"c{n}") is not None for n in range(5)] == [False, False, True, True, True]


def test_the_ui_message_carries_the_outcome() -> None:
    message = command_message(finished("c1", "callerror", error_code="NotSupported"), seq=42)
    assert (message.seq, message.command_id, message.status) == (42, "c1", "failed")
    assert message.detail == {"code": "NotSupported", "description": ""}
