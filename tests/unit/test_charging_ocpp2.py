"""OCPP 2.0.1 and 2.1 frames mean the same facts as their 1.6 counterparts: TransactionEvent
Started, Updated and Ended as StartTransaction, MeterValues and StopTransaction."""

from __future__ import annotations

from typing import TypeVar

import pytest

from hub.domain.charging import Session, key
from hub.domain.facts import (
    ChargerBooted,
    ConnectorStatusChanged,
    Fact,
    TransactionEnded,
    TransactionMetered,
    TransactionStarted,
)
from hub.domain.timeutil import parse_ms
from tests.projections.scenario import Builder
from tests.unit.test_charging import fold

F = TypeVar("F", bound=Fact)


def facts_of(facts: list[Fact], kind: type[F]) -> list[F]:
    return [fact for fact in facts if isinstance(fact, kind)]


def same_meaning(session: Session) -> tuple[object, ...]:
    """What a session is, but for its names (ids differ between versions)."""
    return (
        session.connector_id,
        session.id_tag,
        session.start_ms,
        session.stop_ms,
        session.meter_start,
        session.meter_stop,
        session.state,
        session.end_reason,
        session.stop_reason,
        session.flags,
        session.curve(),
        session.tariff,
    )


def a_16_session(b: Builder) -> int:
    tx = b.start("CP-16", 1, "2026-11-22T10:00:00Z", 1000, tag="T1")
    b.meter("CP-16", 1, tx, "2026-11-22T10:00:00Z", 1000)
    b.meter("CP-16", 1, tx, "2026-11-22T10:20:00Z", 2500)
    b.meter("CP-16", 1, tx, "2026-11-22T10:40:00Z", 3500)
    b.stop("CP-16", tx, "2026-11-22T11:00:00Z", 4000, reason="EVDisconnected", end_reading=True)
    return tx


def a_2x_session(b: Builder, cp: str, version: str, tx: str = "tx-a") -> None:
    b.event2(cp, "Started", tx, 0, "2026-11-22T10:00:00Z", 1000, tag="T1", version=version)
    b.event2(cp, "Updated", tx, 1, "2026-11-22T10:20:00Z", 2500, version=version)
    b.event2(cp, "Updated", tx, 2, "2026-11-22T10:40:00Z", 3500, version=version)
    b.event2(
        cp, "Ended", tx, 3, "2026-11-22T11:00:00Z", 4000, reason="EVDisconnected", version=version
    )


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
def test_a_2x_session_is_the_equivalent_16_session(version: str) -> None:
    b = Builder()
    b.tariff("std", "0.30")
    tx16 = a_16_session(b)
    a_2x_session(b, "CP-2X", version)
    charging, facts = fold(b)
    old = charging.session_of("CP-16", tx16)
    new = charging.session_of("CP-2X", "tx-a")
    assert old is not None and new is not None
    assert same_meaning(new) == same_meaning(old)
    assert (new.session, new.transaction_id) == ("tx-a", "tx-a")
    started = {f.charge_point_id: f for f in facts_of(facts, TransactionStarted)}
    assert started["CP-2X"].transaction_id == "tx-a"
    assert (started["CP-2X"].id_tag, started["CP-2X"].authorization) == ("T1", "Accepted")
    assert started["CP-2X"].meter_start_wh == started["CP-16"].meter_start_wh == 1000.0
    ended = {f.charge_point_id: f for f in facts_of(facts, TransactionEnded)}
    assert ended["CP-2X"].charger_reason == ended["CP-16"].charger_reason == "EVDisconnected"
    metered = facts_of(facts, TransactionMetered)
    assert [m.register for m in metered if m.charge_point_id == "CP-2X"] == [
        m.register for m in metered if m.charge_point_id == "CP-16"
    ]
    assert [m.samples for m in metered if m.charge_point_id == "CP-2X"][1:3] == [
        m.samples for m in metered if m.charge_point_id == "CP-16"
    ][1:3]


def test_a_retried_event_or_a_second_ended_changes_nothing() -> None:
    b = Builder()
    b.event2("CP", "Started", "t1", 0, "2026-11-22T10:00:00Z", 1000, tag="T1")
    b.event2("CP", "Updated", "t1", 1, "2026-11-22T10:20:00Z", 2500)
    b.event2("CP", "Ended", "t1", 2, "2026-11-22T11:00:00Z", 4000)
    charging, _ = fold(b)
    b.event2("CP", "Started", "t1", 0, "2026-11-22T10:00:00Z", 1000, tag="T1")
    b.event2("CP", "Updated", "t1", 1, "2026-11-22T10:20:00Z", 2500)
    b.event2("CP", "Ended", "t1", 2, "2026-11-22T11:00:00Z", 4000)
    b.event2("CP", "Ended", "t1", 3, "2026-11-22T11:00:00Z", 4000)  # under a new seqNo
    before = charging.session_of("CP", "t1")
    assert before is not None
    snapshot = same_meaning(before)
    charging, facts = fold(b, charging)
    assert facts == []
    assert same_meaning(before) == snapshot and len(charging.state.sessions) == 1


