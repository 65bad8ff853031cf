"""Site load management in the supervisor's pure core: sites from admin events, the split
and the profiles that carry it, the safety cases, and the same decisions on a replay."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hub.domain.facts import Sample
from hub.domain.load import drawn_a
from hub.domain.policy import Policy
from hub.domain.sites import Invalid, Sites, check_assignment, check_node, daily_limit
from hub.supervisor import snapshot
from hub.supervisor.core import Intent, Supervisor
from schemas.events import (
    AllocationDecided,
    AnomalyDetected,
    AnomalyResolved,
    ChargerDisconnected,
    CommandFinished,
    CommandRequested,
    DailyLimit,
    SiteConnectorAssigned,
    SiteLimitSet,
    SiteNodeSet,
)
from tests.unit.supervisor_stream import T0, Stream, iso

CPS = ("CP-1", "CP-2", "CP-3")


def site(stream: Stream, node: str = "site", limit: float = 40.0, **fields: Any) -> None:
    stream.add(
        SiteNodeSet(
            id=f"node-{node}-{stream.now}", received_at=stream.now, actor="t", node_id=node,
            limit=limit, **fields,
        )
    )  # fmt: skip


def assign(stream: Stream, cp: str, node: str = "site", **fields: Any) -> None:
    stream.add(
        SiteConnectorAssigned(
            id=f"assign-{cp}", received_at=stream.now, actor="t", charge_point_id=cp,
            connector_id=1, node_id=node, **fields,
        )
    )  # fmt: skip


def live(stream: Stream, limit: float | None, at: int, node: str = "site") -> list[Intent]:
    return stream.add(
        SiteLimitSet(id=f"live-{at}", received_at=at, actor="t", node_id=node, limit=limit)
    )


def answer(stream: Stream, intents: list[Intent], status: str = "Accepted") -> list[Intent]:
    """What the shell does with each profile: store its request, then the charger's answer."""
    made: list[Intent] = []
    for intent in intents:
        command = intent.command
        if command is None or command.action != "SetChargingProfile":
            continue
        fields = {
            "received_at": stream.now,
            "actor": "supervisor",
            "command_id": command.command_id,
            "charge_point_id": command.charge_point_id,
            "action": command.action,
        }
        made += stream.add(
            CommandRequested(
                id=f"{command.command_id}:requested", payload=msgspec.Raw(command.payload),
                **fields,
            )
        )  # fmt: skip
        finished = "answered" if status in ("Accepted", "Rejected") else status
        payload = msgspec.json.encode({"status": status})
        made += stream.add(
            CommandFinished(
                id=f"{command.command_id}:finished", status=finished,
                payload=msgspec.Raw(payload), **fields,
            )
        )  # fmt: skip
    return made


def decisions(intents: list[Intent]) -> list[AllocationDecided]:
    return [i.event for i in intents if isinstance(i.event, AllocationDecided)]


def limits(intents: list[Intent]) -> dict[str, float]:
    return {d.charge_point_id: d.limit_a for d in decisions(intents)}


def current(stream: Stream, cp: str, tx: int, amps: float, at: int) -> list[Intent]:
    sampled = {"value": f"{amps:g}", "measurand": "Current.Import", "unit": "A", "phase": "L1"}
    return stream.call(
        cp,
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [{"timestamp": iso(at), "sampledValue": [sampled]}],
        },
        at,
    )


def settle(stream: Stream, until: int, every_ms: int = 1_000) -> list[Intent]:
    """Ticks up to ``until``, every profile answered as it goes."""
    made: list[Intent] = []
    at = stream.now + every_ms
    while at <= until:
        ticked = stream.tick(at)
        made += ticked + answer(stream, ticked)
        at += every_ms
    return made


def three_cars(stream: Stream) -> list[Intent]:
    site(stream)
    made: list[Intent] = []
    for n, cp in enumerate(CPS):
        assign(stream, cp)
        made += stream.connect(cp, stream.at(n))
        made += answer(stream, made[-1:])
    for n, cp in enumerate(CPS):
        started = stream.start(cp, 1, 100 + n, stream.at(10 + n))
        made += started + answer(stream, started)
    # The newcomers' raises wait until the cuts that make room for them have taken effect.
    return made + settle(stream, stream.at(15))


