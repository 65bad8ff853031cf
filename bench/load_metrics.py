"""The load-management benchmark's figures, from what the cars drew and what the stream holds:
pure functions, tested in tests/unit/test_load_metrics.py.

Ground truth is the simulator's own record of every car's draw, second by second (a
``DrawRecord`` each); the site's limits over time are the benchmark's (it set them). Per node
and phase, the load is the sum of the draws of the cars below it (a three-phase car on L1,
L2 and L3, a one-phase car on L1: where the allocator counts it), the demand the sum of what
they wanted.
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

VOLTAGE: Final = 230.0
PHASES: Final = ("L1", "L2", "L3")
# A car drawing this much less than it wants is held back by its limit (not by its battery).
CONSTRAINED_MARGIN_A: Final = 0.5
MAX_LISTED: Final = 100
# At or under its limit this long in a row, a node has settled after a change.
HOLD_S: Final = 10


@dataclass(frozen=True, slots=True)
class Second:
    """One car's second, as the metrics need it."""

    at_s: int
    charge_point_id: str
    wanted_a: float
    drawn_a: float
    phases: int


@dataclass(frozen=True, slots=True)
class LimitTimeline:
    """A node's limit in A per phase: ``changes`` is (from second, limit), in time order."""

    changes: tuple[tuple[int, float], ...]

    def at(self, t_s: int) -> float:
        index = bisect.bisect_right([c[0] for c in self.changes], t_s) - 1
        return self.changes[max(index, 0)][1]


def seconds_by_car(records: Iterable[Second]) -> dict[int, dict[str, Second]]:
    """Every second's cars, the last record of a car in a second counting; a car's tick that
    slipped past a second boundary leaves a one-second gap, filled with the second before."""
    by_second: dict[int, dict[str, Second]] = defaultdict(dict)
    for record in records:
        by_second[record.at_s][record.charge_point_id] = record
    if not by_second:
        return {}
    for t_s in range(min(by_second), max(by_second) + 1):
        before, after = by_second.get(t_s - 1, {}), by_second.get(t_s + 1, {})
        for cp, record in before.items():
            if cp not in by_second[t_s] and cp in after:
                by_second[t_s][cp] = Second(t_s, cp, record.wanted_a, record.drawn_a, record.phases)
    return {t_s: cars for t_s, cars in by_second.items() if cars}


def _phases(phases: int) -> tuple[str, ...]:
    return PHASES if phases >= 3 else ("L1",)


