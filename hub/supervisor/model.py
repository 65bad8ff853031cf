"""What the supervisor knows of chargers, connectors and running transactions.

Plain values, changed only by the fold in :mod:`hub.supervisor.core`. Times named ``*_at``
are the hub's (``received_at`` of events, ms); ``*_ms`` are the charger's.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import msgspec

from hub.domain.tariffs import Point, Tariff
from schemas.events import AnomalyKind, LimitKind, LimitSource

# Connector states in which energy is, or may be about to be, flowing.
CHARGING: Final = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})
# Connector states that say there is no vehicle session going on.
IDLE: Final = frozenset({"Available", "Faulted"})


class Limit(msgspec.Struct, frozen=True, gc=False):
    kind: LimitKind
    threshold: Decimal
    source: LimitSource


class Transaction(msgspec.Struct, kw_only=True):
    charge_point_id: str
    connector_id: int
    transaction_id: int
    id_tag: str
    start_ms: int
    meter_start: float
    opened_at: int
    last_meter_at: int
    tariff: Tariff
    limits: list[Limit] = []
    points: list[Point] = []
    last_register: Point | None = None
    prepaid: bool = False
    held: Decimal = Decimal(0)
    limit_reached: bool = False
    # Anomaly kinds already reported for this transaction, so each fires once.
    reported: set[str] = set()

    @property
    def key(self) -> str:
        return key(self.charge_point_id, self.transaction_id)


class Connector(msgspec.Struct, kw_only=True):
    status: str = "Unknown"
    status_at: int = 0
    # The transaction open on it (its key), and when that last changed.
    open: str = ""
    open_changed_at: int = 0


class Charger(msgspec.Struct, kw_only=True):
    connected: bool = False
    connected_changed_at: int = 0
    connectors: dict[int, Connector] = {}

    def connector(self, connector_id: int) -> Connector:
        found = self.connectors.get(connector_id)
        if found is None:
            found = self.connectors[connector_id] = Connector()
        return found


class OpenAnomaly(msgspec.Struct, frozen=True, gc=False):
    anomaly_id: str
    kind: AnomalyKind
    charge_point_id: str
    connector_id: int
    transaction_id: int | None


def key(*parts: object) -> str:
    return "\x1f".join(str(part) for part in parts)
