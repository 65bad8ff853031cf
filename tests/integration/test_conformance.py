"""Conformance and security (issue #14): secrets never stored in clear, CiStrings compared
without case, frames as large as real chargers send, and formats checked on API bodies.
Real chargers (the ocpp library's v16 ChargePoint, raw frames where exact control is
needed) through a real gateway, fan-out/API and nats-server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import nats
import pytest
from nats.js.api import DeliverPolicy
from ocpp.routing import on
from ocpp.v16 import call, call_result

from hub.bus import event_backbone
from hub.clock import now_ms
from hub.config import Settings
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from hub.subjects import charger_subject
from schemas.events import (
    CommandFinished,
    CommandRequested,
    Event,
    FrameRejected,
    IdTagUpserted,
    OcppFrame,
    WalletConfigured,
)
from tests.conftest import with_gateway
from tests.integration.api_helpers import PROFILE, AnsweringCharger, api_client, api_token, online
from tests.integration.fanout_helpers import messages_until, ui_socket, with_fanout
from tests.integration.helpers import charger_events, ocpp_charger, stored_events, wait_for_event

SECRET: Final = "Zq7vK2pLw9XrT4mB8nYc"  # an AuthorizationKey: 20 characters, as chargers use


@pytest.fixture
async def ui_port(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[int]:
    async with running_fanout(with_fanout(settings), nats_server.url) as port:
        yield port


async def raw_stream(nats_url: str) -> list[bytes]:
    """Every message in the stream, as the bytes NATS stores (not decoded)."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        info = await js.stream_info("OCPP_EVENTS")
        expected = info.state.messages
        found: list[bytes] = []
        done = asyncio.Event()

        async def on_message(msg: Any) -> None:
            found.append(bytes(msg.data) + b"\n" + repr(msg.headers).encode())
            if len(found) >= expected:
                done.set()

        await js.subscribe(
            "ev.>", cb=on_message, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        async with asyncio.timeout(10):
            await done.wait()
        return found
    finally:
        await client.close()


# -- 3. secrets ---------------------------------------------------------------------------


class KeyedCharger(AnsweringCharger):
    """Keeps its AuthorizationKey, and returns it in GetConfiguration, as some firmware does."""

    authorization_key = "initial-key-000000"

    @on("ChangeConfiguration")
    async def on_change_configuration(self, key: str, value: str) -> Any:
        self.received.append(("ChangeConfiguration", {"key": key, "value": value}))
        if key == "AuthorizationKey":
            self.authorization_key = value
        return call_result.ChangeConfiguration(status="Accepted")

    @on("GetConfiguration")
    async def on_get_configuration(self, **kwargs: Any) -> Any:
        return call_result.GetConfiguration(
            configuration_key=[
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                {"key": "AuthorizationKey", "readonly": False, "value": self.authorization_key},
                {"key": "authorizationkey", "readonly": True, "value": self.authorization_key},
            ]
        )


async def test_an_authorization_key_reaches_the_charger_but_is_stored_nowhere_in_clear(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats
) -> None:
    base = "/api/v1/chargers/CP-KEY"
    async with (
        online(gateway.port, ui_port, "CP-KEY", KeyedCharger) as charger,
        api_client(ui_port) as api,
    ):
        changed = await api.call(
            "PUT", f"{base}/configuration", {"key": "AuthorizationKey", "value": SECRET}
        )
        read = await api.call("GET", f"{base}/configuration", params={"key": "AuthorizationKey"})
        tracked = await api.call("GET", f"/api/v1/commands/{read[1]['commandId']}")
        # A late answer (its command timed out) is stored as unexpected, and so is one cut
        # short or broken: their raw text holds the key as the charger sent it.
        late = {"configurationKey": [{"key": "AuthorizationKey", "value": SECRET}]}
        await charger._connection.send(json.dumps([3, "late-1", late]))
        await charger._connection.send(json.dumps([3, "late-2", late])[:-3])
        await wait_for_event(
            nats_server.url,
            charger_subject("CP-KEY"),
            lambda e: isinstance(e, FrameRejected) and e.reason == "not_json",
        )
    assert changed[0] == 200 and changed[1]["status"] == "accepted"
    # The charger got the real value.
    assert charger.authorization_key == SECRET
    assert ("ChangeConfiguration", {"key": "AuthorizationKey", "value": SECRET}) in charger.received
    # The API answers with the value as the stream keeps it.
    assert read[0] == 200
    assert read[1]["response"]["configurationKey"] == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        {"key": "AuthorizationKey", "readonly": False, "value": "***"},
        {"key": "authorizationkey", "readonly": True, "value": "***"},
    ]
    assert tracked == (200, read[1])

    events = [e for _, e in await stored_events(nats_server.url)]
    requested = [e for e in events if isinstance(e, CommandRequested)]
    assert json.loads(bytes(requested[0].payload)) == {"key": "AuthorizationKey", "value": "***"}
    finished = [e for e in events if isinstance(e, CommandFinished)]
    assert "***" in bytes(finished[1].payload).decode()
    frames = [e for e in events if isinstance(e, OcppFrame) and e.action.endswith("Configuration")]
    assert json.loads(bytes(frames[0].payload)) == {"key": "AuthorizationKey", "value": "***"}
    rejected = [e for e in events if isinstance(e, FrameRejected)]
    assert [(e.unique_id, e.reason) for e in rejected] == [
        ("late-1", "unexpected_result"),
        ("-1", "not_json"),
    ]
    assert json.loads(rejected[0].raw)[2]["configurationKey"][0]["value"] == "***"
    assert rejected[1].raw == "***"  # cut short: not parseable, so redacted whole
    # Scan every stored byte: the secret is nowhere, in any case.
    for data in await raw_stream(nats_server.url):
        assert SECRET.encode() not in data
        assert SECRET.lower().encode() not in data.lower()


