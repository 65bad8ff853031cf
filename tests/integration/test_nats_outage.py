"""NATS stops and restarts while 50 chargers send: every answered message is stored exactly
once, and nothing is answered before it is stored."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from ocpp.v16 import call
from prometheus_client.parser import text_string_to_metric_families

from hub.config import Settings
from hub.nats_server import EmbeddedNats
from hub.ops import serving_ops
from hub.runtime import running_gateway
from schemas.events import OcppFrame
from tests.integration.helpers import charger_events, ocpp_charger, raw_socket, stored_events

CHARGERS = 50
MESSAGES = 12


async def test_restart_of_nats_loses_and_doubles_nothing(
    tmp_path: Path, settings: Settings
) -> None:
    store_dir = tmp_path / "nats"
    server = EmbeddedNats(store_dir)
    await server.start()
    port = server.port
    answered: dict[str, list[str]] = {}
    progress = asyncio.Event()
    outage_over = asyncio.Event()
    sent = 0

    async def charger(gateway_port: int, index: int) -> None:
        nonlocal sent
        charge_point_id = f"OUT-{index:02d}"
        ids = answered.setdefault(charge_point_id, [])
        async with ocpp_charger(gateway_port, charge_point_id) as cp:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            start = await cp.call(
                call.StartTransaction(
                    connector_id=1, id_tag="T", meter_start=0, timestamp="2026-11-22T10:00:00Z"
                )
            )
            for step in range(MESSAGES):
                payload = call.MeterValues(
                    connector_id=1,
                    transaction_id=start.transaction_id,
                    meter_value=[
                        {
                            "timestamp": f"2026-11-22T10:{step:02d}:00Z",
                            "sampledValue": [{"value": str(step * 100)}],
                        }
                    ],
                )
                await cp.call(payload)
                ids.append(str(step))
                sent += 1
                if sent == CHARGERS * 3:
                    progress.set()
                if step == MESSAGES // 2:
                    await outage_over.wait()

    try:
        async with (
            serving_ops("gateway", settings, server.url) as ops,
            running_gateway(settings, server.url, ops=ops) as gateway,
        ):
            async with asyncio.TaskGroup() as tg:
                for index in range(CHARGERS):
                    tg.create_task(charger(gateway.port, index))
                async with asyncio.timeout(30):
                    await progress.wait()
                await server.stop()
                await asyncio.sleep(1.5)  # the outage itself: chargers keep sending meanwhile
                server = EmbeddedNats(store_dir, port=port)
                await server.start()
                outage_over.set()
            scraped = {
                sample.name: sample
                for family in text_string_to_metric_families(ops.render().decode())
                for sample in family.samples
            }
        events = [e for _, e in await stored_events(server.url)]
    finally:
        await server.stop()

    calls = [e for e in events if isinstance(e, OcppFrame) and e.direction == "in"]
    results = [e for e in events if isinstance(e, OcppFrame) and e.direction == "out"]
    per_charger = Counter(e.charge_point_id for e in calls if e.action == "MeterValues")
    assert per_charger == {cp: MESSAGES for cp in answered}
    assert all(len(ids) == MESSAGES for ids in answered.values())
    # No event stored twice: every (charger, direction, unique id) appears once.
    keys = Counter((e.charge_point_id, e.direction, e.unique_id) for e in calls + results)
    assert max(keys.values()) == 1
    assert len(calls) == len(results) == CHARGERS * (MESSAGES + 2)
    # The metrics saw the outage, and counted each frame once however often it was retried.
    assert scraped["ocpp_hub_storage_stall_seconds_total"].value >= 1.0
    assert scraped["ocpp_hub_store_retries_total"].value > 0
    assert scraped["ocpp_hub_storage_stalled"].value == 0
    assert scraped["ocpp_hub_frame_store_seconds_count"].value == len(calls)
    # Order per charger is the order the charger sent in.
    for cp in answered:
        readings = [
            e.payload for e in calls if e.charge_point_id == cp and e.action == "MeterValues"
        ]
        values = [
            int(msgspec.json.decode(r)["meterValue"][0]["sampledValue"][0]["value"])
            for r in readings
        ]
        assert values == sorted(values)


async def test_charger_retry_during_outage_is_answered_once_under_its_new_id(
    tmp_path: Path, settings: Settings
) -> None:
    store_dir = tmp_path / "nats"
    server = EmbeddedNats(store_dir)
    await server.start()
    port = server.port
    stop = (
        '[2, "{id}", "StopTransaction", {{"meterStop": 900, "transactionId": 7, '
        '"timestamp": "2026-11-22T11:00:00Z"}}]'
    )
    try:
        async with running_gateway(settings, server.url) as gateway:
            async with raw_socket(gateway.port, "CP-PATIENT") as ws:
                await ws.send('[2, "hb", "Heartbeat", {}]')
                assert json.loads(await ws.recv())[:2] == [3, "hb"]
                await server.stop()
                # The charger times out on its first try and sends the message again under a
                # new id, as OCPP 1.6 §3.7 has it retry transaction messages.
                await ws.send(stop.format(id="try-1"))
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(3 * settings.gateway.publish_timeout_s):
                        await ws.recv()
                await ws.send(stop.format(id="try-2"))
                server = EmbeddedNats(store_dir, port=port)
                await server.start()
                # The charger waits on try-2 only, and gets one answer, not one per try.
                assert json.loads(await ws.recv())[:2] == [3, "try-2"]
                await ws.send('[2, "hb-2", "Heartbeat", {}]')
                assert json.loads(await ws.recv())[:2] == [3, "hb-2"]
        events = await charger_events(server.url, "CP-PATIENT")
    finally:
        await server.stop()
    stored = [(e.unique_id, e.message_type) for e in events if isinstance(e, OcppFrame)]
    # try-1's answer was stored before try-2 arrived to supersede it, and never sent.
    assert stored == [
        ("hb", "CALL"),
        ("hb", "CALLRESULT"),
        ("try-1", "CALL"),
        ("try-1", "CALLRESULT"),
        ("try-2", "CALL"),
        ("try-2", "CALLRESULT"),
        ("hb-2", "CALL"),
        ("hb-2", "CALLRESULT"),
    ]


async def test_shutdown_does_not_hang_when_nats_is_gone(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    async with running_gateway(settings, nats_server.url) as gateway:
        async with raw_socket(gateway.port, "CP-LAST") as ws:
            await ws.send('[2, "hb", "Heartbeat", {}]')
            await ws.recv()
            await nats_server.stop()
            async with asyncio.timeout(10):
                await gateway.close(grace=1.0)
            # The charger was told the gateway is going away.
            await ws.wait_closed()
            assert ws.close_code == 1001


async def test_gateway_waits_for_a_nats_that_is_not_up_yet(
    tmp_path: Path, settings: Settings
) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    await server.start()
    port = server.port
    await server.stop()  # the port is known and nothing listens on it now
    url = f"nats://127.0.0.1:{port}"
    starting = asyncio.create_task(_serve_one_heartbeat(settings, url))
    done, _ = await asyncio.wait({starting}, timeout=1.0)
    assert not done, "the gateway gave up instead of waiting for NATS"
    async with EmbeddedNats(tmp_path / "nats", port=port):
        async with asyncio.timeout(20):
            assert await starting == [3, "hb"]


async def _serve_one_heartbeat(settings: Settings, url: str) -> list[object]:
    async with running_gateway(settings, url) as gateway, raw_socket(gateway.port, "CP") as ws:
        await ws.send('[2, "hb", "Heartbeat", {}]')
        answer: list[object] = json.loads(await ws.recv())[:2]
        return answer
