"""Sessions, their hourly energy and their bill, folded from Start/MeterValues/Stop.

A session is keyed by charger and the hub's transaction id. Chargers that started while
offline may use an id the hub never issued (``-1``, ``0``, ...): such messages are matched
to the session open on the connector (or on the charger, for a Stop) by time, and failing
that become a session of their own, flagged, so nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from hub.domain import energy
from hub.domain.meter_values import kind_of, value_of
from hub.domain.tariffs import Point, tariff_for
from hub.domain.timeutil import ch_time, parse_ms
from projections.billing import billing_row
from projections.rows import EnergyDeltaRow, ErrorRow, MeterValueRow, Output, SessionRow
from projections.state import KEEP_COMPLETED, Session, Settlement, State, key
from schemas.events import IntegrityAction, WalletSettled
from schemas.ocpp.v16 import (
    MeterValue,
    MeterValuesRequest,
    StartTransactionRequest,
    StopTransactionRequest,
    TransactionData,
)

UNKNOWN_ID = "unknown_transaction_id"
NO_START = "no_start"
RETRANSMITTED_START = "retransmitted_start"

# A session version (and its bill) is written on Start, on Stop, when its flags change, and
# for meter readings of an ongoing session at most once per this much of the charger's
# time: every reading's energy still reaches energy_hourly at once (exact), but a version
# per reading was most of the projections' rows and time. Charger time, not batches or a
# clock, so the versions are a function of the events (docs/projections.md).
VERSION_EVERY_MS: Final = 300_000


def _new(state: State, cp: str, session_id: str, at_ms: int) -> Session:
    session = Session(charge_point_id=cp, session_id=session_id)
    session.tariff = tariff_for(state.tariffs, cp, at_ms)
    return session


def start(
    state: State,
    out: Output,
    seq: int,
    received_at: int,
    cp: str,
    request: StartTransactionRequest,
    transaction_id: int,
) -> None:
    start_ms = parse_ms(request.timestamp)
    connector = key(cp, request.connector_id)
    open_key = state.open_by_connector.get(connector)
    current = state.sessions.get(open_key) if open_key else None
    if (
        current is not None
        and current.start_ms == start_ms
        and current.meter_start == float(request.meter_start)
        and current.id_tag == request.id_tag
    ):
        # The charger sent its Start again (no answer seen before a reconnect) and got a
        # second id: one physical session, reachable by both ids.
        assert open_key is not None
        state.aliases[key(cp, transaction_id)] = open_key
        if RETRANSMITTED_START not in current.flags:
            current.flags.append(RETRANSMITTED_START)
        current.updated_ms = received_at
        version(out, seq, current)
        return
    session = _new(state, cp, str(transaction_id), start_ms)
    session.connector_id = request.connector_id
    session.transaction_id = transaction_id
    session.id_tag = request.id_tag
    session.start_ms = start_ms
    session.meter_start = float(request.meter_start)
    session.updated_ms = received_at
    session_key = key(cp, transaction_id)
    state.sessions[session_key] = session
    state.open_by_connector[connector] = session_key
    _recompute(out, seq, session)
    version(out, seq, session)


def _open_on_charger(state: State, cp: str) -> list[str]:
    prefix = cp + "\x1f"
    return [k for c, k in state.open_by_connector.items() if c.startswith(prefix)]


def _resolve(
    state: State, seq: int, cp: str, transaction_id: int, candidates: list[str], at_ms: int
) -> tuple[str, Session] | None:
    """The session a transaction id as sent by the charger belongs to, if any."""
    session_key = key(cp, transaction_id)
    if session_key in state.sessions:
        return session_key, state.sessions[session_key]
    alias = state.aliases.get(session_key)
    if alias is not None and alias in state.sessions:
        return alias, state.sessions[alias]
    best: tuple[str, Session] | None = None
    for candidate in candidates:
        session = state.sessions.get(candidate)
        if session is None or session.state != "ongoing":
            continue
        if session.start_ms is not None and session.start_ms > at_ms:
            continue
        if best is None or (session.start_ms or 0) >= (best[1].start_ms or 0):
            best = candidate, session
    if best is not None:
        state.aliases[session_key] = best[0]
        if UNKNOWN_ID not in best[1].flags:
            best[1].flags.append(UNKNOWN_ID)
    return best


def _orphan(
    state: State, seq: int, cp: str, transaction_id: int, at_ms: int
) -> tuple[str, Session]:
    session = _new(state, cp, f"unknown-{seq}", at_ms)
    session.transaction_id = transaction_id
    session.flags = [UNKNOWN_ID, NO_START]
    session_key = key(cp, session.session_id)
    state.sessions[session_key] = session
    state.aliases[key(cp, transaction_id)] = session_key
    return session_key, session


def _samples(
    out: Output,
    seq: int,
    cp: str,
    connector_id: int,
    transaction_id: int | None,
    session: Session | None,
    values: list[MeterValue] | list[TransactionData],
    received_at: int,
    times: list[int | None] | None = None,
) -> list[Point]:
    """Rows for every sampled value; returns the register readings among them (the first
    of each timestamp), the points of the session's curve."""
    points: list[Point] = []
    session_id = session.session_id if session is not None else ""
    add = out.sink(MeterValueRow, seq)
    sample_sets: Sequence[MeterValue | TransactionData] = values
    for meter_value, at_ms in zip(sample_sets, times or _times(values), strict=True):
        if at_ms is None:
            out.add(
                _error(seq, received_at, cp, f"meter value timestamp {meter_value.timestamp!r}")
            )
            continue
        timestamp = ch_time(at_ms)
        register_seen = False
        for sampled in meter_value.sampled_value:
            kind = kind_of(sampled)
            try:
                value = value_of(sampled, kind)
            except ValueError as error:
                out.add(_error(seq, received_at, cp, str(error)))
                continue
            add(
                MeterValueRow(
                    seq=seq,
                    timestamp=timestamp,
                    charge_point_id=cp,
                    connector_id=connector_id,
                    transaction_id=transaction_id,
                    session_id=session_id,
                    measurand=kind.measurand,
                    phase=kind.phase,
                    location=kind.location,
                    unit=kind.unit,
                    context=kind.context,
                    value=value,
                )
            )
            if kind.is_energy_register and not register_seen:
                register_seen = True
                points.append((at_ms, value))
    return points


