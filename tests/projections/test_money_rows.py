"""The money tables from the pure fold: the same events the supervisor derives from."""

from __future__ import annotations

from decimal import Decimal

from projections.fold import apply
from projections.rows import BillingRow, ErrorRow, Output, WalletLedgerRow
from projections.state import State
from schemas.events import TariffSet, WalletConfigured, WalletCredited
from tests.unit.supervisor_stream import Stream


def folded(stream: Stream) -> Output:
    state, out = State(), Output()
    for seq, event in enumerate(stream.events, 1):
        apply(state, out, seq, event)
    return out


def prepaid_stream() -> Stream:
    stream = Stream()
    stream.add(
        TariffSet(id="t", received_at=stream.now, actor="test", tariff_id="t", per_kwh="0.50")
    )
    stream.add(
        WalletConfigured(
            id="w", received_at=stream.now, actor="test", id_tag="TAG", hold_amount="10"
        )
    )
    stream.add(
        WalletCredited(id="c", received_at=stream.now, actor="test", id_tag="TAG", amount="25")
    )
    return stream


def test_a_prepaid_session_writes_its_ledger_and_its_settled_bill() -> None:
    stream = prepaid_stream()
    stream.start("CP-1", 1, 5, stream.at(0))
    stream.meter("CP-1", 1, 5, 4_000, stream.at(600))
    stream.stop("CP-1", 5, 6_000, stream.at(900))
    out = folded(stream)
    ledger = [r for r in out.rows["wallet_ledger"] if isinstance(r, WalletLedgerRow)]
    assert [(r.kind, r.amount, r.balance) for r in ledger] == [
        ("topup", Decimal("25.0000"), Decimal("25.0000")),
        ("hold", Decimal("-10.0000"), Decimal("15.0000")),
        ("refund", Decimal("7.0000"), Decimal("22.0000")),
    ]
    bill = [r for r in out.rows["billing_versions"] if isinstance(r, BillingRow)][-1]
    assert (bill.total, bill.prepaid, bill.refund) == (
        Decimal("3.0000"),
        Decimal("10.0000"),
        Decimal("7.0000"),
    )
    assert bill.platform_fee + bill.operator_share == bill.total


def test_a_reading_no_decimal_can_price_costs_an_error_row_not_the_fold() -> None:
    stream = prepaid_stream()
    stream.start("CP-1", 1, 5, stream.at(0))
    stream.meter("CP-1", 1, 5, 1e30, stream.at(600))
    stream.stop("CP-1", 5, 6_000, stream.at(900))
    stream.start("CP-2", 1, 6, stream.at(1_000))
    out = folded(stream)
    assert any(isinstance(r, ErrorRow) for r in out.rows["projection_errors"])
    sessions = {r.session_id for r in out.rows["session_versions"]}  # type: ignore[attr-defined]
    assert "6" in sessions  # the fold went on past it
