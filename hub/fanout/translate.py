"""``(facts, event, seq, charging) -> UI messages``: what one stored event means to a UI.

The charging domain (``hub.domain.charging``) decides what events mean: which transaction a
message belongs to (ids the hub never issued, such as an offline charger's ``-1``), what a
retried Stop is, that a newer start on a busy connector ends the older transaction, what the
readings are. The fan-out folds the one ``Charging`` of the whole stream first; here its
facts are rendered, in order, reading the domain's state as it stands after them (read-only)
for what a UI shows of a transaction: the id the hub knows it by, its energy curve, its
tariff. Only events that are no OCPP (a connection replaced, a command finished, the
supervisor's findings) are read directly: the fan-out decodes no OCPP payload.

A pure function: replaying the same events into a fresh domain yields the same messages,
byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypedDict

import msgspec

from hub.domain import energy
from hub.domain.charging import Charging, Session
from hub.domain.charging import key as session_key
from hub.domain.command_tracking import command_message
from hub.domain.facts import (
    ChargerBooted,
    ChargerConnected,
    ChargerDisconnected,
    ConnectorStatusChanged,
    DataTransferred,
    Fact,
    Sample,
    SecurityEventReported,
    TransactionEnded,
    TransactionId,
    TransactionMetered,
    TransactionStarted,
)
from hub.domain.tariffs import Point
from hub.domain.timeutil import ch_time
from hub.fanout.money import alert, bill, energy_of
from schemas import ui
from schemas.events import (
    AllocationDecided,
    AnomalyDetected,
    AnomalyResolved,
    ChargerReplaced,
    CommandFinished,
    Event,
    IntegrityAction,
    LimitReached,
)

POWER: Final = "Power.Active.Import"
SOC: Final = "SoC"

_json: Final = msgspec.json.Decoder()


def translate(
    facts: Sequence[Fact], event: Event, seq: int, charging: Charging
) -> list[ui.ChargerMessage]:
    """The UI messages of one stored event: ``facts`` are what ``charging.apply`` made of
    it, ``charging`` the domain right after."""
    out: list[ui.ChargerMessage] = []
    match event:
        case ChargerReplaced():
            # No fact: the charger is as connected as it was. UIs see the change of hands.
            out.append(
                ui.Connection(
                    charge_point_id=event.charge_point_id,
                    seq=seq,
                    received_at=event.received_at,
                    state="replaced",
                )
            )
        case CommandFinished():
            # The outcome of a command sent through the command API (hub/api).
            out.append(command_message(event, seq))
        case AnomalyDetected() | AnomalyResolved() | IntegrityAction() | LimitReached():
            found = alert(event, seq)
            if found is not None:
                out.append(found)
        case AllocationDecided():
            out.append(
                ui.Allocation(
                    charge_point_id=event.charge_point_id,
                    seq=seq,
                    received_at=event.received_at,
                    connector_id=event.connector_id,
                    session=event.session,
                    limit_a=event.limit_a,
                    admitted=event.admitted,
                    wants_a=event.wants_a,
                    drawn_a=event.drawn_a,
                    node_id=event.node_id,
                    reason=event.reason,
                    command_id=event.command_id,
                )
            )
    for fact in facts:
        out.extend(_render(fact, seq, charging))
    return out


def _render(fact: Fact, seq: int, charging: Charging) -> list[ui.ChargerMessage]:
    cp, at = fact.charge_point_id, fact.at
    match fact:
        case ChargerConnected():
            return [
                ui.Connection(
                    charge_point_id=cp,
                    seq=seq,
                    received_at=at,
                    state="connected",
                    security_profile=fact.security_profile,
                    certificate_not_after=fact.certificate_not_after,
                    ocpp_version=fact.ocpp_version,
                )
            ]
        case ChargerDisconnected():
            return [
                ui.Connection(
                    charge_point_id=cp,
                    seq=seq,
                    received_at=at,
                    state="disconnected",
                    close_code=fact.close_code,
                    close_reason=fact.close_reason,
                )
            ]
        case ConnectorStatusChanged():
            return [
                ui.Status(
                    charge_point_id=cp,
                    seq=seq,
                    ts=iso(fact.timestamp_ms),
                    received_at=at,
                    connector_id=fact.connector_id,
                    status=fact.status,
                    error_code=fact.error_code,
                    info=fact.info,
                )
            ]
        case ChargerBooted():
            # A boot has no time of the charger's: its time is the hub's answer's.
            answered = iso(at)
            boot = ui.BootInfo(
                vendor=fact.vendor,
                model=fact.model,
                serial_number=fact.serial_number,
                firmware_version=fact.firmware_version,
                status=fact.status,
                interval=fact.interval,
                ts=answered,
            )
            return [ui.Boot(charge_point_id=cp, seq=seq, ts=answered, received_at=at, boot=boot)]
        case DataTransferred():
            transfer = ui.DataTransferView(
                vendor_id=fact.vendor_id,
                message_id=fact.message_id,
                data=_decoded(fact.data),
                status=fact.status,
                received_at=at,
            )
            return [ui.DataTransfer(charge_point_id=cp, seq=seq, received_at=at, transfer=transfer)]
        case SecurityEventReported():
            reported = ui.SecurityEventView(
                type=fact.type,
                timestamp=iso(fact.timestamp_ms),
                tech_info=fact.tech_info,
                critical=fact.critical,
            )
            return [
                ui.SecurityEvent(
                    charge_point_id=cp,
                    seq=seq,
                    ts=reported.timestamp,
                    received_at=at,
                    event=reported,
                )
            ]
        case TransactionStarted():
            return [
                ui.TransactionStarted(
                    charge_point_id=cp,
                    seq=seq,
                    ts=iso(fact.start_ms),
                    received_at=at,
                    transaction_id=fact.transaction_id,
                    connector_id=fact.connector_id,
                    id_tag=fact.id_tag,
                    meter_start_wh=fact.meter_start_wh or 0.0,
                    id_tag_status=fact.authorization,
                    inferred=fact.inferred,
                )
            ]
        case TransactionMetered():
            return _metered(fact, seq, charging)
        case TransactionEnded():
            return _ended(fact, seq, charging)
    return []


def _metered(fact: TransactionMetered, seq: int, charging: Charging) -> list[ui.ChargerMessage]:
    if not fact.samples:
        return []
    cp = fact.charge_point_id
    session = _session(charging, cp, fact.session) if fact.session else None
    # The id the hub knows the transaction by: readings an offline charger stamped -1 name
    # the transaction they belong to.
    transaction_id = session.transaction_id if session is not None else None
    ts = iso(fact.samples[-1].at_ms)
    out: list[ui.ChargerMessage] = [
        ui.Meter(
            charge_point_id=cp,
            seq=seq,
            ts=ts,
            received_at=fact.at,
            connector_id=fact.connector_id,
            transaction_id=transaction_id,
            readings=readings(fact.samples),
        )
    ]
    # Only a register reading moves the energy.
    if session is None or transaction_id is None or not fact.register:
        return out
    curve = session.curve()
    if not session.ongoing:
        # Late readings of a transaction already over (flushed from a queue after a newer
        # start superseded it, say): what billing now says of it replaces the figures UIs
        # were told, as a corrected end does.
        return out + _corrected(fact, seq, session, transaction_id, curve)
    about: _About = {
        "charge_point_id": cp,
        "seq": seq,
        "ts": ts,
        "received_at": fact.at,
        "transaction_id": transaction_id,
        "connector_id": session.connector_id,
    }
    out.append(
        ui.TransactionUpdated(
            **about,
            energy_wh=energy_of(curve),
            power_w=power_w(fact.samples),
            soc=latest(fact.samples, SOC),
        )
    )
    cost = bill(session, curve)
    if cost is not None:
        out.append(ui.CostUpdated(**about, bill=cost))
    return out


class _About(TypedDict):
    """What a transaction's running figures (``transaction.updated``, ``cost``) are about."""

    charge_point_id: str
    seq: int
    ts: str
    received_at: int
    transaction_id: TransactionId
    connector_id: int


