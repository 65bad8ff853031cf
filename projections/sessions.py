"""Sessions, their readings, their hourly energy and their bill, as rows from domain facts.

What a transaction is (which readings and Stop belong to it, when it ended and why, which
tariff it pays) is the charging domain's (``hub.domain.charging``); here it becomes rows.
Each transaction is a session keyed by charger and its session name: the hub's transaction
id, or ``unknown-<seq>`` for one known only from readings or a Stop with an id nobody
issued (flagged ``no_start``).
"""

from __future__ import annotations

import functools
from typing import Final

from hub.domain import energy
from hub.domain.charging import Session, key
from hub.domain.facts import (
    TransactionEnded,
    TransactionFlagged,
    TransactionMetered,
    TransactionSettled,
    TransactionStarted,
)
from hub.domain.tariffs import Point
from hub.domain.timeutil import CH_TIME_END_MS, CH_TIME_FIRST_MS, ch_time
from projections.billing import billing_row
from projections.rows import EnergyDeltaRow, Output, ReadingsRow, SessionRow, int_id, ref
from projections.state import State, Written

# A session version (and its bill) is written on start, on end, when its flags change, for a
# reading older than the last version's, and for readings of an ongoing session at most once
# per this much of the charger's time:
# every reading's energy still reaches energy_hourly at once (exact), but a version per
# reading was most of the projections' rows and time. Charger time, not batches or a
# clock, so the versions are a function of the events (docs/projections.md).
VERSION_EVERY_MS: Final = 300_000
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
# Written records outlive the domain's sessions by at most this many before a sweep.
_SWEEP_SLACK: Final = 1000
# Times that recur across rows, each formatted once: the few hours of energy_deltas that
# readings fall in, and a session's start and stop on each of its versions.
_recurring_time: Final = functools.lru_cache(maxsize=8192)(ch_time)


def _session(state: State, charge_point_id: str, name: str) -> tuple[Session, Written] | None:
    session_key = key(charge_point_id, name)
    session = state.domain.sessions.get(session_key)
    if session is None:
        return None
    written = state.written.get(session_key)
    if written is None:
        written = state.written[session_key] = Written()
        if len(state.written) > len(state.domain.sessions) + _SWEEP_SLACK:
            _sweep(state)
    return session, written


def _sweep(state: State) -> None:
    """Forget what was written of sessions the domain has forgotten."""
    for gone in state.written.keys() - state.domain.sessions.keys():
        del state.written[gone]


def bounds_moved(state: State, out: Output, fact: TransactionStarted | TransactionEnded) -> None:
    """A start the hub answered, or an end: the curve's bounds moved, so its hours are
    worked out anew (once per start and end) and a new version written."""
    found = _session(state, fact.charge_point_id, fact.session)
    if found is None:
        return
    session, written = found
    points = session.curve()
    _recompute(out, fact.seq, session, written, points)
    version(out, fact.seq, session, written, points)


def metered(state: State, out: Output, fact: TransactionMetered) -> None:
    found = _session(state, fact.charge_point_id, fact.session) if fact.session else None
    if fact.samples and out.keeps(ReadingsRow, fact.seq):
        _readings(out, fact, fact.session if found is not None else "")
    if found is None:
        return
    session, written = found
    if fact.register:
        _energy_rows(out, fact.seq, session, written, fact.hours)
    elif written.versioned:
        return
    # The latest reading's time (points compare by time first).
    newest = max(fact.register)[0] if fact.register else None
    if (
        not written.versioned
        or not session.ongoing
        or written.versioned_ms is None
        or (newest is not None and newest >= written.versioned_ms + VERSION_EVERY_MS)
        # A late reading changes the curve behind the last version: no later reading might
        # come to write it (a queue flushed after the session was superseded, say).
        or (newest is not None and newest < written.versioned_ms)
    ):
        version(out, fact.seq, session, written)


