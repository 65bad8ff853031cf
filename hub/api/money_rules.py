"""What an operator may ask of tariffs, wallets and session limits, and the event it becomes.

The REST API (``hub/api/money.py``) and the CLI share these rules, so both refuse the same
requests for the same reasons. A refused field is an :class:`Invalid` with its snake_case
path (``bands[0].per_kwh``); each shell names it its own way (``$.bands[0].perKwh``,
``--per-kwh``). Pure: the caller passes the event id, time and actor in an :class:`Origin`.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Final, NamedTuple, TypeVar

import msgspec

from hub.domain.charger_ids import id_problem
from hub.domain.tariffs import Tariff, validate, validate_limits
from hub.domain.timeutil import parse_ms
from hub.domain.wallets import Wallets, money
from schemas.events import (
    SessionLimits,
    SessionLimitsSet,
    TariffBand,
    TariffSet,
    WalletConfigured,
    WalletCredited,
    WalletCreditKind,
)

# Wallet money: what the ledger keeps (4 places), so nothing is rounded away unseen.
AMOUNT: Final = r"^-?[0-9]{1,12}(\.[0-9]{1,4})?$"
# Prices may be finer than the ledger (0.00583 a minute): the bill rounds once, at the end.
PRICE: Final = r"^[0-9]{1,12}(\.[0-9]{1,8})?$"
CURRENCY: Final = r"^[A-Z]{3}$"
HHMM: Final = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
# A reference travels as a header (Nats-Msg-Id): printable, no control characters.
REFERENCE: Final = r"^[^\x00-\x1f\x7f]{1,128}$"
MAX_ID_TAG: Final = 20  # OCPP 1.6 IdToken
MAX_TARIFF_ID: Final = 64
MAX_NOTE: Final = 500
TRANSACTION_IDS: Final = range(-(2**31), 2**31)  # OCPP 1.6's integer
MAX_TRANSACTION_ID: Final = 36  # OCPP 2.x's string

Amount = Annotated[str, msgspec.Meta(pattern=AMOUNT, description='decimal string, e.g. "10.50"')]
Price = Annotated[str, msgspec.Meta(pattern=PRICE, description='decimal string, e.g. "0.35"')]
Currency = Annotated[str, msgspec.Meta(pattern=CURRENCY, description="ISO 4217 code")]
Reference = Annotated[str, msgspec.Meta(pattern=REFERENCE, max_length=128)]


class _Body(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    pass


B = TypeVar("B", bound=_Body)


class Band(_Body, frozen=True, kw_only=True):
    """Prices for a time-of-day window, ``HH:MM`` to ``HH:MM`` UTC (may wrap past midnight)."""

    start: Annotated[str, msgspec.Meta(pattern=HHMM)]
    end: Annotated[str, msgspec.Meta(pattern=HHMM)]
    per_kwh: Price = "0"
    per_minute: Price = "0"


class Limits(_Body, frozen=True, kw_only=True):
    """Where a session is stopped; absent or null is no limit."""

    max_energy_wh: Annotated[float, msgspec.Meta(gt=0, le=1e9)] | None = None
    max_duration_s: Annotated[int, msgspec.Meta(gt=0, le=31_536_000)] | None = None
    max_cost: Price | None = None


class TariffBody(_Body, frozen=True, kw_only=True):
    """``PUT /api/v1/tariffs/{tariffId}``: the whole tariff, as it applies from then on."""

    charge_point_id: Annotated[str, msgspec.Meta(max_length=48)] = ""
    currency: Currency
    per_kwh: Price
    per_minute: Price
    session_fee: Price
    idle_per_minute: Price
    idle_grace_minutes: Annotated[int, msgspec.Meta(ge=0, le=10_080)]
    bands: list[Band]
    effective_from: (
        Annotated[str, msgspec.Meta(max_length=40, extra_json_schema={"format": "date-time"})]
        | None
    ) = None
    limits: Limits | None = None


class WalletBody(_Body, frozen=True, kw_only=True):
    """``PUT /api/v1/wallets/{idTag}``. ``holdAmount`` absent or null: hold the whole balance."""

    currency: Currency
    hold_amount: Amount | None = None
    min_balance: Amount = "0"


class CreditBody(_Body, frozen=True, kw_only=True):
    """A top-up or adjustment. ``reference`` (or an ``Idempotency-Key`` header) makes a retry
    store nothing new; an adjustment needs one."""

    amount: Amount
    reference: Reference | None = None
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE)] = ""


class Invalid(ValueError):
    """A request field that cannot be accepted: 400 over REST, exit 2 on the CLI."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NoWallet(LookupError):
    """Money for an id tag that has no wallet configured."""


