"""The site allocator: worked examples, and properties over random sites and fleets."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain.allocation import (
    Allocation,
    Demand,
    Node,
    NodeLimit,
    Sent,
    Site,
    allocate,
    changes,
    load_by_node,
    raises_that_fit,
    small_raises_that_add_up,
)

EPSILON = 1e-6


def site(*nodes: tuple[str, float, str]) -> Site:
    return Site(
        nodes={
            node_id: Node(node_id=node_id, limit=NodeLimit(amount=amps), parent=parent)
            for node_id, amps, parent in nodes
        }
    )


def car(name: str, node: str = "grid", **fields: object) -> Demand:
    return Demand(connector=(name, 1), node_id=node, **fields)  # type: ignore[arg-type]


def limits(allocations: Sequence[Allocation]) -> dict[str, float]:
    return {a.connector[0]: round(a.limit_a, 2) for a in allocations}


def test_cars_share_a_node_equally() -> None:
    assert limits(allocate(site(("grid", 63, "")), [car("A"), car("B"), car("C")])) == {
        "A": 21.0,
        "B": 21.0,
        "C": 21.0,
    }


def test_no_car_is_offered_more_than_it_can_take() -> None:
    assert limits(allocate(site(("grid", 100, "")), [car("A"), car("B", max_a=16)])) == {
        "A": 32.0,
        "B": 16.0,
    }


def test_what_a_car_does_not_draw_goes_to_the_others() -> None:
    """Offered 20 A, drawing 10 A: it gets its draw and a margin, B the rest."""
    cars = [car("A", offered_a=20.0, drawn_a=10.0), car("B", offered_a=20.0, drawn_a=19.5)]
    assert limits(allocate(site(("grid", 40, "")), cars)) == {"A": 12.0, "B": 28.0}


def test_a_feeder_limits_the_cars_below_it_and_the_rest_take_the_difference() -> None:
    tree = site(("grid", 100, ""), ("feeder", 30, "grid"))
    cars = [car("F1", "feeder"), car("F2", "feeder"), car("G1"), car("G2")]
    assert limits(allocate(tree, cars)) == {"F1": 15.0, "F2": 15.0, "G1": 32.0, "G2": 32.0}


def test_one_phase_cars_load_l1_only() -> None:
    """Two one-phase cars fill L1; the three-phase car is held by L1 too, and no more."""
    cars = [car("P1", phases=1), car("P2", phases=1), car("T")]
    allocated = allocate(site(("grid", 48, "")), cars)
    assert limits(allocated) == {"P1": 16.0, "P2": 16.0, "T": 16.0}
    load = load_by_node(site(("grid", 48, "")), cars, {a.connector: a.limit_a for a in allocated})
    assert load["grid"] == {"L1": 48.0, "L2": 16.0, "L3": 16.0}


def test_a_limit_in_watts_is_amps_per_phase() -> None:
    grid = Site(nodes={"grid": Node(node_id="grid", limit=NodeLimit(amount=22_080, unit="W"))})
    # 22,080 W over three phases of 230 V: 32 A per phase.
    assert limits(allocate(grid, [car("A", max_a=63), car("B", max_a=63)])) == {
        "A": 16.0,
        "B": 16.0,
    }


def test_when_minimums_do_not_fit_the_earliest_keep_charging() -> None:
    cars = [car(f"C{i}", started_at=1_000 - i) for i in range(4)]  # C3 started first
    allocated = allocate(site(("grid", 20, "")), cars)
    assert limits(allocated) == {"C0": 0.0, "C1": 6.6, "C2": 6.6, "C3": 6.6}
    assert [a.admitted for a in allocated] == [False, True, True, True]


def test_higher_priority_is_filled_first() -> None:
    cars = [car("LOW"), car("HIGH", priority=1)]
    assert limits(allocate(site(("grid", 40, "")), cars)) == {"LOW": 8.0, "HIGH": 32.0}


def test_the_benchmarks_site_shares_its_connection_at_the_minimum() -> None:
    """50 cars of 32 A behind 200 kW: 290 A a phase; 48 minimums fit, 2 cars wait."""
    grid = Site(nodes={"grid": Node(node_id="grid", limit=NodeLimit(amount=200_000, unit="W"))})
    cars = [car(f"C{i:02}", started_at=i) for i in range(50)]
    allocated = allocate(grid, cars)
    assert sum(not a.admitted for a in allocated) == 2
    # 6.04 A each, offered as 6.0 (OCPP's tenths, rounded down).
    assert {a.limit_a for a in allocated if a.admitted} == {6.0}


# -- changes ----------------------------------------------------------------------------------


def allocation(limit: float) -> Allocation:
    return Allocation(connector=("A", 1), limit_a=limit, admitted=True, wants_a=32.0)


@pytest.mark.parametrize(
    ("last", "new", "now", "sent"),
    [
        (None, 16.0, 0, True),  # never told anything
        (16.0, 10.0, 1_000, True),  # lower: at once, however recent the last word
        (16.0, 16.5, 60_000, False),  # within the hysteresis
        (16.0, 20.0, 5_000, False),  # up, but too soon
        (16.0, 20.0, 10_000, True),  # up, and late enough
    ],
)
def test_which_changes_are_sent(last: float | None, new: float, now: int, sent: bool) -> None:
    before = {} if last is None else {("A", 1): Sent(limit_a=last, at=0)}
    assert bool(changes([allocation(new)], before, now)) is sent


def test_a_car_that_draws_up_to_its_cap_again_is_raised_at_once() -> None:
    """Held at its draw and a margin, it now draws all it may: no waiting for the interval
    (the hysteresis still counts)."""
    before = {("A", 1): Sent(limit_a=10.0, at=0)}
    assert changes([allocation(20.0)], before, 1_000, prompt={("A", 1)})
    assert not changes([allocation(20.0)], before, 1_000)
    assert not changes([allocation(10.5)], before, 1_000, prompt={("A", 1)})


def test_small_raises_go_when_together_they_add_up_to_the_hysteresis() -> None:
    """A car left room to the cars below the feeder and the grid: 0.6 A and 0.5 A each, none
    worth a message alone, together worth sending (one told something too recently waits)."""
    tree = site(("grid", 100, ""), ("feeder", 40, "grid"))
    cars = [car(f"F{n}", "feeder") for n in range(4)] + [car("G")]
    sent = {c.connector: Sent(limit_a=9.4, at=0) for c in cars}
    sent[("F3", 1)] = Sent(limit_a=9.4, at=15_000)
    raised = [
        Allocation(connector=c.connector, limit_a=10.0 if c.node_id == "feeder" else 9.9,
                   admitted=True, wants_a=32.0)
        for c in cars
    ]  # fmt: skip
    due = small_raises_that_add_up(tree, cars, raised, sent, 20_000)
    assert sorted(name for name, _ in due) == ["F0", "F1", "F2", "G"]
    # Alone, 0.6 A is not enough.
    assert not small_raises_that_add_up(tree, cars[:1], raised[:1], sent, 20_000)
    assert not small_raises_that_add_up(tree, cars[-1:], raised[-1:], sent, 20_000)


def test_a_raise_waits_until_the_cuts_that_make_room_for_it_take_effect() -> None:
    """A had the 40 A node to itself (32 A); B arrives and each gets 20 A. Until A's charger
    has applied its cut, A may still draw 32 A: B's 20 A would put the node at 52 A."""
    grid = site(("grid", 40, ""))
    cars = [car("A"), car("B")]
    allocated = allocate(grid, cars)
    assert limits(allocated) == {"A": 20.0, "B": 20.0}
    raise_b = [a for a in allocated if a.connector == ("B", 1)]

    def fits(a_may_draw: float, b_may_draw: float = 0.0) -> list[float]:
        ceilings = {("A", 1): a_may_draw, ("B", 1): b_may_draw}
        return [a.limit_a for a in raises_that_fit(grid, cars, ceilings, raise_b)]

    assert fits(20.0) == [20.0]
    # B is not charging yet: it starts with what fits, if that is at least its minimum.
    assert fits(32.0) == [8.0]
    assert fits(35.0) == []
    # A car that charges already gets its raise whole, or waits.
    assert fits(25.0, 10.0) == []
    assert fits(20.0, 10.0) == [20.0]


