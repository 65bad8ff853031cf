"""A simulated OCPP 2.0.1 or 2.1 charging station: its messages and its charging session.

The link (connecting, the offline queue, answering the CSMS) is ChargerLink's, as for 1.6;
what differs is what the station says. A 2.x transaction is the station's own: it makes the
transaction id, numbers every TransactionEvent of it from seqNo 0, and while offline keeps
them in its queue marked ``offline: true``, sent in order once the link is back
(OCPP 2.0.1 E04). It boots once, at power-up, not on every reconnect. It holds the
charging profiles the CSMS sets and answers GetCompositeSchedule as the load benchmark's
1.6 chargers do (:class:`~tools.simulator.obey.ChargerControl`, by OCPP 2.0.1 K01/K10):
with the hub's own model and composite.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from websockets.typing import Subprotocol

from tools.simulator.charger import (
    ACCEPTED_IN_EVERY_VERSION,
    CallError,
    ChargerLink,
    Payload,
    utc_timestamp,
)
from tools.simulator.obey import ChargerControl, now_ms
from tools.simulator.session import (
    DEFAULT_VENDOR_ID,
    PRE_CHARGE_MESSAGE_ID,
    Pace,
    Sample,
    SaturationLoad,
    SaturationMeter,
    SessionPlan,
    SessionResult,
    Steps,
    pre_charge_data,
)

__all__ = [
    "STATION_VERSIONS",
    "SimulatedStation",
    "StationTransaction",
    "StopTrigger",
    "default_station_response",
    "run_station_session",
    "station_saturation_load",
]

StationVersion = Literal["2.0.1", "2.1"]
STATION_VERSIONS: Final[tuple[StationVersion, ...]] = ("2.0.1", "2.1")
StopTrigger = Literal["EVDeparted", "StopAuthorized"]
"""Why a transaction ends: the car left (cable out), or the driver presented the card."""

# The stoppedReason each trigger comes with.
_STOPPED_REASON: Final[dict[StopTrigger, str]] = {
    "EVDeparted": "EVDisconnected",
    "StopAuthorized": "Local",
}
ID_TOKEN_TYPE: Final = "ISO14443"

_ACCEPTING: Final = ACCEPTED_IN_EVERY_VERSION | {
    "RequestStartTransaction",
    "RequestStopTransaction",
    "CertificateSigned",
    "InstallCertificate",
    "UpdateFirmware",
    "GetLog",
    "SetNetworkProfile",
}


def _each(items: Any, status: str, result: str) -> Payload:
    """A device-model answer: every component/variable asked about, with one status."""
    answers = [
        {
            "attributeStatus": status,
            "component": item.get("component", {}),
            "variable": item.get("variable", {}),
        }
        for item in items
    ]
    return {result: answers}


def default_station_response(action: str, payload: Payload) -> Payload:
    """Answer a CSMS-initiated CALL the way a cooperative 2.x station would."""
    if action in _ACCEPTING:
        return {"status": "Accepted"}
    if action == "UnlockConnector":
        return {"status": "Unlocked"}
    if action == "GetLocalListVersion":
        return {"versionNumber": 0}
    if action in ("GetBaseReport", "GetReport"):
        # No device model is simulated, so there is nothing to report.
        return {"status": "NotSupported"}
    if action == "GetTransactionStatus":
        return {"messagesInQueue": False}
    if action == "SetVariables":
        return _each(payload.get("setVariableData", []), "Accepted", "setVariableResult")
    if action == "GetVariables":
        return _each(payload.get("getVariableData", []), "UnknownVariable", "getVariableResult")
    raise CallError("NotImplemented", f"{action} is not supported by the simulator")


class StationTransaction:
    """One transaction as the station knows it: its own id, and the next seqNo."""

    __slots__ = ("evse_id", "id_token", "seq_no", "transaction_id")

    def __init__(self, evse_id: int, id_token: str) -> None:
        # The station makes the id (2.x): unique across stations and restarts.
        self.transaction_id = str(uuid.uuid4())
        self.evse_id = evse_id
        self.id_token = id_token
        self.seq_no = 0

    def next_seq_no(self) -> int:
        seq_no = self.seq_no
        self.seq_no += 1
        return seq_no


class SimulatedStation(ChargerLink):
    """A charging station speaking OCPP 2.0.1 or 2.1; ``connectors`` is its number of EVSEs,
    one connector each (see ChargerLink for the link)."""

    # E04: transaction-related messages survive an outage; anything else is stale by then.
    queued_while_offline = frozenset({"TransactionEvent"})
    boots_on_reconnect = False

    def __init__(
        self, charge_point_id: str, url: str, *, version: StationVersion = "2.0.1", **kwargs: Any
    ) -> None:
        if version not in STATION_VERSIONS:
            raise ValueError(f"not an OCPP 2.x version: {version}")
        super().__init__(charge_point_id, url, **kwargs)
        self.version = version
        self.subprotocol = Subprotocol(f"ocpp{version}")
        self.boot_reason = "PowerUp"
        self.control = ChargerControl(ocpp_version=version, phases=self.phases)

    def _default_response(self, action: str, payload: Payload) -> Payload:
        smart = self.control.answer(action, payload, now_ms())
        return smart if smart is not None else default_station_response(action, payload)

    def _expendable(self, action: str, payload: Payload) -> bool:
        # Periodic samples go first when the queue is full; the seqNo gap they leave is how
        # the CSMS learns of it (E04).
        return payload.get("triggerReason") == "MeterValuePeriodic"

    def _boot_payload(self) -> Payload:
        return {
            "reason": self.boot_reason,
            "chargingStation": {
                "model": self.model[:20],
                "vendorName": self.vendor[:50],
                "serialNumber": self.charge_point_id[-25:],
                "firmwareVersion": f"sim-{self.version}",
            },
        }

    async def announce(self) -> None:
        for evse_id in range(1, self.connectors + 1):
            await self.status(evse_id, "Available")

    # -------------------------------------------------------------- messages

    async def status(
        self,
        evse_id: int,
        status: str,
        *,
        connector_id: int = 1,
        timestamp: datetime | str | None = None,
    ) -> Payload:
        return await self.call(
            "StatusNotification",
            {
                "timestamp": utc_timestamp(timestamp),
                "connectorStatus": status,
                "evseId": evse_id,
                "connectorId": connector_id,
            },
        )

    async def authorize(self, id_token: str) -> Payload:
        return await self.call("Authorize", {"idToken": _id_token(id_token)})

    async def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None
    ) -> Payload:
        """DataTransfer; 2.x carries the data as JSON as it is, not as a string."""
        payload: Payload = {"vendorId": vendor_id}
        if message_id is not None:
            payload["messageId"] = message_id
        if data is not None:
            payload["data"] = data
        return await self.call("DataTransfer", payload)

    async def meter_values(self, evse_id: int, sample: Sample) -> Payload:
        """A reading outside any transaction (MeterValues, not TransactionEvent)."""
        meter_value = self._meter_value(sample, "Sample.Periodic", every_phase=True)
        return await self.call("MeterValues", {"evseId": evse_id, "meterValue": [meter_value]})

    async def start_transaction(
        self, evse_id: int, id_token: str, reading: Sample
    ) -> tuple[StationTransaction, Payload | None]:
        """TransactionEvent Started (seqNo 0) once the driver is authorized; the answer is
        None when it was queued while offline."""
        tx = StationTransaction(evse_id, id_token)
        self.control.transaction_started(evse_id, tx.transaction_id, now_ms(), self.phases)
        answer = await self._transaction_event(
            tx,
            "Started",
            "Authorized",
            reading,
            "Transaction.Begin",
            charging_state="Charging",
            evse={"id": evse_id, "connectorId": 1},
            id_token=_id_token(id_token),
        )
        return tx, answer

    async def update_transaction(self, tx: StationTransaction, reading: Sample) -> Payload | None:
        """TransactionEvent Updated with a periodic meter sample."""
        return await self._transaction_event(
            tx, "Updated", "MeterValuePeriodic", reading, "Sample.Periodic", every_phase=True
        )

    async def stop_transaction(
        self, tx: StationTransaction, reading: Sample, trigger: StopTrigger = "EVDeparted"
    ) -> Payload | None:
        """TransactionEvent Ended with the final reading."""
        self.control.transaction_ended(tx.evse_id, now_ms())  # its TxProfiles end with it
        extra: dict[str, Any] = {}
        if trigger == "StopAuthorized":
            extra["id_token"] = _id_token(tx.id_token)
        return await self._transaction_event(
            tx,
            "Ended",
            trigger,
            reading,
            "Transaction.End",
            charging_state="EVConnected" if trigger == "StopAuthorized" else "Idle",
            stopped_reason=_STOPPED_REASON[trigger],
            **extra,
        )

    async def _transaction_event(
        self,
        tx: StationTransaction,
        event_type: str,
        trigger: str,
        reading: Sample,
        context: str,
        *,
        every_phase: bool = False,
        charging_state: str | None = None,
        stopped_reason: str | None = None,
        evse: Payload | None = None,
        id_token: Payload | None = None,
    ) -> Payload | None:
        info: Payload = {"transactionId": tx.transaction_id}
        if charging_state is not None:
            info["chargingState"] = charging_state
        if stopped_reason is not None:
            info["stoppedReason"] = stopped_reason
        payload: Payload = {
            "eventType": event_type,
            "timestamp": utc_timestamp(reading.at),
            "triggerReason": trigger,
            "seqNo": tx.next_seq_no(),
            "transactionInfo": info,
            "meterValue": [self._meter_value(reading, context, every_phase=every_phase)],
        }
        if not self.online:
            # Made while the link is down: the CSMS learns it happened offline (E04).
            payload["offline"] = True
        if evse is not None:
            payload["evse"] = evse
        if id_token is not None:
            payload["idToken"] = id_token
        return await self._call_or_queue("TransactionEvent", payload)

    def _meter_value(self, reading: Sample, context: str, *, every_phase: bool) -> Payload:
        """Energy register, power and SoC; with ``every_phase`` current and voltage per
        phase too, as a periodic sample has them."""

        def sampled(value: float, measurand: str, unit: str, **extra: str) -> Payload:
            return {
                "value": round(value, 1),
                "context": context,
                "measurand": measurand,
                "location": extra.pop("location", "Outlet"),
                "unitOfMeasure": {"unit": unit},
                **extra,
            }

        values = [
            sampled(round(reading.energy_wh), "Energy.Active.Import.Register", "Wh"),
            sampled(reading.power_w, "Power.Active.Import", "W"),
        ]
        if every_phase:
            for phase in ("L1", "L2", "L3")[: max(1, min(self.phases, 3))]:
                values.append(sampled(reading.current_a, "Current.Import", "A", phase=phase))
                values.append(sampled(reading.voltage_v, "Voltage", "V", phase=f"{phase}-N"))
        values.append(sampled(round(reading.soc), "SoC", "Percent", location="EV"))
        return {"timestamp": utc_timestamp(reading.at), "sampledValue": values}


def station_saturation_load(
    station: SimulatedStation, id_token: str, rng: random.Random
) -> SaturationLoad:
    """The 2.x counterpart of each action of the fleet's saturation mix (session.py's
    saturation_load for 1.6): a meter sample is a TransactionEvent Updated inside a
    transaction and MeterValues outside one, as 1.6 sends MeterValues with and without a
    transactionId."""
    tx: StationTransaction | None = None
    meter = SaturationMeter(station.meter_wh[1])

    def reading(power_w: float = meter.POWER_W) -> Sample:
        soc = rng.uniform(10.0, 90.0)
        return Sample(meter.at, meter.register_wh, power_w, 16.0, 230.0, soc)

    async def send(action: str) -> object:
        nonlocal tx
        if action == "MeterValues":
            meter.advance(rng)
            if tx is None:
                return await station.meter_values(1, reading())
            return await station.update_transaction(tx, reading())
        if action == "StatusNotification":
            return await station.status(1, rng.choice(("Occupied", "Available")))
        if action == "Heartbeat":
            return await station.heartbeat()
        if action == "Authorize":
            return await station.authorize(id_token)
        if action == "DataTransfer":
            data = pre_charge_data(rng.uniform(10.0, 90.0))
            return await station.data_transfer(DEFAULT_VENDOR_ID, PRE_CHARGE_MESSAGE_ID, data)
        if tx is None:
            tx, answer = await station.start_transaction(1, id_token, reading(0.0))
            return answer
        stopped = await station.stop_transaction(tx, reading(0.0))
        tx = None
        return stopped

    return send


def _id_token(id_token: str) -> Payload:
    return {"idToken": id_token, "type": ID_TOKEN_TYPE}


async def run_station_session(
    station: SimulatedStation,
    plan: SessionPlan | None = None,
    *,
    evse_id: int = 1,
    id_token: str = "SIMTAG0001",
    stop: StopTrigger = "EVDeparted",
    boot: bool = True,
    pace: Pace | None = None,
    rng: random.Random | None = None,
) -> SessionResult:
    """Plug in, authorize, charge, unplug, as a 2.x station reports it: the same plan (car,
    curve, pacing) as the 1.6 session (run_session), told in TransactionEvents.

    Sequence: [Boot,] StatusNotification Occupied, DataTransfer PreChargeData, Authorize,
    TransactionEvent Started (triggerReason Authorized, seqNo 0, the id token, the EVSE and
    the meter at the start), `plan.meter_values` times TransactionEvent Updated
    (MeterValuePeriodic) with rising energy and SoC, TransactionEvent Ended (EVDeparted and
    stoppedReason EVDisconnected, or StopAuthorized and Local, with the final reading),
    StatusNotification Available, Heartbeat.

    While the station is deliberately offline, the TransactionEvents queue (marked offline)
    and everything else is skipped; an unexpected disconnect raises ChargerDisconnected.
    """
    plan = plan or SessionPlan()
    rng = rng or random.Random()
    step = Steps(station, pace)
    if boot:
        await step.boot()
    await step(station.status, evse_id, "Occupied")
    await step.pre_charge(plan)
    await step(station.authorize, id_token)

    meter_start = station.meter_wh[evse_id]
    started = datetime.now(UTC)
    begin = Sample(started, meter_start, 0.0, 0.0, plan.voltage_v, plan.start_soc)
    # Transaction messages queue rather than fail, so the step always yields a result.
    began = await step(station.start_transaction, evse_id, id_token, begin)
    assert began is not None
    tx = began[0]
    last = begin
    for sample in plan.curve(started, meter_start, station.phases, rng):
        last = sample
        await step(station.update_transaction, tx, sample)
    station.meter_wh[evse_id] = last.energy_wh
    stopped = started + timedelta(seconds=plan.charging_seconds())
    end = Sample(stopped, last.energy_wh, 0.0, 0.0, plan.voltage_v, last.soc)
    await step(station.stop_transaction, tx, end, stop)
    await step(station.status, evse_id, "Available")
    await step(station.heartbeat)
    return SessionResult(
        transaction_id=tx.transaction_id,
        # As the meter values say it: to the Wh.
        meter_start=round(meter_start),
        meter_stop=round(last.energy_wh),
        final_soc=last.soc,
        messages=step.messages,
    )
