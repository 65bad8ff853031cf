"""The supervisor, the projections and the fan-out fold one stream through one charging
domain: for every transaction they must agree on its state, its energy and its cost, to the
cent, every prepaid hold is settled exactly once, and what its wallet paid in all (the
settlement and its adjustments) is the transaction's bill (issue #11).

Hypothesis generates charger behaviour (tests/unit/agreement.py); the examples below pin one
stream per kind of trouble, so each is covered whatever Hypothesis draws.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st

from hub.domain.policy import Policy
from schemas.events import LimitReached, WalletAdjusted, WalletHeld, WalletSettled
from tests.unit.agreement import (
    CHARGERS,
    CONNECTORS,
    TAGS,
    TARIFFS,
    Charger,
    Hub,
    charger_for,
    disagreements,
    unpaid_bills,
)

Op = tuple[Any, ...]

_cp = st.sampled_from(range(len(CHARGERS)))
_connector = st.sampled_from(CONNECTORS)
_offline_id = st.sampled_from((-1, 0))
_never_issued = st.sampled_from((-1, 0, 987_654))

_START = st.tuples(
    st.just("start"),
    _cp,
    _connector,
    st.sampled_from(TAGS),
    st.one_of(st.none(), st.none(), _offline_id),
)
# Readings 5 minutes or more apart: the projections write an ongoing session's version
# at most once per 5 minutes of the charger's time (docs/projections.md), so closer ones
# would leave its row behind the live figures by design.
_METER = st.tuples(
    st.just("meter"), _cp, _connector, st.integers(0, 9_000), st.integers(5, 40), st.booleans()
)
_STOP = st.tuples(st.just("stop"), _cp, _connector)
OPS = st.one_of(
    # A transaction's life more often than trouble.
    _START,
    _START,
    _METER,
    _METER,
    _METER,
    _STOP,
    _STOP,
    st.tuples(st.just("flush"), _cp),
    st.tuples(st.just("retry_start"), _cp, st.booleans()),
    st.tuples(st.just("retry_stop"), _cp),
    st.tuples(st.just("reboot"), _cp, st.integers(1, 8)),
    st.tuples(st.just("reconnect"), _cp),
    st.tuples(st.just("stray"), _cp, _connector, _never_issued, st.integers(0, 3_000)),
    st.tuples(st.just("stray_stop"), _cp, _never_issued),
    st.tuples(
        st.just("tariff"), st.sampled_from(range(len(TARIFFS))), st.sampled_from(("", *CHARGERS))
    ),
    st.tuples(st.just("wait"), st.integers(1, 40)),
)

# Closing ghosts and stale transactions makes the hub end some itself (``terminated``).
POLICIES = st.sampled_from(
    (
        Policy(actions={}),
        Policy(
            stale_after_s=1_800,
            ghost_offline_after_s=1_200,
            actions={"stale": "close_session", "ghost": "close_session"},
        ),
    )
)


def setup(policy: Policy) -> tuple[Hub, list[Charger]]:
    hub = Hub(policy)
    hub.tariff(0)
    hub.wallet("PRE", "40", hold="6")
    hub.wallet("PRE-ALL", "3")
    chargers = [charger_for(hub, cp) for cp in CHARGERS]
    for charger in chargers:
        charger.connect()
        charger.boot()
    return hub, chargers


def run(hub: Hub, chargers: list[Charger], ops: list[Op]) -> None:
    for op in ops:
        kind, args = op[0], op[1:]
        if kind in ("tariff", "wait"):
            if kind == "tariff":
                index, target = args
                hub.tariff(index, target)
            else:
                hub.tick(args[0] * 60)
            hub.clock()
            continue
        charger = chargers[args[0]]
        match kind, args[1:]:
            case "start", (connector, tag, lost):
                charger.start(connector, tag, lost)
            case "meter", (connector, wh, minutes, late):
                charger.meter(connector, wh, minutes, late=late)
            case "stop", (connector,):
                charger.stop(connector)
            case "flush", ():
                charger.flush()
            case "retry_start", (held,):
                charger.retry_start(held=held)
            case "retry_stop", ():
                charger.retry_stop()
            case "reboot", (frames,):
                charger.reboot(frames)
            case "reconnect", ():
                charger.disconnect()
                charger.connect()
            case "stray", (connector, transaction_id, wh):
                charger.stray(connector, transaction_id, wh)
            case "stray_stop", (transaction_id,):
                charger.stray_stop(transaction_id)


@settings(max_examples=300, deadline=None)
@given(policy=POLICIES, ops=st.lists(OPS, min_size=10, max_size=60))
def test_every_consumer_agrees_on_every_transaction(policy: Policy, ops: list[Op]) -> None:
    note(f"ops = {ops!r}")
    hub, chargers = setup(policy)
    run(hub, chargers, ops)
    hub.clock()  # a bill that moved since the last tick is adjusted at the next one
    assert disagreements(hub) == []


def agree(ops: list[Op], policy: Policy | None = None) -> Hub:
    hub, chargers = setup(policy or Policy(actions={}))
    run(hub, chargers, ops)
    hub.clock()
    assert disagreements(hub) == []
    return hub


def sessions(hub: Hub) -> list[tuple[str, str | None, list[str]]]:
    found = hub.projections.domain.sessions.values()
    return [(s.state, s.end_reason, list(s.flags)) for s in found]


def test_offline_ids_and_ids_never_issued() -> None:
    hub = agree(
        [
            # Answers lost: -1 for one transaction, then -1 again for the next, then 0.
            ("start", 0, 1, "POST", -1),
            ("meter", 0, 1, 4_000, 10, False),
            ("stop", 0, 1),
            ("start", 0, 1, "PRE", -1),
            ("meter", 0, 1, 3_000, 10, False),
            ("stop", 0, 1),
            ("start", 0, 2, "POST", 0),
            ("meter", 0, 2, 2_000, 10, False),
            ("stop", 0, 2),
            # Ids nobody issued, with nothing open and with a transaction open.
            ("stray", 1, 1, 987_654, 500),
            ("start", 1, 2, "POST", None),
            ("stray", 1, 2, -1, 700),
            ("stray_stop", 1, 0),
        ]
    )
    # Each Stop ended its own transaction; the readings nobody's id named wait for a start.
    assert sessions(hub) == [
        *[("completed", "stopped", ["unknown_transaction_id"])] * 3,
        ("ongoing", None, ["unknown_transaction_id", "no_start"]),
        ("completed", "stopped", ["unknown_transaction_id"]),
    ]


def test_retries_under_new_ids_across_reconnects_and_reboots() -> None:
    hub = agree(
        [
            ("start", 0, 1, "PRE", None),
            ("retry_start", 0, True),  # the same id: still held
            ("retry_start", 0, False),  # after a reconnect: a second id
            ("meter", 0, 1, 5_000, 10, False),
            ("stop", 0, 1),
            ("reboot", 0, 6),  # the last frames again, byte for byte, Start and Stop too
        ]
    )
    assert sessions(hub) == [("completed", "stopped", ["retransmitted_start"])]


def test_2x_transaction_events_retried_replayed_late_and_out_of_order() -> None:
    cp = CHARGERS.index("CP-3")  # speaks OCPP 2.0.1
    hub = agree(
        [
            ("start", cp, 1, "PRE", None),
            ("retry_start", cp, True),  # the Started again, same seqNo
            ("meter", cp, 1, 4_000, 10, True),  # held back
            ("meter", cp, 1, 3_000, 10, True),
            ("meter", cp, 1, 2_000, 10, False),
            ("stop", cp, 1),
            ("retry_stop", cp),
            ("flush", cp),  # after the end, newest first: into its curve, in their place
            ("reboot", cp, 6),  # the last frames again, byte for byte
            ("start", cp, 2, "POST", -1),  # offline: true
            ("stray", cp, 1, 987_654, 500),  # an Updated whose Started never came
            ("stray_stop", cp, 0),  # an Ended of a transaction never seen
        ]
    )
    found = {
        s.session: (s.state, s.end_reason, s.flags)
        for s in hub.supervisor.charging.state.sessions.values()
    }
    assert found == {
        "CP-3-t1": ("completed", "stopped", []),
        "CP-3-t2": ("ongoing", None, []),
        "CP-3-stray987654-3": ("ongoing", None, ["no_start"]),
        "CP-3-stray0-4": ("completed", "stopped", ["no_start"]),
    }
    (first,) = [s for s in hub.projections.domain.sessions.values() if s.session == "CP-3-t1"]
    assert first.meter_stop == first.meter_start + 9_000
    # Its start, the three readings (the late ones in their place) and its end, each once.
    assert [value for _, value in first.points] == [
        first.meter_start + wh for wh in (0, 4_000, 7_000, 9_000, 9_000)
    ]


def test_late_and_out_of_order_meter_values() -> None:
    agree(
        [
            ("start", 0, 1, "PRE", None),
            ("meter", 0, 1, 2_000, 10, True),
            ("meter", 0, 1, 3_000, 10, True),
            ("meter", 0, 1, 1_000, 10, False),
            ("flush", 0),  # newest first
            ("meter", 0, 1, 2_500, 10, True),
            ("start", 0, 1, "POST", None),  # supersedes it; its reading comes after
            ("flush", 0),
            ("stop", 0, 1),
        ]
    )


def test_a_new_start_on_a_busy_connector_and_stop_retries() -> None:
    hub = agree(
        [
            ("start", 1, 1, "PRE", None),
            ("meter", 1, 1, 3_000, 10, False),
            ("start", 1, 1, "PRE", None),  # its Stop got lost
            ("meter", 1, 1, 3_000, 10, False),
            ("stop", 1, 1),
            ("retry_stop", 1),
            ("wait", 5),
            ("retry_stop", 1),
        ]
    )
    assert [(state, reason) for state, reason, _ in sessions(hub)] == [
        ("terminated", "superseded"),
        ("completed", "stopped"),
    ]


def test_tariff_changes_mid_stream_and_prepaid_wallets() -> None:
    hub = agree(
        [
            ("tariff", 2, ""),  # time-of-day band from 18:00
            ("start", 0, 1, "PRE", None),
            ("tariff", 1, "CP-1"),
            ("start", 0, 2, "PRE-ALL", None),  # the whole balance held: a cost limit of 3
            ("meter", 0, 2, 9_000, 20, False),
            ("meter", 0, 1, 6_000, 40, False),
            ("wait", 40),
            ("tariff", 3, ""),
            ("meter", 0, 1, 8_000, 40, False),
            ("stop", 0, 2),
            ("stop", 0, 1),
        ],
        Policy(stale_after_s=1_800, actions={"stale": "close_session"}),
    )
    held = [e for e in hub.events if isinstance(e, WalletHeld)]
    settled = [e for e in hub.events if isinstance(e, WalletSettled)]
    assert len(held) == len(settled) == 2
    assert [e.limit for e in hub.events if isinstance(e, LimitReached)] == ["cost"]


def test_a_bill_that_moves_after_its_settlement_is_adjusted_to_the_cent() -> None:
    hub = agree(
        [
            ("start", 0, 1, "PRE", None),
            ("wait", 31),  # no readings: the policy closes it as stale, and it is settled
            ("meter", 0, 1, 1_000, 5, False),  # the charger was charging all along
            ("meter", 0, 1, 2_000, 5, False),
            ("wait", 1),  # one adjustment for both readings, at the tick
            ("meter", 0, 1, 1_500, 5, True),
            ("stop", 0, 1),  # a corrected end: adjusted at once, reading and all
            ("flush", 0),  # its reading came after its Stop: at the next tick
        ],
        Policy(stale_after_s=1_800, actions={"stale": "close_session"}),
    )
    assert len([e for e in hub.events if isinstance(e, WalletSettled)]) == 1
    adjusted = [e for e in hub.events if isinstance(e, WalletAdjusted)]
    assert [type(hub.events[e.cause_seq - 1]).__name__ for e in adjusted] == [
        "ClockTick",
        "OcppFrame",
        "ClockTick",
    ]
    # The Stop's end moved the time billed back a little: money goes both ways.
    assert [e.amount for e in adjusted] == ["1.3108", "0.5205", "-0.0100"]
    assert unpaid_bills(hub) == []
