"""The composite schedule (OCPP 1.6 §3.13, §5.7): worked examples from the spec's text, and
properties checked against a plain evaluator written here from the spec, instant by instant."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain.profiles import Installed, Period, Profile, Schedule, install
from hub.domain.schedules import (
    Composite,
    CompositePeriod,
    Difference,
    compare,
    composite,
    convert,
    merge,
    period_at,
    prevailing,
)
from hub.domain.timeutil import parse_ms

DAY = 86_400
HOUR = 3_600
MIDNIGHT = parse_ms("2026-11-22T00:00:00Z")  # a Sunday
_ids = itertools.count(1)


def at(text: str) -> int:
    return parse_ms(f"2026-11-22T{text}Z")


def inst(
    connector: int,
    purpose: str,
    level: int,
    periods: list[tuple[int, float] | tuple[int, float, int]],
    *,
    unit: str = "A",
    kind: str = "Absolute",
    start_ms: int | None = MIDNIGHT,
    duration: int | None = None,
    recurrency: str | None = None,
    valid_from: int | None = None,
    valid_to: int | None = None,
    min_rate: float | None = None,
) -> Installed:
    return Installed(
        connector_id=connector,
        profile=Profile(
            profile_id=next(_ids),
            stack_level=level,
            purpose=purpose,  # type: ignore[arg-type]
            kind=kind,  # type: ignore[arg-type]
            recurrency=recurrency,  # type: ignore[arg-type]
            valid_from_ms=valid_from,
            valid_to_ms=valid_to,
            schedule=Schedule(
                unit=unit,  # type: ignore[arg-type]
                periods=tuple(
                    Period(start_s=p[0], limit=p[1], phases=p[2] if len(p) > 2 else None)  # type: ignore[misc]
                    for p in periods
                ),
                start_ms=None if kind == "Relative" else start_ms,
                duration_s=duration,
                min_rate=min_rate,
            ),
        ),
    )


def steps(result: Composite) -> list[tuple[int, float | None]]:
    return [(p.start_s, None if p.limit is None else round(p.limit, 3)) for p in result.periods]


# -- worked examples ---------------------------------------------------------------------------


def test_the_specs_daily_default_profile_limits_to_6_kw_between_8_and_20() -> None:
    # OCPP 1.6 §3.13.7, "Example data structure for smart charging": a TxDefaultProfile,
    # Recurring Daily from 2013-01-01T00:00Z, duration 86400, in W, 3 phases: 11000 from
    # 00:00, 6000 from 08:00, 11000 from 20:00.
    daily = inst(
        0,
        "TxDefaultProfile",
        0,
        [(0, 11000, 3), (8 * HOUR, 6000, 3), (20 * HOUR, 11000, 3)],
        unit="W",
        kind="Recurring",
        recurrency="Daily",
        start_ms=parse_ms("2013-01-01T00:00Z"),
        duration=DAY,
    )
    window = composite([daily], 1, at("06:00:00"), DAY, "W")
    assert steps(window) == [(0, 11000), (2 * HOUR, 6000), (14 * HOUR, 11000)]
    assert (window.start_ms, window.duration_s, window.unit) == (at("06:00:00"), DAY, "W")
    # In A: per phase, on the 3 phases the periods give, at 230 V.
    amps = composite([daily], 1, at("06:00:00"), DAY, "A")
    assert steps(amps) == [(0, 15.942), (2 * HOUR, 8.696), (14 * HOUR, 15.942)]
    assert {p.phases for p in amps.periods} == {3}


def test_the_charge_point_maximum_caps_the_transactions_profile_interval_by_interval() -> None:
    # §3.13.3: the schedule of a transaction is ChargePointMaxProfile merged with TxProfile
    # (or TxDefaultProfile): the lower of the two limits at each instant.
    charger_max = inst(0, "ChargePointMaxProfile", 0, [(0, 32), (10 * HOUR, 20), (14 * HOUR, 32)])
    default = inst(0, "TxDefaultProfile", 0, [(0, 16), (12 * HOUR, 25)])
    window = composite([charger_max, default], 1, MIDNIGHT, DAY, "A")
    assert steps(window) == [(0, 16), (12 * HOUR, 20), (14 * HOUR, 25)]


def test_a_higher_stack_level_prevails_and_the_lower_returns_when_its_duration_ends() -> None:
    # §3.13.2: "At any point in time the prevailing charging profile SHALL be the charging
    # profile with the highest stackLevel among the profiles that are valid at that point
    # in time"; a stacked profile with a duration gives way to the level below once over.
    base = inst(0, "TxDefaultProfile", 0, [(0, 32)])
    evening = inst(0, "TxDefaultProfile", 1, [(0, 10)], start_ms=at("18:00:00"), duration=2 * HOUR)
    window = composite([base, evening], 1, MIDNIGHT, DAY, "A")
    assert steps(window) == [(0, 32), (18 * HOUR, 10), (20 * HOUR, 32)]


def test_a_top_profile_without_duration_never_falls_back_within_its_validity() -> None:
    base = inst(0, "TxDefaultProfile", 0, [(0, 32)])
    top = inst(0, "TxDefaultProfile", 5, [(0, 10)], start_ms=at("06:00:00"))
    window = composite([base, top], 1, MIDNIGHT, 7 * DAY, "A")
    assert steps(window) == [(0, 32), (6 * HOUR, 10)]
    # validTo ends it: "If absent, the profile is valid until it is replaced" (§7.7).
    bounded = inst(0, "TxDefaultProfile", 5, [(0, 10)], valid_to=at("20:00:00"))
    assert steps(composite([base, bounded], 1, MIDNIGHT, DAY, "A")) == [(0, 10), (20 * HOUR, 32)]


def test_valid_from_and_valid_to_bound_a_profile() -> None:
    limited = inst(
        0,
        "ChargePointMaxProfile",
        0,
        [(0, 20)],
        valid_from=at("08:00:00"),
        valid_to=at("09:30:00"),
    )
    assert steps(composite([limited], 1, MIDNIGHT, DAY, "A")) == [
        (0, None),
        (8 * HOUR, 20),
        (9 * HOUR + 1800, None),
    ]


def test_a_relative_profile_starts_with_the_transaction() -> None:
    # §7.10 Relative: "Schedule periods are relative to a situation-specific start point
    # (such as the start of a Transaction)".
    relative = inst(1, "TxProfile", 0, [(0, 6), (HOUR, 16)], kind="Relative")
    window = composite(
        [relative], 1, at("10:30:00"), 2 * HOUR, "A", transaction_start_ms=at("10:00:00")
    )
    assert steps(window) == [(0, 6), (1800, 16)]
    # Without a transaction, as if one started at the window's start.
    assert steps(composite([relative], 1, at("10:30:00"), 2 * HOUR, "A")) == [(0, 6), (HOUR, 16)]


def test_an_absolute_profile_without_start_schedule_is_relative_to_the_transaction() -> None:
    # §7.9 startSchedule: "If absent the schedule will be relative to start of charging."
    absolute = inst(1, "TxProfile", 0, [(0, 6), (HOUR, 16)], start_ms=None)
    window = composite([absolute], 1, at("10:00:00"), DAY, "A", transaction_start_ms=at("09:30:00"))
    assert steps(window) == [(0, 6), (1800, 16)]


def test_a_weekly_profile_recurs_on_the_same_weekday() -> None:
    # §7.32 Weekly: "The schedule restarts every 7 days, at the same time and day-of-the-week
    # as in the startSchedule." Sundays 10:00-14:00 at 10 A, from the first Sunday on.
    sundays = inst(
        0,
        "TxDefaultProfile",
        1,
        [(0, 10)],
        kind="Recurring",
        recurrency="Weekly",
        start_ms=at("10:00:00") - 7 * DAY * 1000,
        duration=4 * HOUR,
    )
    base = inst(0, "TxDefaultProfile", 0, [(0, 32)])
    window = composite([base, sundays], 1, MIDNIGHT, 8 * DAY, "A")
    assert steps(window) == [
        (0, 32),
        (10 * HOUR, 10),
        (14 * HOUR, 32),
        (7 * DAY + 10 * HOUR, 10),
        (7 * DAY + 14 * HOUR, 32),
    ]


def test_a_recurring_profile_says_nothing_before_its_start_schedule() -> None:
    daily = inst(
        0,
        "TxDefaultProfile",
        0,
        [(0, 10)],
        kind="Recurring",
        recurrency="Daily",
        start_ms=at("12:00:00"),
    )
    assert steps(composite([daily], 1, MIDNIGHT, 2 * DAY, "A")) == [(0, None), (12 * HOUR, 10)]


def test_a_tx_profile_overrules_the_default_and_the_default_returns_after_it() -> None:
    # §3.13.1: a TxProfile "SHALL overrule the default charging profile with purpose
    # TxDefaultProfile for the duration of the current transaction only".
    default = inst(0, "TxDefaultProfile", 9, [(0, 32)])
    tx = inst(1, "TxProfile", 0, [(0, 8)], start_ms=at("10:00:00"), duration=HOUR)
    window = composite([default, tx], 1, MIDNIGHT, DAY, "A")
    assert steps(window) == [(0, 32), (10 * HOUR, 8), (11 * HOUR, 32)]
    # Another connector has no TxProfile: the default alone.
    assert steps(composite([default, tx], 2, MIDNIGHT, DAY, "A")) == [(0, 32)]


def test_a_connectors_own_default_replaces_connector_0s_for_that_connector_only() -> None:
    # §3.13.1: with a TxDefaultProfile on connector 0 installed, one for a connector > 0
    # "SHALL be replaced only for that specific connector" (whatever the stack levels).
    shared = inst(0, "TxDefaultProfile", 3, [(0, 32)])
    own = inst(1, "TxDefaultProfile", 0, [(0, 12)], start_ms=at("08:00:00"), duration=8 * HOUR)
    assert steps(composite([shared, own], 1, MIDNIGHT, DAY, "A")) == [
        (0, 32),
        (8 * HOUR, 12),
        (16 * HOUR, 32),
    ]
    assert steps(composite([shared, own], 2, MIDNIGHT, DAY, "A")) == [(0, 32)]


def test_connector_0_is_the_charger_as_a_whole_under_its_maximum() -> None:
    charger_max = inst(0, "ChargePointMaxProfile", 0, [(0, 63)])
    default = inst(0, "TxDefaultProfile", 0, [(0, 16)])
    assert steps(composite([charger_max, default], 0, MIDNIGHT, DAY, "A")) == [(0, 63)]


def test_no_profile_means_no_limit() -> None:
    window = composite([], 1, MIDNIGHT, HOUR, "W")
    assert window.periods == (CompositePeriod(start_s=0, limit=None, phases=3),)


def test_limits_compare_on_the_fewest_phases_any_of_them_allows() -> None:
    # 16 A on one phase (3.68 kW) against 11 kW on three: one phase at 16 A, in A and in W.
    one_phase = inst(1, "TxProfile", 0, [(0, 16, 1)])
    eleven_kw = inst(0, "ChargePointMaxProfile", 0, [(0, 11000, 3)], unit="W")
    amps = composite([one_phase, eleven_kw], 1, MIDNIGHT, HOUR, "A")
    watts = composite([one_phase, eleven_kw], 1, MIDNIGHT, HOUR, "W")
    assert amps.periods == (CompositePeriod(start_s=0, limit=16.0, phases=1),)
    assert watts.periods == (CompositePeriod(start_s=0, limit=3680.0, phases=1),)
    # Other phase counts and voltages: a period without numberPhases takes ``phases``.
    plain = inst(0, "ChargePointMaxProfile", 0, [(0, 16)])
    got = composite([plain], 1, MIDNIGHT, HOUR, "W", phases=2, voltage=120)
    assert got.periods == (CompositePeriod(start_s=0, limit=3840.0, phases=2),)


def test_the_min_charging_rate_of_the_prevailing_profile_comes_with_the_schedule() -> None:
    tx = inst(1, "TxProfile", 0, [(0, 16)], min_rate=6, start_ms=at("10:00:00"))
    got = composite([tx], 1, MIDNIGHT, DAY, "W")
    assert got.min_rate == pytest.approx(6 * 3 * 230)
    assert composite([tx], 1, MIDNIGHT, HOUR, "W").min_rate is None  # not running yet


def test_instants_are_whole_seconds_from_the_windows_start() -> None:
    charger_max = inst(0, "ChargePointMaxProfile", 0, [(0, 10), (90, 20)])
    window = composite([charger_max], 1, MIDNIGHT + 30_400, 120, "A")
    assert (window.start_ms, steps(window)) == (MIDNIGHT + 30_000, [(0, 10), (60, 20)])


# -- properties --------------------------------------------------------------------------------

_PURPOSES = st.sampled_from(
    [
        ("ChargePointMaxProfile", 0),
        ("TxDefaultProfile", 0),
        ("TxDefaultProfile", 1),
        ("TxProfile", 1),
    ]
)


@st.composite
def installed_profiles(draw: st.DrawFn) -> Installed:
    purpose, connector = draw(_PURPOSES)
    kind = draw(st.sampled_from(["Absolute", "Relative", "Recurring"]))
    starts = sorted(draw(st.sets(st.integers(1, 48), max_size=3)))
    periods = [
        (start * 900, draw(st.integers(0, 640)) / 10, draw(st.sampled_from([0, 1, 2, 3])))
        for start in [0, *starts]
    ]
    bounds = sorted(draw(st.lists(st.integers(-4, 60), min_size=2, max_size=2)))
    return inst(
        connector,
        purpose,
        draw(st.integers(0, 3)),
        [(s, lim, n) if n else (s, lim) for s, lim, n in periods],
        unit=draw(st.sampled_from(["A", "W"])),
        kind=kind,
        start_ms=MIDNIGHT + draw(st.integers(-8, 30)) * HOUR * 1000,
        duration=draw(st.one_of(st.none(), st.integers(1, 40).map(lambda h: h * 1800))),
        recurrency="Daily" if kind == "Recurring" else None,
        valid_from=draw(st.one_of(st.none(), st.just(MIDNIGHT + bounds[0] * HOUR * 1000))),
        valid_to=draw(st.one_of(st.none(), st.just(MIDNIGHT + (bounds[1] + 1) * HOUR * 1000))),
    )


@st.composite
def models(draw: st.DrawFn) -> list[Installed]:
    model: list[Installed] = []
    for one in draw(st.lists(installed_profiles(), max_size=6)):
        model, _ = install(model, one)  # as the charger holds them: no two in one slot
    return model


# The window and the transaction: the same for every property.
START = MIDNIGHT + 2 * HOUR * 1000
LENGTH = 2 * DAY
TX_START = MIDNIGHT + HOUR * 1000
INSTANTS = st.integers(0, LENGTH - 1)


def naive(one: Installed, t_s: int) -> tuple[float, str, int] | None:
    """One profile's limit at ``t_s`` as the spec's words say it, without the module."""
    profile, schedule = one.profile, one.profile.schedule
    if profile.valid_from_ms is not None and t_s * 1000 < profile.valid_from_ms:
        return None
    if profile.valid_to_ms is not None and t_s * 1000 >= profile.valid_to_ms:
        return None
    origin = (
        TX_START if profile.kind == "Relative" or schedule.start_ms is None else schedule.start_ms
    )
    elapsed = t_s - origin // 1000
    if elapsed < 0:
        return None
    if profile.kind == "Recurring":
        elapsed = elapsed % DAY
    if schedule.duration_s is not None and elapsed >= schedule.duration_s:
        return None
    current = [p for p in schedule.periods if p.start_s <= elapsed][-1]
    return current.limit, schedule.unit, current.phases or 3


def naive_limit(model: list[Installed], t_s: int) -> float | None:
    """Connector 1's limit in W at ``t_s``."""

    def top(ones: list[Installed]) -> tuple[float, str, int] | None:
        running = [(one.profile.stack_level, naive(one, t_s)) for one in ones]
        running = [(level, limit) for level, limit in running if limit is not None]
        return max(running, key=lambda found: found[0])[1] if running else None

    def of(purpose: str, connector: int) -> list[Installed]:
        return [o for o in model if o.profile.purpose == purpose and o.connector_id == connector]

    found = [
        top(of("ChargePointMaxProfile", 0)),
        top(of("TxProfile", 1)) or top(of("TxDefaultProfile", 1)) or top(of("TxDefaultProfile", 0)),
    ]
    limits = [limit for limit in found if limit is not None]
    if not limits:
        return None
    fewest = min(phases for _, _, phases in limits)
    return min(amount * fewest * 230 if unit == "A" else amount for amount, unit, _ in limits)


