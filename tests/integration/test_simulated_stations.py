"""Simulated OCPP 2.0.1 and 2.1 stations against the real gateway (real nats-server): every
frame they send passes the gateway's schema validation, their transactions are whole
(Started, gapless seqNos, Ended), and a station that loses its link mid-session flushes its
TransactionEvents, marked offline, in order when it is back."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from schemas.events import ChargerConnected, Event, FrameRejected, OcppFrame
from tests.conftest import with_gateway
from tests.integration.helpers import charger_events
from tools.simulator import FleetOptions, Sample, SimulatedStation, run_fleet

VERSIONS = ("2.1", "2.0.1")


@pytest.fixture
async def gateway(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway that negotiates 2.x (the hub's default is 1.6 alone)."""
    async with running_gateway(
        with_gateway(settings, ocpp_versions="2.1,2.0.1,1.6"), nats_server.url
    ) as running:
        yield running


def _calls(events: list[Event], action: str | None = None) -> list[OcppFrame]:
    return [
        e
        for e in events
        if isinstance(e, OcppFrame)
        and e.direction == "in"
        and e.message_type == "CALL"
        and (action is None or e.action == action)
    ]


def _assert_all_accepted(events: list[Event]) -> None:
    """No frame was refused, and every CALL got its CALLRESULT."""
    assert not [e for e in events if isinstance(e, FrameRejected)]
    answered = {
        e.unique_id
        for e in events
        if isinstance(e, OcppFrame) and e.direction == "out" and e.message_type == "CALLRESULT"
    }
    assert {c.unique_id for c in _calls(events)} <= answered


def _transactions(events: list[Event]) -> dict[str, list[dict[str, Any]]]:
    """Each transaction's TransactionEvent payloads, in the order the hub stored them."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in _calls(events, "TransactionEvent"):
        payload = msgspec.json.decode(call.payload)
        found[payload["transactionInfo"]["transactionId"]].append(payload)
    return found


def _assert_whole(transaction: list[dict[str, Any]]) -> None:
    """Started at seqNo 0, Ended last, and no seqNo missing between (a message retransmitted
    after a lost answer may repeat one)."""
    # A retransmission repeats its seqNo; the first of each is what the station meant.
    first = {e["seqNo"]: e for e in reversed(transaction)}
    transaction = [first[seq_no] for seq_no in sorted(first)]
    seq_nos = [e["seqNo"] for e in transaction]
    assert transaction[0]["eventType"] == "Started" and seq_nos[0] == 0
    assert transaction[-1]["eventType"] == "Ended" and seq_nos[-1] == max(seq_nos)
    assert set(seq_nos) == set(range(max(seq_nos) + 1)), seq_nos
    assert {e["eventType"] for e in transaction[1:-1]} <= {"Updated"}


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_simulated_2x_fleet_sends_only_valid_frames_and_whole_transactions(
    gateway: Gateway, nats_server: EmbeddedNats, version: str
) -> None:
    options = FleetOptions(
        chargers=3,
        url=f"ws://127.0.0.1:{gateway.port}/ocpp",
        prefix=f"ST{version}-",
        ocpp=version,  # type: ignore[arg-type]  # the parametrized literal
        mode="interval",
        interval=0.004,
        duration=2.0,
        connectors=2,
        meter_values_per_session=(2, 4),
        # One station at a time drops off and comes back, mid-session or between sessions.
        offline_every=0.4,
        offline_for=0.2,
        seed=12,
    )
    report = await run_fleet(options)
    assert report.connected == 3
    # Calls cut off by the dropped links are the only errors.
    assert set(report.latency.error_kinds) <= {"disconnected"}
    assert report.offline_events >= 1 and report.offline_flushed > 0

    complete = flushed = 0
    for charger_id in options.charger_ids():
        events = await charger_events(nats_server.url, charger_id)
        _assert_all_accepted(events)
        assert {e.ocpp_version for e in events if isinstance(e, ChargerConnected)} == {version}
        # A 2.x station boots at power-up only, not on every reconnect.
        assert len(_calls(events, "BootNotification")) == 1
        open_at_end = 0
        for transaction in _transactions(events).values():
            if transaction[-1]["eventType"] != "Ended":
                open_at_end += 1  # the fleet stopped mid-session
                continue
            _assert_whole(transaction)
            complete += 1
            flushed += sum(1 for e in transaction if e.get("offline"))
        assert open_at_end <= 1
        statuses = [msgspec.json.decode(c.payload) for c in _calls(events, "StatusNotification")]
        assert {s["connectorStatus"] for s in statuses} <= {"Available", "Occupied"}
    assert complete >= 3 and flushed > 0


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_station_offline_mid_session_flushes_its_events_in_order(
    gateway: Gateway, nats_server: EmbeddedNats, version: str
) -> None:
    station = SimulatedStation(
        "ST-OFFLINE",
        f"ws://127.0.0.1:{gateway.port}/ocpp",
        version=version,  # type: ignore[arg-type]
    )
    at = datetime.now(UTC)

    def reading(minutes: int, wh: float) -> Sample:
        return Sample(at + timedelta(minutes=minutes), wh, 7_000.0, 10.0, 230.0, 40 + minutes)

    try:
        await station.come_online()
        await station.announce()
        tx, answer = await station.start_transaction(1, "TAG-OFF", reading(0, 1_000))
        assert answer is not None and answer["idTokenInfo"]["status"] == "Accepted"
        assert await station.update_transaction(tx, reading(1, 1_100)) == {}

        await station.go_offline(abrupt=True)
        assert await station.update_transaction(tx, reading(2, 1_200)) is None
        assert await station.update_transaction(tx, reading(3, 1_300)) is None
        assert await station.stop_transaction(tx, reading(4, 1_350)) is None
        assert station.queued_actions() == ["TransactionEvent"] * 3

        await station.come_online()
        assert station.offline_queue_length == 0 and station.offline_flushed == 3
    finally:
        await station.close()

    events = await charger_events(nats_server.url, "ST-OFFLINE")
    _assert_all_accepted(events)
    connections = [e.connection_id for e in events if isinstance(e, ChargerConnected)]
    assert len(connections) == 2
    [transaction] = _transactions(events).values()
    _assert_whole(transaction)
    assert [e["seqNo"] for e in transaction] == [0, 1, 2, 3, 4]
    assert [e.get("offline", False) for e in transaction] == [False, False, True, True, True]
    energies = [e["meterValue"][0]["sampledValue"][0]["value"] for e in transaction]
    assert energies == [1_000, 1_100, 1_200, 1_300, 1_350]
    # The queued events went out first on the new connection, with no boot before them.
    second = [c for c in _calls(events) if c.connection_id == connections[1]]
    assert [c.action for c in second] == ["TransactionEvent"] * 3
    assert transaction[-1]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
