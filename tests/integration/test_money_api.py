"""Tariffs, wallets and session limits over REST, against real NATS and the real fan-out app:
each change is an event in the stream before the answer, reads are folds of the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from hub.bus import EventStore, connect
from hub.config import Settings
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from schemas.events import (
    AccessDenied,
    Event,
    SessionLimits,
    SessionLimitsSet,
    TariffBand,
    TariffSet,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
)
from tests.integration.api_helpers import Api, api_client, api_token, online
from tests.integration.fanout_helpers import with_fanout
from tests.integration.helpers import stored_events

TARIFF: dict[str, Any] = {
    "currency": "EUR",
    "perKwh": "0.35",
    "perMinute": "0.01",
    "sessionFee": "1",
    "idlePerMinute": "0.10",
    "idleGraceMinutes": 15,
    "bands": [{"start": "22:00", "end": "06:00", "perKwh": "0.20"}],
    "effectiveFrom": "2026-03-01T00:00:00Z",
    "limits": {"maxEnergyWh": 40000, "maxDurationS": 14400, "maxCost": "30"},
}


@pytest.fixture
async def ui_port(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[int]:
    async with running_fanout(with_fanout(settings), nats_server.url) as port:
        yield port


async def keyed(api: Api, path: str, body: Any, key: str) -> tuple[int, Any]:
    """A POST with an Idempotency-Key header."""
    headers = {"Authorization": f"Bearer {api_token()}", "Idempotency-Key": key}
    async with api.session.post(f"{api.base}{path}", json=body, headers=headers) as response:
        return response.status, await response.json()


async def events_of(nats_url: str, subject: str, kind: type[Event]) -> list[Any]:
    return [e for _, e in await stored_events(nats_url, subject) if isinstance(e, kind)]


async def test_a_tariff_is_stored_then_listed(ui_port: int, nats_server: EmbeddedNats) -> None:
    async with api_client(ui_port) as api:
        put = await api.call("PUT", "/api/v1/tariffs/std", TARIFF)
        scoped = await api.call(
            "PUT", "/api/v1/tariffs/cp1", {**TARIFF, "chargePointId": "CP-1", "bands": []}
        )
        listed = await api.call("GET", "/api/v1/tariffs", token=api_token("viewer"))
        one = await api.call("GET", "/api/v1/tariffs/std", token=api_token("viewer"))
        other_scope = await api.call("GET", "/api/v1/tariffs", token=api_token("viewer", ["CP-9"]))
        missing = await api.call("GET", "/api/v1/tariffs/nope")
    assert put[0] == 200 and scoped[0] == 200
    stored = await events_of(nats_server.url, "ev.admin.tariff.>", TariffSet)
    assert [(e.tariff_id, e.charge_point_id, e.actor) for e in stored] == [
        ("std", "", "alice"),
        ("cp1", "CP-1", "alice"),
    ]
    std = stored[0]
    assert (std.per_kwh, std.idle_per_minute, std.idle_grace_minutes) == ("0.35", "0.10", 15)
    assert std.bands == (TariffBand(start="22:00", end="06:00", per_kwh="0.20", per_minute="0"),)
    assert std.limits == SessionLimits(max_energy_wh=40000, max_duration_s=14400, max_cost="30")
    assert std.effective_from == 1_772_323_200_000
    assert put[1]["eventId"] == std.id and put[1]["effectiveFrom"] == "2026-03-01T00:00:00.000Z"
    assert listed[0] == 200 and [t["tariffId"] for t in listed[1]["tariffs"]] == ["std", "cp1"]
    assert listed[1]["tariffs"][0] == put[1]
    assert one == (200, put[1])
    # A token for other chargers sees the default tariff, not CP-1's.
    assert [t["tariffId"] for t in other_scope[1]["tariffs"]] == ["std"]
    assert missing[0] == 404


async def test_bad_tariffs_are_refused_naming_the_field(
    ui_port: int, nats_server: EmbeddedNats
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({**TARIFF, "perKwh": "abc"}, "$.perKwh"),
        ({**TARIFF, "perKwh": 0.35}, "$.perKwh"),
        ({**TARIFF, "bands": [{"start": "25:00", "end": "06:00"}]}, "$.bands[0].start"),
        ({**TARIFF, "limits": {"maxCost": "-1"}}, "$.limits.maxCost"),
        ({**TARIFF, "limits": {"maxEnergyWh": 0}}, "$.limits.maxEnergyWh"),
        ({**TARIFF, "idleGraceMinutes": -1}, "$.idleGraceMinutes"),
        ({**TARIFF, "currency": "euro"}, "$.currency"),
        ({**TARIFF, "effectiveFrom": "soon"}, "$.effectiveFrom"),
        ({**TARIFF, "chargePointId": "CP:1"}, "$.chargePointId"),
        ({**TARIFF, "perKWh": "1"}, "perKWh"),
        ({k: v for k, v in TARIFF.items() if k != "sessionFee"}, "sessionFee"),
    ]
    async with api_client(ui_port) as api:
        answers = [await api.call("PUT", "/api/v1/tariffs/t", body) for body, _ in cases]
        not_json = await api.call("PUT", "/api/v1/tariffs/t", data=b"{nope")
    for (status, body), (_, field) in zip(answers, cases, strict=True):
        assert status == 400, body
        assert field in body["message"], (field, body)
    assert not_json[0] == 400 and "not valid JSON" in not_json[1]["message"]
    assert await stored_events(nats_server.url, "ev.admin.tariff.>") == []


async def test_viewers_and_narrow_tokens_cannot_change_money_and_are_audited(
    ui_port: int, nats_server: EmbeddedNats
) -> None:
    viewer = api_token("viewer", subject="vic")
    narrow = api_token("operator", ["CP-1"], subject="olga")
    async with api_client(ui_port) as api:
        refused = [
            await api.call("PUT", "/api/v1/tariffs/std", TARIFF, token=viewer),
            await api.call("PUT", "/api/v1/wallets/TAG-1", {"currency": "EUR"}, token=viewer),
            await api.call("POST", "/api/v1/wallets/TAG-1/topups", {"amount": "5"}, token=viewer),
            await api.call(
                "POST",
                "/api/v1/wallets/TAG-1/adjustments",
                {"amount": "5", "reference": "r"},
                token=viewer,
            ),
            await api.call(
                "PUT",
                "/api/v1/chargers/CP-1/transactions/1/limits",
                {"maxCost": "5"},
                token=viewer,
            ),
            # Wallets and default tariffs concern every charger.
            await api.call("PUT", "/api/v1/tariffs/std", TARIFF, token=narrow),
            await api.call("PUT", "/api/v1/wallets/TAG-1", {"currency": "EUR"}, token=narrow),
            await api.call("GET", "/api/v1/wallets/TAG-1", token=api_token("viewer", ["CP-1"])),
            await api.call(
                "PUT", "/api/v1/tariffs/x", {**TARIFF, "chargePointId": "CP-2"}, token=narrow
            ),
            await api.call("GET", "/api/v1/tariffs", token=""),
        ]
        allowed = await api.call(
            "PUT", "/api/v1/tariffs/x", {**TARIFF, "chargePointId": "CP-1"}, token=narrow
        )
    assert [status for status, _ in refused] == [403] * 9 + [401]
    assert "may not change tariffs" in refused[0][1]["message"]
    assert allowed[0] == 200
    denied = await events_of(nats_server.url, "ev.admin.access.>", AccessDenied)
    assert [(e.http_status, e.actor, e.method) for e in denied] == [
        (403, "vic", "PUT"),
        (403, "vic", "PUT"),
        (403, "vic", "POST"),
        (403, "vic", "POST"),
        (403, "vic", "PUT"),
        (403, "olga", "PUT"),
        (403, "olga", "PUT"),
        (403, "alice", "GET"),
        (403, "olga", "PUT"),
        (401, "", "GET"),
    ]
    assert denied[8].charge_point_id == "CP-2"
    tariffs = await events_of(nats_server.url, "ev.admin.tariff.>", TariffSet)
    assert [(t.tariff_id, t.actor) for t in tariffs] == [("x", "olga")]
    assert await stored_events(nats_server.url, "ev.admin.wallet.>") == []
    assert await stored_events(nats_server.url, "ev.admin.session.>") == []


async def test_wallet_topups_and_adjustments_are_stored_once_and_folded(
    ui_port: int, nats_server: EmbeddedNats
) -> None:
    base = "/api/v1/wallets/TAG-1"
    async with api_client(ui_port) as api:
        unconfigured = await api.call("POST", f"{base}/topups", {"amount": "10"})
        config = await api.call(
            "PUT", base, {"currency": "EUR", "holdAmount": "20", "minBalance": "5"}
        )
        topup = await api.call("POST", f"{base}/topups", {"amount": "50.25", "reference": "pay-1"})
        retried = await api.call(
            "POST", f"{base}/topups", {"amount": "50.25", "reference": "pay-1"}
        )
        by_key = await keyed(api, f"{base}/topups", {"amount": "5"}, "pay-2")
        by_key_again = await keyed(api, f"{base}/topups", {"amount": "5"}, "pay-2")
        misused = await api.call("POST", f"{base}/topups", {"amount": "99", "reference": "pay-1"})
        adjusted = await api.call(
            "POST",
            f"{base}/adjustments",
            {"amount": "-0.25", "reference": "fix-1", "note": "goodwill reversal"},
        )
        unreferenced = await api.call("POST", f"{base}/topups", {"amount": "1"})
        wallet = await api.call("GET", base, token=api_token("viewer"))
        currency_change = await api.call("PUT", base, {"currency": "USD"})
        unknown = await api.call("GET", "/api/v1/wallets/NOBODY", token=api_token("viewer"))
    assert unconfigured[0] == 404
    assert config[0] == 200 and config[1]["holdAmount"] == "20"
    assert topup[0] == 201 and topup[1]["eventId"] == "wallet:TAG-1:pay-1"
    assert retried == topup
    assert by_key[0] == 201 and by_key_again == by_key and by_key[1]["reference"] == "pay-2"
    assert misused[0] == 409
    assert adjusted[0] == 201 and adjusted[1]["kind"] == "adjustment"
    assert unreferenced[0] == 201
    assert currency_change[0] == 409
    assert unknown[0] == 404
    configured = await events_of(nats_server.url, "ev.admin.wallet.>", WalletConfigured)
    assert [(e.id_tag, e.hold_amount, e.min_balance, e.actor) for e in configured] == [
        ("TAG-1", "20", "5", "alice")
    ]
    credits = await events_of(nats_server.url, "ev.admin.wallet.>", WalletCredited)
    assert [(e.kind, e.amount, e.reference, e.note) for e in credits] == [
        ("topup", "50.25", "pay-1", ""),
        ("topup", "5", "pay-2", ""),
        ("adjustment", "-0.25", "fix-1", "goodwill reversal"),
        ("topup", "1", "", ""),
    ]
    status, view = wallet
    assert status == 200
    assert (view["balance"], view["currency"], view["configured"]) == ("56.0000", "EUR", True)
    assert (view["holdAmount"], view["minBalance"]) == ("20", "5")
    assert [(line["kind"], line["amount"], line["balance"]) for line in view["ledger"]] == [
        ("topup", "50.2500", "50.2500"),
        ("topup", "5.0000", "55.2500"),
        ("adjustment", "-0.2500", "55.0000"),
        ("topup", "1.0000", "56.0000"),
    ]


async def test_bad_wallet_requests_name_the_field(ui_port: int, nats_server: EmbeddedNats) -> None:
    base = "/api/v1/wallets/TAG-2"
    async with api_client(ui_port) as api:
        assert (await api.call("PUT", base, {"currency": "EUR"}))[0] == 200
        answers = [
            (await api.call("POST", f"{base}/topups", {"amount": "0"}), "$.amount"),
            (await api.call("POST", f"{base}/topups", {"amount": "-5"}), "$.amount"),
            (await api.call("POST", f"{base}/topups", {"amount": "1.00001"}), "$.amount"),
            (await api.call("POST", f"{base}/topups", {"amount": 5}), "$.amount"),
            (await api.call("POST", f"{base}/adjustments", {"amount": "-5"}), "$.reference"),
            (
                await api.call("POST", f"{base}/adjustments", {"amount": "0", "reference": "r"}),
                "$.amount",
            ),
            (await api.call("PUT", base, {"currency": "EUR", "holdAmount": "0"}), "$.holdAmount"),
            (await api.call("PUT", base, {"currency": "EUR", "minBalance": "-1"}), "$.minBalance"),
            (await api.call("PUT", base, {"holdAmount": "5"}), "currency"),
            (await api.call("PUT", "/api/v1/wallets/" + "T" * 21, {"currency": "EUR"}), "idTag"),
            (
                await keyed(api, f"{base}/topups", {"amount": "5", "reference": "a"}, "b"),
                "$.reference",
            ),
        ]
    for (status, body), field in answers:
        assert status == 400, (field, body)
        assert field in body["message"], (field, body)
    credits = await events_of(nats_server.url, "ev.admin.wallet.>", WalletCredited)
    assert credits == []


async def test_the_wallet_fold_follows_the_supervisors_events_and_survives_a_restart(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    # A short duplicate window, so the retry below comes after JetStream forgot the id.
    stream = msgspec.structs.replace(settings.stream, duplicate_window_s=0.5)
    fanout_settings = with_fanout(msgspec.structs.replace(settings, stream=stream))
    base = "/api/v1/wallets/TAG-3"
    async with running_fanout(fanout_settings, nats_server.url) as port, api_client(port) as api:
        await api.call("PUT", base, {"currency": "EUR"})
        first = await api.call("POST", f"{base}/topups", {"amount": "30", "reference": "r1"})
        await _store_hold(nats_server.url, "TAG-3", "12.5")
        # The adjustment's answer waits for its own event in the fold, which comes after the
        # hold, so the GET below sees both.
        await api.call("POST", f"{base}/adjustments", {"amount": "2", "reference": "r2"})
        before = await api.call("GET", base)
    await asyncio.sleep(0.6)
    async with running_fanout(fanout_settings, nats_server.url) as port, api_client(port) as api:
        after = await api.call("GET", base)
        retried = await api.call("POST", f"{base}/topups", {"amount": "30", "reference": "r1"})
    assert [(line["kind"], line["balance"]) for line in before[1]["ledger"]] == [
        ("topup", "30.0000"),
        ("hold", "17.5000"),
        ("adjustment", "19.5000"),
    ]
    assert before[1]["ledger"][1]["transactionId"] == 7
    assert after == before
    # After JetStream's duplicate window closed, the fold still knows the reference.
    assert retried == first
    credits = await events_of(nats_server.url, "ev.admin.wallet.>", WalletCredited)
    assert len(credits) == 2


async def _store_hold(nats_url: str, id_tag: str, amount: str) -> None:
    connection = await connect(nats_url, name="test-supervisor")
    try:
        store = EventStore(connection)
        await store.start()
        await store.store(
            [
                WalletHeld(
                    id=f"hold:{id_tag}",
                    received_at=1,
                    cause_seq=1,
                    id_tag=id_tag,
                    charge_point_id="CP-1",
                    transaction_id=7,
                    amount=amount,
                    currency="EUR",
                )
            ]
        )
    finally:
        await connection.close()


async def test_concurrent_retries_of_a_topup_are_stored_once(
    ui_port: int, nats_server: EmbeddedNats
) -> None:
    base = "/api/v1/wallets/TAG-4"
    async with api_client(ui_port) as api:
        await api.call("PUT", base, {"currency": "EUR"})
        answers = await asyncio.gather(
            *(
                api.call("POST", f"{base}/topups", {"amount": "10", "reference": "once"})
                for _ in range(5)
            )
        )
        wallet = await api.call("GET", base)
    assert [status for status, _ in answers] == [201] * 5
    assert len({str(body) for _, body in answers}) == 1
    assert wallet[1]["balance"] == "10.0000"
    credits = await events_of(nats_server.url, "ev.admin.wallet.>", WalletCredited)
    assert len(credits) == 1


async def test_session_limits_are_stored_for_a_known_charger(
    gateway: Gateway, ui_port: int, nats_server: EmbeddedNats
) -> None:
    path = "/api/v1/chargers/CP-L/transactions/{}/limits"
    async with online(gateway.port, ui_port, "CP-L"), api_client(ui_port) as api:
        stored = await api.call("PUT", path.format(42), {"maxEnergyWh": 5000, "maxCost": "12.5"})
        # An OCPP 2.x transaction, by its string id.
        stored_2x = await api.call("PUT", path.format("tx-201-a"), {"maxCost": "3"})
        bad = [
            (await api.call("PUT", path.format(42), {}), "maxEnergyWh"),
            (await api.call("PUT", path.format("x" * 37), {"maxCost": "1"}), "transactionId"),
            (await api.call("PUT", path.format(2**31), {"maxCost": "1"}), "transactionId"),
            (await api.call("PUT", path.format(42), {"maxDurationS": 0}), "$.maxDurationS"),
            (await api.call("PUT", path.format(42), {"maxCost": "x"}), "$.maxCost"),
        ]
        unknown = await api.call(
            "PUT", "/api/v1/chargers/CP-NEVER/transactions/1/limits", {"maxCost": "1"}
        )
        out_of_scope = await api.call(
            "PUT", path.format(42), {"maxCost": "1"}, token=api_token(chargers=["CP-OTHER"])
        )
    assert stored[0] == 200
    assert stored[1]["limits"] == {"maxEnergyWh": 5000.0, "maxDurationS": None, "maxCost": "12.5"}
    for (status, body), field in bad:
        assert status == 400 and field in body["message"], (field, body)
    assert unknown[0] == 404
    assert out_of_scope[0] == 403
    events = await events_of(nats_server.url, "ev.admin.session.>", SessionLimitsSet)
    assert [(e.charge_point_id, e.transaction_id, e.limits, e.actor) for e in events] == [
        ("CP-L", 42, SessionLimits(max_energy_wh=5000, max_cost="12.5"), "alice"),
        ("CP-L", "tx-201-a", SessionLimits(max_cost="3"), "alice"),
    ]
    assert (stored_2x[0], stored_2x[1]["transactionId"]) == (200, "tx-201-a")
    assert stored[1]["eventId"] == events[0].id