def _readings(out: Output, fact: TransactionMetered, session_id: str) -> None:
    """One row for all of a message's samples: the store makes a meter_values row of each
    (``projections.reshapes``) from its milliseconds. A time ch_time cannot format fails
    the message after the samples before it, as when the fold formatted each."""
    kept = fact.samples
    for sample in kept:
        if not CH_TIME_FIRST_MS <= sample.at_ms < CH_TIME_END_MS:
            # Its place is looked for only now: counting them on the way costs every message.
            kept = kept[: kept.index(sample)]
            break
    if kept:
        out.add(
            ReadingsRow(
                seq=fact.seq,
                charge_point_id=fact.charge_point_id,
                connector_id=fact.connector_id,
                transaction_id=int_id(fact.transaction_id),
                session_id=session_id,
                transaction_ref=ref(fact.transaction_id),
                samples=kept,
            )
        )
    if len(kept) < len(fact.samples):
        raise OverflowError("date value out of range")


def flagged(state: State, out: Output, fact: TransactionFlagged) -> None:
    found = _session(state, fact.charge_point_id, fact.session)
    if found is not None and found[1].versioned:
        version(out, fact.seq, *found)


def settled(state: State, out: Output, fact: TransactionSettled) -> None:
    """A prepaid session's settlement joins its bill (a new billing version)."""
    found = _session(state, fact.charge_point_id, fact.session)
    if found is not None:
        version(out, fact.seq, *found)


def _recompute(
    out: Output, seq: int, session: Session, written: Written, points: list[Point]
) -> None:
    """The hours of the whole curve (``points``), against what was written so far."""
    if len(points) < 2 and not written.hourly:
        return  # no segment, and none written: a session's start, as a rule
    hours = energy.hourly(points)
    _energy_rows(out, seq, session, written, energy.changes(written.hourly, hours))


def _energy_rows(
    out: Output, seq: int, session: Session, written: Written, change: energy.Hours
) -> None:
    energy.apply(written.hourly, change)
    for hour in sorted(change) if len(change) > 1 else change:
        delta = change[hour]
        if delta:
            out.add(
                EnergyDeltaRow(
                    seq=seq,
                    charge_point_id=session.charge_point_id,
                    session_id=session.session,
                    hour=_recurring_time(hour),
                    energy_wh=delta / energy.NANO,
                )
            )


def _storable(session: Session) -> bool:
    transaction_id = session.transaction_id
    return INT64_MIN <= session.connector_id <= INT64_MAX and (
        not isinstance(transaction_id, int) or INT64_MIN <= transaction_id <= INT64_MAX
    )


def version(
    out: Output, seq: int, session: Session, written: Written, points: list[Point] | None = None
) -> None:
    """A new version of the session and of its bill, from its whole curve (``points``,
    when the caller has it already)."""
    if not _storable(session):
        return  # its start was recorded in projection_errors: its ids fit no column
    if points is None:
        points = session.curve()
    written.versioned = True
    start_ms, stop_ms = session.start_ms, session.stop_ms
    first, last = start_ms, stop_ms
    if points:
        written.versioned_ms = points[-1][0]
        if first is None:
            first = points[0][0]
        if last is None:
            last = points[-1][0]
    duration_s = max((last - first) / 1000 if first is not None and last is not None else 0.0, 0.0)
    energy_wh = energy.energy_wh(points)
    if energy_wh % 1:
        # Not a whole number: a whole one is its own rounding, and round() to places
        # formats the float's digits (most registers read whole Wh; this is every version).
        energy_wh = round(energy_wh, 6)
    # Positional, in the columns' order (see rows._Row).
    row = SessionRow(
        seq,
        session.charge_point_id,
        session.session,  # session_id
        session.connector_id,
        session.transaction_id if isinstance(session.transaction_id, int) else 0,
        session.id_tag,
        _recurring_time(start_ms) if start_ms is not None else None,  # start_time
        _recurring_time(stop_ms) if stop_ms is not None else None,  # stop_time
        session.meter_start,
        session.meter_stop,
        energy_wh,
        duration_s,
        session.stop_reason,
        session.state,
        list(session.flags),
        ch_time(session.updated_at),  # updated_at
        ref(session.transaction_id),  # transaction_ref
    )
    out.add(row)
    out.add(billing_row(row, session, points))
