"""The simulator's OCPP 2.0.1 and 2.1 stations against a tiny in-test CSMS.

Frames are checked against the official JSON schemas shipped with the ocpp library (the
simulator never validates); tests/integration/test_simulated_stations.py runs them against
the real gateway.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.messages import Call, CallResult, validate_payload

from tests.test_simulator import FakeCsms, Frame, fake_csms
from tools.simulator import (
    ChargerOffline,
    FleetOptions,
    Sample,
    SessionPlan,
    SimulatedStation,
    add_simulate_arguments,
    default_station_response,
    run_fleet,
    run_station_session,
)

VERSIONS = ("2.0.1", "2.1")
AT = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def answer_2x(fake: FakeCsms) -> None:
    """Minimal valid 2.x answers, through the fake's per-action overrides."""
    now = "2025-03-01T09:00:00Z"
    accepted = {"idTokenInfo": {"status": "Accepted"}}
    bodies: dict[str, dict[str, Any]] = {
        "BootNotification": {"currentTime": now, "interval": 300, "status": "Accepted"},
        "Heartbeat": {"currentTime": now},
        "Authorize": accepted,
        "StatusNotification": {},
        "MeterValues": {},
        "DataTransfer": {"status": "Accepted"},
    }

    def transaction_event(msg: Frame) -> Frame:
        return [3, msg[1], accepted if "idToken" in msg[3] else {}]

    def answering(body: dict[str, Any]) -> Callable[[Frame], Frame]:
        return lambda msg: [3, msg[1], body]

    for action, body in bodies.items():
        fake.overrides[action] = answering(body)
    fake.overrides["TransactionEvent"] = transaction_event


async def assert_valid_2x(frames: list[Frame], version: str) -> None:
    for msg in frames:
        assert msg[0] == 2 and 0 < len(msg[1]) <= 36, msg
        await validate_payload(Call(unique_id=msg[1], action=msg[2], payload=msg[3]), version)


def reading(minutes: int, wh: float) -> Sample:
    return Sample(AT + timedelta(minutes=minutes), wh, 7_000.0, 10.0, 230.0, 30.0 + minutes)


@pytest.mark.parametrize("version", VERSIONS)
async def test_station_session_frames_are_valid_and_tell_one_transaction(version: str) -> None:
    async with fake_csms(subprotocols=[f"ocpp{version}"]) as fake:
        answer_2x(fake)
        station = SimulatedStation("ST-1", fake.url, version=version)  # type: ignore[arg-type]
        async with station:
            result = await run_station_session(
                station,
                SessionPlan(meter_values=3, start_soc=30.0),
                id_token="TAG-1",
                stop="StopAuthorized",
            )
        assert fake.requests[0].headers["Sec-WebSocket-Protocol"] == f"ocpp{version}"
        frames = fake.drain_calls()
        await assert_valid_2x(frames, version)

    assert [m[2] for m in frames] == [
        "BootNotification",
        "StatusNotification",
        "DataTransfer",
        "Authorize",
        *["TransactionEvent"] * 5,
        "StatusNotification",
        "Heartbeat",
    ]
    assert frames[0][3]["reason"] == "PowerUp"
    statuses = [
        (m[3]["evseId"], m[3]["connectorStatus"]) for m in frames if m[2] == "StatusNotification"
    ]
    assert statuses == [(1, "Occupied"), (1, "Available")]
    assert frames[3][3] == {"idToken": {"idToken": "TAG-1", "type": "ISO14443"}}
    assert frames[2][3]["data"]["soc"] == 30.0  # 2.x carries the EV's data as JSON

    events = [m[3] for m in frames if m[2] == "TransactionEvent"]
    assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Updated", "Ended"]
    assert [e["seqNo"] for e in events] == [0, 1, 2, 3, 4]
    assert {e["transactionInfo"]["transactionId"] for e in events} == {result.transaction_id}
    assert isinstance(result.transaction_id, str) and len(result.transaction_id) <= 36
    started, ended = events[0], events[-1]
    assert started["triggerReason"] == "Authorized"
    assert started["evse"] == {"id": 1, "connectorId": 1}
    assert started["idToken"] == {"idToken": "TAG-1", "type": "ISO14443"}
    assert {e["triggerReason"] for e in events[1:-1]} == {"MeterValuePeriodic"}
    assert ended["triggerReason"] == "StopAuthorized"
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert not any("offline" in e for e in events)

    def values(event: dict[str, Any], measurand: str) -> list[dict[str, Any]]:
        sampled = event["meterValue"][0]["sampledValue"]
        return [s for s in sampled if s["measurand"] == measurand]

    energies = [values(e, "Energy.Active.Import.Register")[0]["value"] for e in events]
    assert energies == sorted(energies) and energies[0] < energies[-1] == result.meter_stop
    assert values(started, "Energy.Active.Import.Register")[0]["unitOfMeasure"] == {"unit": "Wh"}
    assert values(started, "Energy.Active.Import.Register")[0]["context"] == "Transaction.Begin"
    assert values(ended, "Energy.Active.Import.Register")[0]["context"] == "Transaction.End"
    socs = [values(e, "SoC")[0]["value"] for e in events]
    assert socs == sorted(socs) and socs[0] == 30
    assert {s["phase"] for s in values(events[1], "Voltage")} == {"L1-N", "L2-N", "L3-N"}
    assert values(events[1], "Power.Active.Import")[0]["value"] > 0
    # Session time: the samples are a minute apart, whatever the pace of the messages.
    stamps = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in events]
    assert stamps[2] - stamps[1] == timedelta(minutes=1)