def _times(values: list[MeterValue] | list[TransactionData]) -> list[int | None]:
    """Each sample set's time, None for one that does not parse."""
    times: list[int | None] = []
    for meter_value in values:
        try:
            times.append(parse_ms(meter_value.timestamp))
        except ValueError:
            times.append(None)
    return times


def meter_values(
    state: State, out: Output, seq: int, received_at: int, cp: str, request: MeterValuesRequest
) -> None:
    transaction_id = request.transaction_id if isinstance(request.transaction_id, int) else None
    session: Session | None = None
    matched = False
    times = _times(request.meter_value)
    if transaction_id is not None:
        at_ms = next((at for at in times if at is not None), 0)
        sent_as = key(cp, transaction_id)
        # An id seen for the first time and matched to an open session flags that session.
        known = sent_as in state.sessions or sent_as in state.aliases
        open_key = state.open_by_connector.get(key(cp, request.connector_id))
        found = _resolve(state, seq, cp, transaction_id, [open_key] if open_key else [], at_ms)
        if found is None:
            _, session = _orphan(state, seq, cp, transaction_id, at_ms)
            session.connector_id = request.connector_id
        else:
            session = found[1]
            matched = not known
    points = _samples(
        out,
        seq,
        cp,
        request.connector_id,
        transaction_id,
        session,
        request.meter_value,
        received_at,
        times,
    )
    if session is None:
        return
    new = session.updated_ms == 0
    if points:
        _place(out, seq, session, points)
    elif not new:
        return
    session.updated_ms = received_at
    newest = max(at for at, _ in points) if points else None
    if (
        new
        or session.state != "ongoing"
        or matched
        or session.versioned_ms is None
        or (newest is not None and newest >= session.versioned_ms + VERSION_EVERY_MS)
    ):
        version(out, seq, session)


def stop(
    state: State, out: Output, seq: int, received_at: int, cp: str, request: StopTransactionRequest
) -> None:
    stop_ms = parse_ms(request.timestamp)
    found = _resolve(state, seq, cp, request.transaction_id, _open_on_charger(state, cp), stop_ms)
    session_key, session = found or _orphan(state, seq, cp, request.transaction_id, stop_ms)
    if isinstance(request.id_tag, str) and not session.id_tag:
        session.id_tag = request.id_tag
    session.stop_ms = stop_ms
    session.meter_stop = float(request.meter_stop)
    session.stop_reason = request.reason if isinstance(request.reason, str) else "Local"
    was_open = session.state == "ongoing"
    session.state = "completed"
    session.updated_ms = received_at
    if isinstance(request.transaction_data, list):
        for point in _samples(
            out,
            seq,
            cp,
            session.connector_id,
            request.transaction_id,
            session,
            request.transaction_data,
            received_at,
        ):
            energy.insert(session.points, point)
    connector = key(cp, session.connector_id)
    if state.open_by_connector.get(connector) == session_key:
        del state.open_by_connector[connector]
    if was_open:
        _forget_later(state, session_key)
    # The curve's bounds moved: its hours are worked out anew, once per session.
    _recompute(out, seq, session)
    version(out, seq, session)


def _known(state: State, cp: str, transaction_id: int) -> tuple[str, Session] | None:
    session_key = key(cp, transaction_id)
    session_key = state.aliases.get(session_key, session_key)
    session = state.sessions.get(session_key)
    return (session_key, session) if session is not None else None


