"""Smart charging over REST: installed profiles, composite schedules, and the check that
refuses a SetChargingProfile breaking a rule before anything is stored or sent.

Reads come from the fan-out's fold of the stream, held in memory (``hub/api/profile_state.py``,
``hub.api.book.LiveFold``). Each request first lets that fold take in everything stored
before it arrived (its follower's ``settled``), so an answer of the charger's or a
StartTransaction that came just before is counted. ``GET .../schedule?askCharger=true`` sends
GetCompositeSchedule as a command (audited like any other) and reports where the charger's
answer differs from the hub's.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec
import structlog
from aiohttp import web

from hub.api.book import LIVE, LiveFold
from hub.api.http import (
    API,
    HTTP_STATUS,
    Check,
    ErrorBody,
    _answering_errors,
    _authorise,
    _error,
    _finish,
    _timeout,
    json_response,
    now_ms,
    requested_command,
)
from hub.api.profile_state import (
    MAX_DURATION_S,
    CompositeAnswer,
    CompositeView,
    DifferenceView,
    ProfileBook,
    chargers_composite,
    composite_view,
    default_unit,
    difference_view,
    profile_list,
    refusal,
    remote_start_refusal,
)
from hub.domain.command_tracking import CommandView
from hub.domain.profiles import Unit
from hub.domain.schedules import compare, composite
from schemas.ocpp import validate_result

log = structlog.get_logger("hub.api.profiles")

MAX_CONNECTOR: Final = 2**31 - 1
_UNITS: Final[dict[str, Unit]] = {"A": "A", "W": "W"}


class ProfilesApi:
    """The profiles of the fan-out's fold, and a way to let it settle before reading them."""

    def __init__(self, live: LiveFold) -> None:
        self.book = ProfileBook(live.charging)
        self.settled = live.settled


PROFILES: Final = web.AppKey("profiles_api", ProfilesApi)


