"""wallet_ledger: every movement of every prepaid wallet, by the one wallet rule
(hub/domain/wallets.py), with the balance after it."""

from __future__ import annotations

from hub.domain.timeutil import ch_time
from projections.rows import Output, WalletLedgerRow
from projections.state import State
from schemas.events import Event


def ledger(state: State, out: Output, seq: int, event: Event) -> None:
    for entry in state.wallets.apply(event):
        out.add(
            WalletLedgerRow(
                seq=seq,
                received_at=ch_time(event.received_at),
                event_id=entry.event_id,
                id_tag=entry.id_tag,
                kind=entry.kind,
                amount=entry.amount,
                balance=entry.balance,
                currency=entry.currency,
                charge_point_id=entry.charge_point_id,
                transaction_id=entry.transaction_id,
            )
        )
