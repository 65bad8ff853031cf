"""Billing: the tariff in force at a session's start, applied by the one cost function."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from hub.domain.charging import Session
from hub.domain.tariffs import Point, session_cost
from projections.rows import BillingRow, ref

_ZERO: Final = Decimal("0.0000")


def billing_row(
    seq: int, session: Session, curve: Sequence[Point], duration_s: float, updated_at: str
) -> BillingRow:
    """The bill of a session version (``updated_at``: the version's, as ClickHouse reads it)."""
    tariff = session.tariff
    cost = session_cost(tariff, curve)
    settled = session.settlement
    return BillingRow(
        seq=seq,
        charge_point_id=session.charge_point_id,
        session_id=session.session,
        # 0: a 2.x string id (in transaction_ref)
        transaction_id=session.transaction_id if isinstance(session.transaction_id, int) else 0,
        tariff_id=tariff.tariff_id,
        currency=tariff.currency,
        energy_wh=round(curve[-1][1] - curve[0][1], 6) if len(curve) > 1 else 0.0,
        duration_s=duration_s,
        energy_cost=cost.energy_cost,
        time_cost=cost.time_cost,
        session_fee=cost.session_fee,
        total=cost.total,
        state=session.state,
        updated_at=updated_at,
        id_tag=session.id_tag,
        idle_cost=cost.idle_cost,
        prepaid=Decimal(settled.held) if settled else _ZERO,
        refund=Decimal(settled.refund) if settled else _ZERO,
        shortfall=Decimal(settled.shortfall) if settled else _ZERO,
        platform_fee=Decimal(settled.platform_fee) if settled else _ZERO,
        operator_share=Decimal(settled.operator_share) if settled else _ZERO,
        transaction_ref=ref(session.transaction_id),
    )