def test_raises_fit_in_order_each_counting_those_before() -> None:
    grid = site(("grid", 40, ""), ("feeder", 16, "grid"))
    cars = [car("A", "feeder"), car("B", "feeder", phases=1), car("C")]
    raises = [
        Allocation(connector=(name, 1), limit_a=10.0, admitted=True, wants_a=32.0)
        for name in ("A", "B", "C")
    ]
    fitting = raises_that_fit(grid, cars, {}, raises)
    # B gets only the 6 A left on the feeder's L1 next to A (its minimum: enough to start);
    # C fits on the grid.
    assert limits(fitting) == {"A": 10.0, "B": 6.0, "C": 10.0}


# -- properties -------------------------------------------------------------------------------


@st.composite
def sites_and_cars(draw: st.DrawFn) -> tuple[Site, list[Demand]]:
    count = draw(st.integers(1, 5))
    nodes = {"n0": Node(node_id="n0", limit=NodeLimit(amount=draw(st.floats(0, 400))))}
    for index in range(1, count):
        parent = f"n{draw(st.integers(0, index - 1))}"
        amps = draw(st.floats(0, 200))
        nodes[f"n{index}"] = Node(node_id=f"n{index}", limit=NodeLimit(amount=amps), parent=parent)
    cars = []
    for index in range(draw(st.integers(0, 30))):
        min_a = draw(st.sampled_from([0.0, 6.0, 8.0]))
        offered = draw(st.none() | st.floats(0, 63))
        cars.append(
            Demand(
                connector=(f"CP-{index}", draw(st.integers(1, 2))),
                node_id=f"n{draw(st.integers(0, count - 1))}",
                phases=draw(st.sampled_from([1, 3])),
                min_a=min_a,
                max_a=draw(st.floats(min_a, 63)),
                priority=draw(st.integers(0, 2)),
                started_at=draw(st.integers(0, 10)),
                offered_a=offered,
                drawn_a=None if offered is None else draw(st.floats(0, 63)),
            )
        )
    unique = {c.connector: c for c in cars}
    return Site(nodes=nodes), list(unique.values())


