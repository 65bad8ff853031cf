"""What the money API reads: tariffs and wallets folded from the stream, and their views.

Both folds change only in ``apply`` and skip a sequence they have seen, so they are a
function of the events (a redelivery changes nothing). The wallet fold is the supervisor's
(``hub.domain.wallets``), fed in stream order across the operators' and the
supervisor's subjects, so each ledger line's running balance is the one replay gives.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

import msgspec

from hub.api.money_rules import Band, Limits
from hub.domain.wallets import LedgerKind, Wallets
from schemas.events import (
    Event,
    SessionLimits,
    SessionLimitsSet,
    TariffSet,
    TransactionId,
    WalletCredited,
    WalletCreditKind,
)

TARIFF_SUBJECTS: Final = ("ev.admin.tariff.>",)
WALLET_SUBJECTS: Final = ("ev.admin.wallet.>", "ev.wallet.>")
RECENT_LEDGER: Final = 50  # lines per wallet a GET shows; the stream keeps them all


class _View(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    pass


class TariffView(_View, frozen=True, kw_only=True):
    """One version of a tariff as stored; ``effectiveFrom`` as the PUT body takes it."""

    tariff_id: str
    charge_point_id: str
    currency: str
    per_kwh: str
    per_minute: str
    session_fee: str
    idle_per_minute: str
    idle_grace_minutes: int
    bands: list[Band]
    effective_from: str
    limits: Limits | None
    event_id: str
    actor: str
    received_at: int


class TariffList(_View, frozen=True, kw_only=True):
    tariffs: list[TariffView]


class LedgerLine(_View, frozen=True, kw_only=True):
    """One movement: ``amount`` is signed, ``balance`` is the wallet's balance after it."""

    event_id: str
    kind: LedgerKind
    amount: Decimal
    balance: Decimal
    received_at: int
    charge_point_id: str = ""
    transaction_id: TransactionId | None = None


class WalletView(_View, frozen=True, kw_only=True):
    """``holdAmount`` empty: a prepaid start holds the whole balance. ``ledger``: the most
    recent lines, oldest first."""

    id_tag: str
    configured: bool
    currency: str
    balance: Decimal
    hold_amount: str
    min_balance: str
    ledger: list[LedgerLine]


class CreditView(_View, frozen=True, kw_only=True):
    event_id: str
    id_tag: str
    kind: WalletCreditKind
    amount: str
    currency: str
    reference: str
    note: str
    actor: str
    received_at: int


class LimitsView(_View, frozen=True, kw_only=True):
    event_id: str
    charge_point_id: str
    transaction_id: TransactionId
    limits: Limits
    actor: str
    received_at: int


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def limits_view(limits: SessionLimits) -> Limits:
    return Limits(
        max_energy_wh=limits.max_energy_wh,
        max_duration_s=limits.max_duration_s,
        max_cost=limits.max_cost,
    )


def session_limits_view(event: SessionLimitsSet) -> LimitsView:
    return LimitsView(
        event_id=event.id,
        charge_point_id=event.charge_point_id,
        transaction_id=event.transaction_id,
        limits=limits_view(event.limits),
        actor=event.actor,
        received_at=event.received_at,
    )


def tariff_view(event: TariffSet) -> TariffView:
    return TariffView(
        tariff_id=event.tariff_id,
        charge_point_id=event.charge_point_id,
        currency=event.currency,
        per_kwh=event.per_kwh,
        per_minute=event.per_minute,
        session_fee=event.session_fee,
        idle_per_minute=event.idle_per_minute,
        idle_grace_minutes=event.idle_grace_minutes,
        bands=[
            Band(start=b.start, end=b.end, per_kwh=b.per_kwh, per_minute=b.per_minute)
            for b in event.bands
        ],
        effective_from=iso(event.effective_from or event.received_at),
        limits=None if event.limits is None else limits_view(event.limits),
        event_id=event.id,
        actor=event.actor,
        received_at=event.received_at,
    )


def credit_view(event: WalletCredited) -> CreditView:
    return CreditView(
        event_id=event.id,
        id_tag=event.id_tag,
        kind=event.kind,
        amount=event.amount,
        currency=event.currency,
        reference=event.reference,
        note=event.note,
        actor=event.actor,
        received_at=event.received_at,
    )


class TariffBook:
    """Every tariff version, in stream order (a tariff changes a few times a year)."""

    def __init__(self) -> None:
        self.versions: list[TariffSet] = []
        self.last_seq = 0

    def apply(self, event: Event, seq: int) -> None:
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        if isinstance(event, TariffSet):
            self.versions.append(event)

    def latest(self, tariff_id: str) -> TariffSet | None:
        return next((t for t in reversed(self.versions) if t.tariff_id == tariff_id), None)


class WalletBook:
    """The wallets, each one's recent ledger, and every operator credit by event id (a retry
    of one is answered from here, however long after the stream's duplicate window)."""

    def __init__(self, recent: int = RECENT_LEDGER) -> None:
        self.wallets = Wallets()
        self.credits: dict[str, WalletCredited] = {}
        self.last_seq = 0
        self._recent = recent
        self._ledgers: dict[str, deque[LedgerLine]] = {}

    def apply(self, event: Event, seq: int) -> None:
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        entries = self.wallets.apply(event)
        if isinstance(event, WalletCredited):
            self.credits.setdefault(event.id, event)
        for entry in entries:
            ledger = self._ledgers.get(entry.id_tag)
            if ledger is None:
                ledger = self._ledgers[entry.id_tag] = deque(maxlen=self._recent)
            ledger.append(
                LedgerLine(
                    event_id=entry.event_id,
                    kind=entry.kind,
                    amount=entry.amount,
                    balance=entry.balance,
                    received_at=event.received_at,
                    charge_point_id=entry.charge_point_id,
                    transaction_id=entry.transaction_id,
                )
            )

    def view(self, id_tag: str) -> WalletView | None:
        wallet = self.wallets.get(id_tag)
        if wallet is None:
            return None
        # The ledger is kept under the wallet's own spelling of the tag (a CiString).
        id_tag = wallet.id_tag or id_tag
        return WalletView(
            id_tag=id_tag,
            configured=wallet.configured,
            currency=wallet.currency,
            balance=wallet.balance,
            hold_amount=wallet.hold_amount,
            min_balance=wallet.min_balance,
            ledger=list(self._ledgers.get(id_tag, ())),
        )
