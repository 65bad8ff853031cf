"""Tariffs, wallets and session limits over REST, in the command API's app and on its rules.

Writes need role operator (or admin), reads any valid token. Each change is an admin event
stored BEFORE the answer; refusals are stored as ``admin.access.denied``. Reads come from
folds of the stream held in memory (``hub/api/money_state.py``); a write waits for its own
event to reach the fold, so a GET right after it sees it. Wallets and default tariffs
concern every charger, so they need a token whose ``chargers`` claim is ``*``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Final, TypeVar

import msgspec
import structlog
from aiohttp import web

from hub.api.book import Book
from hub.api.http import (
    API,
    ApiError,
    Handler,
    _answering_errors,
    _authorise,
    _error,
    _refuse,
    _store,
    json_response,
    now_ms,
)
from hub.api.money_rules import (
    Conflict,
    CreditBody,
    Invalid,
    Limits,
    NoWallet,
    Origin,
    TariffBody,
    WalletBody,
    check_id_tag,
    check_same_credit,
    effective_from_ms,
    session_limits_set,
    tariff_set,
    wallet_configured,
    wallet_credited,
)
from hub.api.money_state import (
    TARIFF_SUBJECTS,
    WALLET_SUBJECTS,
    TariffBook,
    TariffList,
    WalletBook,
    WalletView,
    credit_view,
    session_limits_view,
    tariff_view,
)
from hub.domain.wallets import ZERO
from hub.tokens import Scope
from schemas.events import Event, WalletCreditKind

log = structlog.get_logger("hub.api.money")

# Path parameters named in 400s; everything else is a field of the JSON body.
_PATH_PARAMETERS: Final = {
    "id_tag": "idTag",
    "tariff_id": "tariffId",
    "transaction_id": "transactionId",
}

T = TypeVar("T")


class MoneyApi(Book):
    """The tariffs and wallets, folded for the app's life. Serving starts once both hold what
    was stored before: a retried top-up must find the credit it repeats."""

    def __init__(self) -> None:
        super().__init__("money", (*TARIFF_SUBJECTS, *WALLET_SUBJECTS), self.apply)
        self.tariffs = TariffBook()
        self.wallets = WalletBook()

    def apply(self, event: Event, seq: int) -> None:
        self.tariffs.apply(event, seq)
        self.wallets.apply(event, seq)


MONEY: Final = web.AppKey("money_api", MoneyApi)


def setup(app: web.Application, stream: str) -> None:
    """Register the routes; call after the command API's backbone (whose connection it uses)."""
    app[MONEY] = money = MoneyApi()
    money.follow(app, stream)
    route = app.router.add_route
    route("GET", "/api/v1/tariffs", _answering_errors(_list_tariffs))
    route("GET", "/api/v1/tariffs/{tariff_id}", _answering_errors(_get_tariff))
    route("PUT", "/api/v1/tariffs/{tariff_id}", _answering_errors(_put_tariff))
    route("GET", "/api/v1/wallets/{id_tag}", _answering_errors(_get_wallet))
    route("PUT", "/api/v1/wallets/{id_tag}", _answering_errors(_put_wallet))
    route("POST", "/api/v1/wallets/{id_tag}/topups", _answering_errors(_credit("topup")))
    route("POST", "/api/v1/wallets/{id_tag}/adjustments", _answering_errors(_credit("adjustment")))
    route(
        "PUT",
        "/api/v1/chargers/{charge_point_id}/transactions/{transaction_id}/limits",
        _answering_errors(_put_limits),
    )


