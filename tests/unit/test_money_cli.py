"""``hub wallets``, ``hub idtags add`` and ``hub tariffs set``: arguments to the event stored."""

from __future__ import annotations

import argparse

import msgspec
import pytest

from hub.api.money_rules import (
    Conflict,
    Invalid,
    NoWallet,
    Origin,
    TariffBody,
    check_id_tag,
    effective_from_ms,
    tariff_set,
)
from hub.api.money_state import WalletBook
from hub.cli import admin_event, build_parser, wallet_event
from projections.cli import tariff_event
from schemas.events import (
    IdTagUpserted,
    SessionLimits,
    TariffSet,
    WalletConfigured,
    WalletCredited,
)

ORIGIN = Origin("e-1", 1_700_000_000_000, "cli:test")


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def configured(currency: str = "EUR", seq: int = 1) -> WalletBook:
    book = WalletBook()
    book.apply(
        WalletConfigured(id="c", received_at=1, actor="a", id_tag="T", currency=currency), seq
    )
    return book


def test_config_records_the_hold_minimum_and_currency() -> None:
    event, message = wallet_event(
        parse("wallets", "config", "T", "--hold", "20", "--min-balance", "5", "--currency", "usd"),
        WalletBook(),
        ORIGIN,
    )
    assert event == WalletConfigured(
        id="e-1",
        received_at=ORIGIN.received_at,
        actor="cli:test",
        id_tag="T",
        currency="USD",
        hold_amount="20",
        min_balance="5",
    )
    assert "holds 20" in message


def test_config_without_flags_keeps_the_wallets_currency_and_holds_everything() -> None:
    event, message = wallet_event(parse("wallets", "config", "T"), configured("CHF"), ORIGIN)
    assert isinstance(event, WalletConfigured)
    assert (event.currency, event.hold_amount, event.min_balance) == ("CHF", "", "0")
    assert "the whole balance" in message


def test_a_referenced_topup_gets_a_deterministic_id_and_a_retry_records_nothing() -> None:
    book = configured()
    args = parse("wallets", "topup", "T", "12.50", "--reference", "inv-7")
    event, message = wallet_event(args, book, ORIGIN)
    assert event == WalletCredited(
        id="wallet:T:inv-7",
        received_at=ORIGIN.received_at,
        actor="cli:test",
        id_tag="T",
        amount="12.50",
        kind="topup",
        currency="EUR",
        reference="inv-7",
    )
    assert message == "topup of 12.50 EUR for T recorded"
    assert event is not None
    book.apply(event, 2)
    again, message = wallet_event(args, book, ORIGIN._replace(event_id="e-2"))
    assert again is None and "already recorded" in message
    with pytest.raises(Conflict):
        wallet_event(parse("wallets", "topup", "T", "99", "--reference", "inv-7"), book, ORIGIN)


def test_an_unreferenced_topup_takes_the_origins_id() -> None:
    event, _ = wallet_event(parse("wallets", "topup", "T", "5"), configured(), ORIGIN)
    assert event is not None and event.id == "e-1"


def test_adjust_takes_a_negative_amount_and_a_note() -> None:
    event, _ = wallet_event(
        parse("wallets", "adjust", "T", "-2.5", "--reference", "fix", "--note", "refund error"),
        configured(),
        ORIGIN,
    )
    assert isinstance(event, WalletCredited)
    assert (event.kind, event.amount, event.id, event.note) == (
        "adjustment",
        "-2.5",
        "wallet:T:fix",
        "refund error",
    )


def test_adjust_needs_a_reference() -> None:
    with pytest.raises(SystemExit):
        parse("wallets", "adjust", "T", "1")


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (("wallets", "topup", "T", "0"), "amount"),
        (("wallets", "topup", "T", "-1"), "amount"),
        (("wallets", "topup", "T", "1.23456"), "amount"),
        (("wallets", "adjust", "T", "0", "--reference", "r"), "amount"),
        (("wallets", "topup", "T" * 21, "1"), "id_tag"),
        (("wallets", "config", "T", "--hold", "0"), "hold_amount"),
        (("wallets", "config", "T", "--min-balance", "-1"), "min_balance"),
        (("wallets", "config", "T", "--currency", "EURO"), "currency"),
    ],
)
def test_bad_arguments_are_refused_naming_the_field(argv: tuple[str, ...], field: str) -> None:
    with pytest.raises(Invalid) as refused:
        wallet_event(parse(*argv), configured(), ORIGIN)
    assert refused.value.field == field


def test_money_for_a_tag_without_a_wallet_and_a_currency_change_are_refused() -> None:
    with pytest.raises(NoWallet):
        wallet_event(parse("wallets", "topup", "T", "5"), WalletBook(), ORIGIN)
    book = configured()
    topup, _ = wallet_event(parse("wallets", "topup", "T", "5"), book, ORIGIN)
    assert topup is not None
    book.apply(topup, 2)
    with pytest.raises(Conflict):
        wallet_event(parse("wallets", "config", "T", "--currency", "USD"), book, ORIGIN)


