"""Session integrity detectors, over the supervisor's state.

Each anomaly is a *condition* (kind, charger, connector, transaction) that is detected once
when it starts to hold, or has held for its threshold, and resolved once when it stops.
Timed conditions are checked on every ``clock.tick``, against the hub's time of events, so
they fire at the same place in a replay as they did live.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, NamedTuple

from hub.supervisor.model import CHARGING, IDLE, Transaction
from schemas.events import AnomalyKind, TransactionId

if TYPE_CHECKING:
    from hub.domain.facts import TransactionEnded
    from hub.domain.tariffs import Point
    from hub.supervisor.core import Supervisor

# Conditions judged per transaction rather than per connector state (load_unmanaged: by
# the site allocator, which resolves it itself).
_PER_TRANSACTION: frozenset[str] = frozenset(
    {"duplicate_start", "meter_backwards", "power_exceeded", "load_unmanaged"}
)


def condition_key(
    kind: AnomalyKind, cp: str, connector_id: int, transaction_id: TransactionId | None
) -> str:
    return f"{kind}:{cp}:{connector_id}:{'' if transaction_id is None else transaction_id}"


class Condition(NamedTuple):
    kind: AnomalyKind
    charge_point_id: str
    connector_id: int
    transaction_id: TransactionId | None
    since: int  # when it began to hold, hub time (ms)
    after_s: float  # how long it must hold to be an anomaly
    detail: str


_DAY_MS: Final = 86_400_000


def _certificates(supervisor: Supervisor) -> Iterator[Condition]:
    """A charger's newest certificate within ``certificate_warning_days`` of its end is
    expiring, past it expired: against the hub's time of events, so a replay alerts at the
    same place."""
    warning_ms = round(supervisor.policy.certificate_warning_days * _DAY_MS)
    for cp, certificate in supervisor.certificates.items():
        end = certificate.not_after
        ends = datetime.fromtimestamp(end / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        about = f"certificate {certificate.serial} ({certificate.origin})"
        if supervisor.now >= end:
            yield Condition("certificate_expired", cp, 0, None, end, 0, f"{about} ran out {ends}")
        else:
            yield Condition(
                "certificate_expiring", cp, 0, None, end - warning_ms, 0, f"{about} runs out {ends}"
            )


def _conditions(supervisor: Supervisor) -> Iterator[Condition]:
    """Every timed condition that holds now, however briefly."""
    policy = supervisor.policy
    yield from _certificates(supervisor)
    for cp, charger in supervisor.chargers.items():
        for connector_id, connector in charger.connectors.items():
            if connector_id == 0:
                continue
            open_tx = supervisor.open_on(connector.open)
            if open_tx is None:
                if connector.status in CHARGING:
                    yield Condition(
                        "orphaned",
                        cp,
                        connector_id,
                        None,
                        max(connector.status_at, connector.open_changed_at),
                        policy.orphaned_after_s,
                        f"connector {connector.status} with no open transaction",
                    )
                continue
            tx = open_tx.transaction_id
            session = supervisor.session(open_tx)
            if connector.status in IDLE:
                yield Condition(
                    "ghost",
                    cp,
                    connector_id,
                    tx,
                    max(connector.status_at, session.opened_at),
                    policy.ghost_after_s,
                    f"transaction {tx} open while the connector is {connector.status}",
                )
            elif not charger.connected:
                yield Condition(
                    "ghost",
                    cp,
                    connector_id,
                    tx,
                    max(charger.connected_changed_at, session.opened_at),
                    policy.ghost_offline_after_s,
                    f"transaction {tx} open while the charger is disconnected",
                )
            yield Condition(
                "stale",
                cp,
                connector_id,
                tx,
                session.last_meter_at,
                policy.stale_after_s,
                f"transaction {tx} sent no meter values since then",
            )


def scan(supervisor: Supervisor) -> None:
    """The timed detectors, and time limits, at ``supervisor.now``."""
    now = supervisor.now
    holding = {
        condition_key(c.kind, c.charge_point_id, c.connector_id, c.transaction_id): c
        for c in _conditions(supervisor)
        if now - c.since >= c.after_s * 1000
    }
    for condition, anomaly in list(supervisor.anomalies.items()):
        if anomaly.kind not in _PER_TRANSACTION and condition not in holding:
            supervisor.resolve(condition, anomaly, "condition cleared")
    for condition, found in holding.items():
        if condition not in supervisor.anomalies:
            supervisor.detect(
                found.kind,
                found.charge_point_id,
                found.connector_id,
                found.transaction_id,
                found.since,
                found.detail,
            )
    for transaction in list(supervisor.transactions.values()):
        supervisor.check_limits(transaction, now)


def superseded(supervisor: Supervisor, transaction: Transaction, ended: TransactionEnded) -> None:
    """A second start on a connector whose transaction never stopped: the domain ended the
    older one (``superseded``); the anomaly is about it, and its end resolves it."""
    supervisor.detect(
        "duplicate_start",
        transaction.charge_point_id,
        transaction.connector_id,
        transaction.transaction_id,
        ended.at,
        f"transaction {transaction.transaction_id} {ended.charger_reason}",
    )


def impossible_values(supervisor: Supervisor, transaction: Transaction, point: Point) -> None:
    """The register went backwards, or rose faster than any connector can deliver."""
    previous = transaction.last_register
    transaction.last_register = point if previous is None or point[0] >= previous[0] else previous
    if previous is None or point[0] < previous[0]:
        return
    (t0, v0), (t1, v1) = previous, point
    if v1 < v0 and "meter_backwards" not in transaction.reported:
        transaction.reported.add("meter_backwards")
        supervisor.detect(
            "meter_backwards",
            transaction.charge_point_id,
            transaction.connector_id,
            transaction.transaction_id,
            supervisor.now,
            f"register fell from {v0:g} Wh to {v1:g} Wh",
        )
    elif t1 > t0 and "power_exceeded" not in transaction.reported:
        power_w = (v1 - v0) * 3_600_000 / (t1 - t0)
        if power_w > supervisor.policy.max_power_w:
            transaction.reported.add("power_exceeded")
            supervisor.detect(
                "power_exceeded",
                transaction.charge_point_id,
                transaction.connector_id,
                transaction.transaction_id,
                supervisor.now,
                f"{v1 - v0:g} Wh in {(t1 - t0) / 1000:g} s is {power_w / 1000:.1f} kW",
            )


def transaction_over(supervisor: Supervisor, transaction: Transaction, resolution: str) -> None:
    """Resolve every anomaly that was about this transaction."""
    for condition, anomaly in list(supervisor.anomalies.items()):
        if (
            anomaly.charge_point_id == transaction.charge_point_id
            and anomaly.transaction_id == transaction.transaction_id
        ):
            supervisor.resolve(condition, anomaly, resolution)