class Conflict(Exception):
    """A request that contradicts what the stream already says (409)."""


class Origin(NamedTuple):
    """Who asked, and when: the event's id (when nothing else decides it), time and actor."""

    event_id: str
    received_at: int
    actor: str


def _split(error: ValueError) -> Invalid:
    """hub.domain.tariffs says ``field: problem``; keep the two apart."""
    field, _, problem = str(error).partition(": ")
    return Invalid(field.lstrip("."), problem)


def check_id_tag(id_tag: str) -> None:
    if not 1 <= len(id_tag) <= MAX_ID_TAG:
        raise Invalid("id_tag", f"{id_tag!r} must be 1 to {MAX_ID_TAG} characters (OCPP IdToken)")


def _matching(text: str, pattern: str, field: str, what: str) -> str:
    if re.fullmatch(pattern, text) is None:
        raise Invalid(field, f"{text!r} is not {what}")
    return text


def _amount(text: str, field: str) -> Decimal:
    _matching(text, AMOUNT, field, "a decimal amount with at most 4 decimals")
    return money(text)


def _currency(text: str) -> str:
    return _matching(text, CURRENCY, "currency", "a three-letter ISO 4217 code (EUR)")


_PATTERN_WORDS: Final = {
    PRICE: "is not a decimal price (at most 8 decimals)",
    AMOUNT: "is not a decimal amount (at most 4 decimals)",
    CURRENCY: "is not a three-letter ISO 4217 code (EUR)",
    HHMM: "is not a time HH:MM",
    REFERENCE: "is not 1 to 128 printable characters",
}
_BOUND_WORDS: Final = {">=": "at least", ">": "above", "<=": "at most", "<": "below"}


def _in_words(problem: str) -> str:
    """msgspec's ``Expected `str` matching regex '...'`` as an operator would say it."""
    for pattern, words in _PATTERN_WORDS.items():
        if problem.endswith(f"regex {pattern!r}"):
            return words
    found = re.fullmatch(r"Expected `\w+` (>=|>|<=|<) (.+)", problem)
    if found:
        return f"must be {_BOUND_WORDS[found[1]]} {found[2]}"
    return problem


def _attribute(fields: object, path: str) -> object:
    for part in re.findall(r"\w+|\[\d+\]", path):
        fields = fields[int(part[1:-1])] if part[0] == "[" else getattr(fields, part)  # type: ignore[index]
    return fields


def body_from(kind: type[B], fields: object) -> B:
    """A body built by a shell that reads no JSON (the CLI), held to the constraints a REST
    body is decoded with: ``fields`` has the body's attributes (snake_case, nested alike)."""
    try:
        return msgspec.convert(fields, kind, from_attributes=True)
    except msgspec.ValidationError as error:
        problem, _, at = str(error).rpartition(" - at `$")
        path = at.rstrip("`").lstrip(".")
        value = _attribute(fields, path)
        raise Invalid(path, f"{value!r} {_in_words(problem)}") from None


def effective_from_ms(text: str | None) -> int:
    """When a tariff takes effect, Unix ms; ``None`` (or empty) is from now on (0)."""
    if not text:
        return 0
    try:
        effective = parse_ms(text)
    except (ValueError, OverflowError):
        raise Invalid("effective_from", f"{text!r} is not an ISO 8601 date-time") from None
    if effective <= 0:
        raise Invalid("effective_from", f"{text!r} is not after 1970-01-01")
    return effective