def settle(state: State, out: Output, seq: int, event: WalletSettled) -> None:
    """A prepaid session's settlement joins its bill (a new billing version)."""
    found = _known(state, event.charge_point_id, event.transaction_id)
    if found is None:
        out.add(
            _error(
                seq,
                event.received_at,
                event.charge_point_id,
                f"settlement of an unknown or forgotten transaction {event.transaction_id}",
            )
        )
        return
    session = found[1]
    session.settlement = Settlement(
        held=event.held,
        refund=event.refund,
        shortfall=event.shortfall,
        platform_fee=event.platform_fee,
        operator_share=event.operator_share,
    )
    session.updated_ms = event.received_at
    version(out, seq, session)


def terminate(state: State, out: Output, seq: int, event: IntegrityAction) -> None:
    """The integrity policy closed a transaction the charger never stopped."""
    if event.transaction_id is None:
        return
    found = _known(state, event.charge_point_id, event.transaction_id)
    if found is None or found[1].state != "ongoing":
        return
    session_key, session = found
    session.state = "terminated"
    session.stop_reason = f"integrity:{event.anomaly_id}"
    session.updated_ms = event.received_at
    connector = key(session.charge_point_id, session.connector_id)
    if state.open_by_connector.get(connector) == session_key:
        del state.open_by_connector[connector]
    _forget_later(state, session_key)
    version(out, seq, session)


def _forget_later(state: State, session_key: str) -> None:
    state.completed.append(session_key)
    # Trim in steps so the list is not shifted on every Stop.
    if len(state.completed) > KEEP_COMPLETED + 1000:
        for old in state.completed[:1000]:
            gone = state.sessions.pop(old, None)
            if gone is not None:
                state.aliases.pop(key(gone.charge_point_id, gone.transaction_id), None)
        del state.completed[:1000]


def _error(seq: int, received_at: int, cp: str, reason: str) -> ErrorRow:
    return ErrorRow(
        seq=seq,
        received_at=ch_time(received_at),
        projection="sessions",
        charge_point_id=cp,
        reason=reason,
    )


def _bounds(session: Session) -> tuple[Point | None, Point | None]:
    start = (
        (session.start_ms, session.meter_start)
        if session.start_ms is not None and session.meter_start is not None
        else None
    )
    stop = (
        (session.stop_ms, session.meter_stop)
        if session.stop_ms is not None and session.meter_stop is not None
        else None
    )
    return start, stop


def _place(out: Output, seq: int, session: Session, points: list[Point]) -> None:
    """New readings into the curve; the hours of the segments they split change."""
    start, stop = _bounds(session)
    if len(points) == 1:
        # One reading per MeterValues is the rule.
        _energy_rows(out, seq, session, energy.place(session.points, start, stop, points[0]))
        return
    change: energy.Hours = {}
    for point in points:
        for hour, delta in energy.place(session.points, start, stop, point).items():
            change[hour] = change.get(hour, 0) + delta
    _energy_rows(out, seq, session, change)


def _recompute(out: Output, seq: int, session: Session) -> None:
    """The hours of the whole curve, against what was written so far."""
    start, stop = _bounds(session)
    hours = energy.hourly(energy.curve(session.points, start, stop))
    _energy_rows(out, seq, session, energy.changes(session.hourly, hours))


def _energy_rows(out: Output, seq: int, session: Session, change: energy.Hours) -> None:
    energy.apply(session.hourly, change)
    for hour in sorted(change) if len(change) > 1 else change:
        delta = change[hour]
        if delta:
            out.add(
                EnergyDeltaRow(
                    seq=seq,
                    charge_point_id=session.charge_point_id,
                    session_id=session.session_id,
                    hour=ch_time(hour),
                    energy_wh=delta / energy.NANO,
                )
            )


def version(out: Output, seq: int, session: Session) -> None:
    """A new version of the session and of its bill, from its whole curve."""
    start, stop = _bounds(session)
    points = energy.curve(session.points, start, stop)
    if points:
        session.versioned_ms = points[-1][0]
    first = session.start_ms if session.start_ms is not None else (points[0][0] if points else None)
    last = session.stop_ms if session.stop_ms is not None else (points[-1][0] if points else None)
    duration_s = (last - first) / 1000 if first is not None and last is not None else 0.0
    out.add(
        SessionRow(
            seq=seq,
            charge_point_id=session.charge_point_id,
            session_id=session.session_id,
            connector_id=session.connector_id,
            transaction_id=session.transaction_id,
            id_tag=session.id_tag,
            start_time=ch_time(session.start_ms) if session.start_ms is not None else None,
            stop_time=ch_time(session.stop_ms) if session.stop_ms is not None else None,
            meter_start=session.meter_start,
            meter_stop=session.meter_stop,
            energy_wh=round(energy.energy_wh(points), 6),
            duration_s=max(duration_s, 0.0),
            stop_reason=session.stop_reason,
            state=session.state,
            flags=list(session.flags),
            updated_at=ch_time(session.updated_ms),
        )
    )
    out.add(billing_row(seq, session, points, max(duration_s, 0.0)))
