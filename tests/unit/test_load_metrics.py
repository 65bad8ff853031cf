"""The load-management benchmark's figures (bench/load_metrics.py), on hand-made seconds."""

from __future__ import annotations

import pytest

from bench.load_metrics import (
    LimitTimeline,
    Second,
    cause_to_profile_ms,
    fairness,
    jain,
    node_figures,
    node_series,
    percentiles,
    seconds_by_car,
    settling_s,
)


def loads(*values: float) -> list[dict[str, float]]:
    return [{"L1": v, "L2": v, "L3": v} for v in values]


def test_time_and_energy_above_the_limit_leave_out_the_settling_window() -> None:
    # Limit 100 A; a change at second 2 with a 2 s settling window: 2 and 3 do not count.
    load = loads(90, 100, 130, 110, 100, 105)
    figures = node_figures(load, loads(200, 200, 200, 200, 200, 200), [100.0] * 6, [2], 2)
    assert figures["over_s"] == 1  # second 5
    assert figures["over_wh"] == pytest.approx(3 * 5 * 230 / 3600, abs=0.1)
    assert figures["over_s_all"] == 3
    assert figures["max_excess_a"] == 30.0
    assert figures["max_excess_a_outside"] == 5.0
    # Over again at the end: it never settled after the change.
    assert figures["settling_s"] == [4]


def test_settling_is_the_time_until_the_node_holds_under_its_limit() -> None:
    overs = [False, True, True, False, True, False, False]
    assert settling_s(overs, 1, 7, hold_s=2) == 4
    assert settling_s(overs, 1, 7, hold_s=1) == 2
    assert settling_s(overs, 5, 7) == 0
    assert settling_s([True, True], 0, 2) == 2
    # A blip long after it settled is not the change's.
    assert settling_s([True] * 3 + [False] * 12 + [True] + [False] * 3, 0, 19) == 3


def test_utilisation_counts_only_seconds_when_demand_exceeds_the_limit() -> None:
    figures = node_figures(
        loads(50, 95, 100, 120),
        loads(60, 150, 150, 150),
        [100.0] * 4,
        [],
        30,
    )
    # Second 0 wants less than the limit; the others count, an overshoot as full.
    assert figures["demand_exceeds_s"] == 3
    assert figures["utilisation"] == pytest.approx((0.95 + 1.0 + 1.0) / 3, abs=1e-4)
    # Below a full parent (no room at second 1), only the seconds it binds count.
    below = node_figures(
        loads(50, 95, 100, 120),
        loads(60, 150, 150, 150),
        [100.0] * 4,
        [],
        30,
        room=[True, False, True, True],
    )
    assert (below["binding_s"], below["utilisation"]) == (2, 1.0)
    assert below["utilisation_all"] == figures["utilisation"]


def test_a_one_phase_car_loads_l1_and_nodes_sum_their_cars() -> None:
    seconds = seconds_by_car(
        [
            Second(10, "A", 32, 20, 3),
            Second(10, "B", 16, 16, 1),
            Second(10, "C", 32, 10, 3),
        ]
    )
    paths = {"A": ["feeder", "grid"], "B": ["feeder", "grid"], "C": ["grid"]}
    load, demand = node_series(seconds, paths, "feeder", [10])
    assert load == [{"L1": 36.0, "L2": 20.0, "L3": 20.0}]
    assert demand == [{"L1": 48.0, "L2": 32.0, "L3": 32.0}]
    grid, _ = node_series(seconds, paths, "grid", [10, 11])
    assert grid == [{"L1": 46.0, "L2": 30.0, "L3": 30.0}, {"L1": 0.0, "L2": 0.0, "L3": 0.0}]


def test_a_tick_that_slipped_a_second_is_filled_with_the_one_before() -> None:
    seconds = seconds_by_car([Second(1, "A", 32, 8, 3), Second(3, "A", 32, 9, 3)])
    assert seconds[2]["A"].drawn_a == 8
    # A car that left is not filled in.
    assert 4 not in seconds_by_car([Second(3, "A", 32, 9, 3), Second(5, "B", 32, 9, 3)])


def test_limit_timeline() -> None:
    timeline = LimitTimeline(((100, 289.9), (300, 217.4), (500, 289.9)))
    assert [timeline.at(t) for t in (100, 299, 300, 499, 500, 900)] == [
        289.9,
        289.9,
        217.4,
        217.4,
        289.9,
        289.9,
    ]


def test_jain_and_fairness_among_held_back_cars() -> None:
    assert jain([10, 10, 10]) == pytest.approx(1.0)
    assert jain([30, 0, 0]) == pytest.approx(1 / 3)
    assert jain([5]) is None
    seconds = seconds_by_car(
        [
            Second(1, "A", 32, 10, 3),
            Second(1, "B", 32, 10, 3),
            Second(1, "C", 32, 0, 3),  # waiting
            Second(1, "D", 8, 8, 3),  # takes what it wants: not held back
            Second(1, "E", 32, 20, 3),  # alone on its node
        ]
    )
    groups = {"A": "f", "B": "f", "C": "f", "D": "f", "E": "g"}
    figures = fairness(seconds, groups, [1])
    assert figures["jain_admitted"] == pytest.approx(1.0)
    assert figures["jain_all"] == pytest.approx(2 / 3, abs=1e-4)
    assert (figures["constrained_car_s"], figures["waiting_car_s"]) == (4, 1)


def test_latency_from_the_cause_to_the_profile_follows_cause_seq_and_command_id() -> None:
    events = {
        5: {"type": "ocpp.frame", "action": "MeterValues", "direction": "in", "received_at": 1000},
        6: {
            "type": "allocation.decided",
            "reason": "meter",
            "cause_seq": 5,
            "command_id": "c1",
        },
        7: {
            "type": "ocpp.frame",
            "action": "SetChargingProfile",
            "direction": "out",
            "message_type": "CALL",
            "unique_id": "c1",
            "received_at": 1042,
        },
        8: {"type": "allocation.decided", "reason": "meter", "cause_seq": 5, "command_id": ""},
        9: {"type": "allocation.decided", "reason": "start", "cause_seq": 4, "command_id": "c1"},
        4: {"type": "ocpp.frame", "action": "StartTransaction", "received_at": 1030},
        10: {"type": "allocation.decided", "reason": "limit", "cause_seq": 3, "command_id": "c1"},
    }
    assert cause_to_profile_ms(events) == {"MeterValues": [42.0], "StartTransaction": [12.0]}
    assert percentiles([42.0]) == {"n": 1, "p50_ms": 42.0, "p99_ms": 42.0, "max_ms": 42.0}
    assert percentiles([])["p50_ms"] is None