@settings(max_examples=150, deadline=None)
@given(sites_and_cars())
def test_no_node_is_offered_more_than_its_limit(case: tuple[Site, list[Demand]]) -> None:
    tree, cars = case
    allocated = allocate(tree, cars)
    load = load_by_node(tree, cars, {a.connector: a.limit_a for a in allocated})
    for node_id, node in tree.nodes.items():
        for amps in load[node_id].values():
            assert amps <= node.limit.amps_per_phase + EPSILON


@settings(max_examples=150, deadline=None)
@given(sites_and_cars())
def test_each_car_gets_its_minimum_or_nothing_and_never_more_than_it_can_use(
    case: tuple[Site, list[Demand]],
) -> None:
    tree, cars = case
    for demand, given_a in zip(cars, allocate(tree, cars), strict=True):
        if given_a.admitted:
            assert demand.min_a - 0.1 <= given_a.limit_a <= demand.wants_a + EPSILON
        else:
            assert given_a.limit_a == 0.0


@settings(max_examples=150, deadline=None)
@given(sites_and_cars())
def test_no_power_is_left_that_a_car_could_take(case: tuple[Site, list[Demand]]) -> None:
    """Work-conserving: a car below what it can use is blocked by a full node phase (full
    but for the tenths of an ampere each car's limit is rounded down by)."""
    tree, cars = case
    allocated = allocate(tree, cars)
    load = load_by_node(tree, cars, {a.connector: a.limit_a for a in allocated})
    rounding = load_by_node(tree, cars, {a.connector: 0.1 for a in allocated if a.admitted})
    for demand, given_a in zip(cars, allocated, strict=True):
        if given_a.admitted and given_a.limit_a < demand.wants_a - 0.1:
            assert any(
                load[node][phase]
                >= tree.nodes[node].limit.amps_per_phase - rounding[node][phase] - 1e-6
                for node in tree.path(demand.node_id)
                for phase in demand.used_phases
            ), demand


@settings(max_examples=150, deadline=None)
@given(sites_and_cars())
def test_equal_cars_get_equal_shares(case: tuple[Site, list[Demand]]) -> None:
    """Two admitted cars alike in node, phases, minimum and priority get the same limit,
    unless the smaller is all the one can use."""
    tree, cars = case
    allocated = allocate(tree, cars)
    for (one, a), (other, b) in zip(
        zip(cars, allocated, strict=True), zip(cars[1:], allocated[1:], strict=True), strict=False
    ):
        alike = (one.node_id, one.phases, one.min_a, one.priority) == (
            other.node_id,
            other.phases,
            other.min_a,
            other.priority,
        )
        if alike and a.admitted and b.admitted:
            low, high = sorted([(a.limit_a, one), (b.limit_a, other)], key=lambda x: x[0])
            assert high[0] - low[0] < 0.1 + 1e-6 or low[0] >= low[1].wants_a - 0.1


@settings(max_examples=150, deadline=None)
@given(sites_and_cars(), st.data())
def test_raises_that_fit_keep_every_node_within_its_limit_while_cuts_are_in_flight(
    case: tuple[Site, list[Demand]], data: st.DataObject
) -> None:
    """Every car counted at the most it may draw (its ceiling: a cut not yet in effect
    counts at the limit before it), the raises that fit never take a node phase over its
    limit; and once every cut has taken effect (each ceiling at most its new limit), every
    raise fits: nothing waits for ever."""
    tree, cars = case
    allocated = allocate(tree, cars)
    ceilings = {
        c.connector: data.draw(st.sampled_from([0.0, a.limit_a, a.limit_a + 5.0]))
        for c, a in zip(cars, allocated, strict=True)
    }
    raises = [a for a in allocated if a.limit_a > ceilings[a.connector]]
    fitting = raises_that_fit(tree, cars, ceilings, raises)
    before = load_by_node(tree, cars, ceilings)
    after = load_by_node(tree, cars, {**ceilings, **{a.connector: a.limit_a for a in fitting}})
    for node_id, node in tree.nodes.items():
        for phase, amps in after[node_id].items():
            limit = node.limit.amps_per_phase
            assert amps <= max(limit, before[node_id][phase]) + EPSILON
    settled = {a.connector: min(ceilings[a.connector], a.limit_a) for a in allocated}
    waiting = [a for a in allocated if a.limit_a > settled[a.connector]]
    assert raises_that_fit(tree, cars, settled, waiting) == waiting


@settings(max_examples=100, deadline=None)
@given(sites_and_cars())
def test_the_split_does_not_depend_on_the_order_cars_are_listed(
    case: tuple[Site, list[Demand]],
) -> None:
    tree, cars = case
    forward = {a.connector: a.limit_a for a in allocate(tree, cars)}
    backward = {a.connector: a.limit_a for a in allocate(tree, cars[::-1])}
    assert forward == pytest.approx(backward)
