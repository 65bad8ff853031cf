"""Deterministic event streams for the projection tests, built frame by frame.

They go into a real JetStream through the real EventStore, exactly as the gateway stores
them: a CALL and its answer are consecutive events of one charger with one unique id.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from schemas.events import (
    ChargerConnected,
    ChargerDisconnected,
    Event,
    FrameRejected,
    OcppFrame,
    TariffBand,
    TariffSet,
)

_ids = itertools.count(1)
# One hub clock for every builder: streams built one after the other stay in time order.
_clock = itertools.count(1_795_000_000_000, 1000)
# Transaction ids as the hub issues them: unique across chargers and builders.
_txids = itertools.count(101)


class Builder:
    """Events of one stream; ``now`` is the hub's clock, advanced by each event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.now = next(_clock)

    def _tick(self) -> int:
        self.now = next(_clock)
        return self.now

    def _id(self) -> str:
        return f"ev-{next(_ids)}-{self.now}"

    def call(
        self,
        cp: str,
        action: str,
        payload: dict[str, Any],
        answer: dict[str, Any],
        version: str = "1.6",
    ) -> None:
        unique_id = f"u{next(_ids)}"
        common = {"charge_point_id": cp, "gateway_id": "gw-t", "connection_id": f"c-{cp}"}
        for direction, kind, body in (("in", "CALL", payload), ("out", "CALLRESULT", answer)):
            self.events.append(
                OcppFrame(
                    id=self._id(),
                    received_at=self._tick(),
                    **common,
                    ocpp_version=version,  # type: ignore[arg-type]
                    direction=direction,  # type: ignore[arg-type]
                    message_type=kind,  # type: ignore[arg-type]
                    unique_id=unique_id,
                    action=action,
                    payload=msgspec.Raw(msgspec.json.encode(body)),
                )
            )

    def connect(self, cp: str, version: str = "1.6") -> None:
        self.events.append(
            ChargerConnected(
                id=self._id(),
                received_at=self._tick(),
                charge_point_id=cp,
                gateway_id="gw-t",
                connection_id=f"c-{cp}",
                ocpp_version=version,  # type: ignore[arg-type]
                remote_address="10.0.0.1:1",
                security_profile=0,
            )
        )

    def disconnect(self, cp: str) -> None:
        self.events.append(
            ChargerDisconnected(
                id=self._id(),
                received_at=self._tick(),
                charge_point_id=cp,
                gateway_id="gw-t",
                connection_id=f"c-{cp}",
                close_code=1006,
            )
        )

    def boot(self, cp: str) -> None:
        self.call(
            cp,
            "BootNotification",
            {"chargePointVendor": "Acme", "chargePointModel": "X1", "firmwareVersion": "2.0"},
            {"status": "Accepted", "currentTime": "2026-11-22T00:00:00Z", "interval": 300},
        )

    def status(self, cp: str, connector: int, status: str, error: str = "NoError") -> None:
        self.call(
            cp,
            "StatusNotification",
            {"connectorId": connector, "errorCode": error, "status": status},
            {},
        )

    def start(self, cp: str, connector: int, at: str, meter: int, tag: str = "TAG") -> int:
        txid = next(_txids)
        self.call(
            cp,
            "StartTransaction",
            {"connectorId": connector, "idTag": tag, "meterStart": meter, "timestamp": at},
            {"transactionId": txid, "idTagInfo": {"status": "Accepted"}},
        )
        return txid

    def meter(self, cp: str, connector: int, txid: int | None, at: str, wh: float) -> None:
        payload: dict[str, Any] = {
            "connectorId": connector,
            "meterValue": [
                {
                    "timestamp": at,
                    "sampledValue": [
                        {"value": f"{wh}", "unit": "Wh"},
                        {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                    ],
                }
            ],
        }
        if txid is not None:
            payload["transactionId"] = txid
        self.call(cp, "MeterValues", payload, {})

    def stop(
        self,
        cp: str,
        txid: int,
        at: str,
        meter: int,
        reason: str = "Local",
        *,
        end_reading: bool = False,
    ) -> None:
        """``end_reading``: the register at the stop in transactionData, too."""
        payload: dict[str, Any] = {
            "transactionId": txid,
            "timestamp": at,
            "meterStop": meter,
            "reason": reason,
        }
        if end_reading:
            sampled = [{"value": f"{meter}", "unit": "Wh", "context": "Transaction.End"}]
            payload["transactionData"] = [{"timestamp": at, "sampledValue": sampled}]
        self.call(cp, "StopTransaction", payload, {"idTagInfo": {"status": "Accepted"}})

    # -- OCPP 2.0.1 / 2.1 ---------------------------------------------------------------------

    def boot2(self, cp: str, version: str = "2.0.1") -> None:
        station = {"vendorName": "Acme", "model": "X1", "firmwareVersion": "2.0"}
        self.call(
            cp,
            "BootNotification",
            {"chargingStation": station, "reason": "PowerUp"},
            {"status": "Accepted", "currentTime": "2026-11-22T00:00:00Z", "interval": 300},
            version,
        )

    def status2(self, cp: str, evse: int, status: str, version: str = "2.0.1") -> None:
        payload = {
            "timestamp": "2026-11-22T00:00:00Z",
            "connectorStatus": status,
            "evseId": evse,
            "connectorId": 1,
        }
        self.call(cp, "StatusNotification", payload, {}, version)

    def event2(
        self,
        cp: str,
        kind: str,
        txid: str,
        seq_no: int,
        at: str,
        wh: float | None = None,
        *,
        evse: int | None = 1,
        tag: str | None = None,
        reason: str | None = None,
        offline: bool = False,
        version: str = "2.0.1",
    ) -> None:
        """A TransactionEvent and the hub's answer; ``wh``: an energy register reading at
        ``at`` (with a power reading, as ``meter`` sends), in the context the event implies."""
        trigger = {"Started": "Authorized", "Updated": "MeterValuePeriodic", "Ended": "EVDeparted"}
        info: dict[str, Any] = {"transactionId": txid}
        if reason is not None:
            info["stoppedReason"] = reason
        payload: dict[str, Any] = {
            "eventType": kind,
            "timestamp": at,
            "triggerReason": trigger[kind],
            "seqNo": seq_no,
            "transactionInfo": info,
        }
        if wh is not None:
            context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}.get(
                kind, "Sample.Periodic"
            )
            power: dict[str, Any] = {"value": 7.2, "measurand": "Power.Active.Import"}
            power["unitOfMeasure"] = {"unit": "kW"}
            power["context"] = context
            energy = {"value": wh, "context": context, "unitOfMeasure": {"unit": "Wh"}}
            payload["meterValue"] = [{"timestamp": at, "sampledValue": [energy, power]}]
        if evse is not None:
            payload["evse"] = {"id": evse, "connectorId": 1}
        if offline:
            payload["offline"] = True
        answer: dict[str, Any] = {}
        if tag is not None:
            payload["idToken"] = {"idToken": tag, "type": "ISO14443"}
            answer["idTokenInfo"] = {"status": "Accepted"}
        self.call(cp, "TransactionEvent", payload, answer, version)

    def meter2(self, cp: str, evse: int, at: str, wh: float, version: str = "2.0.1") -> None:
        sampled = [{"value": wh / 1000, "unitOfMeasure": {"unit": "kWh"}}]
        payload = {"evseId": evse, "meterValue": [{"timestamp": at, "sampledValue": sampled}]}
        self.call(cp, "MeterValues", payload, {}, version)

    def tariff(self, tariff_id: str, per_kwh: str, *, bands: tuple[TariffBand, ...] = ()) -> None:
        self.events.append(
            TariffSet(
                id=self._id(),
                received_at=self._tick(),
                actor="test",
                tariff_id=tariff_id,
                currency="EUR",
                per_kwh=per_kwh,
                per_minute="0.01",
                session_fee="0.50",
                bands=bands,
            )
        )

    def rejected(self, cp: str) -> None:
        self.events.append(
            FrameRejected(
                id=self._id(),
                received_at=self._tick(),
                charge_point_id=cp,
                gateway_id="gw-t",
                connection_id=f"c-{cp}",
                ocpp_version="1.6",
                reason="schema_violation",
                error_code="FormationViolation",
                error_description="bad meterStart",
                raw='[2,"x","StartTransaction",{"meterStart":"a"}]',
            )
        )