def limit_at(result: Composite, offset_s: int) -> float | None:
    period = period_at(result.periods, offset_s)
    assert period is not None
    return period.limit


def window(model: list[Installed], unit: str = "W") -> Composite:
    return composite(model, 1, START, LENGTH, unit, transaction_start_ms=TX_START)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(models(), st.lists(INSTANTS, min_size=1, max_size=20))
def test_the_composite_is_at_every_instant_what_the_spec_says(
    model: list[Installed], offsets: list[int]
) -> None:
    result = window(model)
    for offset in offsets:
        expected = naive_limit(model, START // 1000 + offset)
        got = limit_at(result, offset)
        assert (got is None, got) == (expected is None, pytest.approx(expected)), offset


@settings(max_examples=200, deadline=None)
@given(models(), st.lists(INSTANTS, min_size=1, max_size=20))
def test_the_composite_never_exceeds_the_charge_point_maximum(
    model: list[Installed], offsets: list[int]
) -> None:
    result = window(model, "A")
    for offset in offsets:
        t_ms = START + offset * 1000
        charger_max, _ = prevailing(model, 1, t_ms, transaction_start_ms=TX_START)
        if charger_max is None:
            continue
        cap = naive(charger_max, t_ms // 1000)
        period = period_at(result.periods, offset)
        assert cap is not None and period is not None and period.limit is not None
        # In the maximum's own unit, on the phases the composite allows.
        allowed = convert(period.limit, "A", cap[1], period.phases, 230)  # type: ignore[arg-type]
        assert allowed <= convert(cap[0], cap[1], cap[1], period.phases, 230) + 1e-6  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(models(), st.data())
def test_removing_a_profile_never_lowers_the_power_where_nothing_takes_its_place(
    model: list[Installed], data: st.DataObject
) -> None:
    """Removing profile P changes the limit at an instant only where P prevailed in its part
    (the ChargePointMaxProfile; or the Tx / TxDefault one). Where it did not, the limit stays
    what it was; where it did and nothing of its part says anything once it is gone, the
    power allowed can only rise (it can fall where a lower profile shows through: that is
    stacking, not a fault)."""
    if not model:
        return
    gone = data.draw(st.sampled_from(model))
    rest = [one for one in model if one is not gone]
    before, after = window(model), window(rest)
    for offset in data.draw(st.lists(INSTANTS, min_size=1, max_size=20)):
        t_ms = START + offset * 1000
        ruled = prevailing(model, 1, t_ms, transaction_start_ms=TX_START)
        now = prevailing(rest, 1, t_ms, transaction_start_ms=TX_START)
        old, new = limit_at(before, offset), limit_at(after, offset)
        if gone not in ruled:
            assert new == old
        elif now[ruled.index(gone)] is None:
            assert new is None or (old is not None and new >= old - 1e-6)


@st.composite
def period_lists(draw: st.DrawFn) -> list[CompositePeriod]:
    starts = sorted(draw(st.sets(st.integers(1, 100), max_size=12)))
    return [
        CompositePeriod(
            start_s=start,
            limit=draw(st.sampled_from([None, 6.0, 16.0, 32.0])),
            phases=draw(st.sampled_from([1, 3])),
        )
        for start in [0, *starts]
    ]


@given(period_lists())
def test_merging_never_changes_the_limit_at_any_instant(periods: list[CompositePeriod]) -> None:
    merged = merge(periods)
    for offset in range(102):
        one, other = period_at(periods, offset), period_at(merged, offset)
        assert one is not None and other is not None
        assert (one.limit, one.phases) == (other.limit, other.phases)
    assert all((a.limit, a.phases) != (b.limit, b.phases) for a, b in itertools.pairwise(merged))


@given(
    st.floats(0, 1000, allow_nan=False),
    st.integers(1, 3),
    st.floats(100, 400, allow_nan=False),
)
def test_amps_to_watts_and_back_is_the_same_current(
    amps: float, phases: int, voltage: float
) -> None:
    watts = convert(amps, "A", "W", phases, voltage)
    assert convert(watts, "W", "A", phases, voltage) == pytest.approx(amps)
    assert convert(amps, "A", "A", phases, voltage) == amps


@settings(max_examples=100, deadline=None)
@given(models())
def test_the_composite_in_amps_and_in_watts_say_the_same(model: list[Installed]) -> None:
    amps, watts = window(model, "A"), window(model, "W")
    for offset in {p.start_s for p in (*amps.periods, *watts.periods)}:
        one, other = period_at(amps.periods, offset), period_at(watts.periods, offset)
        assert one is not None and other is not None and one.phases == other.phases
        if one.limit is None or other.limit is None:
            assert one.limit is other.limit is None
            continue
        assert convert(one.limit, "A", "W", one.phases, 230) == pytest.approx(other.limit)


def test_a_weeks_composite_of_a_busy_charger_is_fast() -> None:
    import time

    model: list[Installed] = []
    for level in range(4):
        for one in (
            inst(
                0,
                "ChargePointMaxProfile",
                level,
                [(n * 900, 32 - n % 8) for n in range(96)],
                kind="Recurring",
                recurrency="Daily",
                duration=DAY - 3600 * level,
            ),
            inst(
                0,
                "TxDefaultProfile",
                level,
                [(n * 1800, 16 + n % 5) for n in range(48)],
                kind="Recurring",
                recurrency="Daily",
            ),
        ):
            model, _ = install(model, one)
    began = time.perf_counter()
    result = composite(model, 1, MIDNIGHT, 7 * DAY, "W")
    elapsed = time.perf_counter() - began
    assert len(result.periods) >= 7 * 48
    assert elapsed < 0.5, elapsed


# -- the hub's composite against the charger's --------------------------------------------------


def answer(
    start_ms: int, periods: list[tuple[int, float]], *, unit: str = "A", duration: int = HOUR
) -> Composite:
    return Composite(
        start_ms=start_ms,
        duration_s=duration,
        unit=unit,  # type: ignore[arg-type]
        periods=tuple(CompositePeriod(start_s=s, limit=limit, phases=3) for s, limit in periods),
    )


def test_schedules_that_say_the_same_agree_though_their_windows_start_apart() -> None:
    ours = answer(at("10:00:00"), [(0, 16), (1800, 8)])
    # Asked a second later, the charger's window starts a second later: the same wall clock.
    theirs = answer(at("10:00:01"), [(0, 16), (1799, 8.05)])
    assert compare(ours, theirs) == []


def test_a_difference_is_reported_from_where_it_starts_to_where_it_ends() -> None:
    ours = answer(at("10:00:00"), [(0, 16), (1800, 8)])
    theirs = answer(at("10:00:00"), [(0, 16), (600, 6), (1200, 16), (1800, 8)])
    assert compare(ours, theirs) == [
        Difference(start_s=600, end_s=1200, hub=16, charger=6, hub_phases=3, charger_phases=3)
    ]


def test_the_chargers_schedule_converts_into_the_hubs_unit_on_its_phases() -> None:
    ours = answer(at("10:00:00"), [(0, 16)])
    theirs = answer(at("10:00:00"), [(0, 16 * 3 * 230)], unit="W")
    one_phase = Composite(
        start_ms=at("10:00:00"),
        duration_s=HOUR,
        unit="W",
        periods=(CompositePeriod(start_s=0, limit=16 * 230, phases=1),),
    )
    assert compare(ours, theirs) == []
    # The same current on one phase: a third of the power.
    assert compare(ours, one_phase) == [
        Difference(start_s=0, end_s=HOUR, hub=16, charger=16, hub_phases=3, charger_phases=1)
    ]


def test_where_the_hub_knows_no_limit_nothing_differs_and_a_silent_charger_does() -> None:
    unlimited = Composite(
        start_ms=at("10:00:00"),
        duration_s=HOUR,
        unit="A",
        periods=(CompositePeriod(start_s=0, limit=None, phases=3),),
    )
    assert compare(unlimited, answer(at("10:00:00"), [(0, 32)])) == []
    ours = answer(at("10:00:00"), [(0, 16)])
    # The charger's schedule ends after half an hour; the hub's window goes on.
    shorter = answer(at("10:00:00"), [(0, 16)], duration=1800)
    late = answer(at("10:00:00"), [(1800, 16)])
    assert compare(ours, shorter) == []
    assert compare(ours, late) == [
        Difference(start_s=0, end_s=1800, hub=16, charger=None, hub_phases=3, charger_phases=3)
    ]


def test_disagreements_of_a_second_or_two_are_the_clocks_not_the_schedules() -> None:
    ours = answer(at("10:00:00"), [(0, 16), (1800, 8)])
    theirs = answer(at("10:00:00"), [(0, 16), (1802, 8)])
    assert compare(ours, theirs) == []
    assert compare(ours, answer(at("10:00:00"), [(0, 16), (1803, 8)])) == [
        Difference(start_s=1800, end_s=1803, hub=8, charger=16, hub_phases=3, charger_phases=3)
    ]
