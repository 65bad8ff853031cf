"""Prepaid wallets: a ledger folded from events, and the one settlement rule.

Every movement is a signed amount on one wallet, so a balance is the sum of its entries and
nothing else: top-ups and adjustments (operators), holds when a prepaid transaction starts,
and at its stop the refund of what the session did not use, or the shortfall it overran.
When a settled transaction's bill moves later (readings that came late, a corrected Stop),
a settlement adjustment takes the difference from the wallet or gives it back.
The gateway folds this to refuse tags whose balance is too low, the supervisor to hold and
settle, the projections to write ``wallet_ledger``: all three read the same events.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final, Literal

import msgspec

from hub.domain.cistring import ci
from schemas.events import (
    Event,
    TransactionId,
    WalletAdjusted,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
    WalletSettled,
)

PLACES: Final = Decimal("0.0001")
ZERO: Final = Decimal(0).quantize(PLACES)

# adjustment: an operator's correction; settlement_adjustment: what a settled transaction's
# moved bill takes from the wallet (negative) or gives back (positive).
LedgerKind = Literal["topup", "adjustment", "hold", "refund", "shortfall", "settlement_adjustment"]


class Wallet(msgspec.Struct, kw_only=True):
    # The id tag as the wallet was first named; it matches the tag in any case (CiString20).
    id_tag: str = ""
    currency: str = "EUR"
    hold_amount: str = ""
    min_balance: str = "0"
    balance: Decimal = ZERO
    configured: bool = False


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One movement; ``amount`` is signed, ``balance`` is the wallet's balance after it."""

    event_id: str
    id_tag: str
    kind: LedgerKind
    amount: Decimal
    balance: Decimal
    currency: str
    charge_point_id: str = ""
    transaction_id: TransactionId | None = None


class Settlement(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    refund: Decimal
    shortfall: Decimal
    platform_fee: Decimal
    operator_share: Decimal


def money(text: str) -> Decimal:
    """A decimal amount as events carry it; ``ValueError`` if it is not a finite number."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal amount") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a finite amount")
    return value.quantize(PLACES, ROUND_HALF_EVEN)


def settle(held: Decimal, cost: Decimal, fee_rate: Decimal) -> Settlement:
    """What a prepaid session's stop moves: the fee and share always add up to ``cost``."""
    fee = (cost * fee_rate).quantize(PLACES, ROUND_HALF_EVEN)
    return Settlement(
        refund=max(ZERO, held - cost),
        shortfall=max(ZERO, cost - held),
        platform_fee=fee,
        operator_share=cost - fee,
    )


def adjust(held: Decimal, paid: Settlement, cost: Decimal, fee_rate: Decimal) -> Settlement:
    """What a settled transaction's bill becoming ``cost`` moves, when its settlement and
    adjustments so far came to ``paid``: the difference to settling at ``cost``, so that all
    of them add up to it (the fee too, rounded once on the whole bill). Its ``amount`` is
    ``platform_fee + operator_share``: above 0 the wallet pays more."""
    now = settle(held, cost, fee_rate)
    return Settlement(
        refund=now.refund - paid.refund,
        shortfall=now.shortfall - paid.shortfall,
        platform_fee=now.platform_fee - paid.platform_fee,
        operator_share=now.operator_share - paid.operator_share,
    )


class Wallets(msgspec.Struct, kw_only=True):
    """Changed only by :meth:`apply`, so it is a fold of the stream; a Struct, so the
    projections can keep it in their snapshots.

    Id tags are CiString20, so a wallet is found by its tag in any case: a charger that
    sends ``aQCKZ`` pays from the wallet of ``Aqckz``, whose ledger keeps that spelling."""

    # ci(id tag) -> wallet
    wallets: dict[str, Wallet] = {}

    def apply(self, event: Event) -> list[LedgerEntry]:
        match event:
            case WalletConfigured(id_tag=tag):
                wallet = self._wallet(tag)
                wallet.currency = event.currency
                wallet.hold_amount = event.hold_amount
                wallet.min_balance = event.min_balance
                wallet.configured = True
                return []
            case WalletCredited(id_tag=tag, kind=kind):
                return [self._move(event.id, tag, kind, money(event.amount))]
            case WalletHeld(id_tag=tag):
                return [
                    self._move(
                        event.id,
                        tag,
                        "hold",
                        -money(event.amount),
                        event.charge_point_id,
                        event.transaction_id,
                    )
                ]
            case WalletSettled(id_tag=tag):
                entries = []
                moves: tuple[tuple[LedgerKind, Decimal], ...] = (
                    ("refund", money(event.refund)),
                    ("shortfall", -money(event.shortfall)),
                )
                for move, amount in moves:
                    if amount:
                        entries.append(
                            self._move(
                                event.id,
                                tag,
                                move,
                                amount,
                                event.charge_point_id,
                                event.transaction_id,
                            )
                        )
                return entries
            case WalletAdjusted(id_tag=tag):
                return [
                    self._move(
                        event.id,
                        tag,
                        "settlement_adjustment",
                        -money(event.amount),
                        event.charge_point_id,
                        event.transaction_id,
                    )
                ]
        return []

    def get(self, id_tag: str) -> Wallet | None:
        return self.wallets.get(ci(id_tag))

    def prepaid(self, id_tag: str) -> Wallet | None:
        wallet = self.get(id_tag)
        return wallet if wallet is not None and wallet.configured else None

    def too_low(self, id_tag: str) -> bool:
        """Whether a tag paying from a wallet may not start: nothing above its minimum."""
        wallet = self.prepaid(id_tag)
        if wallet is None:
            return False
        return wallet.balance <= max(ZERO, money(wallet.min_balance))

    def hold_for(self, id_tag: str) -> Decimal:
        """What to set aside at a start: the wallet's hold amount, at most its balance."""
        wallet = self.prepaid(id_tag)
        if wallet is None or wallet.balance <= 0:
            return ZERO
        wanted = money(wallet.hold_amount) if wallet.hold_amount else wallet.balance
        return min(wanted, wallet.balance)

    def _wallet(self, id_tag: str) -> Wallet:
        wallet = self.get(id_tag)
        if wallet is None:
            wallet = self.wallets[ci(id_tag)] = Wallet(id_tag=id_tag)
        return wallet

    def _move(
        self,
        event_id: str,
        id_tag: str,
        kind: LedgerKind,
        amount: Decimal,
        charge_point_id: str = "",
        transaction_id: TransactionId | None = None,
    ) -> LedgerEntry:
        wallet = self._wallet(id_tag)
        wallet.balance += amount
        return LedgerEntry(
            event_id=event_id,
            id_tag=wallet.id_tag,
            kind=kind,
            amount=amount,
            balance=wallet.balance,
            currency=wallet.currency,
            charge_point_id=charge_point_id,
            transaction_id=transaction_id,
        )