def mixed(builder: Builder | None = None) -> Builder:
    """Sessions of every kind, a tariff change in the middle, and bad input."""
    b = builder or Builder()
    b.tariff("day", "0.30", bands=(TariffBand(start="22:00", end="06:00", per_kwh="0.10"),))
    b.connect("CP-A")
    b.boot("CP-A")
    b.status("CP-A", 1, "Preparing")
    tx = b.start("CP-A", 1, "2026-11-22T09:40:00Z", 10_000)
    b.meter("CP-A", 1, tx, "2026-11-22T10:20:00Z", 14_000)
    # Late and out of order: 10:00 arrives after 10:20.
    b.meter("CP-A", 1, tx, "2026-11-22T10:00:00Z", 12_000)
    b.stop("CP-A", tx, "2026-11-22T10:40:00Z", 16_000)
    # A meter value that arrives after the Stop still lands in its hour.
    b.meter("CP-A", 1, tx, "2026-11-22T10:30:00Z", 15_000)
    b.rejected("CP-A")
    b.tariff("day-2", "0.50")
    # Started offline: the Start is flushed late, then samples and Stop carry -1.
    b.connect("CP-B")
    b.boot("CP-B")
    tx_b = b.start("CP-B", 2, "2026-11-22T08:00:00Z", 0)
    b.meter("CP-B", 2, -1, "2026-11-22T08:30:00Z", 5_000)
    b.stop("CP-B", -1, "2026-11-22T09:00:00Z", 9_000)
    # A Stop for an id nobody issued, with no session open: recorded, flagged.
    b.stop("CP-B", 0, "2026-11-22T12:00:00Z", 20_000)
    b.disconnect("CP-B")
    del tx_b
    return b