def _ended(fact: TransactionEnded, seq: int, charging: Charging) -> list[ui.ChargerMessage]:
    session = _session(charging, fact.charge_point_id, fact.session)
    if session is None:
        return []
    transaction_id = session.transaction_id
    return [_stopped(session, transaction_id, seq, fact.at, session.curve(), fact.corrected)]


def _corrected(
    fact: TransactionMetered,
    seq: int,
    session: Session,
    transaction_id: TransactionId,
    curve: list[Point],
) -> list[ui.ChargerMessage]:
    """A corrected end for late readings of a transaction already over, if they changed its
    energy or its bill."""
    points = list(session.points)
    for point in fact.register:
        points.remove(point)
    before = energy.curve(points, *session.bounds())
    now, then = bill(session, curve), bill(session, before)
    if energy_of(curve) == energy_of(before) and now == then:
        return []
    return [_stopped(session, transaction_id, seq, fact.at, curve, corrected=True)]


def _stopped(
    session: Session,
    transaction_id: TransactionId,
    seq: int,
    received_at: int,
    curve: list[Point],
    corrected: bool,
) -> ui.TransactionStopped:
    duration = (
        (session.stop_ms - session.start_ms) / 1000
        if session.stop_ms is not None and session.start_ms is not None
        else None
    )
    ended_by = session.end_reason or "stopped"
    return ui.TransactionStopped(
        charge_point_id=session.charge_point_id,
        seq=seq,
        ts=iso(session.stop_ms),
        received_at=received_at,
        transaction_id=transaction_id,
        connector_id=session.connector_id,
        energy_wh=energy_of(curve),
        duration_s=duration,
        # The charger's reason (OCPP 1.6: "Local" when it gave none), or why the hub ended it.
        reason=session.stop_reason if ended_by == "stopped" else ended_by,
        meter_stop_wh=session.meter_stop or 0.0,
        bill=bill(session, curve),
        ended_by=ended_by,
        corrected=corrected,
    )


