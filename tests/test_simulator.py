"""The charger simulator against a tiny in-test OCPP responder.

Frames the simulator sends are checked against the OCPP 1.6 JSON schemas
shipped with the ocpp library; the simulator itself never validates.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pytest
from ocpp.messages import Call, CallResult, validate_payload
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from tools.simulator import (
    OFFLINE_TRANSACTION_ID,
    CallError,
    ChargerDisconnected,
    ChargerOffline,
    FleetHooks,
    FleetOptions,
    LatencyRecorder,
    SessionPlan,
    SimulatedCharger,
    add_simulate_arguments,
    run_fleet,
    run_session,
    simulate_main,
)

Frame = list[Any]
Override = Callable[[Frame], Frame | None]

WAIT = 5.0  # generous bound for anything awaited on loopback


def _parse_ts(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def assert_valid_call(msg: Frame) -> None:
    """Raises if `msg` is not a schema-valid OCPP 1.6 CALL."""
    assert msg[0] == 2 and len(msg) == 4, msg
    assert isinstance(msg[1], str) and 0 < len(msg[1]) <= 36, msg
    await validate_payload(Call(unique_id=msg[1], action=msg[2], payload=msg[3]), "1.6")
    for key in ("timestamp",):
        if key in msg[3]:
            _parse_ts(msg[3][key])
    for mv in msg[3].get("meterValue", []):
        _parse_ts(mv["timestamp"])


async def assert_valid_result(action: str, msg: Frame) -> None:
    assert msg[0] == 3 and len(msg) == 3, msg
    await validate_payload(CallResult(unique_id=msg[1], payload=msg[2], action=action), "1.6")


class FakeCsms:
    """Answers charger CALLs with minimal valid payloads and records everything."""

    def __init__(self, *, subprotocols: list[str] | None = None) -> None:
        self.subprotocols = ["ocpp1.6"] if subprotocols is None else subprotocols
        self.calls: asyncio.Queue[Frame] = asyncio.Queue(10_000)
        self.replies: asyncio.Queue[Frame] = asyncio.Queue(100)
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue(100)
        self.closed: asyncio.Queue[ServerConnection] = asyncio.Queue(100)
        self.requests: list[Request] = []
        self.overrides: dict[str, Override] = {}
        self.tx_ids = itertools.count(100)
        self.non_text_frames = 0
        self.port = 0

    def answer(self, msg: Frame) -> Frame | None:
        action = msg[2]
        if action in self.overrides:
            return self.overrides[action](msg)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        accepted = {"status": "Accepted"}
        body: dict[str, Any]
        if action == "BootNotification":
            body = {"currentTime": now, "interval": 300, "status": "Accepted"}
        elif action == "Heartbeat":
            body = {"currentTime": now}
        elif action in ("Authorize", "StopTransaction"):
            body = {"idTagInfo": accepted}
        elif action == "StartTransaction":
            body = {"transactionId": next(self.tx_ids), "idTagInfo": accepted}
        elif action == "DataTransfer":
            body = accepted
        elif action in ("MeterValues", "StatusNotification"):
            body = {}
        else:
            return [4, msg[1], "NotImplemented", action, {}]
        return [3, msg[1], body]

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.put_nowait(ws)
        try:
            async for raw in ws:
                if not isinstance(raw, str):
                    self.non_text_frames += 1
                    continue
                try:
                    msg = json.loads(raw)
                except ValueError:
                    await ws.send('[4,"-1","FormationViolation","not JSON",{}]')
                    continue
                if msg[0] == 2:
                    self.calls.put_nowait(msg)
                    reply = self.answer(msg)
                    if reply is not None:
                        await ws.send(json.dumps(reply))
                else:
                    self.replies.put_nowait(msg)
        except ConnectionClosed:
            pass
        finally:
            self.closed.put_nowait(ws)

    def record_request(self, ws: ServerConnection, request: Request) -> None:
        self.requests.append(request)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def next_call(self) -> Frame:
        async with asyncio.timeout(WAIT):
            msg = await self.calls.get()
        await assert_valid_call(msg)
        return msg

    async def next_connection(self) -> ServerConnection:
        async with asyncio.timeout(WAIT):
            return await self.connections.get()

    async def next_reply(self) -> Frame:
        async with asyncio.timeout(WAIT):
            return await self.replies.get()

    def drain_calls(self) -> list[Frame]:
        out = []
        while not self.calls.empty():
            out.append(self.calls.get_nowait())
        return out


@asynccontextmanager
async def fake_csms(**kwargs: Any) -> AsyncIterator[FakeCsms]:
    fake = FakeCsms(**kwargs)
    async with serve(
        fake.handler,
        "127.0.0.1",
        0,
        subprotocols=fake.subprotocols or None,
        process_request=fake.record_request,
    ) as server:
        fake.port = server.sockets[0].getsockname()[1]
        yield fake


async def test_session_frames_are_valid_ocpp16() -> None:
    async with fake_csms() as fake:
        async with SimulatedCharger("CP-1", fake.url, phases=3) as cp:
            result = await run_session(
                cp, SessionPlan(meter_values=3, start_soc=30.0), id_tag="TAG-1"
            )

        frames = fake.drain_calls()
        for msg in frames:
            await assert_valid_call(msg)
        actions = [m[2] for m in frames]
        assert actions == [
            "BootNotification",
            "StatusNotification",
            "StatusNotification",
            "DataTransfer",
            "Authorize",
            "StartTransaction",
            "StatusNotification",
            "MeterValues",
            "MeterValues",
            "MeterValues",
            "StopTransaction",
            "StatusNotification",
            "StatusNotification",
            "Heartbeat",
        ]
        statuses = [m[3]["status"] for m in frames if m[2] == "StatusNotification"]
        assert statuses == ["Available", "Preparing", "Charging", "Finishing", "Available"]
        assert len({m[1] for m in frames}) == len(frames), "unique ids must not repeat"
        assert fake.non_text_frames == 0

        assert result.transaction_id == 100
        meter_values = [m[3] for m in frames if m[2] == "MeterValues"]
        assert all(mv["transactionId"] == 100 for mv in meter_values)
        stop = next(m[3] for m in frames if m[2] == "StopTransaction")
        assert stop["transactionId"] == 100
        assert stop["meterStop"] == result.meter_stop > result.meter_start

        def sample(mv: dict[str, Any], measurand: str) -> list[dict[str, Any]]:
            values = mv["meterValue"][0]["sampledValue"]
            return [s for s in values if s["measurand"] == measurand]

        energies = [
            float(sample(mv, "Energy.Active.Import.Register")[0]["value"]) for mv in meter_values
        ]
        socs = [float(sample(mv, "SoC")[0]["value"]) for mv in meter_values]
        assert energies == sorted(energies) and energies[0] < energies[-1]
        assert socs == sorted(socs) and socs[0] >= 30
        first = meter_values[0]
        assert {s["phase"] for s in sample(first, "Current.Import")} == {"L1", "L2", "L3"}
        assert {s["phase"] for s in sample(first, "Voltage")} == {"L1-N", "L2-N", "L3-N"}
        assert sample(first, "SoC")[0]["location"] == "EV"
        assert sample(first, "Power.Active.Import")[0]["unit"] == "W"

        transfer = next(m[3] for m in frames if m[2] == "DataTransfer")
        assert transfer["messageId"] == "PreChargeData"
        assert json.loads(transfer["data"])["soc"] == 30.0


@pytest.mark.parametrize("abrupt", [False, True])
async def test_offline_queue_flushes_in_order_on_reconnect(abrupt: bool) -> None:
    async with fake_csms() as fake:
        cp = SimulatedCharger("CP-OFF", fake.url)
        try:
            await cp.come_online()
            first = await fake.next_connection()
            assert (await fake.next_call())[2] == "BootNotification"

            await cp.go_offline(abrupt=abrupt)
            async with asyncio.timeout(WAIT):
                assert await fake.closed.get() is first
            assert not cp.online

            started_at = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
            stopped_at = datetime(2024, 5, 1, 12, 30, 0, tzinfo=UTC)
            assert await cp.start_transaction(1, "TAG", 1000, timestamp=started_at) is None
            for wh in (1100, 1200):
                queued = await cp.meter_values(1, OFFLINE_TRANSACTION_ID, wh, 7000, 10, 230, 50)
                assert queued is None
            assert await cp.stop_transaction(-1, 1300, timestamp=stopped_at) is None
            with pytest.raises(ChargerOffline):
                await cp.status(1, "Available")
            with pytest.raises(ChargerOffline):
                await cp.heartbeat()
            assert cp.queued_actions() == [
                "StartTransaction",
                "MeterValues",
                "MeterValues",
                "StopTransaction",
            ]
            assert fake.calls.empty(), "nothing may leak out while offline"

            boot = await cp.come_online()
            assert boot["status"] == "Accepted"
            flushed = [await fake.next_call() for _ in range(5)]
            assert [m[2] for m in flushed] == [
                "BootNotification",
                "StartTransaction",
                "MeterValues",
                "MeterValues",
                "StopTransaction",
            ]
            start, mv1, mv2, stop = (m[3] for m in flushed[1:])
            assert _parse_ts(start["timestamp"]) == started_at
            assert _parse_ts(stop["timestamp"]) == stopped_at
            assert [mv["transactionId"] for mv in (mv1, mv2)] == [-1, -1]
            assert [mv["meterValue"][0]["sampledValue"][0]["value"] for mv in (mv1, mv2)] == [
                "1100",
                "1200",
            ]
            assert stop["transactionId"] == -1
            assert cp.flushed_transaction_ids == [100]
            assert cp.offline_queue_length == 0
            assert (cp.offline_queued, cp.offline_flushed, cp.offline_dropped) == (4, 4, 0)

            # Back to normal: new transaction messages go straight out.
            assert await cp.start_transaction(1, "TAG", 1300) == 101
        finally:
            await cp.close()


async def test_pending_boot_holds_transaction_messages_until_accepted() -> None:
    async with fake_csms() as fake:
        boot_status = "Pending"
        fake.overrides["BootNotification"] = lambda m: [
            3,
            m[1],
            {"currentTime": "2024-05-01T12:00:00Z", "interval": 10, "status": boot_status},
        ]
        cp = SimulatedCharger("CP-PENDING", fake.url)
        try:
            await cp.go_offline()
            assert await cp.start_transaction(1, "TAG", 0) is None
            assert (await cp.come_online())["status"] == "Pending"
            assert (await fake.next_call())[2] == "BootNotification"
            assert cp.online and cp.queued_actions() == ["StartTransaction"]

            # Online, but older messages are still queued: new ones go behind them.
            assert await cp.meter_values(1, -1, 10, 1, 1, 230, None) is None
            assert await cp.heartbeat() is not None  # non-transaction CALLs still go out
            assert (await fake.next_call())[2] == "Heartbeat"
            assert cp.queued_actions() == ["StartTransaction", "MeterValues"]

            boot_status = "Accepted"
            assert (await cp.come_online())["status"] == "Accepted"
            actions = [(await fake.next_call())[2] for _ in range(3)]
            assert actions == ["BootNotification", "StartTransaction", "MeterValues"]
            assert cp.offline_queue_length == 0
        finally:
            await cp.close()


async def test_offline_queue_is_bounded_and_keeps_start_stop() -> None:
    # Never connected, so everything transaction-related queues.
    cp = SimulatedCharger("CP-Q", "ws://127.0.0.1:9/ocpp", max_offline_queue=3)
    await cp.start_transaction(1, "TAG", 0)
    await cp.meter_values(1, -1, 1, 1, 1, 230, None)
    await cp.meter_values(1, -1, 2, 1, 1, 230, None)
    assert cp.offline_dropped == 0
    await cp.meter_values(1, -1, 3, 1, 1, 230, None)  # full: the new sample goes
    assert cp.offline_dropped == 1
    energies = [m[1]["meterValue"][0]["sampledValue"][0]["value"] for m in cp.queued_messages()[1:]]
    assert energies == ["1", "2"], "when full, the newest sample is the one dropped"
    await cp.stop_transaction(-1, 3)  # full: the oldest sample makes room
    assert cp.offline_dropped == 2
    assert cp.queued_actions() == ["StartTransaction", "MeterValues", "StopTransaction"]
    assert cp.queued_messages()[1][1]["meterValue"][0]["sampledValue"][0]["value"] == "2"


async def test_run_session_offline_uses_local_transaction_id() -> None:
    async with fake_csms() as fake:
        cp = SimulatedCharger("CP-OFFSESSION", fake.url)
        try:
            await cp.come_online()
            await cp.go_offline()
            result = await run_session(cp, SessionPlan(meter_values=2), boot=False)
            assert result.transaction_id == OFFLINE_TRANSACTION_ID
            assert cp.queued_actions() == [
                "StartTransaction",
                "MeterValues",
                "MeterValues",
                "StopTransaction",
            ]
            await cp.come_online()
            actions = [(await fake.next_call())[2] for _ in range(6)]
            assert actions == [
                "BootNotification",  # the first come_online()
                "BootNotification",
                "StartTransaction",
                "MeterValues",
                "MeterValues",
                "StopTransaction",
            ]
        finally:
            await cp.close()


async def test_answers_server_initiated_calls_by_default() -> None:
    async with fake_csms() as fake, SimulatedCharger("CP-SRV", fake.url) as cp:
        ws = await fake.next_connection()
        requests: list[tuple[str, dict[str, Any]]] = [
            ("Reset", {"type": "Soft"}),
            ("RemoteStartTransaction", {"idTag": "TAG", "connectorId": 1}),
            ("RemoteStopTransaction", {"transactionId": 5}),
            ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}),
            ("TriggerMessage", {"requestedMessage": "Heartbeat"}),
            ("UnlockConnector", {"connectorId": 1}),
            ("GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey"]}),
        ]
        for n, (action, payload) in enumerate(requests):
            await ws.send(json.dumps([2, f"srv-{n}", action, payload]))
            reply = await fake.next_reply()
            assert reply[1] == f"srv-{n}"
            await assert_valid_result(action, reply)
            if action == "GetConfiguration":
                keys = [k["key"] for k in reply[2]["configurationKey"]]
                assert keys == ["HeartbeatInterval"]
                assert reply[2]["unknownKey"] == ["NoSuchKey"]
            elif action == "UnlockConnector":
                assert reply[2] == {"status": "Unlocked"}
            else:
                assert reply[2] == {"status": "Accepted"}

        await ws.send(json.dumps([2, "srv-x", "Frobnicate", {}]))
        reply = await fake.next_reply()
        assert reply[:3] == [4, "srv-x", "NotImplemented"]
        assert cp.server_calls["Reset"] == 1


async def test_on_call_hook_overrides_and_may_call_back() -> None:
    async with fake_csms() as fake:
        cp = SimulatedCharger("CP-HOOK", fake.url)
        started: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

        async def on_call(action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
            if action == "RemoteStartTransaction":
                # Calling back from inside the hook needs the reader to keep
                # running; handling CALLs inline would deadlock here.
                started.set_result(await cp.start_transaction(1, payload["idTag"], 0))
                return {"status": "Accepted"}
            if action == "Reset":
                return {"status": "Rejected"}
            if action == "ChangeConfiguration":
                raise CallError("NotSupported", "read-only", {"key": payload["key"]})
            return None  # fall back to the default answer

        cp.on_call = on_call
        try:
            await cp.connect()
            ws = await fake.next_connection()

            await ws.send(json.dumps([2, "a", "Reset", {"type": "Hard"}]))
            assert (await fake.next_reply())[2] == {"status": "Rejected"}

            await ws.send(json.dumps([2, "b", "ChangeConfiguration", {"key": "K", "value": "1"}]))
            assert await fake.next_reply() == [4, "b", "NotSupported", "read-only", {"key": "K"}]

            await ws.send(json.dumps([2, "c", "ClearCache", {}]))
            assert (await fake.next_reply())[2] == {"status": "Accepted"}

            await ws.send(json.dumps([2, "d", "RemoteStartTransaction", {"idTag": "RT"}]))
            start = await fake.next_call()
            assert start[2] == "StartTransaction" and start[3]["idTag"] == "RT"
            reply = await fake.next_reply()
            assert reply == [3, "d", {"status": "Accepted"}]
            assert started.result() == 100

            cp.on_call = lambda action, payload: {"status": "Rejected"}  # sync hooks work too
            await ws.send(json.dumps([2, "e", "UnlockConnector", {"connectorId": 1}]))
            assert (await fake.next_reply())[2] == {"status": "Rejected"}
        finally:
            await cp.close()


async def test_hook_cannot_take_its_own_charger_offline() -> None:
    async with fake_csms() as fake:
        cp = SimulatedCharger("CP-SELF", fake.url)

        async def on_call(action: str, payload: dict[str, Any]) -> dict[str, Any]:
            await cp.go_offline()
            return {"status": "Accepted"}

        cp.on_call = on_call
        try:
            await cp.connect()
            ws = await fake.next_connection()
            await ws.send(json.dumps([2, "r", "Reset", {"type": "Hard"}]))
            reply = await fake.next_reply()
            assert reply[:3] == [4, "r", "InternalError"]
            assert "cannot take its own charger offline" in reply[3]
        finally:
            cp.on_call = None
            await cp.close()


@pytest.mark.parametrize("password", ["s3cret:with-colon", None])
async def test_basic_auth_header(password: str | None) -> None:
    async with fake_csms() as fake:
        async with SimulatedCharger("CP-AUTH", fake.url, password=password):
            await fake.next_connection()
        headers: Headers = fake.requests[0].headers
        if password is None:
            assert "Authorization" not in headers
        else:
            expected = base64.b64encode(f"CP-AUTH:{password}".encode()).decode()
            assert headers["Authorization"] == f"Basic {expected}"
        assert headers["Sec-WebSocket-Protocol"] == "ocpp1.6"


async def test_charger_id_is_percent_encoded() -> None:
    charge_point_id = "Hall 7/Bay.3 ü#?%"
    async with fake_csms() as fake:
        async with SimulatedCharger(charge_point_id, fake.url + "/") as cp:
            await cp.boot()
        path = fake.requests[0].path
        assert path == "/ocpp/Hall%207%2FBay.3%20%C3%BC%23%3F%25"
        assert unquote(path.rsplit("/", 1)[-1]) == charge_point_id


async def test_callerror_and_timeout_and_disconnect() -> None:
    async with fake_csms() as fake:
        fake.overrides["Authorize"] = lambda m: [4, m[1], "SecurityError", "nope", {"why": 1}]
        fake.overrides["Heartbeat"] = lambda m: None  # never answered
        recorder = LatencyRecorder()
        async with SimulatedCharger("CP-ERR", fake.url, call_timeout=0.3, recorder=recorder) as cp:
            with pytest.raises(CallError) as info:
                await cp.authorize("T")
            assert (info.value.code, info.value.description, info.value.details) == (
                "SecurityError",
                "nope",
                {"why": 1},
            )
            with pytest.raises(TimeoutError):
                await cp.heartbeat()
            assert recorder.errors == {"call_error": 1, "timeout": 1}

            # A dropped link: plain CALLs fail, transaction CALLs are kept.
            fake.overrides["MeterValues"] = lambda m: None
            server_side = await fake.next_connection()
            task = asyncio.create_task(cp.meter_values(1, 7, 1, 1, 1, 230, None))
            assert (await fake.next_call())[2] == "Authorize"
            assert (await fake.next_call())[2] == "Heartbeat"
            assert (await fake.next_call())[2] == "MeterValues"
            await server_side.close()
            assert await task is None
            assert cp.queued_actions() == ["MeterValues"]
            with pytest.raises(ChargerDisconnected):
                await cp.heartbeat()


async def test_send_raw_returns_next_frame() -> None:
    async with fake_csms() as fake, SimulatedCharger("CP-RAW", fake.url) as cp:
        assert await cp.send_raw("this is not json") == (
            '[4,"-1","FormationViolation","not JSON",{}]'
        )
        raw = await cp.send_raw('[2,"raw-1","Heartbeat",{}]')
        assert json.loads(raw)[:2] == [3, "raw-1"]
        assert cp.unexpected_responses == 2  # neither answer matched a CALL of ours


async def test_refuses_server_without_ocpp16() -> None:
    async with fake_csms(subprotocols=[]) as fake:
        cp = SimulatedCharger("CP-NOPROTO", fake.url)
        with pytest.raises(ChargerDisconnected, match=r"ocpp1\.6"):
            await cp.connect()
        assert not cp.online


def test_latency_recorder_percentiles() -> None:
    rec = LatencyRecorder()
    for us in range(1, 100_001):
        rec.record(us * 1000)
    assert rec.count == 100_000
    for pct in (50, 90, 99, 99.9):
        exact = pct / 100 * 100_000 * 1000
        assert abs(rec.percentile_ns(pct) - exact) / exact < 0.01, pct
    assert rec.percentile_ns(100) == 100_000_000
    assert rec.percentile_ns(0) == 1000
    summary = rec.summary()
    assert summary.p50_ms == pytest.approx(50.0, rel=0.01)
    assert summary.max_ms == 100.0

    other = LatencyRecorder()
    other.record(5)
    other.record_error("timeout")
    other.record_action("Heartbeat")
    merged = LatencyRecorder.from_dict(json.loads(json.dumps(rec.to_dict())))
    merged.merge(other)
    assert merged.count == 100_001
    assert merged.min_ns == 5
    assert merged.errors == {"timeout": 1}
    assert merged.percentile_ns(50) == rec.percentile_ns(50)
    merged.reset()
    assert merged.count == 0 and merged.percentile_ns(99) == 0


async def test_fleet_saturate_reports_round_trips() -> None:
    async with fake_csms() as fake:
        connected: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()

        async def on_connected(ok: int, failed: int) -> None:
            connected.set_result((ok, failed))

        options = FleetOptions(
            chargers=3,
            url=fake.url,
            prefix="FLEET ",
            mode="saturate",
            duration=0.3,
            meter_values_per_session=(2, 3),
            seed=7,
        )
        report = await run_fleet(options, hooks=FleetHooks(on_connected=on_connected))

        assert connected.result() == (3, 0)
        assert report.connected == 3 and report.connect_failures == 0
        assert report.messages > 20
        assert report.latency.errors == 0
        assert report.latency.p50_ms > 0
        assert report.msgs_per_s > 0
        assert {"MeterValues", "StatusNotification", "StartTransaction"} <= set(report.actions)
        frames = fake.drain_calls()
        for msg in frames[:300]:
            await assert_valid_call(msg)
        paths = {r.path for r in fake.requests}
        assert paths == {f"/ocpp/FLEET%20{i:05d}" for i in range(3)}


async def test_saturating_charger_reads_the_power_it_charges_at() -> None:
    """Readings as fast as the server answers still imply the charger's 11 kW, not megawatts
    (which the hub's power detector would flag on every transaction): the meter's clock runs
    in session time, and the transaction's Start and Stop carry it too."""
    async with fake_csms() as fake:
        report = await run_fleet(
            FleetOptions(chargers=1, url=fake.url, mode="saturate", duration=0.3, seed=11)
        )
        frames = fake.drain_calls()
    assert report.connected == 1 and report.latency.errors == 0
    readings: dict[int, list[tuple[datetime, float]]] = {}
    times: list[datetime] = []
    for _, _, action, payload in frames:
        if action == "MeterValues" and "transactionId" in payload:
            [value] = payload["meterValue"]
            register = next(
                float(s["value"])
                for s in value["sampledValue"]
                if s["measurand"] == "Energy.Active.Import.Register"
            )
            at = _parse_ts(value["timestamp"])
            readings.setdefault(payload["transactionId"], []).append((at, register))
            times.append(at)
        elif action in ("StartTransaction", "StopTransaction"):
            times.append(_parse_ts(payload["timestamp"]))
    pairs = [
        (earlier, later)
        for samples in readings.values()
        for earlier, later in itertools.pairwise(samples)
    ]
    assert len(pairs) > 10
    for (t0, v0), (t1, v1) in pairs:
        power_w = (v1 - v0) * 3600 / (t1 - t0).total_seconds()
        assert 0 < power_w < 12_000, (t0, v0, t1, v1)
    # One clock for the whole transaction: no message goes back in time.
    assert times == sorted(times)


async def test_fleet_idle_only_boots_and_announces() -> None:
    thresholds = gc.get_threshold()
    async with fake_csms() as fake:
        report = await run_fleet(
            FleetOptions(
                chargers=2, url=fake.url, mode="idle", duration=0.05, connectors=2, tune_gc=True
            )
        )
        assert report.connected == 2
        assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
        actions = [m[2] for m in fake.drain_calls()]
        # Boot, then StatusNotification for connector 0 and both connectors.
        assert actions.count("BootNotification") == 2
        assert actions.count("StatusNotification") == 6
        assert len(actions) == 8


async def test_simulate_cli(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    defaults = parser.parse_args([])
    assert (defaults.chargers, defaults.url, defaults.prefix) == (
        10,
        "ws://127.0.0.1:9000/ocpp",
        "SIM-",
    )
    assert (defaults.interval, defaults.saturate, defaults.duration) == (5.0, False, None)
    assert defaults.offline_every is None and defaults.json is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--chargers", "0"])

    async with fake_csms() as fake:
        args = parser.parse_args(
            ["--chargers", "2", "--url", fake.url, "--saturate", "--duration", "0.2", "--json"]
        )
        assert await simulate_main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "saturate"
    assert out["connected"] == 2
    assert out["messages"] > 0
