"""The composite schedule: what a connector may draw over a window, from its installed profiles.

As OCPP 1.6 §3.13 and GetCompositeSchedule (§5.7) define it, at every instant:

1. per purpose, the profile that prevails is the one with the highest stack level among
   those valid (validFrom, validTo) and running (its schedule has begun and, if it has a
   duration, not ended) at that instant (§3.13.2). A profile without a duration never ends,
   so nothing below it shows through while it is valid;
2. a TxProfile overrules the TxDefaultProfile (§3.13.1), and a TxDefaultProfile on the
   connector itself those on connector 0, whatever their stack levels (§3.13.1: it "SHALL be
   replaced only for that specific connector"); the lower one shows where none of the upper
   says anything (it is not valid, has not begun, or its duration is over), as in a stack;
3. the limit is the smaller of the ChargePointMaxProfile's and that one's (§3.13.3).

A schedule starts at its ``startSchedule`` (Absolute), at the transaction's start (Relative,
and an Absolute one without a ``startSchedule``, §7.10), or recurs daily or weekly from its
``startSchedule`` (Recurring). Limits in A are per phase, limits in W in all; they are
compared on the fewest phases any of them allows (a period without ``numberPhases`` allows
``phases``, by default 3), with ``voltage`` volts per phase (default 230), so a result in A
and one in W say the same. Instants are whole seconds, as OCPP's schedules are.

Pure and allocation-light: the simulator and the allocator will call it per connector.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from hub.domain.profiles import Installed, Profile, Unit

DEFAULT_PHASES: Final = 3
DEFAULT_VOLTAGE: Final = 230.0
_RECURRENCE_S: Final = {"Daily": 86_400, "Weekly": 7 * 86_400}


class Limit(msgspec.Struct, frozen=True, gc=False):
    """One profile's limit at an instant, as its period says it."""

    amount: float
    unit: Unit
    phases: int