# -- request pieces ----------------------------------------------------------------------------


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        raise _error(400, "bad_request", str(error)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        # msgspec raises UnicodeDecodeError, not DecodeError, for a string that is not UTF-8.
        raise _error(400, "bad_request", f"the body is not valid JSON: {error}") from None


def json_path(field: str) -> str:
    """``bands[0].per_kwh`` -> ``$.bands[0].perKwh``, as msgspec names body fields; ``""``
    is the body itself."""
    if not field:
        return "$"
    return "$." + re.sub(r"_([a-z])", lambda m: m[1].upper(), field)


def _invalid(error: Invalid) -> ApiError:
    parameter = _PATH_PARAMETERS.get(error.field)
    where = f"path parameter `{parameter}`" if parameter else f"`{json_path(error.field)}`"
    return _error(400, "bad_request", f"{error.problem} - at {where}")


def _origin(scope: Scope) -> Origin:
    return Origin(uuid.uuid4().hex, now_ms(), scope.subject)


async def _hub_wide(request: web.Request, scope: Scope, what: str) -> None:
    if not scope.everything:
        raise await _refuse(
            request,
            403,
            f"{what} concern every charger: the token must be for all chargers ('*')",
            scope.subject,
        )


async def _charger(request: web.Request, scope: Scope, charge_point_id: str) -> None:
    if not scope.allows(charge_point_id):
        raise await _refuse(
            request,
            403,
            f"charger {charge_point_id!r} is outside the token's scope",
            scope.subject,
            charge_point_id,
        )


# -- tariffs -----------------------------------------------------------------------------------


def _visible(scope: Scope) -> Callable[[str], bool]:
    return lambda charge_point_id: not charge_point_id or scope.allows(charge_point_id)


async def _list_tariffs(request: web.Request) -> web.Response:
    scope = await _authorise(request, "", command=False)
    visible = _visible(scope)
    versions = request.app[MONEY].tariffs.versions
    return json_response(
        TariffList(tariffs=[tariff_view(t) for t in versions if visible(t.charge_point_id)])
    )


async def _get_tariff(request: web.Request) -> web.Response:
    scope = await _authorise(request, "", command=False)
    tariff_id = request.match_info["tariff_id"]
    visible = _visible(scope)
    versions = request.app[MONEY].tariffs.versions
    found = [t for t in versions if t.tariff_id == tariff_id and visible(t.charge_point_id)]
    if not found:
        raise _error(404, "not_found", f"no tariff {tariff_id!r}")
    return json_response(tariff_view(found[-1]))


async def _put_tariff(request: web.Request) -> web.Response:
    api, money = request.app[API], request.app[MONEY]
    scope = await _authorise(request, "", command=True, doing="change tariffs")
    body = _decode(await request.read(), TariffBody)
    if body.charge_point_id:
        await _charger(request, scope, body.charge_point_id)
    else:
        await _hub_wide(request, scope, "default tariffs")
    try:
        effective = effective_from_ms(body.effective_from)
        event = tariff_set(request.match_info["tariff_id"], body, effective, _origin(scope))
    except Invalid as error:
        raise _invalid(error) from None
    await money.stored(api, event)
    log.info("api.tariff_set", tariff_id=event.tariff_id, event_id=event.id, actor=event.actor)
    return json_response(tariff_view(event))


# -- wallets -----------------------------------------------------------------------------------


async def _get_wallet(request: web.Request) -> web.Response:
    scope = await _authorise(request, "", command=False)
    await _hub_wide(request, scope, "wallets")
    id_tag = request.match_info["id_tag"]
    try:
        check_id_tag(id_tag)
    except Invalid as error:
        raise _invalid(error) from None
    view = request.app[MONEY].wallets.view(id_tag)
    if view is None:
        raise _error(404, "not_found", f"no wallet for id tag {id_tag!r}")
    return json_response(view)


async def _put_wallet(request: web.Request) -> web.Response:
    api, money = request.app[API], request.app[MONEY]
    scope = await _authorise(request, "", command=True, doing="change wallets")
    await _hub_wide(request, scope, "wallets")
    id_tag = request.match_info["id_tag"]
    body = _decode(await request.read(), WalletBody)
    try:
        event = wallet_configured(money.wallets.wallets, id_tag, body, _origin(scope))
    except Invalid as error:
        raise _invalid(error) from None
    except Conflict as error:
        raise _error(409, "conflict", str(error)) from None
    await money.stored(api, event)
    log.info("api.wallet_configured", id_tag=id_tag, event_id=event.id, actor=event.actor)
    # The configuration as stored, even if the fold has not caught up with it (yet).
    folded = money.wallets.view(id_tag) or WalletView(
        id_tag=id_tag,
        configured=True,
        currency=event.currency,
        balance=ZERO,
        hold_amount="",
        min_balance="0",
        ledger=[],
    )
    return json_response(
        msgspec.structs.replace(
            folded,
            configured=True,
            currency=event.currency,
            hold_amount=event.hold_amount,
            min_balance=event.min_balance,
        )
    )


def _with_idempotency_key(request: web.Request, body: CreditBody) -> CreditBody:
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        return body
    if body.reference is not None and body.reference != key:
        raise _error(
            400,
            "bad_request",
            "differs from the Idempotency-Key header; send one of them - at `$.reference`",
        )
    return msgspec.structs.replace(body, reference=key)


def _credit(kind: WalletCreditKind) -> Handler:
    async def credit(request: web.Request) -> web.Response:
        api, money = request.app[API], request.app[MONEY]
        scope = await _authorise(request, "", command=True, doing="change wallets")
        await _hub_wide(request, scope, "wallets")
        id_tag = request.match_info["id_tag"]
        body = _with_idempotency_key(request, _decode(await request.read(), CreditBody))
        book = money.wallets
        try:
            event, replayed = wallet_credited(
                book.wallets, book.credits, id_tag, kind, body, _origin(scope)
            )
        except Invalid as error:
            raise _invalid(error) from None
        except NoWallet as error:
            raise _error(404, "not_found", str(error)) from None
        except Conflict as error:
            raise _error(409, "conflict", str(error)) from None
        if not replayed:
            # A concurrent retry may have been stored first: JetStream keeps that one (same
            # id), and the answer is the one it got.
            await money.stored(api, event)
            stored = book.credits.get(event.id, event)
            try:
                check_same_credit(stored, event)
            except Conflict as error:
                raise _error(409, "conflict", str(error)) from None
            replayed, event = stored != event, stored
        log.info(
            "api.wallet_credited",
            id_tag=id_tag,
            event_id=event.id,
            actor=scope.subject,
            replayed=replayed,
        )
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return json_response(credit_view(event), 201, **headers)

    credit.__name__ = f"credit_{kind}"
    return credit


# -- session limits ----------------------------------------------------------------------------


async def _put_limits(request: web.Request) -> web.Response:
    api = request.app[API]
    charge_point_id = request.match_info["charge_point_id"]
    scope = await _authorise(request, charge_point_id, command=True, doing="set limits")
    raw_id = request.match_info["transaction_id"]
    # An integer is an OCPP 1.6 id; anything else a 2.x one (a string).
    transaction_id: int | str = int(raw_id) if re.fullmatch(r"-?[0-9]{1,20}", raw_id) else raw_id
    if not api.known(charge_point_id):
        raise _error(404, "not_found", f"no charger {charge_point_id!r}")
    body = _decode(await request.read(), Limits)
    try:
        event = session_limits_set(charge_point_id, transaction_id, body, _origin(scope))
    except Invalid as error:
        raise _invalid(error) from None
    await _store(api, event)
    log.info(
        "api.limits_set",
        charge_point_id=charge_point_id,
        transaction_id=event.transaction_id,
        event_id=event.id,
        actor=event.actor,
    )
    return json_response(session_limits_view(event))


__all__ = ["MONEY", "MoneyApi", "json_path", "setup"]
