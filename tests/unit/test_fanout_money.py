"""Live cost and alerts in the fan-out's pure core, from the same events (and the same
charging domain) the supervisor folds."""

from __future__ import annotations

import pytest

from hub.domain.policy import Policy
from hub.fanout.live import Live
from schemas.events import TariffSet
from schemas.ui import Alert, ChargerMessage, CostUpdated, TransactionStopped
from tests.unit.supervisor_stream import Stream

CP = "CP-1"


def folded(stream: Stream) -> list[ChargerMessage]:
    live = Live()
    messages: list[ChargerMessage] = []
    for seq, event in enumerate(stream.events, 1):
        messages += live.fold(event, seq)
    return messages


def priced(stream: Stream, tariff_id: str = "t1") -> None:
    stream.add(
        TariffSet(
            id=f"t-{tariff_id}",
            received_at=stream.now,
            actor="test",
            tariff_id=tariff_id,
            currency="EUR",
            per_kwh="0.40",
            per_minute="0.05",
            session_fee="1",
            idle_per_minute="0.10",
            idle_grace_minutes=1,
        )
    )


@pytest.mark.parametrize("stop_id", [9, -1])
def test_cost_messages_follow_each_reading_and_the_stop_carries_the_final_bill(
    stop_id: int,
) -> None:
    stream = Stream()
    priced(stream)
    stream.start(CP, 1, 9, stream.at(0), meter=1_000)
    stream.meter(CP, 1, 9, 6_000, stream.at(600))
    stream.meter(CP, 1, stop_id, 11_000, stream.at(1_200))
    stream.stop(CP, stop_id, 11_000, stream.at(1_500))
    messages = folded(stream)
    costs = [m for m in messages if isinstance(m, CostUpdated)]
    assert [c.bill.total for c in costs] == ["3.5000", "6.0000"]
    assert costs[-1].bill.energy_wh == 10_000
    stopped = [m for m in messages if isinstance(m, TransactionStopped)]
    bill = stopped[0].bill
    assert bill is not None
    # 10 kWh x 0.40, 20 charging minutes x 0.05, 5 idle minutes of which 1 free x 0.10, fee.
    assert (bill.energy_cost, bill.time_cost, bill.idle_cost, bill.session_fee) == (
        "4.0000",
        "1.0000",
        "0.4000",
        "1.0000",
    )
    assert bill.total == "6.4000"
    assert stopped[0].transaction_id == 9 and stopped[0].energy_wh == 10_000


def test_a_transaction_whose_start_was_not_seen_shows_no_cost() -> None:
    """Its bill from the first reading on would be too low."""
    stream = Stream()
    priced(stream)
    stream.meter(CP, 1, 9, 6_000, stream.at(600))
    stream.meter(CP, 1, 9, 11_000, stream.at(1_200))
    stream.stop(CP, 9, 11_000, stream.at(1_500))
    messages = folded(stream)
    assert not [m for m in messages if isinstance(m, CostUpdated)]
    [stopped] = [m for m in messages if isinstance(m, TransactionStopped)]
    assert stopped.bill is None and stopped.energy_wh == 5_000


def test_the_supervisors_findings_reach_uis_as_alerts() -> None:
    stream = Stream(Policy(actions={"ghost": "close_session"}))
    stream.connect(CP, stream.at(0))
    stream.start(CP, 1, 3, stream.at(0))
    stream.status(CP, 1, "Available", stream.at(10))
    stream.ticks_until(stream.at(200))
    alerts = [m for m in folded(stream) if isinstance(m, Alert)]
    assert [(a.state, a.kind) for a in alerts] == [
        ("detected", "ghost"),
        ("action", "close_session"),
        ("resolved", "ghost"),
    ]
    assert {a.alert_id for a in alerts} == {alerts[0].alert_id}
    assert alerts[0].transaction_id == 3 and alerts[0].charge_point_id == CP
    # The policy closed the transaction: UIs see it end.
    [closed] = [m for m in folded(stream) if isinstance(m, TransactionStopped)]
    assert (closed.transaction_id, closed.reason, closed.ended_by) == (3, "closed", "closed")