def test_an_offline_transaction_flushed_on_reconnect_is_one_session() -> None:
    b = Builder()
    b.tariff("std", "0.30")
    b.status2("CP", 1, "Occupied")
    for seq_no, (kind, at, wh) in enumerate(
        [
            ("Started", "2026-11-22T10:00:00Z", 1000),
            ("Updated", "2026-11-22T10:30:00Z", 3000),
            ("Ended", "2026-11-22T11:00:00Z", 5000),
        ]
    ):
        b.event2("CP", kind, "off-1", seq_no, at, wh, tag="T1", offline=True)
    # One more reading of it, queued apart and flushed after the end (seqNo 3 was lost).
    b.event2("CP", "Updated", "off-1", 4, "2026-11-22T10:45:00Z", 4000, offline=True)
    charging, facts = fold(b)
    (session,) = charging.state.sessions.values()
    assert (session.start_ms, session.stop_ms) == (
        parse_ms("2026-11-22T10:00:00Z"),
        parse_ms("2026-11-22T11:00:00Z"),
    )
    assert (session.state, session.flags, session.stop_reason) == ("completed", [], "Local")
    assert [value for _, value in session.curve()] == [1000, 1000, 3000, 4000, 5000, 5000]
    assert len(facts_of(facts, TransactionStarted)) == len(facts_of(facts, TransactionEnded)) == 1
    assert session.seq_nos == [(0, 2), (4, 4)]


def test_events_of_a_transaction_whose_started_the_hub_never_saw_are_one_session() -> None:
    b = Builder()
    b.event2("CP", "Updated", "t9", 5, "2026-11-22T10:20:00Z", 2500, evse=2)
    b.event2("CP", "Ended", "t9", 6, "2026-11-22T11:00:00Z", 4000)
    charging, facts = fold(b)
    (started,) = facts_of(facts, TransactionStarted)
    assert (started.inferred, started.connector_id, started.session) == (True, 2, "t9")
    session = charging.session_of("CP", "t9")
    assert session is not None
    assert (session.flags, session.state, session.meter_stop) == (["no_start"], "completed", 4000)
    # Its Started, late: the start is known now, and the end is told again as corrected.
    b.event2("CP", "Started", "t9", 4, "2026-11-22T10:00:00Z", 1000, tag="T1")
    charging, facts = fold(b, charging)
    (ended,) = facts_of(facts, TransactionEnded)
    assert ended.corrected and ended.reason == "stopped"
    assert (session.start_ms, session.meter_start, session.id_tag) == (
        parse_ms("2026-11-22T10:00:00Z"),
        1000,
        "T1",
    )
    assert session.curve()[0] == (parse_ms("2026-11-22T10:00:00Z"), 1000)
    assert len(charging.state.sessions) == 1


def test_a_newer_start_on_a_busy_evse_supersedes_the_older() -> None:
    b = Builder()
    b.event2("CP", "Started", "old", 0, "2026-11-22T10:00:00Z", 1000, tag="T1")
    b.event2("CP", "Started", "new", 0, "2026-11-22T12:00:00Z", 5000, tag="T1")
    charging, facts = fold(b)
    (ended,) = facts_of(facts, TransactionEnded)
    assert (ended.session, ended.reason, ended.charger_reason) == (
        "old",
        "superseded",
        "superseded by new",
    )
    assert charging.charger("CP").connector(1).open == key("CP", "new")


def test_2x_boot_status_and_meter_values_mean_what_16_ones_do() -> None:
    b = Builder()
    b.boot2("CP", "2.1")
    b.status2("CP", 2, "Faulted")
    b.meter2("CP", 2, "2026-11-22T10:00:00Z", 1500)
    charging, facts = fold(b)
    (booted,) = facts_of(facts, ChargerBooted)
    assert (booted.vendor, booted.model, booted.firmware_version, booted.status) == (
        "Acme",
        "X1",
        "2.0",
        "Accepted",
    )
    (status,) = facts_of(facts, ConnectorStatusChanged)
    assert (status.connector_id, status.status, status.error_code) == (2, "Faulted", "")
    assert charging.charger("CP").connector(2).status == "Faulted"
    (metered,) = facts_of(facts, TransactionMetered)
    assert (metered.session, metered.connector_id) == ("", 2)
    assert [(s.measurand, s.value, s.unit) for s in metered.samples] == [
        ("Energy.Active.Import.Register", 1500.0, "Wh")
    ]