# -- 5. CiStrings --------------------------------------------------------------------------


def admin(event_type: type[Event], **fields: Any) -> Event:
    return event_type(id=uuid.uuid4().hex, received_at=now_ms(), actor="test", **fields)  # type: ignore[call-arg]


async def test_id_tags_vendors_and_message_ids_match_in_any_case(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    listed = with_gateway(
        settings,
        authorize_policy="list",
        data_transfer_vendors={"AcmeCorp": ["GetPrice"]},
    )
    async with event_backbone(listed, nats_server.url, name="test") as (_, store):
        await store.store(
            [
                admin(IdTagUpserted, id_tag="Aqckz"),
                admin(IdTagUpserted, id_tag="fleet-a", status="Blocked"),
                admin(IdTagUpserted, id_tag="Driver7", parent_id_tag="FLEET-A"),
                # A prepaid tag with nothing in its wallet may not start, in any case.
                admin(IdTagUpserted, id_tag="Prepaid1"),
                admin(WalletConfigured, id_tag="prepaid1", hold_amount="10"),
            ]
        )
    # The gateway's registry has folded every stored admin event once it runs.
    async with running_gateway(listed, nats_server.url) as gateway:
        async with ocpp_charger(gateway.port, "CP-CASE") as charger:
            verdicts = [
                (await charger.call(call.Authorize(id_tag=tag))).id_tag_info["status"]
                for tag in ("aQCKZ", "AQCKZ", "Aqckz", "DRIVER7", "PREPAID1", "nobody")
            ]
            transfers = [
                (await charger.call(call.DataTransfer(vendor_id=vendor, message_id=message))).status
                for vendor, message in (
                    ("acmecorp", "getprice"),
                    ("ACMECORP", "GETPRICE"),
                    ("AcmeCorp", "other"),
                    ("Other", "GetPrice"),
                )
            ]
    assert verdicts == ["Accepted", "Accepted", "Accepted", "Blocked", "Blocked", "Invalid"]
    assert transfers == ["Accepted", "Accepted", "UnknownMessageId", "UnknownVendorId"]


# -- 7. large frames ----------------------------------------------------------------------


def transaction_data(minutes: int) -> list[dict[str, Any]]:
    """One sample set a minute, as a charger that meters every minute keeps them."""
    data = []
    for minute in range(minutes):
        stamp = f"2026-01-01T{minute // 60 % 24:02d}:{minute % 60:02d}:00Z"
        data.append(
            {
                "timestamp": stamp,
                "sampledValue": [
                    {
                        "value": str(1000 * minute + phase),
                        "context": "Sample.Periodic",
                        "measurand": measurand,
                        "phase": phase_name,
                        "unit": unit,
                    }
                    for phase, (measurand, phase_name, unit) in enumerate(
                        [
                            ("Energy.Active.Import.Register", "L1", "Wh"),
                            ("Current.Import", "L1", "A"),
                            ("Current.Import", "L2", "A"),
                            ("Voltage", "L1-N", "V"),
                        ]
                    )
                ],
            }
        )
    return data


async def test_a_one_megabyte_stop_transaction_is_stored_and_answered(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats
) -> None:
    data = transaction_data(2_180)  # 36 hours of 1-minute readings
    async with (
        ui_socket(ui_port, "/ws/chargers/CP-LONG", token_value=api_token("viewer")) as ws,
        ocpp_charger(gateway.port, "CP-LONG") as charger,
    ):
        started = await charger.call(
            call.StartTransaction(
                connector_id=1, id_tag="TAG-1", meter_start=0, timestamp="2026-01-01T00:00:00Z"
            )
        )
        stop = call.StopTransaction(
            meter_stop=1_700_000,
            timestamp="2026-01-02T04:20:00Z",
            transaction_id=started.transaction_id,
            id_tag="TAG-1",
            transaction_data=data,
        )
        answer = await charger.call(stop)
        # The session's end reaches the UI: the fan-out folded the large event.
        await messages_until(ws, lambda m: m["type"] == "transaction.stopped")
    assert answer.id_tag_info["status"] == "Accepted"
    stored = [
        e
        for e in await charger_events(nats_server.url, "CP-LONG")
        if isinstance(e, OcppFrame) and e.action == "StopTransaction"
    ]
    assert [(e.direction, e.message_type) for e in stored] == [
        ("in", "CALL"),
        ("out", "CALLRESULT"),
    ]
    payload = bytes(stored[0].payload)
    assert 1_000_000 < len(payload) < 1024 * 1024
    assert len(json.loads(payload)["transactionData"]) == 2_180


def configuration(size: int) -> list[dict[str, Any]]:
    """A charger's whole configuration, about ``size`` bytes of it."""
    keys = []
    for index in range(size // 450):
        keys.append({"key": f"Vendor.Setting{index:04d}", "readonly": False, "value": "v" * 400})
    return keys


class ChattyCharger(AnsweringCharger):
    """Answers GetConfiguration with everything it has: about 83 KB."""

    @on("GetConfiguration")
    async def on_get_configuration(self, **kwargs: Any) -> Any:
        return call_result.GetConfiguration(configuration_key=configuration(83_000))


async def test_an_83_kilobyte_configuration_answer_is_returned_by_the_api(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats
) -> None:
    async with (
        online(gateway.port, ui_port, "CP-CHATTY", ChattyCharger),
        api_client(ui_port) as api,
    ):
        status, answer = await api.call("GET", "/api/v1/chargers/CP-CHATTY/configuration")
    assert status == 200, answer
    assert answer["response"]["configurationKey"] == configuration(83_000)


async def test_an_answer_above_the_frame_limit_is_a_clear_error_not_a_timeout(
    nats_server: EmbeddedNats, settings: Settings, ui_port: int
) -> None:
    small = with_gateway(settings, max_frame_bytes=50_000)  # type: ignore[arg-type]
    async with (
        running_gateway(small, nats_server.url) as gateway,
        online(gateway.port, ui_port, "CP-CHATTY", ChattyCharger),
        api_client(ui_port) as api,
    ):
        status, answer = await api.call(
            "GET", "/api/v1/chargers/CP-CHATTY/configuration", params={"timeout": "20"}
        )
    assert status == 502, answer
    assert answer["outcome"] == "invalid_answer"
    assert answer["error"]["code"] == "FormationViolation"
    assert "the limit is 50000" in answer["error"]["description"]
    events = await charger_events(nats_server.url, "CP-CHATTY")
    [rejected] = [e for e in events if isinstance(e, FrameRejected)]
    assert (rejected.reason, rejected.action) == ("oversized", "GetConfiguration")
    finished = [e for _, e in await stored_events(nats_server.url, "ev.admin.command.finished")]
    assert [e.status for e in finished if isinstance(e, CommandFinished)] == ["invalid_answer"]


# -- 9. formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        (
            "reserve-now",
            {"connectorId": 1, "expiryDate": "tomorrow", "idTag": "T", "reservationId": 7},
            "$.expiryDate",
        ),
        (
            "update-firmware",
            {"location": "https://example.com/fw", "retrieveDate": "2027-02-30T00:00:00Z"},
            "$.retrieveDate",
        ),
        (
            "charging-profiles",
            {
                "connectorId": 1,
                "csChargingProfiles": PROFILE
                | {
                    "chargingSchedule": PROFILE["chargingSchedule"]
                    | {"startSchedule": "2027-01-01 08:00"}
                },
            },
            "$.csChargingProfiles.chargingSchedule.startSchedule",
        ),
        ("get-diagnostics", {"location": "not a uri"}, "$.location"),
    ],
)
async def test_a_body_with_an_invalid_date_time_or_uri_is_refused_naming_the_field(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats, name: str, body: Any, field: str
) -> None:
    async with (
        online(gateway.port, ui_port, "CP-DATES") as charger,
        api_client(ui_port) as api,
    ):
        status, answer = await api.call("POST", f"/api/v1/chargers/CP-DATES/{name}", body)
        # The charger was there, and gets the next command.
        reset = await api.call("POST", "/api/v1/chargers/CP-DATES/reset", {"type": "Soft"})
    assert status == 400, answer
    assert answer["error"] == "bad_request"
    assert answer["message"].endswith(f"- at `{field}`"), answer
    assert reset[0] == 200
    # Nothing was stored or sent for the refused body.
    assert [action for action, _ in charger.received] == ["Reset"]
    requested = await stored_events(nats_server.url, "ev.admin.command.requested")
    assert [e.action for _, e in requested if isinstance(e, CommandRequested)] == ["Reset"]