def fleet(chargers: int, sessions: int) -> Builder:
    """Many ordinary sessions, for crash and replay tests."""
    b = Builder()
    b.tariff("std", "0.25")
    for n in range(chargers):
        cp = f"CP-{n:03d}"
        b.connect(cp)
        b.boot(cp)
        for s in range(sessions):
            hour = 10 + s
            tx = b.start(cp, 1, f"2026-11-22T{hour:02d}:10:00Z", 1000 * s)
            for minute in (20, 30, 40):
                b.meter(cp, 1, tx, f"2026-11-22T{hour:02d}:{minute}:00Z", 1000 * s + minute * 10)
            b.stop(cp, tx, f"2026-11-22T{hour:02d}:50:00Z", 1000 * s + 600)
            if s == sessions // 2:
                b.tariff(f"std-{n}", "0.27")
    return b


# Integers OCPP 1.6 allows (JSON integers, unbounded) at and past the Int64 columns' ends.
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
BEYOND_INT64 = 1 << 63


def wide_values(builder: Builder | None = None) -> Builder:
    """One charger sending every integer the schema allows, the ordinary sessions of another
    around it: -1 and 2^32 (which UInt32 columns refused or wrapped) are stored as sent, and
    a message with an integer no Int64 holds is recorded in projection_errors instead."""
    b = builder or Builder()
    b.tariff("std", "0.25")
    for cp in ("CP-ODD", "CP-OK"):
        b.connect(cp)
        b.boot(cp)
    b.status("CP-ODD", -1, "Available")
    b.status("CP-ODD", 1 << 32, "Available")
    b.status("CP-ODD", INT64_MIN, "Available")
    b.status("CP-ODD", BEYOND_INT64, "Faulted")
    b.status("CP-OK", 1, "Preparing")
    ok = b.start("CP-OK", 1, "2026-11-22T10:00:00Z", 1_000)
    odd = b.start("CP-ODD", -1, "2026-11-22T10:00:00Z", 1 << 40)
    b.meter("CP-ODD", -1, odd, "2026-11-22T10:30:00Z", (1 << 40) + 5_000)
    b.meter("CP-OK", 1, ok, "2026-11-22T10:30:00Z", 4_000)
    # An id the hub never issued, on a connector with nothing open: a session of its own.
    b.meter("CP-ODD", 1 << 32, -1, "2026-11-22T10:40:00Z", 7_000)
    b.meter("CP-ODD", 1, -(1 << 64), "2026-11-22T10:45:00Z", 8_000)
    b.stop("CP-ODD", odd, "2026-11-22T11:00:00Z", (1 << 40) + 9_000)
    b.start("CP-ODD", 1 << 70, "2026-11-22T11:10:00Z", 0)
    b.call(
        "CP-ODD",
        "StartTransaction",
        {
            "connectorId": 2,
            "idTag": "TAG",
            "meterStart": 0,
            "timestamp": "2026-11-22T11:20:00Z",
            "reservationId": -5,
        },
        {"transactionId": next(_txids), "idTagInfo": {"status": "Accepted"}},
    )
    b.meter("CP-OK", 1, ok, "2026-11-22T11:00:00Z", 7_000)
    b.stop("CP-OK", ok, "2026-11-22T11:30:00Z", 9_000)
    return b