@pytest.mark.parametrize("abrupt", [False, True])
async def test_station_queues_transaction_events_offline_and_flushes_them_without_a_boot(
    abrupt: bool,
) -> None:
    async with fake_csms(subprotocols=["ocpp2.0.1"]) as fake:
        answer_2x(fake)
        station = SimulatedStation("ST-OFF", fake.url)
        try:
            await station.come_online()
            tx, answer = await station.start_transaction(1, "TAG", reading(0, 500))
            assert answer == {"idTokenInfo": {"status": "Accepted"}}
            await station.go_offline(abrupt=abrupt)

            assert await station.update_transaction(tx, reading(1, 600)) is None
            assert await station.stop_transaction(tx, reading(2, 700)) is None
            with pytest.raises(ChargerOffline):
                await station.status(1, "Available")
            with pytest.raises(ChargerOffline):
                await station.meter_values(1, reading(2, 700))
            assert station.queued_actions() == ["TransactionEvent", "TransactionEvent"]
            online = fake.drain_calls()

            await station.come_online()
            flushed = [fake.calls.get_nowait() for _ in range(2)]
            assert fake.calls.empty()
        finally:
            await station.close()
    await assert_valid_2x(online + flushed, "2.0.1")
    assert [m[2] for m in online] == ["BootNotification", "TransactionEvent"]
    assert [(m[3]["eventType"], m[3]["seqNo"], m[3]["offline"]) for m in flushed] == [
        ("Updated", 1, True),
        ("Ended", 2, True),
    ]
    assert flushed[1][3]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert (station.offline_queued, station.offline_flushed) == (2, 2)


async def test_a_full_station_queue_drops_periodic_samples_first() -> None:
    station = SimulatedStation("ST-Q", "ws://127.0.0.1:9/ocpp", max_offline_queue=3)
    tx, _ = await station.start_transaction(1, "TAG", reading(0, 0))
    await station.update_transaction(tx, reading(1, 10))
    await station.update_transaction(tx, reading(2, 20))
    await station.update_transaction(tx, reading(3, 30))  # full: the new sample goes
    await station.stop_transaction(tx, reading(4, 40))  # full: the oldest sample makes room
    assert station.offline_dropped == 2
    queued = [(p["eventType"], p["seqNo"]) for _, p in station.queued_messages()]
    assert queued == [("Started", 0), ("Updated", 2), ("Ended", 4)]


@pytest.mark.parametrize(
    ("action", "request_payload"),
    [
        ("Reset", {"type": "Immediate"}),
        (
            "RequestStartTransaction",
            {"idToken": {"idToken": "T", "type": "Central"}, "remoteStartId": 1},
        ),
        ("RequestStopTransaction", {"transactionId": "abc"}),
        ("UnlockConnector", {"evseId": 1, "connectorId": 1}),
        ("TriggerMessage", {"requestedMessage": "Heartbeat"}),
        ("GetTransactionStatus", {}),
        (
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "attributeValue": "60",
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            },
        ),
        (
            "GetVariables",
            {"getVariableData": [{"component": {"name": "X"}, "variable": {"name": "Y"}}]},
        ),
    ],
)
@pytest.mark.parametrize("version", VERSIONS)
async def test_default_station_answers_are_schema_valid(
    version: str, action: str, request_payload: dict[str, Any]
) -> None:
    await validate_payload(Call("r", action, request_payload), version)
    answer = default_station_response(action, request_payload)
    await validate_payload(CallResult("r", answer, action), version)


@pytest.mark.parametrize("version", VERSIONS)
async def test_saturating_station_fleet_sends_the_2x_mix(version: str) -> None:
    async with fake_csms(subprotocols=[f"ocpp{version}"]) as fake:
        answer_2x(fake)
        report = await run_fleet(
            FleetOptions(
                chargers=2,
                url=fake.url,
                ocpp=version,  # type: ignore[arg-type]
                mode="saturate",
                duration=0.4,
                seed=3,
            )
        )
        frames = fake.drain_calls()
    assert report.connected == 2 and report.latency.errors == 0
    assert {"TransactionEvent", "MeterValues", "StatusNotification"} <= set(report.actions)
    assert "StartTransaction" not in report.actions
    await assert_valid_2x(frames[:400], version)
    # After boot each station reports its EVSE (there is no connector 0 in 2.x).
    announced = [m[3] for m in frames if m[2] == "StatusNotification"][:2]
    assert {(s["evseId"], s["connectorStatus"]) for s in announced} == {(1, "Available")}


async def test_simulate_cli_takes_the_ocpp_version(capsys: pytest.CaptureFixture[str]) -> None:
    from tools.simulator import simulate_main

    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    assert parser.parse_args([]).ocpp == "1.6"
    with pytest.raises(SystemExit):
        parser.parse_args(["--ocpp", "2.0"])
    async with fake_csms(subprotocols=["ocpp2.1"]) as fake:
        answer_2x(fake)
        flags = ["--ocpp", "2.1", "--chargers", "1", "--saturate", "--duration", "0.2"]
        assert await simulate_main(parser.parse_args([*flags, "--url", fake.url, "--json"])) == 0
        assert fake.requests[0].headers["Sec-WebSocket-Protocol"] == "ocpp2.1"
        await assert_valid_2x(fake.drain_calls(), "2.1")
    out = json.loads(capsys.readouterr().out)
    assert out["connected"] == 1 and out["messages"] > 0
