"""The supervisor's pure core: holds, settlements, limits and detectors from events alone."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from hub.domain.policy import Policy
from hub.supervisor import snapshot
from hub.supervisor.core import Supervisor
from schemas.events import (
    AnomalyDetected,
    IntegrityAction,
    LimitReached,
    SessionLimits,
    TariffSet,
    WalletAdjusted,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
    WalletSettled,
)
from tests.unit.supervisor_stream import Stream

CP = "CP-1"


def tariff(stream: Stream, **fields: object) -> None:
    stream.add(
        TariffSet(
            id="tariff", received_at=stream.now, actor="t", tariff_id="t1", per_kwh="0.40", **fields
        )  # type: ignore[arg-type]
    )


def wallet(stream: Stream, amount: str, hold: str = "") -> None:
    stream.add(
        WalletConfigured(id="w", received_at=stream.now, actor="t", id_tag="TAG", hold_amount=hold)
    )
    stream.add(
        WalletCredited(id="c", received_at=stream.now, actor="t", id_tag="TAG", amount=amount)
    )


def test_prepaid_session_holds_then_refunds_the_unused_amount_and_splits_the_cost() -> None:
    stream = Stream()
    tariff(stream)
    wallet(stream, "50", hold="20")
    held = stream.start(CP, 1, 7, stream.at(0))
    assert [type(i.event) for i in held] == [WalletHeld]
    assert held[0].event.amount == "20.0000"  # type: ignore[union-attr]
    stream.meter(CP, 1, 7, 10_000, stream.at(600))
    settled = stream.stop(CP, 7, 12_500, stream.at(900))
    event = settled[0].event
    assert isinstance(event, WalletSettled)
    assert (event.cost, event.refund, event.shortfall) == ("5.0000", "15.0000", "0.0000")
    assert (event.platform_fee, event.operator_share) == ("0.5000", "4.5000")
    assert stream.supervisor.wallets.wallets["tag"].balance == Decimal("45.0000")


def test_prepaid_amount_is_a_cost_limit_that_stops_the_transaction() -> None:
    stream = Stream()
    tariff(stream)
    wallet(stream, "2")
    stream.start(CP, 1, 7, stream.at(0))
    assert not stream.meter(CP, 1, 7, 4_000, stream.at(60))  # 1.60
    made = stream.meter(CP, 1, 7, 5_500, stream.at(120))  # 2.20
    limit = made[0].event
    assert isinstance(limit, LimitReached)
    assert (limit.limit, limit.source, limit.threshold) == ("cost", "prepaid", "2.0000")
    assert made[0].command is not None
    assert made[0].command.action == "RemoteStopTransaction"
    assert msgspec.json.decode(made[0].command.payload) == {"transactionId": 7}
    # Overran the hold: the shortfall comes out of the wallet; never a negative refund.
    settled = stream.stop(CP, 7, 5_600, stream.at(130))[0].event
    assert isinstance(settled, WalletSettled)
    assert (settled.refund, settled.shortfall) == ("0.0000", "0.2400")


def test_energy_and_duration_limits_from_tariff_and_tag() -> None:
    stream = Stream()
    tariff(stream, limits=SessionLimits(max_duration_s=600))
    stream.start(CP, 1, 1, stream.at(0))
    stream.meter(CP, 1, 1, 100, stream.at(60))
    made = stream.ticks_until(stream.at(610))
    assert [i.event.limit for i in made if isinstance(i.event, LimitReached)] == ["duration"]


def test_orphaned_connector_is_detected_acted_on_and_resolved() -> None:
    stream = Stream()
    stream.status(CP, 1, "Charging", stream.at(0))
    assert not stream.ticks_until(stream.at(55))
    made = stream.ticks_until(stream.at(65))
    assert [type(i.event) for i in made] == [AnomalyDetected, IntegrityAction]
    assert made[1].command is not None and made[1].command.action == "TriggerMessage"
    stream.start(CP, 1, 3, stream.at(70))
    resolved = stream.ticks_until(stream.at(75))
    assert stream.kinds("integrity.resolved") == ["orphaned"]
    assert resolved


def test_ghost_transaction_on_an_available_connector() -> None:
    stream = Stream(Policy(actions={"ghost": "close_session"}))
    stream.start(CP, 1, 3, stream.at(0))
    stream.status(CP, 1, "Charging", stream.at(1))
    stream.meter(CP, 1, 3, 500, stream.at(30))
    stream.status(CP, 1, "Available", stream.at(40))
    stream.ticks_until(stream.at(155))
    assert stream.kinds("integrity.detected") == []
    stream.ticks_until(stream.at(165))
    assert stream.kinds("integrity.detected") == ["ghost"]
    # close_session ends the transaction here, which resolves the anomaly.
    assert stream.kinds("integrity.resolved") == ["ghost"]
    assert not stream.supervisor.transactions


def test_duplicate_start_stale_and_impossible_values() -> None:
    stream = Stream()
    stream.connect(CP, stream.at(0))
    stream.start(CP, 1, 3, stream.at(0))
    stream.start(CP, 1, 4, stream.at(10))
    assert stream.kinds("integrity.detected") == ["duplicate_start"]
    stream.meter(CP, 1, 4, 1_000, stream.at(20))
    stream.meter(CP, 1, 4, 900, stream.at(30))
    stream.meter(CP, 1, 4, 50_000, stream.at(31))  # 49.1 kWh in 1 s
    assert stream.kinds("integrity.detected") == [
        "duplicate_start",
        "meter_backwards",
        "power_exceeded",
    ]
    stream.ticks_until(stream.at(31 + 895))
    assert "stale" not in stream.kinds("integrity.detected")
    stream.ticks_until(stream.at(31 + 905))
    assert stream.kinds("integrity.detected")[3:] == ["stale"]
    stream.stop(CP, 3, 0, stream.at(940))
    assert "duplicate_start" in stream.kinds("integrity.resolved")


def test_a_clean_day_raises_nothing() -> None:
    stream = Stream()
    tariff(stream)
    wallet(stream, "100000", hold="30")
    at = 0.0
    for cp_number in range(20):
        stream.connect(f"CP-{cp_number}", stream.at(0))
    for tx in range(1, 201):
        cp = f"CP-{tx % 20}"
        stream.status(cp, 1, "Preparing", stream.at(at))
        stream.start(cp, 1, tx, stream.at(at + 1))
        stream.status(cp, 1, "Charging", stream.at(at + 2))
        for minute in range(1, 6):
            stream.meter(cp, 1, tx, minute * 1_000, stream.at(at + minute * 60))
            stream.ticks_until(stream.at(at + minute * 60))
        stream.stop(cp, tx, 5_200, stream.at(at + 330))
        stream.status(cp, 1, "Finishing", stream.at(at + 331))
        stream.status(cp, 1, "Available", stream.at(at + 340))
        at += 120
    stream.ticks_until(stream.at(at + 3_600))
    assert stream.kinds("integrity.detected") == []
    assert len(stream.kinds("wallet.settled")) == 200


def test_a_restart_folding_the_stream_again_derives_nothing_new() -> None:
    stream = Stream(Policy(actions={"ghost": "close_session"}))
    wallet(stream, "40", hold="10")
    tariff(stream)
    stream.start(CP, 1, 3, stream.at(0))
    stream.status(CP, 1, "Available", stream.at(5))
    stream.ticks_until(stream.at(200))
    assert stream.intents
    again = Supervisor(Policy(actions={"ghost": "close_session"}))
    for seq, event in enumerate(stream.events, 1):
        again.apply(seq, event)
    assert again.unconfirmed == {}
    assert again.commands_due.keys() == stream.supervisor.commands_due.keys()
    assert again.wallets.wallets["tag"].balance == stream.supervisor.wallets.wallets["tag"].balance


def test_a_snapshot_taken_mid_stream_folds_on_exactly_like_the_original() -> None:
    stream = Stream(Policy(actions={"ghost": "close_session"}))
    wallet(stream, "40", hold="10")
    tariff(stream)
    stream.start(CP, 1, 3, stream.at(0))
    stream.meter(CP, 1, 3, 1_000, stream.at(60))
    cut = len(stream.events)
    restored = snapshot.decode(snapshot.encode(stream.supervisor), stream.supervisor.policy)
    assert restored is not None
    stream.status(CP, 1, "Available", stream.at(65))
    stream.ticks_until(stream.at(400))
    later = [
        intent
        for seq, event in enumerate(stream.events[cut:], cut + 1)
        for intent in restored.apply(seq, event)
    ]
    assert later == stream.intents[-len(later) :] and later
    assert restored.wallets == stream.supervisor.wallets
    assert restored.unconfirmed == {}


def test_a_snapshot_of_another_format_is_ignored() -> None:
    assert snapshot.decode(b'{"version": 0}', Policy()) is None
    assert snapshot.decode(b"not json", Policy()) is None


def adjustments(stream: Stream) -> list[WalletAdjusted]:
    return [e for e in stream.events if isinstance(e, WalletAdjusted)]


def closed_stale_then_metered_late() -> Stream:
    """A prepaid transaction without readings, closed as stale and settled at nothing; then
    the charger's readings arrive: it was charging all along."""
    stream = Stream(Policy(stale_after_s=600, actions={"stale": "close_session"}))
    tariff(stream)
    wallet(stream, "50", hold="20")
    stream.start(CP, 1, 7, stream.at(0))
    stream.ticks_until(stream.at(610))
    settled = [e for e in stream.events if isinstance(e, WalletSettled)]
    assert [(e.cost, e.refund) for e in settled] == [("0.0000", "20.0000")]
    assert not stream.meter(CP, 1, 7, 5_000, stream.at(300))
    assert not stream.meter(CP, 1, 7, 10_000, stream.at(500))
    return stream