class CompositePeriod(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """From ``start_s`` seconds after the window's start on: at most ``limit`` (None: no
    profile limits the connector) on ``phases`` phases."""

    start_s: int
    limit: float | None
    phases: int


class Composite(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A composite schedule, as GetCompositeSchedule.conf gives one: periods from the
    window's start, adjacent equal ones merged. ``min_rate``: the highest minChargingRate of
    the Tx or TxDefault profiles that prevail in the window, in ``unit`` (OCPP leaves its use
    to the charger's own algorithm, so it changes no limit)."""

    start_ms: int
    duration_s: int
    unit: Unit
    periods: tuple[CompositePeriod, ...]
    min_rate: float | None = None


def convert(amount: float, source: Unit, target: Unit, phases: int, voltage: float) -> float:
    """``amount`` in ``source`` as ``target``: A per phase times phases times volts is W."""
    if source == target:
        return amount
    if source == "A":
        return amount * phases * voltage
    return amount / (phases * voltage)


class _Timed(msgspec.Struct, frozen=True, gc=False):
    """A profile with where its schedule starts (seconds) and its periods' starts."""

    installed: Installed
    anchor_s: int
    starts: tuple[int, ...]
    recurs_s: int | None


def _timed(installed: Installed, transaction_start_s: int) -> _Timed:
    profile = installed.profile
    schedule = profile.schedule
    anchor_s = transaction_start_s
    if profile.kind != "Relative" and schedule.start_ms is not None:
        anchor_s = schedule.start_ms // 1000
    recurs_s = None
    if profile.kind == "Recurring" and profile.recurrency is not None:
        recurs_s = _RECURRENCE_S[profile.recurrency]
    starts = tuple(period.start_s for period in schedule.periods)
    return _Timed(installed, anchor_s, starts, recurs_s)


def _valid(profile: Profile, t_s: int) -> bool:
    if profile.valid_from_ms is not None and t_s < profile.valid_from_ms // 1000:
        return False
    return profile.valid_to_ms is None or t_s < -(-profile.valid_to_ms // 1000)


def _limit_at(timed: _Timed, t_s: int, phases: int) -> Limit | None:
    """The profile's limit at ``t_s``, None where it says nothing (not valid, not begun,
    past its duration)."""
    profile = timed.installed.profile
    if not _valid(profile, t_s):
        return None
    offset = t_s - timed.anchor_s
    if offset < 0:
        return None
    if timed.recurs_s is not None:
        offset %= timed.recurs_s
    duration = profile.schedule.duration_s
    if duration is not None and offset >= duration:
        return None
    index = bisect.bisect_right(timed.starts, offset) - 1
    if index < 0:
        return None
    period = profile.schedule.periods[index]
    return Limit(period.limit, profile.schedule.unit, period.phases or phases)


def _breakpoints(timed: _Timed, start_s: int, end_s: int) -> Iterable[int]:
    """The instants in the window where the profile's limit may change."""
    profile = timed.installed.profile
    if profile.valid_from_ms is not None:
        yield profile.valid_from_ms // 1000
    if profile.valid_to_ms is not None:
        yield -(-profile.valid_to_ms // 1000)
    duration = profile.schedule.duration_s
    ends = (duration,) if duration is not None else ()
    if timed.recurs_s is None:
        for offset in (*timed.starts, *ends):
            yield timed.anchor_s + offset
        return
    cycle = timed.recurs_s
    first = max(0, (start_s - timed.anchor_s) // cycle)
    last = (end_s - timed.anchor_s) // cycle
    for k in range(first, last + 1):
        base = timed.anchor_s + k * cycle
        yield base
        for offset in (*timed.starts, *ends):
            if offset < cycle:
                yield base + offset


class _Pools(msgspec.Struct, frozen=True, gc=False):
    """The profiles that may limit a connector, by the part they play."""

    charger_max: tuple[_Timed, ...]
    tx: tuple[_Timed, ...]
    own_default: tuple[_Timed, ...]
    shared_default: tuple[_Timed, ...]

    def all(self) -> tuple[_Timed, ...]:
        return (*self.charger_max, *self.tx, *self.own_default, *self.shared_default)


def _pools(installed: Sequence[Installed], connector_id: int, transaction_start_s: int) -> _Pools:
    def pick(purpose: str, connector: int) -> tuple[_Timed, ...]:
        return tuple(
            _timed(one, transaction_start_s)
            for one in installed
            if one.profile.purpose == purpose and one.connector_id == connector
        )

    charger_max = pick("ChargePointMaxProfile", 0)
    if connector_id == 0:
        # The charger as a whole: only its own maximum says what it may draw in all.
        return _Pools(charger_max, (), (), ())
    return _Pools(
        charger_max,
        pick("TxProfile", connector_id),
        pick("TxDefaultProfile", connector_id),
        pick("TxDefaultProfile", 0),
    )


def _top(pool: Sequence[_Timed], t_s: int, phases: int) -> tuple[_Timed, Limit] | None:
    """The prevailing profile of a pool at ``t_s``: the highest stack level running then
    (of equals, the one installed last: the model never holds two)."""
    best: tuple[_Timed, Limit] | None = None
    for timed in pool:
        limit = _limit_at(timed, t_s, phases)
        if limit is None:
            continue
        if (
            best is None
            or timed.installed.profile.stack_level >= best[0].installed.profile.stack_level
        ):
            best = timed, limit
    return best


def _prevailing(
    pools: _Pools, t_s: int, phases: int
) -> tuple[tuple[_Timed, Limit] | None, tuple[_Timed, Limit] | None]:
    """The prevailing ChargePointMaxProfile, and Tx or TxDefault profile, at ``t_s``."""
    charger_max = _top(pools.charger_max, t_s, phases)
    transaction = _top(pools.tx, t_s, phases)
    if transaction is None:
        transaction = _top(pools.own_default, t_s, phases)
    if transaction is None:
        transaction = _top(pools.shared_default, t_s, phases)
    return charger_max, transaction


def prevailing(
    installed: Sequence[Installed],
    connector_id: int,
    at_ms: int,
    *,
    transaction_start_ms: int | None = None,
    phases: int = DEFAULT_PHASES,
) -> tuple[Installed | None, Installed | None]:
    """The profiles that prevail on a connector at ``at_ms``: its ChargePointMaxProfile,
    and its TxProfile or else TxDefaultProfile (None where none does)."""
    t_s = at_ms // 1000
    tx_start_s = transaction_start_ms // 1000 if transaction_start_ms is not None else t_s
    charger_max, transaction = _prevailing(_pools(installed, connector_id, tx_start_s), t_s, phases)
    return (
        charger_max[0].installed if charger_max is not None else None,
        transaction[0].installed if transaction is not None else None,
    )


def composite(
    installed: Sequence[Installed],
    connector_id: int,
    start_ms: int,
    duration_s: int,
    unit: Unit,
    *,
    transaction_start_ms: int | None = None,
    phases: int = DEFAULT_PHASES,
    voltage: float = DEFAULT_VOLTAGE,
) -> Composite:
    """The composite schedule of ``connector_id`` (0: the charger as a whole) for
    ``duration_s`` seconds from ``start_ms``, in ``unit``.

    Relative profiles start at ``transaction_start_ms``; without a transaction, as if one
    started at the window's start (what a car plugged in then would get)."""
    start_s = start_ms // 1000
    end_s = start_s + max(0, duration_s)
    tx_start_s = transaction_start_ms // 1000 if transaction_start_ms is not None else start_s
    pools = _pools(installed, connector_id, tx_start_s)
    instants = {start_s}
    for timed in pools.all():
        instants.update(t for t in _breakpoints(timed, start_s, end_s) if start_s < t < end_s)
    periods: list[CompositePeriod] = []
    min_rate: float | None = None
    for t_s in sorted(instants):
        charger_max, transaction = _prevailing(pools, t_s, phases)
        limits = [found[1] for found in (charger_max, transaction) if found is not None]
        if not limits:
            periods.append(CompositePeriod(start_s=t_s - start_s, limit=None, phases=phases))
            continue
        fewest = min(limit.phases for limit in limits)
        amount = min(convert(lim.amount, lim.unit, unit, fewest, voltage) for lim in limits)
        periods.append(CompositePeriod(start_s=t_s - start_s, limit=amount, phases=fewest))
        if transaction is not None:
            schedule = transaction[0].installed.profile.schedule
            if schedule.min_rate is not None:
                rate = convert(schedule.min_rate, schedule.unit, unit, fewest, voltage)
                min_rate = rate if min_rate is None else max(min_rate, rate)
    return Composite(
        start_ms=start_s * 1000,
        duration_s=end_s - start_s,
        unit=unit,
        periods=tuple(merge(periods)),
        min_rate=min_rate,
    )


def merge(periods: Iterable[CompositePeriod]) -> list[CompositePeriod]:
    """Periods with each one equal to the one before it (limit and phases) dropped."""
    merged: list[CompositePeriod] = []
    for period in periods:
        if merged and (merged[-1].limit, merged[-1].phases) == (period.limit, period.phases):
            continue
        merged.append(period)
    return merged


def period_at(periods: Sequence[CompositePeriod], offset_s: int) -> CompositePeriod | None:
    """The period in force ``offset_s`` seconds after the window's start (None: before it)."""
    index = bisect.bisect_right([period.start_s for period in periods], offset_s) - 1
    return periods[index] if index >= 0 else None


# -- the hub's composite against the charger's -------------------------------------------------

# Two limits agree within OCPP's step of 0.1 (§7.8: at most one digit fraction) or 0.1 % of
# the larger, whichever is more: a charger rounds what it converts (16 A on 3 phases is
# 11,040 W), and its voltage may not be the hub's nominal one.
LIMIT_STEP: Final = 0.1
LIMIT_RELATIVE: Final = 0.001
# A disagreement this short or shorter is the two windows' starts, each rounded to whole
# seconds on its own clock, not the schedules.
TIME_TOLERANCE_S: Final = 2


class Difference(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """From ``start_s`` to ``end_s`` seconds after the hub's window start, the hub says
    ``hub`` on ``hub_phases`` phases and the charger ``charger`` on ``charger_phases``
    (None: that side says nothing there), in the hub's unit."""

    start_s: int
    end_s: int
    hub: float | None
    charger: float | None
    hub_phases: int
    charger_phases: int


def agree(first: float, second: float) -> bool:
    return abs(first - second) <= max(LIMIT_STEP, LIMIT_RELATIVE * max(abs(first), abs(second)))


def compare(
    hub: Composite, charger: Composite, *, voltage: float = DEFAULT_VOLTAGE
) -> list[Difference]:
    """Where ``charger`` (its answer to GetCompositeSchedule) disagrees with ``hub``, in the
    time both windows cover, compared instant by instant on the wall clock (each window from
    its own start). The charger's limits are converted into the hub's unit on their own
    phases. Where the hub has no limit it does not know the charger's own maximum, so
    nothing there is a difference; where the charger says nothing and the hub has a limit,
    it is."""
    hub_start, charger_start = hub.start_ms // 1000, charger.start_ms // 1000
    begin = max(hub_start, charger_start)
    end = min(hub_start + hub.duration_s, charger_start + charger.duration_s)
    instants = {begin}
    for start, periods in ((hub_start, hub.periods), (charger_start, charger.periods)):
        instants.update(t for p in periods if begin < (t := start + p.start_s) < end)
    runs: list[Difference] = []
    ordered = sorted(instants)
    for t_s, next_s in zip(ordered, [*ordered[1:], end], strict=True):
        if t_s >= end:
            break
        ours = period_at(hub.periods, t_s - hub_start)
        theirs = period_at(charger.periods, t_s - charger_start)
        if ours is None or ours.limit is None:
            continue
        limit, phases = ours.limit, ours.phases
        their_limit: float | None = None
        their_phases = phases
        if theirs is not None and theirs.limit is not None:
            their_phases = theirs.phases
            their_limit = convert(theirs.limit, charger.unit, hub.unit, their_phases, voltage)
        if their_limit is not None and agree(limit, their_limit) and their_phases == phases:
            continue
        found = Difference(
            start_s=t_s - hub_start,
            end_s=next_s - hub_start,
            hub=limit,
            charger=their_limit,
            hub_phases=phases,
            charger_phases=their_phases,
        )
        last = runs[-1] if runs else None
        if (
            last is not None
            and last.end_s == found.start_s
            and (last.hub, last.charger, last.hub_phases, last.charger_phases)
            == (found.hub, found.charger, found.hub_phases, found.charger_phases)
        ):
            runs[-1] = msgspec.structs.replace(last, end_s=found.end_s)
        else:
            runs.append(found)
    return [run for run in runs if run.end_s - run.start_s > TIME_TOLERANCE_S]