def _session(charging: Charging, charge_point_id: str, name: str) -> Session | None:
    return charging.state.sessions.get(session_key(charge_point_id, name))


# -- readings ----------------------------------------------------------------------------------


def readings(samples: Sequence[Sample]) -> list[ui.Reading]:
    out: list[ui.Reading] = []
    at_ms: int | None = None
    ts = ""
    for sample in samples:
        if sample.at_ms != at_ms:  # a sample set's values share their time: rendered once
            at_ms, ts = sample.at_ms, iso(sample.at_ms)
        out.append(
            ui.Reading(
                measurand=sample.measurand,
                value=sample.value,
                unit=sample.unit,
                phase=sample.phase,
                location=sample.location,
                ts=ts,
            )
        )
    return out


def power_w(samples: Sequence[Sample]) -> float | None:
    """Active import power at the latest time it was sampled: the total if the charger
    gave one, else the sum of its phases."""
    found = [s for s in samples if s.measurand == POWER]
    if not found:
        return None
    newest = max(s.at_ms for s in found)
    found = [s for s in found if s.at_ms == newest]
    total = [s for s in found if not s.phase]
    return total[-1].value if total else sum(s.value for s in found)


def latest(samples: Sequence[Sample], measurand: str) -> float | None:
    for sample in reversed(samples):
        if sample.measurand == measurand:
            return sample.value
    return None


# -- helpers -----------------------------------------------------------------------------------


def iso(ms: int | None) -> str:
    """A charger time (Unix ms) as ISO 8601 in UTC, ``2026-11-22T10:05:00Z`` (milliseconds
    only when there are some); ``""`` for none."""
    if ms is None:
        return ""
    text = ch_time(ms)  # "2026-11-22 10:05:00.000", from tables: no datetime per reading
    if text.endswith(".000"):
        text = text[:-4]
    return f"{text[:10]}T{text[11:]}Z"


def _decoded(data: str | None) -> Any:
    if data is None:
        return None
    try:
        return _json.decode(data)
    except msgspec.DecodeError:
        return data
