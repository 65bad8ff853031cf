"""Connections: ids in every shape, duplicate connections, Basic auth and TLS, txid retries."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme
from ocpp.v16 import call
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from hub.subjects import charger_subject
from schemas.events import (
    ChargerConnected,
    ChargerDisconnected,
    ChargerReplaced,
    ConnectionRefused,
    OcppFrame,
)
from tests.conftest import with_gateway
from tests.integration.helpers import (
    basic_auth,
    charger_events,
    ocpp_charger,
    register_charger,
    stored_events,
    wait_for_event,
)

# Every character the id rule allows, in the places NATS subjects and URLs find awkward
# (ids outside the rule are refused: tests/integration/test_handshake_abuse.py).
AWKWARD_IDS = [
    "CP.1",
    "CP*2",
    "CP|3",
    "=+@_-",
    "...",
    "x" * 48,
]


@pytest.mark.parametrize("charge_point_id", AWKWARD_IDS)
async def test_awkward_charger_ids_work_and_stay_apart(
    gateway: Gateway, nats_server: EmbeddedNats, charge_point_id: str
) -> None:
    async with ocpp_charger(gateway.port, charge_point_id) as cp:
        result = await cp.call(call.Heartbeat())
        assert result.current_time
    events = await charger_events(nats_server.url, charge_point_id)
    assert {e.charge_point_id for e in events} == {charge_point_id}  # type: ignore[union-attr]
    assert [type(e).__name__ for e in events] == [
        "ChargerConnected",
        "OcppFrame",
        "OcppFrame",
        "ChargerDisconnected",
    ]


@pytest.mark.parametrize("path", ["/steve/websocket/CentralSystemService/", "/", "/a/b/c/d/"])
async def test_any_path_ending_in_the_id_is_accepted(
    gateway: Gateway, nats_server: EmbeddedNats, path: str
) -> None:
    async with ocpp_charger(gateway.port, "CP-PATH", path=path) as cp:
        await cp.call(call.Heartbeat())
    assert len(await charger_events(nats_server.url, "CP-PATH")) == 4


async def test_newer_connection_replaces_the_older_one(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    async with ocpp_charger(gateway.port, "CP-TWICE") as first:
        await first.call(call.Heartbeat())
        async with ocpp_charger(gateway.port, "CP-TWICE") as second:
            async with asyncio.timeout(5):
                await first._connection.wait_closed()
            assert first._connection.close_code == 1000
            assert (await second.call(call.Heartbeat())).current_time
    events = await charger_events(nats_server.url, "CP-TWICE")
    opened = [e for e in events if isinstance(e, ChargerConnected)]
    replaced = [e for e in events if isinstance(e, ChargerReplaced)]
    closed = [e for e in events if isinstance(e, ChargerDisconnected)]
    assert len(opened) == 2 and len(closed) == 2
    assert [(r.connection_id, r.new_connection_id) for r in replaced] == [
        (opened[0].connection_id, opened[1].connection_id)
    ]


async def test_newer_connection_on_another_gateway_replaces_the_older_one(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    other = with_gateway(settings, gateway_id="gw-other")
    async with (
        running_gateway(settings, nats_server.url) as one,
        running_gateway(other, nats_server.url) as two,
    ):
        async with ocpp_charger(one.port, "CP-ROAM") as first:
            await first.call(call.Heartbeat())
            async with ocpp_charger(two.port, "CP-ROAM") as second:
                async with asyncio.timeout(5):
                    await first._connection.wait_closed()
                await second.call(call.Heartbeat())
    replaced = [
        e
        for e in await charger_events(nats_server.url, "CP-ROAM")
        if isinstance(e, ChargerReplaced)
    ]
    assert [(r.gateway_id, r.new_gateway_id) for r in replaced] == [("gw-test", "gw-other")]


async def test_retried_start_transaction_gets_the_same_id(
    gateway: Gateway, nats_server: EmbeddedNats, settings: Settings
) -> None:
    start = call.StartTransaction(
        connector_id=1, id_tag="TAG", meter_start=500, timestamp="2026-11-22T08:00:00Z"
    )
    async with ocpp_charger(gateway.port, "CP-RETRY") as cp:
        first = await cp.call(start)
        other = await cp.call(
            call.StartTransaction(
                connector_id=2, id_tag="TAG", meter_start=500, timestamp="2026-11-22T08:00:00Z"
            )
        )
    # The charger reconnects, this time to a second gateway, and retries with a new message id.
    second_gateway = with_gateway(settings, gateway_id="gw-second")
    async with (
        running_gateway(second_gateway, nats_server.url) as again,
        ocpp_charger(again.port, "CP-RETRY") as cp,
    ):
        retried = await cp.call(start)
    assert retried.transaction_id == first.transaction_id
    assert other.transaction_id != first.transaction_id
    assert all(0 < tx.transaction_id < 2**31 for tx in (first, other, retried))


@pytest.fixture
async def secured(nats_server: EmbeddedNats, settings: Settings) -> Settings:
    await register_charger(nats_server.url, settings, "CP-SECURE", "correct horse battery")
    return with_gateway(settings, allow_unknown_chargers=False)


async def test_basic_auth_accepts_the_right_password(
    nats_server: EmbeddedNats, secured: Settings
) -> None:
    async with (
        running_gateway(secured, nats_server.url) as gateway,
        ocpp_charger(
            gateway.port,
            "CP-SECURE",
            additional_headers=basic_auth("CP-SECURE", "correct horse battery"),
        ) as cp,
    ):
        assert (await cp.call(call.Heartbeat())).current_time
    opened = [
        e
        for e in await charger_events(nats_server.url, "CP-SECURE")
        if isinstance(e, ChargerConnected)
    ]
    assert [e.security_profile for e in opened] == [1]


@pytest.mark.parametrize(
    ("charge_point_id", "headers", "reason"),
    [
        ("CP-SECURE", basic_auth("CP-SECURE", "wrong"), "bad_credentials"),
        ("CP-SECURE", basic_auth("CP-OTHER", "correct horse battery"), "bad_credentials"),
        ("CP-SECURE", {}, "missing_credentials"),
        # Sent, if unreadable: bad, not missing.
        ("CP-SECURE", {"Authorization": "Basic !!!not-base64"}, "bad_credentials"),
        ("CP-STRANGER", {}, "unknown_charger"),
    ],
)
async def test_basic_auth_refuses_everything_else(
    nats_server: EmbeddedNats,
    secured: Settings,
    charge_point_id: str,
    headers: dict[str, str],
    reason: str,
) -> None:
    async with running_gateway(secured, nats_server.url) as gateway:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_point_id}",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                additional_headers=headers,
            ):
                pass
    assert refused.value.response.status_code == 401
    refusals = [e for _, e in await stored_events(nats_server.url, "ev.gw.refused")]
    assert [
        (e.charge_point_id, e.reason) for e in refusals if isinstance(e, ConnectionRefused)
    ] == [(charge_point_id, reason)]
    assert not [
        e
        for e in await charger_events(nats_server.url, charge_point_id)
        if isinstance(e, OcppFrame)
    ]


async def test_tls_with_basic_auth_is_security_profile_2(
    nats_server: EmbeddedNats, secured: Settings, tmp_path: Path
) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    tls = with_gateway(secured, tls_cert=str(cert_file), tls_key=str(key_file))
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    async with running_gateway(tls, nats_server.url) as gateway:
        async with connect(
            f"wss://127.0.0.1:{gateway.port}/ocpp/{quote('CP-SECURE')}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            ssl=client_context,
            additional_headers=basic_auth("CP-SECURE", "correct horse battery"),
        ) as ws:
            await ws.send('[2, "tls-1", "Heartbeat", {}]')
            assert (await ws.recv()).startswith('[3,"tls-1"')
        with pytest.raises(ssl.SSLError):
            async with connect(
                f"wss://127.0.0.1:{gateway.port}/ocpp/CP-SECURE", ssl=ssl.create_default_context()
            ):
                pass
    opened = [
        e
        for e in await charger_events(nats_server.url, "CP-SECURE")
        if isinstance(e, ChargerConnected)
    ]
    assert [e.security_profile for e in opened] == [2]


async def test_dead_charger_is_detected_by_ping_pong(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    quick = with_gateway(settings, ping_interval_s=0.2, ping_timeout_s=0.3, close_timeout_s=0.5)
    async with running_gateway(quick, nats_server.url) as gateway:
        async with connect(
            f"ws://127.0.0.1:{gateway.port}/ocpp/CP-DEAD",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            ping_interval=None,
            close_timeout=0.5,
        ) as ws:
            # The charger's network vanishes: it stops reading, so it never answers a ping.
            ws.transport.pause_reading()
            closed = await wait_for_event(
                nats_server.url,
                charger_subject("CP-DEAD"),
                lambda event: isinstance(event, ChargerDisconnected),
            )
    # No close frame ever arrives from a dead peer, hence 1006 (abnormal closure).
    assert isinstance(closed, ChargerDisconnected) and closed.close_code == 1006