class ChargerAnswer(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """The charger's own GetCompositeSchedule answer: the command as tracked, and the schedule
    it gave (absent: it gave none, rejected, or did not answer)."""

    command: CommandView
    schedule: CompositeView | None = None


class ScheduleAnswer(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """The composite schedule of a connector as the hub computes it; with ``askCharger``, the
    charger's too and where they differ (``agree`` absent: nothing to compare)."""

    charge_point_id: str
    connector_id: int
    transaction_id: int | str | None = None
    hub: CompositeView
    charger: ChargerAnswer | None = None
    differences: list[DifferenceView] | None = None
    agree: bool | None = None


def setup(app: web.Application) -> None:
    """Register the routes and the SetChargingProfile check; after the command API's backbone."""
    app[PROFILES] = profiles = ProfilesApi(app[LIVE])
    checks = app[API].checks
    checks["SetChargingProfile"] = _checker(profiles, "SetChargingProfile")
    checks["RemoteStartTransaction"] = _checker(profiles, "RemoteStartTransaction")
    checks["RequestStartTransaction"] = _checker(profiles, "RequestStartTransaction")
    route = app.router.add_route
    route("GET", "/api/v1/chargers/{charge_point_id}/profiles", _answering_errors(_list))
    route(
        "GET",
        "/api/v1/chargers/{charge_point_id}/connectors/{connector_id}/schedule",
        _answering_errors(_schedule),
    )


def _checker(profiles: ProfilesApi, action: str) -> Check:
    async def check(charge_point_id: str, payload: bytes) -> ErrorBody | None:
        await profiles.settled()
        if action == "SetChargingProfile":
            refused = refusal(profiles.book, charge_point_id, payload)
        else:
            refused = remote_start_refusal(profiles.book, charge_point_id, action, payload)
        if refused is None:
            return None
        log.info("api.profile_refused", charge_point_id=charge_point_id, rule=refused.rule)
        return ErrorBody(error="bad_request", message=refused.message, rule=refused.rule)

    return check


# -- request pieces ----------------------------------------------------------------------------


def _integer(name: str, text: str, low: int, high: int) -> int:
    if re.fullmatch(r"[0-9]{1,10}", text) is None or not low <= int(text) <= high:
        raise _error(
            400,
            "bad_request",
            f"{name}: expected an integer from {low} to {high}, got {text[:40]!r}",
        )
    return int(text)


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise _error(400, "bad_request", f"{name}: expected true or false, got {raw[:40]!r}")


async def _known(request: web.Request, charge_point_id: str) -> None:
    profiles = request.app[PROFILES]
    await profiles.settled()
    if not (request.app[API].known(charge_point_id) or profiles.book.knows(charge_point_id)):
        raise _error(404, "not_found", f"no charger {charge_point_id!r}")


# -- handlers ----------------------------------------------------------------------------------


async def _list(request: web.Request) -> web.Response:
    charge_point_id = request.match_info["charge_point_id"]
    await _authorise(request, charge_point_id, command=False)
    raw = request.query.get("connectorId")
    connector_id = None if raw is None else _integer("connectorId", raw, 0, MAX_CONNECTOR)
    await _known(request, charge_point_id)
    return json_response(profile_list(request.app[PROFILES].book, charge_point_id, connector_id))


async def _schedule(request: web.Request) -> web.Response:
    charge_point_id = request.match_info["charge_point_id"]
    ask = _flag(request, "askCharger")
    scope = await _authorise(
        request, charge_point_id, command=ask, doing="ask chargers for their schedule"
    )
    connector_id = _integer("connectorId", request.match_info["connector_id"], 0, MAX_CONNECTOR)
    raw_duration = request.query.get("duration")
    if raw_duration is None:
        raise _error(400, "bad_request", "duration: required (seconds)")
    duration = _integer("duration", raw_duration, 1, MAX_DURATION_S)
    unit_text = request.query.get("chargingRateUnit")
    if unit_text not in (None, "A", "W"):
        raise _error(
            400, "bad_request", f"chargingRateUnit: expected A or W, got {unit_text[:40]!r}"
        )
    timeout_s = _timeout(request)
    await _known(request, charge_point_id)
    book = request.app[PROFILES].book
    model = book.model(charge_point_id)
    unit: Unit = _UNITS.get(unit_text or "", default_unit(model.limits))
    running = book.running(charge_point_id, connector_id) if connector_id > 0 else None
    asked_at = now_ms()
    hub = composite(
        model.installed,
        connector_id,
        asked_at,
        duration,
        unit,
        transaction_start_ms=running.start_ms if running is not None else None,
    )
    answer = ScheduleAnswer(
        charge_point_id=charge_point_id,
        connector_id=connector_id,
        transaction_id=running.transaction_id if running is not None else None,
        hub=composite_view(hub),
    )
    if not ask:
        return _answer(answer)
    api = request.app[API]
    if not api.known(charge_point_id):
        raise _error(404, "not_found", f"no charger {charge_point_id!r}")
    version = book.version(charge_point_id)
    where = "connectorId" if version == "1.6" else "evseId"
    payload = msgspec.json.encode(
        {where: connector_id, "duration": duration, "chargingRateUnit": unit}
    )
    requested = await requested_command(
        api, scope, charge_point_id, "GetCompositeSchedule", payload, timeout_s
    )
    view = await _finish(api, requested, payload, (version,))
    theirs = None
    if view.outcome == "answered" and view.response is not None:
        raw = msgspec.json.encode(view.response)
        decoded = validate_result(version, "GetCompositeSchedule", raw)
        if isinstance(decoded, CompositeAnswer) and decoded.status == "Accepted":
            theirs = chargers_composite(decoded, asked_at, duration)
    answer = msgspec.structs.replace(
        answer,
        charger=ChargerAnswer(
            command=view, schedule=composite_view(theirs) if theirs is not None else None
        ),
    )
    if theirs is not None:
        differences = compare(hub, theirs)
        answer = msgspec.structs.replace(
            answer,
            differences=[difference_view(d) for d in differences],
            agree=not differences,
        )
    log.info(
        "api.schedule_compared",
        charge_point_id=charge_point_id,
        connector_id=connector_id,
        command_id=view.command_id,
        agree=answer.agree,
    )
    return _answer(answer, HTTP_STATUS[view.outcome])


def _answer(answer: ScheduleAnswer, status: int = 200) -> web.Response:
    return json_response(answer, status)