# Readings' times at the edges of what ch_time formats and what DateTime64 shows (1900 to
# 2299), rounded from microseconds, with offsets; one MeterValues each.
ODD_TIMES = (
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00.0004-00:01",
    "1899-12-31T23:59:59.999Z",
    "1969-12-31T23:59:59.9995Z",
    "1969-12-31T23:59:59.0001Z",
    "2026-11-22T10:00:00.123456+05:30",
    "2299-12-31T23:59:59.999Z",
    "2300-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999Z",
)
# Rounds to the year 10000, which ch_time cannot write: the message fails after its first set.
BEYOND_CALENDAR = "9999-12-31T23:59:59.9999Z"


def odd_readings(builder: Builder | None = None) -> Builder:
    """MeterValues with several sample sets each (every phase, unit, location and context),
    at odd times, with values a meter cannot have among them, in and out of a transaction."""
    b = builder or Builder()
    b.connect("CP-READ")
    b.boot("CP-READ")
    txid = b.start("CP-READ", 1, "2026-11-22T10:00:00Z", 0)
    sampled = [
        {"value": "1000.5", "unit": "Wh"},
        {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW", "phase": "L1-N"},
        {"value": "16", "measurand": "Current.Import", "unit": "A", "phase": "L2"},
        {"value": "-3.5", "measurand": "Temperature", "unit": "Celsius", "location": "Body"},
        {"value": "55", "measurand": "SoC", "unit": "Percent", "location": "EV"},
        {"value": "1e400", "measurand": "Voltage", "unit": "V"},
        {"value": "1e30", "measurand": "Energy.Active.Export.Register", "unit": "kWh"},
        {"value": "2", "unit": "kWh", "context": "Sample.Clock", "phase": "N"},
    ]
    times = [*ODD_TIMES, BEYOND_CALENDAR]
    for index, at in enumerate(times):
        sets = [
            {"timestamp": times[max(index - 1, 0)], "sampledValue": sampled[1:3]},
            {"timestamp": at, "sampledValue": sampled},
        ]
        payload: dict[str, Any] = {"connectorId": 1, "meterValue": sets}
        if index % 3:
            payload["transactionId"] = txid if index % 3 == 1 else 999_999
        b.call("CP-READ", "MeterValues", payload, {})
    b.call(
        "CP-READ",
        "MeterValues",
        {
            "connectorId": 2,
            "meterValue": [{"timestamp": "2026-11-22T10:00:00Z", "sampledValue": []}],
        },
        {},
    )
    return b


def overpriced(builder: Builder | None = None) -> Builder:
    """A tariff whose bills no Decimal(18, 4) column holds (10^12 a kWh), for one charger
    only, between ordinary sessions of others: the store refuses those billing rows."""
    b = builder or Builder()
    b.tariff("std", "0.25")
    b.events.append(
        TariffSet(
            id=b._id(),
            received_at=b._tick(),
            actor="test",
            tariff_id="gold",
            charge_point_id="CP-GOLD",
            currency="EUR",
            per_kwh="1000000000000",
        )
    )
    for cp in ("CP-GOLD", "CP-OK"):
        b.connect(cp)
        b.boot(cp)
    ok = b.start("CP-OK", 1, "2026-11-22T10:00:00Z", 0)
    gold = b.start("CP-GOLD", 1, "2026-11-22T10:00:00Z", 0)
    b.meter("CP-GOLD", 1, gold, "2026-11-22T10:30:00Z", 500_000)
    b.meter("CP-OK", 1, ok, "2026-11-22T10:30:00Z", 3_000)
    b.stop("CP-GOLD", gold, "2026-11-22T11:00:00Z", 1_000_000)
    b.stop("CP-OK", ok, "2026-11-22T11:00:00Z", 6_000)
    return b
