"""The UI fan-out against a real nats-server, a real gateway and ocpp-library chargers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from ocpp.v16 import call

from hub.config import Settings
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from schemas.events import OcppFrame
from tests.integration.fanout_helpers import (
    close_of,
    messages_until,
    next_message,
    token,
    ui_socket,
    with_fanout,
)
from tests.integration.helpers import ocpp_charger, stored_events


@pytest.fixture
async def fanout(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[int]:
    async with running_fanout(with_fanout(settings), nats_server.url) as port:
        yield port


async def charge(cp: Any, *, stop: bool = True) -> int:
    """A whole session from an ocpp-library charger; returns the transactionId."""
    await cp.call(call.BootNotification(charge_point_model="M1", charge_point_vendor="Acme"))
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
    await cp.call(
        call.DataTransfer(vendor_id="flash", message_id="PreChargeData", data='{"soc": 42}')
    )
    start = await cp.call(
        call.StartTransaction(
            connector_id=1, id_tag="TAG1", meter_start=1000, timestamp="2026-11-22T10:00:00Z"
        )
    )
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
    await cp.call(
        call.MeterValues(
            connector_id=1,
            transaction_id=start.transaction_id,
            meter_value=[
                {
                    "timestamp": "2026-11-22T10:10:00Z",
                    "sampledValue": [
                        {
                            "value": "2500",
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                        },
                        {"value": "7200.5", "measurand": "Power.Active.Import", "unit": "W"},
                        {"value": "61", "measurand": "SoC", "unit": "Percent"},
                        {"value": "231", "measurand": "Voltage", "unit": "V"},
                        {"value": "32", "measurand": "Current.Offered", "unit": "A"},
                    ],
                }
            ],
        )
    )
    if stop:
        await cp.call(
            call.StopTransaction(
                meter_stop=4000,
                timestamp="2026-11-22T10:30:00Z",
                transaction_id=start.transaction_id,
                id_tag="TAG1",
                reason="EVDisconnected",
            )
        )
    return int(start.transaction_id)


async def test_every_message_type_arrives_with_its_content(gateway: Gateway, fanout: int) -> None:
    async with ui_socket(fanout, "/ws/chargers/CP-1", token_value=token(["CP-1"])) as ws:
        snapshot = await next_message(ws)
        assert snapshot["type"] == "snapshot" and snapshot["chargePointId"] == "CP-1"
        assert snapshot["connected"] is False
        async with ocpp_charger(gateway.port, "CP-1") as cp:
            transaction_id = await charge(cp)
        received = await messages_until(
            ws, lambda m: m["type"] == "connection" and m["state"] == "disconnected"
        )
    by_type: dict[str, list[dict[str, Any]]] = {}
    for message in received:
        by_type.setdefault(message["type"], []).append(message)
        assert {"chargePointId", "seq", "ts", "receivedAt"} <= set(message)
    seqs = [m["seq"] for m in received]
    assert seqs == sorted(seqs) and seqs[0] > snapshot["seq"]
    assert [m["state"] for m in by_type["connection"]] == ["connected", "disconnected"]
    [boot] = by_type["boot"]
    assert boot["boot"]["vendor"] == "Acme" and boot["boot"]["status"] == "Accepted"
    assert [m["status"] for m in by_type["status"]] == ["Preparing", "Charging"]
    [transfer] = by_type["data_transfer"]
    assert transfer["transfer"]["data"] == {"soc": 42}
    assert transfer["transfer"]["messageId"] == "PreChargeData"
    [started] = by_type["transaction.started"]
    assert started["transactionId"] == transaction_id and started["meterStartWh"] == 1000
    assert started["ts"] == "2026-11-22T10:00:00Z"
    [meter] = by_type["meter"]
    assert {r["measurand"]: r["value"] for r in meter["readings"]} == {
        "Energy.Active.Import.Register": 2500,
        "Power.Active.Import": 7200.5,
        "SoC": 61,
        "Voltage": 231,
        "Current.Offered": 32,
    }
    [updated] = by_type["transaction.updated"]
    assert updated["energyWh"] == 1500 and updated["powerW"] == 7200.5 and updated["soc"] == 61
    [stopped] = by_type["transaction.stopped"]
    assert stopped["transactionId"] == transaction_id
    assert stopped["energyWh"] == 3000 and stopped["durationS"] == 1800
    assert stopped["reason"] == "EVDisconnected"


async def test_snapshot_is_rebuilt_from_the_stream_after_a_restart(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings
) -> None:
    fanout_settings = with_fanout(settings)
    async with ocpp_charger(gateway.port, "CP-1") as cp:
        async with running_fanout(fanout_settings, nats_server.url) as port:
            async with ui_socket(port, "/ws/chargers/CP-1", token_value=token()) as ws:
                await next_message(ws)
                transaction_id = await charge(cp, stop=False)
                before = await messages_until(ws, lambda m: m["type"] == "transaction.updated")
        # A new instance, started while the charger keeps charging, rebuilds from JetStream.
        async with running_fanout(fanout_settings, nats_server.url) as port:
            async with aiohttp.ClientSession() as http:
                response = await http.get(
                    f"http://127.0.0.1:{port}/api/v1/chargers/CP-1",
                    headers={"Authorization": f"Bearer {token()}"},
                )
                assert response.status == 200
                rest = await response.json()
            async with ui_socket(port, "/ws/chargers/CP-1", token_value=token()) as ws:
                snapshot = await next_message(ws)
    assert snapshot == {**rest, "receivedAt": snapshot["receivedAt"]}
    assert snapshot["seq"] >= before[-1]["seq"]
    assert snapshot["connected"] is True and snapshot["lastSeen"] > 0
    assert snapshot["boot"]["model"] == "M1"
    [connector] = snapshot["connectors"]
    assert connector["status"] == "Charging"
    assert connector["meter"]["SoC"]["value"] == 61
    assert connector["meter"]["Current.Offered"]["value"] == 32
    [transaction] = snapshot["transactions"]
    assert transaction["transactionId"] == transaction_id and transaction["energyWh"] == 1500
    [transfer] = snapshot["dataTransfers"]
    assert transfer["vendorId"] == "flash" and transfer["data"] == {"soc": 42}


async def test_resume_with_since_has_no_gap_and_no_duplicate(gateway: Gateway, fanout: int) -> None:
    async with ocpp_charger(gateway.port, "CP-1") as cp:
        async with ui_socket(fanout, "/ws", token_value=token()) as witness:
            await witness.send_json({"op": "subscribe", "chargers": ["CP-1"]})
            await next_message(witness)  # snapshot
            async with ui_socket(fanout, "/ws/chargers/CP-1", token_value=token()) as ws:
                await next_message(ws)
                await cp.call(
                    call.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
                seen = await messages_until(ws, lambda m: m["type"] == "boot")
            last = seen[-1]["seq"]
            # Missed while away: a whole session.
            await charge(cp)
            everything = await messages_until(witness, lambda m: m["type"] == "transaction.stopped")
            async with ui_socket(
                fanout, "/ws/chargers/CP-1", token_value=token(), params={"since": str(last)}
            ) as ws:
                resumed = await messages_until(ws, lambda m: m["type"] == "transaction.stopped")
                await cp.call(call.Heartbeat())
                await cp.call(
                    call.StatusNotification(
                        connector_id=1, error_code="NoError", status="Available"
                    )
                )
                live = await next_message(ws)
    expected = [m for m in everything if m["seq"] > last]
    assert resumed == expected  # same messages, same order: no gap, no duplicate
    assert all(m["type"] != "snapshot" for m in resumed)
    assert live["type"] == "status" and live["status"] == "Available"
    assert live["seq"] > resumed[-1]["seq"]


async def test_resume_from_too_old_a_sequence_gets_an_error_and_a_fresh_snapshot(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings
) -> None:
    async with running_fanout(
        with_fanout(settings, history_per_charger=2), nats_server.url
    ) as port:
        async with ocpp_charger(gateway.port, "CP-1") as cp:
            await charge(cp)
        async with ui_socket(
            port, "/ws/chargers/CP-1", token_value=token(), params={"since": "1"}
        ) as ws:
            error = await next_message(ws)
            snapshot = await next_message(ws)
    assert error["type"] == "error" and error["code"] == "resume_unavailable"
    assert "seq 1" in error["message"]
    assert snapshot["type"] == "snapshot" and snapshot["boot"]["vendor"] == "Acme"


@pytest.mark.parametrize("path", ["/ws/chargers/CP-1", "/ws"])
async def test_resume_beyond_the_end_of_the_stream_gets_an_error_a_snapshot_and_live_messages(
    gateway: Gateway, fanout: int, path: str
) -> None:
    """As a UI that reconnects after the data directory was recreated: its `since` is from a
    stream that no longer exists."""
    async with ocpp_charger(gateway.port, "CP-1") as cp:
        await charge(cp, stop=False)
        beyond = 1_000_000
        async with ui_socket(
            fanout, path, token_value=token(), params={"since": str(beyond)}
        ) as ws:
            if path == "/ws":
                await ws.send_json({"op": "subscribe", "chargers": ["*"]})
            error = await next_message(ws)
            snapshot = await next_message(ws)
            await cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status="Finishing")
            )
            # The charge's last readings may still be on their way; the status follows them.
            live = await next_message(ws)
            while live["type"] != "status":
                live = await next_message(ws)
    assert error["type"] == "error" and error["code"] == "resume_beyond_end"
    assert f"after seq {beyond}" in error["message"] and "fresh snapshots" in error["message"]
    assert snapshot["type"] == "snapshot" and snapshot["chargePointId"] == "CP-1"
    assert snapshot["boot"]["vendor"] == "Acme" and snapshot["transactions"]
    assert live["type"] == "status" and live["status"] == "Finishing"
    assert live["seq"] > snapshot["seq"]


async def test_a_replay_bounded_by_age_resumes_from_the_end_of_the_stream(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings
) -> None:
    """Events older than HUB_FANOUT_REBUILD_AGE are left out of the replay: a client that saw
    them resumes after the last, and one that missed some gets fresh snapshots."""
    async with ocpp_charger(gateway.port, "CP-1") as cp:
        await charge(cp, stop=False)
        end, _ = (await stored_events(nats_server.url))[-1]
        recent_only = with_fanout(settings, rebuild_max_age_s=1e-6)  # every event is older
        async with running_fanout(recent_only, nats_server.url) as port:
            async with ui_socket(
                port, "/ws/chargers/CP-1", token_value=token(), params={"since": str(end)}
            ) as ws:
                await cp.call(
                    call.StatusNotification(
                        connector_id=1, error_code="NoError", status="Finishing"
                    )
                )
                live = await next_message(ws)
            async with ui_socket(
                port, "/ws/chargers/CP-1", token_value=token(), params={"since": str(end - 1)}
            ) as ws:
                error = await next_message(ws)
    assert live["type"] == "status" and live["status"] == "Finishing" and live["seq"] > end
    assert error["type"] == "error" and error["code"] == "resume_unavailable"


@pytest.mark.parametrize(
    ("token_value", "reason"),
    [
        (None, "missing token"),
        ("not-a-jwt", "invalid token"),
        (token("*", secret="some-other-secret-of-enough-length!"), "invalid token"),
        (token("*", ttl_s=-60), "token expired"),
        (token(["CP-2"]), "outside the token's scope"),
    ],
)
async def test_websocket_refuses_bad_expired_and_out_of_scope_tokens(
    fanout: int, token_value: str | None, reason: str
) -> None:
    async with ui_socket(fanout, "/ws/chargers/CP-1", token_value=token_value) as ws:
        code, message = await close_of(ws)
    assert code == 1008
    assert reason in message


async def test_rest_answers_401_403_and_reads_with_a_good_token(
    gateway: Gateway, fanout: int
) -> None:
    async with ocpp_charger(gateway.port, "CP-1") as cp:
        await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
    base = f"http://127.0.0.1:{fanout}/api/v1/chargers"
    async with aiohttp.ClientSession() as http:
        for headers, status in [
            ({}, 401),
            ({"Authorization": "Bearer junk"}, 401),
            ({"Authorization": f"Bearer {token(ttl_s=-60)}"}, 401),
            ({"Authorization": f"Bearer {token(['CP-2'])}"}, 403),
        ]:
            response = await http.get(f"{base}/CP-1", headers=headers)
            assert response.status == status, headers
            assert (await response.json())["message"]
        listing = await http.get(base, params={"token": token(["CP-2"])})
        assert (await listing.json())["chargers"] == []
        listing = await http.get(base, headers={"Authorization": f"Bearer {token(['CP-1'])}"})
        [charger] = (await listing.json())["chargers"]
    assert charger["chargePointId"] == "CP-1" and charger["boot"]["vendor"] == "V"


async def test_garbage_gets_an_error_naming_the_field_and_the_connection_stays_up(
    gateway: Gateway, fanout: int
) -> None:
    async with ui_socket(fanout, "/ws", token_value=token()) as ws:
        await ws.send_str("not json")
        assert (await next_message(ws))["code"] == "bad_request"
        await ws.send_str('{"op": "dance"}')
        error = await next_message(ws)
        assert error["code"] == "bad_request" and "op" in error["message"]
        await ws.send_str('{"op": "subscribe", "chargers": "CP-1"}')
        error = await next_message(ws)
        assert "chargers" in error["message"]
        # A misspelt field is refused, not ignored: this resume would become a fresh subscribe.
        await ws.send_str('{"op": "subscribe", "chargers": ["CP-1"], "sinse": 3}')
        error = await next_message(ws)
        assert error["code"] == "bad_request" and "sinse" in error["message"]
        await ws.send_bytes(b"\x00\x01")
        assert (await next_message(ws))["code"] == "bad_request"
        await ws.send_json({"op": "subscribe", "chargers": ["CP-1"]})
        assert (await next_message(ws))["type"] == "snapshot"
        async with ocpp_charger(gateway.port, "CP-1"):
            assert (await next_message(ws))["state"] == "connected"


async def test_an_abusive_client_is_closed(fanout: int) -> None:
    async with ui_socket(fanout, "/ws", token_value=token()) as ws:
        for _ in range(200):
            await ws.send_str("garbage")
        code, message = await close_of(ws)
    assert code == 1008 and "too many" in message


async def test_an_oversized_client_message_closes_the_connection(fanout: int) -> None:
    async with ui_socket(fanout, "/ws", token_value=token()) as ws:
        await ws.send_str('{"op":"subscribe","chargers":["' + "x" * 10_000 + '"]}')
        code, _ = await close_of(ws)
    assert code == 1009


async def test_a_transaction_started_before_the_replay_window_is_shown_with_its_start(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings
) -> None:
    """The fan-out replays a window of the stream, but folds what changes charging profiles
    from the stream's first event on, StartTransaction among it (the command API's profiles
    read the same fold): a transaction started before the window is the one its start
    says, not one inferred from the readings inside it."""
    async with ocpp_charger(gateway.port, "CP-1") as cp:
        transaction_id = await charge(cp, stop=False)
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=transaction_id,
                meter_value=[
                    {
                        "timestamp": "2026-11-22T10:20:00Z",
                        "sampledValue": [
                            {"value": "3000", "measurand": "Energy.Active.Import.Register"}
                        ],
                    }
                ],
            )
        )
    stored = await stored_events(nats_server.url)
    end = stored[-1][0]
    readings = max(
        seq
        for seq, e in stored
        if isinstance(e, OcppFrame) and e.action == "MeterValues" and e.direction == "in"
    )
    # The window: the last MeterValues, its answer, and what followed (the close).
    window = with_fanout(settings, rebuild_max_events=end - readings + 1)
    async with running_fanout(window, nats_server.url) as port, aiohttp.ClientSession() as http:
        response = await http.get(
            f"http://127.0.0.1:{port}/api/v1/chargers/CP-1",
            headers={"Authorization": f"Bearer {token()}"},
        )
        snapshot = await response.json()
    [shown] = snapshot["transactions"]
    assert shown["transactionId"] == transaction_id and shown["idTag"] == "TAG1"
    assert not shown["inferred"] and shown["startedAt"].startswith("2026-11-22T10:00:00")
    assert (shown["meterStartWh"], shown["energyWh"]) == (1000.0, 2000.0)