def test_a_bill_that_moves_after_its_settlement_is_adjusted_once_at_the_next_tick() -> None:
    stream = closed_stale_then_metered_late()
    made = stream.ticks_until(stream.at(615))
    adjusted = [i.event for i in made if isinstance(i.event, WalletAdjusted)]
    assert [(e.id, e.cost, e.amount, e.refund, e.shortfall) for e in adjusted] == [
        ("adjusted:CP-1:7:1:4.0000", "4.0000", "4.0000", "-4.0000", "0.0000")
    ]
    assert (adjusted[0].platform_fee, adjusted[0].operator_share) == ("0.4000", "3.6000")
    # The wallet paid the bill: 10 kWh at 0.40 out of 50.
    assert stream.supervisor.wallets.wallets["tag"].balance == Decimal("46.0000")
    # A reading that changes nothing, and ticks: no more adjustments.
    stream.meter(CP, 1, 7, 10_000, stream.at(500))
    stream.ticks_until(stream.at(700))
    assert len(adjustments(stream)) == 1


def test_a_corrected_stop_with_less_energy_refunds_the_difference_at_once() -> None:
    stream = Stream()
    tariff(stream)
    wallet(stream, "50", hold="20")
    stream.start(CP, 1, 3, stream.at(0))
    stream.meter(CP, 1, 3, 10_000, stream.at(600))
    # A new start on the busy connector: its Stop got lost; 3 is settled at 10 kWh.
    stream.start(CP, 1, 4, stream.at(700), meter=10_000)
    settled = [e for e in stream.events if isinstance(e, WalletSettled)]
    assert [(e.transaction_id, e.cost) for e in settled] == [(3, "4.0000")]
    # The lost Stop turns up: it ended at 6 kWh, before the reading that ran on.
    made = stream.stop(CP, 3, 6_000, stream.at(400))
    adjusted = [i.event for i in made if isinstance(i.event, WalletAdjusted)]
    assert [(e.cost, e.amount, e.refund, e.platform_fee) for e in adjusted] == [
        ("2.4000", "-1.6000", "1.6000", "-0.1600")
    ]
    stream.ticks_until(stream.at(800))
    assert len(adjustments(stream)) == 1
    entry = stream.supervisor.charging.state.sessions[f"{CP}\x1f3"].settlement
    assert entry is not None and (entry.refund, entry.platform_fee) == ("17.6000", "0.2400")
    # 50, less 2.40 for 3, less the 20 held for 4 (still running).
    assert stream.supervisor.wallets.wallets["tag"].balance == Decimal("27.6000")


def test_a_restart_rederives_the_same_adjustments_and_stores_none_twice() -> None:
    stream = closed_stale_then_metered_late()
    cut = len(stream.events)
    restored = snapshot.decode(snapshot.encode(stream.supervisor), stream.supervisor.policy)
    assert restored is not None and restored.moved_bills
    stream.ticks_until(stream.at(615))
    stream.stop(CP, 7, 12_000, stream.at(550))
    assert len(adjustments(stream)) == 2
    # From the snapshot taken between the readings and the tick: the same events.
    later = [
        intent
        for seq, event in enumerate(stream.events[cut:], cut + 1)
        for intent in restored.apply(seq, event)
    ]
    assert [i.event for i in later] == adjustments(stream)
    assert restored.unconfirmed == {}
    # Folding the whole stream again: everything derived is found stored.
    again = Supervisor(stream.supervisor.policy)
    for seq, event in enumerate(stream.events, 1):
        again.apply(seq, event)
    assert again.unconfirmed == {} and again.moved_bills == {}
    assert again.wallets == stream.supervisor.wallets