def test_idtags_add_records_its_limits() -> None:
    event, _ = admin_event(
        parse(
            "idtags", "add", "T", "--max-energy-wh", "30000", "--max-duration-s", "3600",
            "--max-cost", "20",
        )
    )  # fmt: skip
    assert isinstance(event, IdTagUpserted)
    assert event.limits == SessionLimits(max_energy_wh=30000, max_duration_s=3600, max_cost="20")
    plain, _ = admin_event(parse("idtags", "add", "T"))
    assert isinstance(plain, IdTagUpserted) and plain.limits is None
    with pytest.raises(SystemExit, match="--max-cost: 'abc'"):
        admin_event(parse("idtags", "add", "T", "--max-cost", "abc"))


def test_tariffs_set_records_idle_prices_and_limits() -> None:
    event = tariff_event(
        parse(
            "tariffs", "set", "std", "--per-kwh", "0.35", "--idle-per-minute", "0.10",
            "--idle-grace-minutes", "15", "--max-energy-wh", "40000", "--max-duration-s",
            "14400", "--max-cost", "30",
        ),
        ORIGIN.received_at,
    )  # fmt: skip
    assert isinstance(event, TariffSet)
    assert (event.per_kwh, event.idle_per_minute, event.idle_grace_minutes) == ("0.35", "0.10", 15)
    assert event.limits == SessionLimits(max_energy_wh=40000, max_duration_s=14400, max_cost="30")
    plain = tariff_event(parse("tariffs", "set", "std"), ORIGIN.received_at)
    assert (plain.idle_per_minute, plain.idle_grace_minutes, plain.limits) == ("0", 0, None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--idle-per-minute", "x"), "--idle-per-minute: 'x' is not a decimal price"),
        (("--idle-grace-minutes", "-1"), "--idle-grace-minutes: -1 must be at least 0"),
        (("--max-energy-wh", "0"), "--max-energy-wh: 0.0 must be above 0"),
        (("--max-duration-s", "-5"), "--max-duration-s: -5 must be at least 1"),
        (("--max-cost", "-1"), "--max-cost: '-1' is not a decimal price"),
        (("--max-energy-wh", "inf"), "--max-energy-wh: inf must be at most 1000000000.0"),
    ],
)
def test_bad_tariff_flags_name_the_flag(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.")):
        tariff_event(parse("tariffs", "set", "std", *argv), ORIGIN.received_at)


# What PUT /api/v1/tariffs/{id} refuses, as (path tariff id, body changes, CLI arguments).
GARBAGE = [
    ("t" * 100, {}, ("t" * 100,)),
    ("std", {"chargePointId": "CP:1/a"}, ("std", "--charger", "CP:1/a")),
    ("std", {"perKwh": "1E+1"}, ("std", "--per-kwh", "1E+1")),
    ("std", {"sessionFee": "-1"}, ("std", "--session-fee", "-1")),
    ("std", {"currency": "EURO"}, ("std", "--currency", "EURO")),
    ("std", {"bands": [{"start": "25:00", "end": "06:00"}]}, ("std", "--band", "25:00-06:00=0")),
    ("std", {"effectiveFrom": "tomorrow"}, ("std", "--effective-from", "tomorrow")),
    ("std", {"limits": {"maxCost": "1e3"}}, ("std", "--max-cost", "1e3")),
]


@pytest.mark.parametrize(("tariff_id", "changes", "argv"), GARBAGE)
def test_the_cli_refuses_what_rest_refuses(
    tariff_id: str, changes: dict[str, object], argv: tuple[str, ...]
) -> None:
    body = {
        "currency": "EUR",
        "perKwh": "0.35",
        "perMinute": "0",
        "sessionFee": "0",
        "idlePerMinute": "0",
        "idleGraceMinutes": 0,
        "bands": [],
    } | changes
    with pytest.raises((msgspec.ValidationError, Invalid)):
        decoded = msgspec.json.decode(msgspec.json.encode(body), type=TariffBody)
        tariff_set(tariff_id, decoded, effective_from_ms(decoded.effective_from), ORIGIN)
    with pytest.raises(ValueError, match=r"^(--|tariff id )"):
        tariff_event(parse("tariffs", "set", *argv), ORIGIN.received_at)


def test_idtags_add_follows_the_id_tag_rule_the_wallet_api_applies() -> None:
    for tag in ("T" * 21, ""):
        with pytest.raises(Invalid):
            check_id_tag(tag)
        with pytest.raises(SystemExit, match="must be 1 to 20 characters"):
            admin_event(parse("idtags", "add", tag))
    with pytest.raises(SystemExit, match="must be 1 to 20 characters"):
        admin_event(parse("idtags", "add", "T", "--parent", "P" * 21))
