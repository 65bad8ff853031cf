"""Every charger's live state plus a short per-charger history, folded from the stream.

No I/O: the shell feeds events in stream order and asks for snapshots and for the messages
a resuming client missed. Each event goes through the one charging domain of the whole
stream first (``hub.domain.charging``: what it means), then its facts are translated into UI
messages. The rebuild at start feeds the same window of the stream the same way, so the
domain, and with it every snapshot, is what live folding would have made of it. The history
is what makes resume exact: it holds the very messages that went out live, so a client that
resumes gets them again, not a re-derivation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from heapq import merge

from hub.domain.charging import Charging
from hub.domain.refusals import Refusals
from hub.fanout.state import ChargerState, apply, snapshot
from hub.fanout.translate import translate
from schemas.events import (
    AllocationDecided,
    AnomalyDetected,
    AnomalyResolved,
    ChargerEvent,
    CommandFinished,
    Event,
    FrameRejected,
    IntegrityAction,
    LimitReached,
)
from schemas.ui import ChargerMessage, Error, Snapshot

# The supervisor's findings a UI sees as ``alert`` messages.
# Derived events about one charger, which its UI clients are told of.
_DERIVED = AnomalyDetected | AnomalyResolved | IntegrityAction | LimitReached | AllocationDecided


class Live:
    def __init__(self, *, history_per_charger: int = 64) -> None:
        self.chargers: dict[str, ChargerState] = {}
        self._history: dict[str, deque[ChargerMessage]] = {}
        # Per charger, the highest sequence whose message fell out of the history.
        self._evicted_upto: dict[str, int] = {}
        self._history_size = max(1, history_per_charger)
        self.first_seq = 0  # the first stream sequence this instance folded
        self.seq = 0  # the last one the stream has reached here, folded or skipped
        # The stream's last sequence as last looked up: the follower reads only what it
        # folds (hub.subjects.MEANINGFUL), so the stream may end past ``seq``.
        self.stream_end = 0
        self._skipped_upto = 0  # the last one the replay skipped: no history up to it
        # What the stream means, for every charger: transactions, their curves and tariffs.
        # Read (never changed) by translate and snapshots.
        self.charging = Charging()
        # Chargers whose last attempt to connect was refused (they have no state of their own).
        self.refusals = Refusals()

    def fold(self, event: Event, seq: int) -> list[ChargerMessage]:
        """Apply one stored event; returns the UI messages it produced, in order."""
        if not self.first_seq:
            self.first_seq = seq
        self.seq = seq
        # Every event, in stream order: tariffs, wallets and the policy's closes count too.
        facts = self.charging.apply(seq, event)
        self.refusals.apply(event)
        if not isinstance(event, ChargerEvent | CommandFinished | _DERIVED):
            return []
        charge_point_id = event.charge_point_id
        state = self.chargers.get(charge_point_id)
        if state is None:
            if isinstance(event, FrameRejected | CommandFinished):
                return []  # a charger known only for garbage is not worth a UI entry
            state = self.chargers[charge_point_id] = ChargerState(charge_point_id)
        messages = translate(facts, event, seq, self.charging)
        apply(state, event, seq, messages)
        if messages:
            history = self._history.get(charge_point_id)
            if history is None:
                history = self._history[charge_point_id] = deque()
            for message in messages:
                if len(history) >= self._history_size:
                    self._evicted_upto[charge_point_id] = history.popleft().seq
                history.append(message)
        return messages

    def skipped(self, seq: int) -> None:
        """An event the replay leaves out (older than its time bound): the stream has reached
        ``seq``, but no message up to it is held here."""
        self.seq = max(self.seq, seq)
        self._skipped_upto = seq

    def snapshot(self, charge_point_id: str, received_at: int) -> Snapshot:
        state = self.chargers.get(charge_point_id) or ChargerState(charge_point_id)
        return snapshot(state, self.charging, self.seq, received_at)

    def can_resume(self, chargers: Iterable[str], since: int) -> bool:
        """Whether every message after ``since`` for these chargers is still held here."""
        if since < 0 or since < self._skipped_upto:
            return False
        if self.first_seq and since < self.first_seq - 1:
            return False
        if since > max(self.seq, self.stream_end):
            return False  # a sequence this stream never reached: nothing would ever follow
        return all(since >= self._evicted_upto.get(cp, 0) for cp in chargers)

    def resume_error(self, since: int) -> Error:
        """What a client that cannot resume after ``since`` is told, before fresh snapshots."""
        if since > max(self.seq, self.stream_end):
            return Error(
                code="resume_beyond_end",
                message=f"cannot resume after seq {since}: the stream here ends at seq "
                f"{self.seq} (it was recreated, or this instance is behind); "
                "fresh snapshots follow",
            )
        return Error(
            code="resume_unavailable",
            message=f"cannot resume after seq {since}: this instance holds history only "
            f"from seq {self.first_seq}, up to {self.seq}; fresh snapshots follow",
        )

    def missed(self, chargers: Iterable[str], since: int) -> list[ChargerMessage]:
        """The messages after ``since``, across ``chargers``, in stream order."""
        runs = [[m for m in self._history.get(cp, ()) if m.seq > since] for cp in chargers]
        return list(merge(*runs, key=lambda message: message.seq))