# -- tariffs -----------------------------------------------------------------------------------


def limits_of(body: Limits | None, field: str) -> SessionLimits | None:
    """The event's limits for a body's; ``None`` when none is set."""
    if body is None or (
        body.max_energy_wh is None and body.max_duration_s is None and body.max_cost is None
    ):
        return None
    if body.max_energy_wh is not None and not math.isfinite(body.max_energy_wh):
        raise Invalid(f"{field}.max_energy_wh".lstrip("."), f"{body.max_energy_wh} must be finite")
    limits = SessionLimits(
        max_energy_wh=body.max_energy_wh,
        max_duration_s=body.max_duration_s,
        max_cost=body.max_cost,
    )
    try:
        validate_limits(limits, field)
    except ValueError as error:
        raise _split(error) from None
    return limits


def session_limits_set(
    charge_point_id: str, transaction_id: int | str, body: Limits, origin: Origin
) -> SessionLimitsSet:
    """Limits an operator adds to a running transaction (they never lift earlier ones): an
    OCPP 1.6 one by its integer id, a 2.x one by its string id."""
    if isinstance(transaction_id, int) and transaction_id not in TRANSACTION_IDS:
        raise Invalid("transaction_id", f"{transaction_id} is not a 32-bit integer")
    if isinstance(transaction_id, str) and not (
        0 < len(transaction_id) <= MAX_TRANSACTION_ID and transaction_id.isprintable()
    ):
        raise Invalid(
            "transaction_id",
            f"{transaction_id[:40]!r} is neither an integer nor an OCPP 2.x transaction id "
            f"(1 to {MAX_TRANSACTION_ID} printable characters)",
        )
    limits = limits_of(body, "")
    if limits is None:
        raise Invalid("", "set at least one of maxEnergyWh, maxDurationS, maxCost")
    return SessionLimitsSet(
        id=origin.event_id,
        received_at=origin.received_at,
        actor=origin.actor,
        charge_point_id=charge_point_id,
        transaction_id=transaction_id,
        limits=limits,
    )


def tariff_set(tariff_id: str, body: TariffBody, effective_from: int, origin: Origin) -> TariffSet:
    """``effective_from`` is Unix ms, 0 for from now on (the caller parses the time)."""
    if not 1 <= len(tariff_id) <= MAX_TARIFF_ID or not tariff_id.isprintable():
        raise Invalid("tariff_id", f"{tariff_id!r}: 1 to {MAX_TARIFF_ID} printable characters")
    cp = body.charge_point_id
    if cp and (problem := id_problem(cp)):
        raise Invalid("charge_point_id", f"{cp!r}: {problem}")
    _currency(body.currency)
    for index, band in enumerate(body.bands):
        for name in ("start", "end"):
            _matching(getattr(band, name), HHMM, f"bands[{index}].{name}", "a time HH:MM")
    event = TariffSet(
        id=origin.event_id,
        received_at=origin.received_at,
        actor=origin.actor,
        tariff_id=tariff_id,
        charge_point_id=cp,
        currency=body.currency,
        per_kwh=body.per_kwh,
        per_minute=body.per_minute,
        session_fee=body.session_fee,
        bands=tuple(
            TariffBand(start=b.start, end=b.end, per_kwh=b.per_kwh, per_minute=b.per_minute)
            for b in body.bands
        ),
        effective_from=effective_from,
        idle_per_minute=body.idle_per_minute,
        idle_grace_minutes=body.idle_grace_minutes,
        limits=limits_of(body.limits, "limits"),
    )
    try:
        validate(Tariff.from_event(event))
    except ValueError as error:
        raise _split(error) from None
    return event


# -- wallets -----------------------------------------------------------------------------------


