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
    if settled is None:
        prepaid = refund = shortfall = platform_fee = operator_share = _ZERO
    else:
        prepaid, refund = Decimal(settled.held), Decimal(settled.refund)
        shortfall, platform_fee = Decimal(settled.shortfall), Decimal(settled.platform_fee)
        operator_share = Decimal(settled.operator_share)
    # Positional, in the columns' order (see rows._Row).
    return BillingRow(
        version.seq,
        version.charge_point_id,
        version.session_id,
        version.transaction_id,  # 0: a 2.x string id (in transaction_ref)
        tariff.tariff_id,
        tariff.currency,
        version.energy_wh,
        version.duration_s,
        cost.energy_cost,
        cost.time_cost,
        cost.session_fee,
        cost.total,
        version.state,
        version.updated_at,
        version.id_tag,
        cost.idle_cost,
        prepaid,
        refund,
        shortfall,
        platform_fee,
        operator_share,
        version.transaction_ref,
    )
