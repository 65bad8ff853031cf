"""wallet_ledger: every movement of every prepaid wallet, as the domain's wallet rule
(hub/domain/wallets.py) moves it, with the balance after it."""

from __future__ import annotations

from hub.domain.facts import WalletMoved
from hub.domain.timeutil import ch_time
from projections.rows import Output, WalletLedgerRow, int_id, ref


def ledger(out: Output, fact: WalletMoved) -> None:
    entry = fact.entry
    out.add(
        WalletLedgerRow(
            seq=fact.seq,
            received_at=ch_time(fact.at),
            event_id=entry.event_id,
            id_tag=entry.id_tag,
            kind=entry.kind,
            amount=entry.amount,
            balance=entry.balance,
            currency=entry.currency,
            charge_point_id=entry.charge_point_id,
            transaction_id=int_id(entry.transaction_id),
            transaction_ref=ref(entry.transaction_id),
        )
    )