def test_three_cars_share_a_site_of_40_a_and_get_tx_profiles_that_keep_it() -> None:
    stream = Stream()
    made = three_cars(stream)
    assert limits(made) == {"CP-1": 13.3, "CP-2": 13.3, "CP-3": 13.3}
    assert sum(limits(made).values()) <= 40
    *_, profile = [
        i.command
        for i in made
        if i.command is not None and b'"transactionId":102' in i.command.payload
    ]
    assert msgspec.json.decode(profile.payload) == {
        "connectorId": 1,
        "csChargingProfiles": {
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingProfileId": 7_100_001,
            "transactionId": 102,
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 13.3, "numberPhases": 3}],
            },
        },
    }
    # The charger's model holds what it accepted.
    installed = stream.supervisor.charging.state.profiles["CP-1"].installed
    assert [i.profile.purpose for i in installed] == ["TxDefaultProfile", "TxProfile"]


def test_a_charger_of_a_site_gets_the_conservative_default_when_it_connects() -> None:
    stream = Stream()
    site(stream)
    assign(stream, "CP-1", min_a=8.0, phases=1)
    made = stream.connect("CP-1", stream.at(0))
    [decided] = decisions(made)
    # Nothing until the allocator decides on its car: safe whoever else arrives at once.
    assert (decided.reason, decided.limit_a, decided.session) == ("connect", 0.0, "")
    assert not decided.admitted
    assert made[0].command is not None
    profile = msgspec.json.decode(made[0].command.payload)["csChargingProfiles"]
    assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
    assert profile["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] == 1
    # A charger of no site gets nothing.
    assert not decisions(stream.connect("CP-9", stream.at(1)))


def test_a_newcomer_gets_its_share_once_the_cut_that_makes_room_for_it_has_taken_effect() -> None:
    """The cut goes at once; meanwhile the newcomer gets what fits next to what the others
    may still draw; its share once the charger confirmed the cut and its car has had the
    reaction allowance (2 s) to follow it."""
    stream = Stream()
    site(stream)
    for n, cp in enumerate(CPS[:2]):
        assign(stream, cp)
        answer(stream, stream.connect(cp, stream.at(n)))
    first = stream.start("CP-1", 1, 100, stream.at(10))
    assert limits(first) == {"CP-1": 32.0}
    answer(stream, first)
    made = stream.start("CP-2", 1, 101, stream.at(20))
    assert limits(made) == {"CP-1": 20.0, "CP-2": 8.0}  # CP-1 may still draw 32 A
    answer(stream, [i for i in made if i.event.charge_point_id == "CP-2"])  # type: ignore[union-attr]
    # Unanswered, the cut may not have happened: CP-2 waits for the rest of its share.
    assert not decisions(stream.tick(stream.at(25)))
    answer(stream, [i for i in made if i.event.charge_point_id == "CP-1"])  # type: ignore[union-attr]
    assert not decisions(stream.tick(stream.at(26)))  # confirmed at 25 s
    raised = stream.tick(stream.at(27))
    assert limits(raised) == {"CP-2": 20.0}
    assert decisions(raised)[0].admitted


def test_a_car_whose_charger_never_confirmed_the_0_a_default_is_told_0_a_first() -> None:
    """The default not answered (or refused, or a start right after a reboot): the charger
    may let the car draw anything. It is told 0 A at once, counted at its maximum until
    that holds, and gets its share as a raise once there is room."""
    stream = Stream()
    site(stream)
    for cp in CPS[:2]:
        assign(stream, cp)
    answer(stream, stream.connect("CP-1", stream.at(0)))
    stream.connect("CP-2", stream.at(1))  # its default is never answered
    answer(stream, stream.start("CP-1", 1, 100, stream.at(10)))
    made = stream.start("CP-2", 1, 101, stream.at(20))
    assert limits(made) == {"CP-1": 20.0, "CP-2": 0.0}
    answer(stream, made)
    # Until both hold (the allowance after the answers), CP-2 may still draw 32 A.
    assert not limits(stream.tick(stream.at(21)))
    assert limits(stream.tick(stream.at(22.5))) == {"CP-2": 20.0}


def test_in_a_burst_of_arrivals_each_confirmed_cut_makes_room_as_it_takes_effect() -> None:
    """Cars arriving faster than the allowance: CP-1's first cut (to 20 A) has taken effect
    though its second (to 13.3 A) is not answered yet, which is room enough for CP-2."""
    stream = Stream()
    site(stream)
    for n, cp in enumerate(CPS):
        assign(stream, cp)
        answer(stream, stream.connect(cp, stream.at(n)))
    answer(stream, stream.start("CP-1", 1, 100, stream.at(10)))
    answer(stream, stream.start("CP-2", 1, 101, stream.at(11)))  # CP-1 to 20 A, confirmed
    made = stream.start("CP-3", 1, 102, stream.at(11.5))
    assert limits(made) == {"CP-1": 13.3}  # not answered yet: it may still draw 20 A
    # 20 + 13.3 fit in 40, and CP-3 can start at the 6.7 A left.
    assert limits(stream.tick(stream.at(13.5))) == {"CP-2": 13.3, "CP-3": 6.7}
    answer(stream, made)  # confirmed at 13.5 s
    assert not limits(stream.tick(stream.at(15)))
    assert limits(stream.tick(stream.at(15.6))) == {"CP-3": 13.3}


def test_the_reaction_allowance_is_configurable() -> None:
    stream = Stream(Policy(load_reaction_allowance_s=0.0))
    site(stream)
    for n, cp in enumerate(CPS[:2]):
        assign(stream, cp)
        answer(stream, stream.connect(cp, stream.at(n)))
    answer(stream, stream.start("CP-1", 1, 100, stream.at(10)))
    answer(stream, stream.start("CP-2", 1, 101, stream.at(20)))
    assert limits(stream.tick(stream.at(20.5))) == {"CP-2": 20.0}


def test_a_car_held_at_its_draw_that_draws_up_to_it_again_is_raised_at_once() -> None:
    stream = Stream()
    three_cars(stream)
    answer(stream, current(stream, "CP-1", 100, 4.0, stream.at(20)))  # held at 6 A
    assert limits(settle(stream, stream.at(26))) == {"CP-2": 17.0, "CP-3": 17.0}
    # It draws its whole 6 A now (a car that ramps up again): it wants more. The others' cuts
    # go at once, its raise as soon as they have taken effect, not 10 s after its last word.
    made = current(stream, "CP-1", 100, 6.0, stream.at(27))
    assert limits(made) == {"CP-2": 13.3, "CP-3": 13.3}
    answer(stream, made)
    assert limits(stream.tick(stream.at(29))) == {"CP-1": 13.3}


def test_a_car_drawing_less_gets_its_draw_and_a_margin_and_the_others_more() -> None:
    stream = Stream()
    three_cars(stream)
    # At once: only decreases (none here) and changes of at least the hysteresis...
    made = current(stream, "CP-1", 100, 4.0, stream.at(20))
    assert limits(made) == {"CP-1": 6.0}
    made += answer(stream, made)
    # ...increases wait for the rate limit (10 s after each charger's last word).
    made += stream.ticks_until(stream.at(30))
    assert limits(made) == {"CP-1": 6.0, "CP-2": 17.0, "CP-3": 17.0}
    assert {d.reason for d in decisions(made)} == {"meter", "tick"}
    assert decisions(made)[0].drawn_a == 4.0
    assert decisions(made)[0].wants_a == 6.0
    # It keeps drawing 4 A: it is taken at its word again, not offered 13.3 A then cut again.
    answer(stream, made)
    current(stream, "CP-1", 100, 4.0, stream.at(31))
    assert not decisions(stream.ticks_until(stream.at(90)))


def test_a_live_limit_lowers_every_limit_at_once_and_its_end_raises_them_later() -> None:
    stream = Stream()
    three_cars(stream)
    made = live(stream, 20.0, stream.at(14))
    assert limits(made) == {"CP-1": 6.6, "CP-2": 6.6, "CP-3": 6.6}
    assert {d.reason for d in decisions(made)} == {"limit"}
    answer(stream, made)
    assert not decisions(live(stream, None, stream.at(15)))  # too soon to raise
    assert limits(stream.ticks_until(stream.at(30))) == {"CP-1": 13.3, "CP-2": 13.3, "CP-3": 13.3}


def test_a_rejected_profile_raises_the_alert_and_its_load_counts_as_uncontrolled() -> None:
    stream = Stream()
    three_cars(stream)
    made = live(stream, 30.0, stream.at(14))
    first = [i for i in made if i.event.charge_point_id == "CP-1"]  # type: ignore[union-attr]
    rest = [i for i in made if i not in first]
    made = answer(stream, first, "Rejected") + answer(stream, rest)
    alerts = [i.event for i in made if isinstance(i.event, AnomalyDetected)]
    assert [(a.kind, a.charge_point_id, a.transaction_id) for a in alerts] == [
        ("load_unmanaged", "CP-1", 100)
    ]
    # CP-1 still runs at what it accepted last (13.3 A): the others share the rest.
    assert limits(made) == {"CP-1": 13.3, "CP-2": 8.3, "CP-3": 8.3}
    assert [d.reason for d in decisions(made)] == ["rejected"] * 3
    # The end of its transaction resolves the alert.
    ended = stream.stop("CP-1", 100, 1000, stream.at(40))
    assert any(isinstance(i.event, AnomalyResolved) for i in ended)


def test_an_unanswered_or_offline_charger_is_uncontrolled_until_it_is_back() -> None:
    stream = Stream()
    three_cars(stream)
    made = stream.add(
        ChargerDisconnected(
            id="gone", received_at=stream.at(20), charge_point_id="CP-2", gateway_id="gw",
            connection_id="c",
        )
    )  # fmt: skip
    assert [i.event.kind for i in made if isinstance(i.event, AnomalyDetected)] == [
        "load_unmanaged"
    ]
    made = live(stream, 30.0, stream.at(21))
    assert limits(made) == {"CP-1": 8.3, "CP-3": 8.3}  # CP-2 counted at its 13.3 A
    answer(stream, made)
    back = stream.connect("CP-2", stream.at(40))
    reasons = [(d.reason, d.session, d.limit_a) for d in decisions(back)]
    assert reasons[0] == ("connect", "", 0.0)  # the default, then its transaction's
    assert ("connect", "101", 10.0) in reasons
    # Under control again once its charger accepts what it was told, not before.
    assert not any(isinstance(i.event, AnomalyResolved) for i in back)
    resolved = [i.event for i in answer(stream, back) if isinstance(i.event, AnomalyResolved)]
    assert [(e.charge_point_id, e.transaction_id) for e in resolved] == [("CP-2", 101)]


def test_a_charger_back_from_a_reboot_that_refuses_its_limit_keeps_its_one_alert() -> None:
    """Rebooted, it lost the transaction without a StopTransaction: it refuses a TxProfile
    for it. The alert raised when it went offline stays (no second one), its load still
    counts, and the alert is cleared when the transaction is closed."""
    stream = Stream()
    three_cars(stream)
    stream.add(
        ChargerDisconnected(
            id="gone", received_at=stream.at(20), charge_point_id="CP-2", gateway_id="gw",
            connection_id="c",
        )
    )  # fmt: skip
    back = stream.connect("CP-2", stream.at(30))
    made = answer(stream, back[:1]) + answer(stream, back[1:], "Rejected")
    assert not [i for i in made if isinstance(i.event, AnomalyDetected | AnomalyResolved)]
    assert [d.reason for d in decisions(made)] == ["rejected"]
    ended = stream.stop("CP-2", 101, 1000, stream.at(40))
    assert [i.event.kind for i in ended if isinstance(i.event, AnomalyResolved)] == [
        "load_unmanaged"
    ]


def test_replay_and_a_snapshot_make_the_same_decisions() -> None:
    stream = Stream()
    three_cars(stream)
    current(stream, "CP-1", 100, 4.0, stream.at(20))
    live(stream, 25.0, stream.at(22))
    stream.ticks_until(stream.at(60))
    stream.stop("CP-2", 101, 1000, stream.at(61))
    stream.ticks_until(stream.at(90))
    ours = [i.event for i in stream.intents]
    assert len(decisions(stream.intents)) > 10
    again = Supervisor()
    half = len(stream.events) // 2
    for seq, event in enumerate(stream.events[:half], 1):
        again.apply(seq, event)
    resumed = snapshot.decode(snapshot.encode(again), Policy())
    assert resumed is not None
    fresh = Supervisor()
    replayed: list[Any] = []
    for seq, event in enumerate(stream.events, 1):
        replayed += [i.event for i in fresh.apply(seq, event)]
        if seq > half:
            resumed.apply(seq, event)
    assert replayed == ours
    assert not fresh.unconfirmed and not resumed.unconfirmed
    assert msgspec.json.encode(resumed.load.state) == msgspec.json.encode(fresh.load.state)


def test_no_sites_or_load_management_off_decides_nothing() -> None:
    stream = Stream(Policy(load_management=False))
    assert not decisions(three_cars(stream))
    plain = Stream()
    plain.connect("CP-1", plain.at(0))
    assert not decisions(plain.start("CP-1", 1, 5, plain.at(1)))


# -- the sites fold and its rules ------------------------------------------------------------


def test_daily_schedule_live_limit_and_static_limit() -> None:
    sites = Sites()
    node = SiteNodeSet(
        id="n", received_at=T0, actor="t", node_id="grid", limit=100.0,
        daily=(DailyLimit(start="08:00", limit=60.0), DailyLimit(start="20:00", limit=80.0)),
    )  # fmt: skip
    sites.apply(node)
    midnight = T0 - T0 % 86_400_000
    assert sites.limit_at("grid", midnight + 9 * 3_600_000)[0].amount == 60.0
    assert sites.limit_at("grid", midnight + 3 * 3_600_000) == (
        sites.limit_at("grid", midnight + 21 * 3_600_000)
    )
    assert sites.limit_at("grid", midnight)[1] == "daily"
    sites.apply(
        SiteLimitSet(id="l", received_at=T0, actor="t", node_id="grid", limit=150e3, unit="W")
    )
    limit, source = sites.limit_at("grid", midnight)
    assert source == "live" and round(limit.amps_per_phase, 1) == 217.4
    assert daily_limit((), T0) is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"node_id": "a", "parent": "b"}, "parent"),
        ({"node_id": "root", "parent": "feeder"}, "parent"),  # a cycle
        ({"node_id": "x", "limit": 0.0}, "limit"),
        ({"node_id": "x", "phases": 2}, "phases"),
        ({"node_id": "", "parent": ""}, "node_id"),
        ({"node_id": "x", "daily": (DailyLimit(start="25:00", limit=1.0),)}, "daily[0].from"),
    ],
)
def test_node_rules(fields: dict[str, Any], field: str) -> None:
    sites = Sites()
    sites.apply(SiteNodeSet(id="1", received_at=T0, actor="t", node_id="root", limit=100.0))
    sites.apply(
        SiteNodeSet(id="2", received_at=T0, actor="t", node_id="feeder", parent="root", limit=50.0)
    )
    event = SiteNodeSet(id="3", received_at=T0, actor="t", **{"limit": 10.0, **fields})
    with pytest.raises(Invalid) as raised:
        check_node(sites.state, event)
    assert raised.value.field == field


def test_assignment_rules() -> None:
    sites = Sites()
    bad = SiteConnectorAssigned(
        id="a", received_at=T0, actor="t", charge_point_id="CP", node_id="nowhere"
    )
    with pytest.raises(Invalid, match="no node"):
        check_assignment(sites.state, bad)


def test_drawn_current_from_current_else_power() -> None:
    def sample(measurand: str, value: float, phase: str = "") -> Sample:
        return Sample(at_ms=0, measurand=measurand, value=value, phase=phase)

    assert drawn_a([sample("Current.Import", 9, "L1"), sample("Current.Import", 11, "L2")], 3) == 11
    assert drawn_a([sample("Power.Active.Import", 6900)], 3) == 10.0
    assert drawn_a([sample("Energy.Active.Import.Register", 5)], 3) is None
