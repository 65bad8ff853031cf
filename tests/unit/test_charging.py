"""The charging fold: what a sequence of frames means, checked as facts, without sockets."""

from __future__ import annotations

import msgspec

from hub.domain.charging import MAX_CONNECTORS, MAX_ONGOING, Charging, key
from hub.domain.facts import (
    ChargerBooted,
    ConnectorStatusChanged,
    Fact,
    Problem,
    SecurityEventReported,
    TransactionEnded,
    TransactionFlagged,
    TransactionMetered,
    TransactionStarted,
)
from hub.domain.timeutil import parse_ms
from schemas.events import IntegrityAction
from tests.projections.scenario import Builder


def fold(builder: Builder, charging: Charging | None = None) -> tuple[Charging, list[Fact]]:
    charging = charging or Charging()
    facts: list[Fact] = []
    for seq, event in enumerate(builder.events, start=charging.state.last_seq + 1):
        facts.extend(charging.apply(seq, event))
    builder.events.clear()
    return charging, facts


def of(facts: list[Fact], kind: type[Fact]) -> list[Fact]:
    return [fact for fact in facts if isinstance(fact, kind)]


def test_a_start_is_a_fact_once_the_hubs_answer_names_its_transaction() -> None:
    b = Builder()
    b.tariff("std", "0.30")
    tx = b.start("CP", 1, "2026-11-22T10:00:00Z", 1000, tag="T1")
    charging, facts = fold(b)
    (started,) = of(facts, TransactionStarted)
    assert isinstance(started, TransactionStarted)
    assert (started.session, started.transaction_id, started.connector_id) == (str(tx), tx, 1)
    assert (started.id_tag, started.meter_start_wh, started.tariff_id) == ("T1", 1000.0, "std")
    assert charging.charger("CP").connector(1).open == key("CP", tx)


def test_offline_ids_belong_to_the_transaction_open_on_the_connector() -> None:
    b = Builder()
    tx = b.start("CP", 1, "2026-11-22T10:00:00Z", 0)
    b.meter("CP", 1, -1, "2026-11-22T10:30:00Z", 5_000)
    b.stop("CP", -1, "2026-11-22T11:00:00Z", 9_000)
    charging, facts = fold(b)
    metered = [f for f in of(facts, TransactionMetered) if isinstance(f, TransactionMetered)]
    assert [m.session for m in metered] == [str(tx)]
    (flagged,) = of(facts, TransactionFlagged)
    assert isinstance(flagged, TransactionFlagged)
    assert (flagged.flag, flagged.transaction_id) == ("unknown_transaction_id", -1)
    (ended,) = of(facts, TransactionEnded)
    assert isinstance(ended, TransactionEnded)
    assert (ended.session, ended.reason, ended.meter_stop_wh) == (str(tx), "stopped", 9000.0)
    session = charging.session_of("CP", tx)
    assert session is not None and session.curve()[-1] == (session.stop_ms, 9000.0)


def test_a_newer_start_on_a_busy_connector_ends_the_older_transaction() -> None:
    b = Builder()
    old = b.start("CP", 1, "2026-11-22T10:00:00Z", 0)
    b.meter("CP", 1, old, "2026-11-22T10:30:00Z", 5_000)
    # The charger rebooted without a Stop and started again.
    new = b.start("CP", 1, "2026-11-22T12:00:00Z", 7_000)
    charging, facts = fold(b)
    (ended,) = of(facts, TransactionEnded)
    assert isinstance(ended, TransactionEnded)
    assert (ended.session, ended.reason) == (str(old), "superseded")
    ongoing = [s.session for s in charging.state.sessions.values() if s.ongoing]
    assert ongoing == [str(new)]
    assert charging.charger("CP").connector(1).open == key("CP", new)


def test_a_late_stop_corrects_a_superseded_transaction() -> None:
    b = Builder()
    old = b.start("CP", 1, "2026-11-22T10:00:00Z", 0)
    b.start("CP", 1, "2026-11-22T12:00:00Z", 7_000)
    b.stop("CP", old, "2026-11-22T11:00:00Z", 6_000)
    charging, facts = fold(b)
    ends = [f for f in of(facts, TransactionEnded) if isinstance(f, TransactionEnded)]
    assert [(e.session, e.reason, e.corrected) for e in ends] == [
        (str(old), "superseded", False),
        (str(old), "stopped", True),
    ]
    session = charging.session_of("CP", old)
    assert session is not None and (session.state, session.meter_stop) == ("completed", 6000.0)