def node_series(
    by_second: Mapping[int, Mapping[str, Second]],
    paths: Mapping[str, Sequence[str]],
    node_id: str,
    seconds: Sequence[int],
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Per second of ``seconds``: the node's load and demand per phase."""
    loads: list[dict[str, float]] = []
    demands: list[dict[str, float]] = []
    for t_s in seconds:
        load = dict.fromkeys(PHASES, 0.0)
        demand = dict.fromkeys(PHASES, 0.0)
        for cp, second in by_second.get(t_s, {}).items():
            if node_id not in paths.get(cp, ()):
                continue
            for phase in _phases(second.phases):
                load[phase] += second.drawn_a
                demand[phase] += second.wanted_a
        loads.append(load)
        demands.append(demand)
    return loads, demands


def settling_s(overs: Sequence[bool], start: int, end: int, hold_s: int = HOLD_S) -> int:
    """Seconds from ``start`` until the node is at or under its limit for ``hold_s`` seconds
    in a row (or up to ``end``, exclusive, if that comes first); ``end - start`` if it never
    is. A later blip (a car arriving) is no longer the change's: it counts as time above."""
    run = 0
    for t in range(start, end):
        run = 0 if overs[t] else run + 1
        if run >= hold_s or (run and t == end - 1):
            return t - run + 1 - start
    return end - start


def node_figures(
    loads: Sequence[Mapping[str, float]],
    demands: Sequence[Mapping[str, float]],
    limits: Sequence[float],
    change_indices: Sequence[int],
    settle_window_s: int,
    room: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """Time and energy above the limit (outside the settling windows after each change, and
    in all), the settling time after each change, and utilisation while demand exceeds it:
    ``utilisation`` over the seconds the node itself binds (``room``: every node above it
    could have given more, default always), ``utilisation_all`` over every such second (a
    node below a full one cannot fill up: its parent's share is fair to all cars)."""
    count = len(loads)
    excess = [
        max(0.0, max(load.values()) - limit) for load, limit in zip(loads, limits, strict=True)
    ]
    overs = [e > 1e-6 for e in excess]
    excess_wh = [
        sum(max(0.0, value - limit) for value in load.values()) * VOLTAGE / 3600.0
        for load, limit in zip(loads, limits, strict=True)
    ]
    settling = set()
    for index in change_indices:
        settling.update(range(index, min(count, index + settle_window_s)))
    outside = [i for i in range(count) if i not in settling]
    bounds = [*change_indices, count]
    settle_times = [settling_s(overs, start, end) for start, end in itertools.pairwise(bounds)]
    busy = [i for i in outside if max(demands[i].values()) > limits[i] + 1e-6]

    def used(seconds: Sequence[int]) -> float | None:
        shares = [
            min(max(loads[i].values()), limits[i]) / limits[i] for i in seconds if limits[i] > 0
        ]
        return round(statistics.fmean(shares), 4) if shares else None

    binding = [i for i in busy if room is None or room[i]]
    return {
        "seconds": count,
        "over_s": sum(overs[i] for i in outside),
        # When (seconds into the run), to tell a start-up or an arrival from a steady leak.
        "over_at_s": [i for i in outside if overs[i]][:MAX_LISTED],
        "over_wh": round(sum(excess_wh[i] for i in outside), 1),
        "over_s_all": sum(overs),
        "over_wh_all": round(sum(excess_wh), 1),
        "max_excess_a": round(max(excess, default=0.0), 1),
        "max_excess_a_outside": round(max((excess[i] for i in outside), default=0.0), 1),
        "settling_s": settle_times,
        "demand_exceeds_s": len(busy),
        "binding_s": len(binding),
        "utilisation": used(binding),
        "utilisation_all": used(busy),
        "mean_load_a": round(statistics.fmean(max(load.values()) for load in loads), 1)
        if loads
        else 0.0,
    }


def jain(values: Sequence[float]) -> float | None:
    """Jain's fairness index: 1 when all are equal, 1/n when one has everything."""
    total, squares = sum(values), sum(v * v for v in values)
    if len(values) < 2 or squares <= 0:
        return None
    return total * total / (len(values) * squares)


def fairness(
    by_second: Mapping[int, Mapping[str, Second]],
    groups: Mapping[str, str],
    seconds: Sequence[int],
) -> dict[str, Any]:
    """Jain's index among the cars held back by their limits, per second and per group of
    equal-priority cars sharing a node (``groups``: charger → its node), weighted by cars;
    ``admitted`` counts only the cars drawing something, ``all`` the waiting ones too."""
    weighted = {"all": [0.0, 0], "admitted": [0.0, 0]}
    waiting = constrained = 0
    for t_s in seconds:
        by_group: dict[str, list[float]] = defaultdict(list)
        for cp, second in by_second.get(t_s, {}).items():
            if second.drawn_a < second.wanted_a - CONSTRAINED_MARGIN_A:
                by_group[groups.get(cp, "")].append(second.drawn_a)
        for draws in by_group.values():
            constrained += len(draws)
            waiting += sum(1 for d in draws if d <= 0.0)
            for key, values in (("all", draws), ("admitted", [d for d in draws if d > 0])):
                index = jain(values)
                if index is not None:
                    weighted[key][0] += index * len(values)
                    weighted[key][1] += len(values)
    return {
        "jain_all": round(weighted["all"][0] / weighted["all"][1], 4)
        if weighted["all"][1]
        else None,
        "jain_admitted": (
            round(weighted["admitted"][0] / weighted["admitted"][1], 4)
            if weighted["admitted"][1]
            else None
        ),
        "constrained_car_s": constrained,
        "waiting_car_s": waiting,
    }


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "n": len(ordered),
        "p50_ms": round(pick(0.50), 1),
        "p99_ms": round(pick(0.99), 1),
        "max_ms": round(ordered[-1], 1),
    }


def _is_profile_call(event: Mapping[str, Any]) -> bool:
    return (
        event.get("type") == "ocpp.frame"
        and event.get("direction") == "out"
        and event.get("message_type") == "CALL"
        and event.get("action") == "SetChargingProfile"
    )


def cause_kind(event: Mapping[str, Any] | None) -> str:
    """What an event is, as a cause: an OCPP action (``MeterValues``) or an event type."""
    if event is None:
        return "unknown"
    if event.get("type") == "ocpp.frame":
        return str(event.get("action") or "ocpp.frame")
    return str(event.get("type") or "unknown")


def cause_to_profile_ms(events: Mapping[int, Mapping[str, Any]]) -> dict[str, list[float]]:
    """For every ``allocation.decided`` that sent a profile: from the event that caused it
    (``cause_seq``) stored to the SetChargingProfile CALL stored (its unique id is the
    decision's ``command_id``), in ms of the hub's clock, by what the cause was
    (``MeterValues``, ``StartTransaction``, ``admin.site.limit.set``, ...)."""
    calls = {
        event.get("unique_id"): event["received_at"]
        for event in events.values()
        if _is_profile_call(event)
    }
    latencies: dict[str, list[float]] = defaultdict(list)
    for event in events.values():
        if event.get("type") != "allocation.decided":
            continue
        command_id = event.get("command_id") or ""
        cause = events.get(int(event.get("cause_seq") or 0))
        if not command_id or command_id not in calls or cause is None:
            continue
        latencies[cause_kind(cause)].append(float(calls[command_id] - cause["received_at"]))
    return dict(latencies)


def profile_calls(events: Mapping[int, Mapping[str, Any]]) -> int:
    """SetChargingProfile CALLs the hub sent."""
    return sum(1 for event in events.values() if _is_profile_call(event))