def wallet_configured(
    wallets: Wallets, id_tag: str, body: WalletBody, origin: Origin
) -> WalletConfigured:
    check_id_tag(id_tag)
    _currency(body.currency)
    hold = body.hold_amount or ""
    if hold and _amount(hold, "hold_amount") <= 0:
        raise Invalid("hold_amount", f"{hold!r} must be above 0 (or absent: the whole balance)")
    if _amount(body.min_balance, "min_balance") < 0:
        raise Invalid("min_balance", f"{body.min_balance!r} must not be negative")
    current = wallets.get(id_tag)
    if current is not None and current.balance and current.currency != body.currency:
        # The balance is a sum of amounts in the old currency; relabelling it would be wrong.
        raise Conflict(
            f"wallet {id_tag!r} holds {current.balance} {current.currency}: "
            "its currency cannot change while the balance is not zero"
        )
    return WalletConfigured(
        id=origin.event_id,
        received_at=origin.received_at,
        actor=origin.actor,
        id_tag=id_tag,
        currency=body.currency,
        hold_amount=hold,
        min_balance=body.min_balance,
    )


def credit_id(id_tag: str, reference: str) -> str:
    """The event id of a referenced credit: JetStream stores a retry of it once."""
    return f"wallet:{id_tag}:{reference}"


def wallet_credited(
    wallets: Wallets,
    credits: Mapping[str, WalletCredited],
    id_tag: str,
    kind: WalletCreditKind,
    body: CreditBody,
    origin: Origin,
) -> tuple[WalletCredited, bool]:
    """The credit to store, or the one stored earlier under the same reference (``True``)."""
    check_id_tag(id_tag)
    value = _amount(body.amount, "amount")
    if kind == "topup" and value <= 0:
        raise Invalid("amount", f"{body.amount!r}: a top-up must be above 0")
    if kind == "adjustment" and value == 0:
        raise Invalid("amount", f"{body.amount!r}: an adjustment must not be 0")
    reference = body.reference or ""
    if reference:
        _matching(reference, REFERENCE, "reference", "1 to 128 printable characters")
    elif kind == "adjustment":
        raise Invalid("reference", "an adjustment needs one (or an Idempotency-Key header)")
    if len(body.note) > MAX_NOTE:
        raise Invalid("note", f"at most {MAX_NOTE} characters")
    wallet = wallets.prepaid(id_tag)
    if wallet is None:
        raise NoWallet(f"id tag {id_tag!r} has no wallet: configure it first")
    event = WalletCredited(
        id=credit_id(id_tag, reference) if reference else origin.event_id,
        received_at=origin.received_at,
        actor=origin.actor,
        id_tag=id_tag,
        amount=body.amount,
        kind=kind,
        currency=wallet.currency,
        reference=reference,
        note=body.note,
    )
    earlier = credits.get(event.id)
    if earlier is None:
        return event, False
    check_same_credit(earlier, event)
    return earlier, True


def check_same_credit(earlier: WalletCredited, event: WalletCredited) -> None:
    """A retry must ask for what the first request asked, else its reference is misused."""
    if (earlier.kind, money(earlier.amount), earlier.note) != (
        event.kind,
        money(event.amount),
        event.note,
    ):
        raise Conflict(
            f"reference {event.reference!r} was used for a {earlier.kind} of "
            f"{earlier.amount} {earlier.currency}; a new credit needs a new reference"
        )


# -- the CLI's limit flags (hub tariffs set, hub idtags add) -----------------------------------

LIMIT_FLAGS: Final = {
    "limits.max_energy_wh": "--max-energy-wh",
    "limits.max_duration_s": "--max-duration-s",
    "limits.max_cost": "--max-cost",
}


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-energy-wh", type=float, help="stop the session at this energy")
    parser.add_argument("--max-duration-s", type=int, help="stop the session after this long")
    parser.add_argument("--max-cost", help="stop the session at this cost, e.g. 25.00")


def limits_from_flags(args: argparse.Namespace) -> SessionLimits | None:
    """The limits the flags give; ``ValueError`` names the flag."""
    body = Limits(
        max_energy_wh=args.max_energy_wh,
        max_duration_s=args.max_duration_s,
        max_cost=args.max_cost,
    )
    try:
        return limits_of(body, "limits")
    except Invalid as error:
        raise ValueError(f"{LIMIT_FLAGS.get(error.field, error.field)}: {error.problem}") from None