def test_a_rebooted_chargers_queue_stamped_minus_one_belongs_to_the_superseded_transaction() -> (
    None
):
    b = Builder()
    old = b.start("CP", 1, "2026-11-22T10:00:00Z", 0)
    # Offline: the charger queued its readings and its Stop under -1, rebooted, started again,
    # and flushed the queue only then (queued status before queued transactions).
    new = b.start("CP", 1, "2026-11-22T12:00:00Z", 7_000)
    b.meter("CP", 1, -1, "2026-11-22T11:30:00Z", 6_500)
    b.meter("CP", 1, -1, "2026-11-22T10:30:00Z", 5_000)
    b.stop("CP", -1, "2026-11-22T11:45:00Z", 6_800)
    charging, facts = fold(b)
    metered = [f for f in of(facts, TransactionMetered) if isinstance(f, TransactionMetered)]
    assert [m.session for m in metered] == [str(old), str(old)]
    ends = [f for f in of(facts, TransactionEnded) if isinstance(f, TransactionEnded)]
    assert [(e.session, e.reason, e.corrected) for e in ends] == [
        (str(old), "superseded", False),
        (str(old), "stopped", True),
    ]
    session = charging.session_of("CP", old)
    assert session is not None and session.curve()[-1] == (session.stop_ms, 6800.0)
    # No transaction of its own for the queue, and the new one is untouched and open.
    assert sorted(charging.state.sessions) == sorted([key("CP", old), key("CP", new)])
    current = charging.session_of("CP", new)
    assert current is not None and current.ongoing and current.points == []


def test_a_retried_stop_means_nothing_new() -> None:
    b = Builder()
    tx = b.start("CP", 1, "2026-11-22T10:00:00Z", 0)
    b.stop("CP", tx, "2026-11-22T11:00:00Z", 9_000)
    charging, first = fold(b)
    # Retried under a new message id (the builder gives every CALL its own).
    b.stop("CP", tx, "2026-11-22T11:00:00Z", 9_000)
    _, again = fold(b, charging)
    assert len(of(first, TransactionEnded)) == 1
    assert again == []


def test_a_retransmitted_start_is_the_same_transaction_under_a_second_id() -> None:
    b = Builder()
    first = b.start("CP", 1, "2026-11-22T10:00:00Z", 100, tag="T")
    second = b.start("CP", 1, "2026-11-22T10:00:00Z", 100, tag="T")
    b.stop("CP", second, "2026-11-22T11:00:00Z", 900)
    charging, facts = fold(b)
    assert len(of(facts, TransactionStarted)) == 1
    flagged = [f for f in of(facts, TransactionFlagged) if isinstance(f, TransactionFlagged)]
    assert [(f.flag, f.transaction_id) for f in flagged] == [("retransmitted_start", second)]
    (ended,) = of(facts, TransactionEnded)
    assert isinstance(ended, TransactionEnded) and ended.session == str(first)
    assert charging.session_of("CP", second) is charging.session_of("CP", first)


def test_readings_for_an_id_nobody_knows_become_a_transaction_of_their_own() -> None:
    b = Builder()
    b.meter("CP", 2, 4711, "2026-11-22T10:30:00Z", 5_000)
    charging, facts = fold(b)
    (started,) = of(facts, TransactionStarted)
    assert isinstance(started, TransactionStarted)
    assert started.inferred and started.session.startswith("unknown-")
    session = charging.session_of("CP", 4711)
    assert session is not None and session.flags == ["unknown_transaction_id", "no_start"]
    (metered,) = of(facts, TransactionMetered)
    assert isinstance(metered, TransactionMetered)
    assert (metered.session, metered.register) == (started.session, ((session.points[0]),))


def test_every_boot_is_a_fact_even_a_byte_identical_one() -> None:
    b = Builder()
    b.boot("CP")
    b.boot("CP")
    _, facts = fold(b)
    boots = [f for f in of(facts, ChargerBooted) if isinstance(f, ChargerBooted)]
    assert [(f.vendor, f.status, f.interval) for f in boots] == [("Acme", "Accepted", 300)] * 2


