"""What the supervisor knows of chargers, connectors and running transactions.

Plain values, changed only by the fold in :mod:`hub.supervisor.core`. Times named ``*_at``
are the hub's (``received_at`` of events, ms); ``*_ms`` are the charger's.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import msgspec

from hub.domain.charging import Charger, Connector
from hub.domain.tariffs import Point
from schemas.events import AnomalyKind, LimitKind, LimitSource, TransactionId

# Connector states in which energy is, or may be about to be, flowing.
CHARGING: Final = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})
# Connector states that say there is no vehicle session going on.
IDLE: Final = frozenset({"Available", "Faulted"})


class Limit(msgspec.Struct, frozen=True, gc=False):
    kind: LimitKind
    threshold: Decimal
    source: LimitSource


class Transaction(msgspec.Struct, kw_only=True):
    """What the supervisor adds to a transaction the domain has open (its ``Session``)."""

    key: str  # the domain's session key
    charge_point_id: str
    connector_id: int
    transaction_id: TransactionId
    prepaid: bool = False
    held: Decimal = Decimal(0)
    limit_reached: bool = False
    last_register: Point | None = None
    # Anomaly kinds already reported for this transaction, so each fires once.
    reported: set[str] = set()


class OpenAnomaly(msgspec.Struct, frozen=True, gc=False):
    anomaly_id: str
    kind: AnomalyKind
    charge_point_id: str
    connector_id: int
    transaction_id: TransactionId | None


__all__ = ["CHARGING", "IDLE", "Charger", "Connector", "Limit", "OpenAnomaly", "Transaction"]
