"""The fan-out's pure core: events in, through the charging domain's facts, UI messages out,
no sockets."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from hub.domain.charging import Charging, encode_state
from hub.fanout.live import Live
from hub.fanout.state import MAX_SECURITY_EVENTS
from hub.fanout.translate import iso, translate
from schemas.events import (
    ChargerConnected,
    ChargerDisconnected,
    ChargerReplaced,
    Event,
    OcppFrame,
)
from schemas.ui import (
    Boot,
    Connection,
    DataTransfer,
    Meter,
    SecurityEvent,
    SecurityEventView,
    Status,
    TransactionStarted,
    TransactionStopped,
    TransactionUpdated,
    decode_ui,
    encode_ui,
)
from tests.projections.scenario import Builder

CP = "CP-1"
_ids = itertools.count(1)


def frame(
    direction: str, message_type: str, action: str, payload: Any, unique_id: str
) -> OcppFrame:
    return OcppFrame(
        id=f"e{next(_ids)}",
        received_at=1_000 + next(_ids),
        charge_point_id=CP,
        gateway_id="gw",
        connection_id="c1",
        ocpp_version="1.6",
        direction=direction,  # type: ignore[arg-type]
        message_type=message_type,  # type: ignore[arg-type]
        unique_id=unique_id,
        action=action,
        payload=msgspec.Raw(msgspec.json.encode(payload)),
    )


def exchange(action: str, request: Any, response: Any) -> list[Event]:
    uid = f"u{next(_ids)}"
    return [
        frame("in", "CALL", action, request, uid),
        frame("out", "CALLRESULT", action, response, uid),
    ]


def connected(connection_id: str = "c1") -> ChargerConnected:
    return ChargerConnected(
        id=f"e{next(_ids)}",
        received_at=500,
        charge_point_id=CP,
        gateway_id="gw",
        connection_id=connection_id,
        ocpp_version="1.6",
        remote_address="127.0.0.1",
        security_profile=0,
    )


def meter(energy: str, power: str = "7400", soc: str = "55", tx: int | None = 7) -> list[Event]:
    payload: dict[str, Any] = {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": "2026-11-22T10:05:00Z",
                "sampledValue": [
                    {"value": energy, "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    {"value": power, "measurand": "Power.Active.Import", "unit": "W"},
                    {"value": "230.1", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
                    {"value": "32", "measurand": "Current.Offered", "unit": "A"},
                    {"value": soc, "measurand": "SoC", "unit": "Percent"},
                    {"value": "not a number", "measurand": "Temperature"},
                ],
            }
        ],
    }
    if tx is not None:
        payload["transactionId"] = tx
    return exchange("MeterValues", payload, {})


def session() -> list[Event]:
    return [
        connected(),
        *exchange(
            "BootNotification",
            {"chargePointVendor": "Acme", "chargePointModel": "M1", "firmwareVersion": "1.2"},
            {"status": "Accepted", "currentTime": "2026-11-22T10:00:00Z", "interval": 300},
        ),
        *exchange(
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": "Charging",
                "timestamp": "2026-11-22T10:00:01Z",
            },
            {},
        ),
        *exchange(
            "DataTransfer",
            {"vendorId": "flash", "messageId": "PreChargeData", "data": '{"soc": 42}'},
            {"status": "Accepted"},
        ),
        *exchange(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": "TAG1",
                "meterStart": 1000,
                "timestamp": "2026-11-22T10:00:00Z",
            },
            {"transactionId": 7, "idTagInfo": {"status": "Accepted"}},
        ),
        *meter("3500"),
    ]


def fold_all(events: list[Event]) -> tuple[Live, list[Any]]:
    live = Live()
    out: list[Any] = []
    for seq, event in enumerate(events, start=1):
        out.extend(live.fold(event, seq))
    return live, out


def test_a_session_translates_into_every_message_type_with_its_content() -> None:
    live, messages = fold_all(session())
    kinds = [type(m) for m in messages]
    assert kinds == [
        Connection,
        Boot,
        Status,
        DataTransfer,
        TransactionStarted,
        Meter,
        TransactionUpdated,
    ]
    conn, boot, status, transfer, started, metered, updated = messages
    assert conn.state == "connected" and conn.seq == 1
    assert boot.boot.vendor == "Acme" and boot.boot.status == "Accepted"
    assert boot.boot.firmware_version == "1.2" and boot.seq == 3  # the answer's sequence
    assert (status.connector_id, status.status, status.ts) == (
        1,
        "Charging",
        "2026-11-22T10:00:01Z",
    )
    assert transfer.transfer.data == {"soc": 42}
    assert transfer.transfer.message_id == "PreChargeData"
    assert started.transaction_id == 7 and started.meter_start_wh == 1000.0
    assert started.ts == "2026-11-22T10:00:00Z" and started.id_tag == "TAG1"
    measurands = {r.measurand for r in metered.readings}
    assert measurands == {
        "Energy.Active.Import.Register",
        "Power.Active.Import",
        "Voltage",
        "Current.Offered",
        "SoC",
    }  # the NaN-ish one is skipped
    assert updated.energy_wh == 2500.0 and updated.power_w == 7400.0 and updated.soc == 55.0

    snap = live.snapshot(CP, received_at=99)
    assert snap.connected and snap.seq == len(session()) and snap.last_seen > 0
    assert snap.boot is not None and snap.boot.model == "M1"
    [connector] = snap.connectors
    assert connector.status == "Charging"
    assert connector.meter["Voltage/L1-N"].value == 230.1
    assert connector.meter["SoC"].value == 55.0
    [tx] = snap.transactions
    assert (tx.transaction_id, tx.energy_wh, tx.power_w) == (7, 2500.0, 7400.0)
    [dt] = snap.data_transfers
    assert dt.data == {"soc": 42} and dt.status == "Accepted"


def test_stop_carries_energy_duration_and_reason_and_ends_the_transaction() -> None:
    events = [
        *session(),
        *exchange(
            "StopTransaction",
            {
                "transactionId": 7,
                "meterStop": 9000,
                "timestamp": "2026-11-22T10:30:00Z",
                "reason": "EVDisconnected",
            },
            {"idTagInfo": {"status": "Accepted"}},
        ),
    ]
    live, messages = fold_all(events)
    stopped = messages[-1]
    assert isinstance(stopped, TransactionStopped)
    assert stopped.energy_wh == 8000.0 and stopped.duration_s == 1800.0
    assert stopped.reason == "EVDisconnected" and stopped.connector_id == 1
    assert live.snapshot(CP, 0).transactions == []


def test_a_replaced_connection_closing_does_not_mark_the_charger_offline() -> None:
    events: list[Event] = [
        connected("c1"),
        connected("c2"),
        ChargerReplaced(
            id="r",
            received_at=1,
            charge_point_id=CP,
            gateway_id="gw",
            connection_id="c1",
            new_connection_id="c2",
            new_gateway_id="gw",
        ),
        ChargerDisconnected(
            id="d",
            received_at=2,
            charge_point_id=CP,
            gateway_id="gw",
            connection_id="c1",
            close_code=1000,
        ),
    ]
    live, messages = fold_all(events)
    assert [m.state for m in messages] == ["connected", "connected", "replaced"]
    assert live.snapshot(CP, 0).connected
    closed = ChargerDisconnected(
        id="d2",
        received_at=3,
        charge_point_id=CP,
        gateway_id="gw",
        connection_id="c2",
        close_code=1006,
    )
    [message] = live.fold(closed, 5)
    assert isinstance(message, Connection) and message.state == "disconnected"
    assert message.close_code == 1006 and not live.snapshot(CP, 0).connected


def test_translate_is_pure_and_replay_gives_identical_bytes() -> None:
    charging = Charging()
    events = session()
    for seq, event in enumerate(events, start=1):
        facts = charging.apply(seq, event)
        before = encode_state(charging.state)
        assert translate(facts, event, seq, charging) == translate(facts, event, seq, charging)
        assert encode_state(charging.state) == before  # the domain is only read
    events = session()
    _, first = fold_all(events)
    _, second = fold_all(events)
    assert [encode_ui(m) for m in first] == [encode_ui(m) for m in second]
    assert [decode_ui(encode_ui(m)) for m in first] == first


def test_an_unanswered_call_or_a_mismatched_answer_produces_nothing() -> None:
    live = Live()
    call, _ = exchange(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-11-22T10:00:00Z"},
        {"transactionId": 1, "idTagInfo": {"status": "Accepted"}},
    )
    assert live.fold(call, 1) == []
    stray = frame(
        "out",
        "CALLRESULT",
        "StartTransaction",
        {"transactionId": 2, "idTagInfo": {"status": "Accepted"}},
        "other",
    )
    assert live.fold(stray, 2) == []


def test_resume_serves_the_history_or_says_it_is_too_old() -> None:
    live = Live(history_per_charger=4)
    events = session()
    for seq, event in enumerate(events, start=1):
        live.fold(event, seq)
    assert live.can_resume([CP], len(events) - 1)
    missed = live.missed([CP], 9)
    assert [(type(m), m.seq) for m in missed] == [(Meter, 10), (TransactionUpdated, 10)]
    assert live.missed([CP], 10) == []
    assert not live.can_resume([CP], 1)  # fell out of the 4-message history
    assert not live.can_resume([CP], -1)


def test_resume_beyond_the_end_of_the_stream_is_refused_as_such() -> None:
    live = Live()
    events = session()
    for seq, event in enumerate(events, start=1):
        live.fold(event, seq)
    end = len(events)
    assert live.can_resume([CP], end)  # nothing missed, live messages follow
    assert not live.can_resume([CP], end + 1)  # e.g. the stream was recreated
    error = live.resume_error(end + 1)
    assert error.code == "resume_beyond_end"
    assert f"after seq {end + 1}" in error.message and f"ends at seq {end}" in error.message
    assert live.resume_error(0).code == "resume_unavailable"
    assert not Live().can_resume([CP], 1)  # an empty stream ends at 0


def test_events_the_replay_skipped_cannot_be_resumed_across() -> None:
    live = Live()
    events = session()
    for seq in range(1, 4):
        live.skipped(seq)  # older than the replay's time bound
    for seq, event in enumerate(events[3:], start=4):
        live.fold(event, seq)
    assert live.seq == len(events)
    assert live.can_resume([CP], 3) and not live.can_resume([CP], 2)
    assert live.resume_error(2).code == "resume_unavailable"
    only_skipped = Live()
    only_skipped.skipped(7)
    assert only_skipped.can_resume([CP], 7) and not only_skipped.can_resume([CP], 6)


# -- what the charging domain decides, as UIs see it -----------------------------------------


def start(tx: int, at: str, meter_start: int = 1000, connector: int = 1) -> list[Event]:
    return exchange(
        "StartTransaction",
        {"connectorId": connector, "idTag": "TAG1", "meterStart": meter_start, "timestamp": at},
        {"transactionId": tx, "idTagInfo": {"status": "Accepted"}},
    )


def reading(tx: int, wh: str, at: str, unit: str = "Wh") -> list[Event]:
    return exchange(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [
                {
                    "timestamp": at,
                    "sampledValue": [
                        {"value": wh, "measurand": "Energy.Active.Import.Register", "unit": unit},
                        {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                    ],
                }
            ],
        },
        {},
    )


def stop(tx: int, meter_stop: int, at: str, reason: str = "EVDisconnected") -> list[Event]:
    return exchange(
        "StopTransaction",
        {"transactionId": tx, "meterStop": meter_stop, "timestamp": at, "reason": reason},
        {"idTagInfo": {"status": "Accepted"}},
    )


def of(kind: type[Any], messages: list[Any]) -> list[Any]:
    return [m for m in messages if isinstance(m, kind)]


def test_readings_and_a_stop_stamped_minus_one_belong_to_the_transaction_the_hub_answered() -> None:
    live, messages = fold_all(
        [
            connected(),
            *start(7, "2026-11-22T10:00:00Z"),
            *reading(-1, "2.5", "2026-11-22T10:10:00Z", unit="kWh"),
            *stop(-1, 4000, "2026-11-22T10:30:00Z"),
        ]
    )
    [metered] = of(Meter, messages)
    assert metered.transaction_id == 7
    register, power = metered.readings
    assert (register.value, register.unit, register.ts) == (2500.0, "Wh", "2026-11-22T10:10:00Z")
    assert (power.value, power.unit) == (7200.0, "W")  # readings come in base units
    [updated] = of(TransactionUpdated, messages)
    assert (updated.transaction_id, updated.energy_wh, updated.power_w) == (7, 1500.0, 7200.0)
    [stopped] = of(TransactionStopped, messages)
    assert (stopped.transaction_id, stopped.energy_wh, stopped.duration_s) == (7, 3000.0, 1800.0)
    assert (stopped.reason, stopped.ended_by, stopped.corrected) == (
        "EVDisconnected",
        "stopped",
        False,
    )
    assert stopped.meter_stop_wh == 4000.0 and stopped.ts == "2026-11-22T10:30:00Z"
    assert live.snapshot(CP, 0).transactions == []


def test_a_newer_start_on_a_busy_connector_ends_the_older_transaction_as_superseded() -> None:
    live, messages = fold_all(
        [
            connected(),
            *start(7, "2026-11-22T10:00:00Z"),
            *reading(7, "2500", "2026-11-22T10:10:00Z"),
            # The charger restarted and lost the Stop of 7.
            *start(8, "2026-11-22T11:00:00Z", meter_start=2600),
        ]
    )
    [stopped] = of(TransactionStopped, messages)
    assert (stopped.transaction_id, stopped.energy_wh, stopped.duration_s) == (7, 1500.0, None)
    assert (stopped.reason, stopped.ended_by) == ("superseded", "superseded")
    assert [m.transaction_id for m in of(TransactionStarted, messages)] == [7, 8]
    [active] = live.snapshot(CP, 0).transactions
    assert (active.transaction_id, active.energy_wh, active.power_w) == (8, 0.0, None)
    # The lost Stop turns up after all: the end of 7 is corrected, 8 goes on.
    [corrected] = live.fold(stop(7, 3000, "2026-11-22T10:20:00Z")[0], 99)
    assert isinstance(corrected, TransactionStopped) and corrected.corrected
    assert (corrected.transaction_id, corrected.energy_wh, corrected.duration_s) == (
        7,
        2000.0,
        1200.0,
    )
    assert (corrected.reason, corrected.ended_by) == ("EVDisconnected", "stopped")
    assert [t.transaction_id for t in live.snapshot(CP, 0).transactions] == [8]


def test_a_stop_retried_under_a_new_message_id_is_reported_once() -> None:
    first = stop(7, 4000, "2026-11-22T10:30:00Z")
    retried = stop(7, 4000, "2026-11-22T10:30:00Z")  # same content, new unique id
    live, messages = fold_all([connected(), *start(7, "2026-11-22T10:00:00Z"), *first, *retried])
    [stopped] = of(TransactionStopped, messages)
    assert stopped.energy_wh == 3000.0 and stopped.seq == 4  # the first Stop's CALL
    assert live.snapshot(CP, 0).transactions == []


def test_readings_for_an_id_nobody_knows_make_an_inferred_transaction() -> None:
    live, messages = fold_all([connected(), *reading(42, "5000", "2026-11-22T10:10:00Z")])
    [started] = of(TransactionStarted, messages)
    assert (started.transaction_id, started.inferred, started.ts) == (42, True, "")
    [view] = live.snapshot(CP, 0).transactions
    assert (view.transaction_id, view.inferred, view.started_at, view.power_w) == (
        42,
        True,
        "",
        7200.0,
    )


def test_charger_times_are_rendered_in_utc() -> None:
    assert iso(None) == ""
    assert iso(1_795_341_600_000) == "2026-11-22T10:00:00Z"
    assert iso(1_795_341_600_250) == "2026-11-22T10:00:00.250Z"
    live = Live()
    [started_call, answer] = start(7, "2026-11-22T12:00:00+02:00")
    live.fold(started_call, 1)
    [started] = live.fold(answer, 2)
    assert isinstance(started, TransactionStarted) and started.ts == "2026-11-22T10:00:00Z"


def test_late_readings_of_a_transaction_over_correct_what_uis_were_told() -> None:
    b = Builder()
    b.tariff("std", "0.30")
    old = b.start(CP, 1, "2026-11-22T10:00:00Z", 1_000)
    # The charger restarts without a Stop; the reading it took before is flushed after.
    b.start(CP, 1, "2026-11-22T11:00:00Z", 9_000)
    b.meter(CP, 1, old, "2026-11-22T10:30:00Z", 5_000)
    live, messages = fold_all(b.events)
    stopped = [m for m in messages if isinstance(m, TransactionStopped)]
    assert [(m.transaction_id, m.energy_wh, m.ended_by, m.corrected) for m in stopped] == [
        (old, 0.0, "superseded", False),
        (old, 4_000.0, "superseded", True),
    ]
    assert stopped[1].bill is not None and stopped[1].bill.energy_cost == "1.2000"
    # The same reading again changes nothing: nothing more is said.
    more = live.fold(b.events[-2], len(b.events) + 1)
    assert not [m for m in more if isinstance(m, TransactionStopped)]


def test_security_events_reach_uis_and_the_snapshot_keeps_the_last_ones() -> None:
    reports = [
        exchange(
            "SecurityEventNotification",
            {"type": "InvalidChargePointCertificate", "timestamp": f"2026-03-01T10:{n:02}:00Z"},
            {},
        )
        for n in range(MAX_SECURITY_EVENTS + 5)
    ]
    tamper = exchange(
        "SecurityEventNotification",
        {
            "type": "TamperDetectionActivated",
            "timestamp": "2026-03-01T11:00:00Z",
            "techInfo": "lid",
        },
        {},
    )
    live, messages = fold_all([connected(), *itertools.chain(*reports), *tamper])
    events = [m for m in messages if isinstance(m, SecurityEvent)]
    assert len(events) == MAX_SECURITY_EVENTS + 6
    last = events[-1]
    assert (last.ts, last.event) == (
        "2026-03-01T11:00:00Z",
        SecurityEventView(
            type="TamperDetectionActivated",
            timestamp="2026-03-01T11:00:00Z",
            tech_info="lid",
            critical=True,
        ),
    )
    kept = live.snapshot(CP, received_at=99).security_events
    assert len(kept) == MAX_SECURITY_EVENTS
    assert kept[-1] == last.event and kept[0].timestamp == "2026-03-01T10:06:00Z"