def test_the_tariff_in_force_at_the_start_applies_whenever_the_start_arrives() -> None:
    b = Builder()
    b.tariff("now", "0.30")
    b.events.append(
        msgspec.structs.replace(
            b.events[-1],
            id="later",
            tariff_id="from-noon",
            effective_from=parse_ms("2026-11-22T12:00:00Z"),
        )
    )
    # The noon start arrives first, the morning one (flushed from a queue) after it.
    b.start("CP", 2, "2026-11-22T13:00:00Z", 0)
    b.start("CP", 1, "2026-11-22T10:00:00Z", 0)
    _, facts = fold(b)
    started = [f for f in of(facts, TransactionStarted) if isinstance(f, TransactionStarted)]
    assert [(f.connector_id, f.tariff_id) for f in started] == [(2, "from-noon"), (1, "now")]


def test_the_integrity_policy_closes_a_transaction_the_charger_never_stopped() -> None:
    b = Builder()
    tx = b.start("CP", 1, "2026-11-22T10:00:00Z", 0)
    charging, _ = fold(b)
    close = IntegrityAction(
        id="a:close",
        received_at=b.now + 1,
        cause_seq=1,
        anomaly_id="ghost:CP:1",
        action="close_session",
        charge_point_id="CP",
        connector_id=1,
        transaction_id=tx,
    )
    facts = charging.apply(99, close)
    (ended,) = of(facts, TransactionEnded)
    assert isinstance(ended, TransactionEnded)
    assert (ended.reason, ended.charger_reason) == ("closed", "integrity:ghost:CP:1")
    assert charging.charger("CP").connector(1).open == ""


def test_a_transaction_known_only_from_its_readings_ends_at_the_next_start() -> None:
    b = Builder()
    b.meter("CP", 1, 4711, "2026-11-22T10:30:00Z", 5_000)
    new = b.start("CP", 1, "2026-11-22T12:00:00Z", 7_000)
    charging, facts = fold(b)
    (ended,) = of(facts, TransactionEnded)
    assert isinstance(ended, TransactionEnded)
    assert ended.session.startswith("unknown-") and ended.reason == "superseded"
    assert [s.session for s in charging.state.sessions.values() if s.ongoing] == [str(new)]


def test_a_charger_inventing_connector_ids_cannot_grow_the_state_without_bound() -> None:
    b = Builder()
    for connector in range(1, 1001):
        b.status("CP", connector, "Available")
    charging, facts = fold(b)
    assert len(of(facts, ConnectorStatusChanged)) == 1000
    assert len(charging.charger("CP").connectors) == MAX_CONNECTORS


def test_a_start_replayed_after_its_stop_is_the_same_transaction() -> None:
    b = Builder()
    tx = b.start("CP", 1, "2026-11-22T10:00:00Z", 100, tag="T")
    start_call, start_answer = b.events[-2:]
    b.meter("CP", 1, tx, "2026-11-22T10:30:00Z", 500)
    b.stop("CP", tx, "2026-11-22T11:00:00Z", 900)
    stop_call, stop_answer = b.events[-2:]
    charging, _ = fold(b)
    # A reboot sends its last frames again, byte for byte; the gateway answers the same id.
    b.events.extend(
        msgspec.structs.replace(frame, id=f"again-{n}")
        for n, frame in enumerate((start_call, start_answer, stop_call, stop_answer))
    )
    _, again = fold(b, charging)
    assert again == []
    session = charging.session_of("CP", tx)
    assert session is not None and session.state == "completed"
    assert session.curve() == [
        (parse_ms("2026-11-22T10:00:00Z"), 100.0),
        (parse_ms("2026-11-22T10:30:00Z"), 500.0),
        (parse_ms("2026-11-22T11:00:00Z"), 900.0),
    ]


