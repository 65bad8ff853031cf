"""Billing: the tariff in force at a session's start, applied by the one cost function."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from hub.domain.charging import Session
from hub.domain.tariffs import Point, session_cost
from projections.rows import BillingRow, SessionRow

_ZERO: Final = Decimal("0.0000")


def billing_row(version: SessionRow, session: Session, curve: Sequence[Point]) -> BillingRow:
    """The bill of a session version: its row (``version``) has the ids, energy, duration and
    times the bill repeats, worked out once for both."""
    tariff = session.tariff
    cost = session_cost(tariff, curve)
    settled = session.settlement
    return BillingRow(
        seq=version.seq,
        charge_point_id=version.charge_point_id,
        session_id=version.session_id,
        # 0: a 2.x string id (in transaction_ref)
        transaction_id=version.transaction_id,
        tariff_id=tariff.tariff_id,
        currency=tariff.currency,
        energy_wh=version.energy_wh,
        duration_s=version.duration_s,
        energy_cost=cost.energy_cost,
        time_cost=cost.time_cost,
        session_fee=cost.session_fee,
        total=cost.total,
        state=version.state,
        updated_at=version.updated_at,
        id_tag=version.id_tag,
        idle_cost=cost.idle_cost,
        prepaid=Decimal(settled.held) if settled else _ZERO,
        refund=Decimal(settled.refund) if settled else _ZERO,
        shortfall=Decimal(settled.shortfall) if settled else _ZERO,
        platform_fee=Decimal(settled.platform_fee) if settled else _ZERO,
        operator_share=Decimal(settled.operator_share) if settled else _ZERO,
        transaction_ref=version.transaction_ref,
    )