def test_an_offline_id_names_the_next_transaction_once_the_one_it_named_is_over() -> None:
    b = Builder()
    # The charger lost both answers: each transaction's readings and Stop carry -1.
    first = b.start("CP", 1, "2026-11-22T10:00:00Z", 0)
    b.meter("CP", 1, -1, "2026-11-22T10:30:00Z", 5_000)
    b.stop("CP", -1, "2026-11-22T11:00:00Z", 9_000)
    second = b.start("CP", 1, "2026-11-22T12:00:00Z", 9_000)
    b.meter("CP", 1, -1, "2026-11-22T12:30:00Z", 12_000)
    b.stop("CP", -1, "2026-11-22T13:00:00Z", 15_000)
    charging, facts = fold(b)
    ends = [f for f in of(facts, TransactionEnded) if isinstance(f, TransactionEnded)]
    assert [(e.session, e.meter_stop_wh, e.corrected) for e in ends] == [
        (str(first), 9000.0, False),
        (str(second), 15000.0, False),
    ]
    metered = [f for f in of(facts, TransactionMetered) if isinstance(f, TransactionMetered)]
    assert [m.session for m in metered] == [str(first), str(second)]
    session = charging.session_of("CP", second)
    assert session is not None and session.state == "completed"


def test_a_retransmitted_start_replayed_after_a_newer_start_is_no_transaction() -> None:
    b = Builder()
    b.start("CP", 1, "2026-11-22T10:00:00Z", 100, tag="T")
    b.start("CP", 1, "2026-11-22T10:00:00Z", 100, tag="T")  # retransmitted: a second id
    second_call, second_answer = b.events[-2:]
    newer = b.start("CP", 1, "2026-11-22T11:00:00Z", 900, tag="T")
    charging, _ = fold(b)
    b.events.extend(
        msgspec.structs.replace(frame, id=f"again-{n}")
        for n, frame in enumerate((second_call, second_answer))
    )
    _, again = fold(b, charging)
    assert again == []
    assert [s.session for s in charging.state.sessions.values() if s.ongoing] == [str(newer)]


def test_a_start_or_stop_whose_time_does_not_parse_is_a_problem_not_a_failure() -> None:
    b = Builder()
    tx = b.start("CP", 1, "x" * 10_000, 0)
    b.stop("CP", tx, "yesterday", 900)
    charging, facts = fold(b)
    problems = [f for f in of(facts, Problem) if isinstance(f, Problem)]
    assert [p.reason.split(" timestamp")[0] for p in problems] == ["start", "stop"]
    assert all(len(p.reason) < 200 for p in problems)
    session = charging.session_of("CP", tx)
    assert session is not None and session.state == "completed"
    assert session.start_ms is not None and session.stop_ms is not None


def test_a_charger_opening_transaction_after_transaction_keeps_a_bounded_number_ongoing() -> None:
    b = Builder()
    for n in range(200):
        b.meter("CP", n + 1, 10_000 + n, "2026-11-22T10:30:00Z", 5_000 + n)
    charging, facts = fold(b)
    ongoing = [s for s in charging.state.sessions.values() if s.ongoing]
    assert len(ongoing) == len(charging.charger("CP").ongoing) == MAX_ONGOING
    ends = [f for f in of(facts, TransactionEnded) if isinstance(f, TransactionEnded)]
    assert len(ends) == 200 - MAX_ONGOING and {e.reason for e in ends} == {"superseded"}


def test_a_security_event_is_a_fact_critical_as_the_whitepaper_says() -> None:
    b = Builder()
    events = [
        ("InvalidChargePointCertificate", "2026-03-01T10:00:00Z", "chain rejected"),
        ("TamperDetectionActivated", "2026-03-01T10:01:00Z", None),
        ("VendorSpecificThing", "not a time", None),
    ]
    for kind, timestamp, tech_info in events:
        payload = {"type": kind, "timestamp": timestamp}
        if tech_info is not None:
            payload["techInfo"] = tech_info
        b.call("CP", "SecurityEventNotification", payload, {})
    _, facts = fold(b)
    reported = [f for f in of(facts, SecurityEventReported) if isinstance(f, SecurityEventReported)]
    assert [(f.type, f.tech_info, f.critical) for f in reported] == [
        ("InvalidChargePointCertificate", "chain rejected", False),
        ("TamperDetectionActivated", "", True),
        ("VendorSpecificThing", "", False),
    ]
    assert reported[0].timestamp_ms == parse_ms("2026-03-01T10:00:00Z")
    # A time that does not parse is a problem; the hub's time stands in.
    assert reported[2].timestamp_ms == reported[2].at
    [problem] = [f for f in of(facts, Problem) if isinstance(f, Problem)]
    assert problem.reason.startswith("security event timestamp")
