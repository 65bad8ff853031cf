"""The lease's decisions, without NATS: one holder at a time, whatever the delays and pauses,
and a standby that takes over within a TTL and a renewal of the holder's last renewal."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.lease import LeaseState, LeaseValue, Seen

TTL, RENEW = 3.0, 1.0


def test_a_lone_candidate_takes_a_new_key_at_once() -> None:
    lease = LeaseState("a", ttl_s=TTL, renew_s=RENEW)
    assert lease.to_take(None, now=10.0) == 0
    lease.written(1, sent_at=10.0)
    assert lease.holds(10.0) and lease.holds(11.9) and not lease.holds(12.0)


def test_a_released_lease_is_taken_at_the_next_look() -> None:
    lease = LeaseState("b", ttl_s=TTL, renew_s=RENEW)
    assert lease.to_take(Seen(7, LeaseValue()), now=0.0) == 7


def test_a_standby_waits_a_whole_ttl_from_when_it_first_saw_a_revision() -> None:
    lease = LeaseState("b", ttl_s=TTL, renew_s=RENEW)
    held = LeaseValue(holder="a", ttl_ms=3000)
    assert lease.to_take(Seen(4, held), now=100.0) is None
    assert lease.to_take(Seen(4, held), now=102.9) is None
    # Renewed in between: the count starts again.
    assert lease.to_take(Seen(5, held), now=103.0) is None
    assert lease.to_take(Seen(5, held), now=105.9) is None
    assert lease.to_take(Seen(5, held), now=106.0) == 5


def test_a_holder_with_a_longer_ttl_is_waited_for_that_long() -> None:
    lease = LeaseState("b", ttl_s=TTL, renew_s=RENEW)
    held = LeaseValue(holder="a", ttl_ms=10_000)
    assert lease.to_take(Seen(4, held), now=0.0) is None
    assert lease.to_take(Seen(4, held), now=9.9) is None
    assert lease.to_take(Seen(4, held), now=10.0) == 4


def test_a_renewal_refused_by_our_own_lost_write_keeps_the_lease() -> None:
    lease = LeaseState("a", ttl_s=TTL, renew_s=RENEW)
    lease.written(3, sent_at=0.0)
    lease.refused(Seen(4, LeaseValue(holder="a", ttl_ms=3000)))
    assert lease.revision == 4 and lease.holds(1.0)
    lease.refused(Seen(5, LeaseValue(holder="b", ttl_ms=3000)))
    assert not lease.holds(1.0)


def test_the_renewal_must_be_shorter_than_the_ttl() -> None:
    with pytest.raises(ValueError, match="shorter"):
        LeaseState("a", ttl_s=1.0, renew_s=1.0)


class Key:
    """A KV key: compare-and-set on its revision."""

    def __init__(self) -> None:
        self.revision = 0
        self.value: LeaseValue | None = None
        self._revisions = itertools.count(1)

    def seen(self) -> Seen | None:
        return None if self.value is None else Seen(self.revision, self.value)

    def update(self, value: LeaseValue, last: int) -> int | None:
        if last != self.revision:
            return None
        self.revision, self.value = next(self._revisions), value
        return self.revision


class World:
    """Two candidates on one key, with delays on every read and write (each way), one of
    them paused for a while and then killed; what each held, as intervals of time."""

    def __init__(self, delays: list[float], pause: tuple[float, float], death: float) -> None:
        self.now = 0.0
        self.key = Key()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._delays = itertools.cycle(delays)
        self.pause, self.death = pause, death
        self.leases = {name: LeaseState(name, ttl_s=TTL, renew_s=RENEW) for name in "ab"}
        self.held: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
        # When the last write of each that the key took was sent (known to it or not).
        self.last_sent: dict[str, float] = {}

    def at(self, when: float, work: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._order), work))

    def delay(self) -> float:
        return next(self._delays)

    def run(self, until: float) -> None:
        for name, start in (("a", 0.0), ("b", 0.5)):
            self.at(start, lambda name=name: self.step(name))  # type: ignore[misc]
        while self._queue and self._queue[0][0] <= until:
            self.now, _, work = heapq.heappop(self._queue)
            work()

    def alive(self, name: str, work: Callable[[], None]) -> bool:
        """Whether ``name`` runs ``work`` now; a paused one runs it when the pause ends."""
        if name != "a":
            return True
        if self.now >= self.death:
            return False
        if self.pause[0] <= self.now < self.pause[1]:
            self.at(self.pause[1], work)
            return False
        return True

    def step(self, name: str) -> None:
        if not self.alive(name, lambda: self.step(name)):
            return
        lease, sent = self.leases[name], self.now
        if lease.revision:
            last = lease.revision
            self.at(self.now + self.delay(), lambda: self.write(name, last, sent, renewal=True))
        else:
            self.at(self.now + self.delay(), lambda: self.read(name))

    def read(self, name: str) -> None:
        seen = self.key.seen()
        self.at(self.now + self.delay(), lambda: self.looked(name, seen))

    def looked(self, name: str, seen: Seen | None) -> None:
        if not self.alive(name, lambda: self.looked(name, seen)):
            return
        last = self.leases[name].to_take(seen, self.now)
        if last is None:
            self.at(self.now + RENEW, lambda: self.step(name))
            return
        sent = self.now
        self.at(self.now + self.delay(), lambda: self.write(name, last, sent, renewal=False))

    def write(self, name: str, last: int, sent: float, *, renewal: bool) -> None:
        revision = self.key.update(LeaseValue(holder=name, ttl_ms=3000), last)
        if revision is not None:
            self.last_sent[name] = sent
        seen = self.key.seen()
        self.at(self.now + self.delay(), lambda: self.answered(name, revision, sent, seen, renewal))

    def answered(
        self, name: str, revision: int | None, sent: float, seen: Seen | None, renewal: bool
    ) -> None:
        if not self.alive(name, lambda: self.answered(name, revision, sent, seen, renewal)):
            return
        lease = self.leases[name]
        if revision is not None:
            lease.written(revision, sent)
            if lease.holds(self.now):
                self.held[name].append((self.now, lease.valid_until))
        elif renewal:
            lease.refused(seen)
        self.at(self.now + RENEW, lambda: self.step(name))


@settings(max_examples=300, deadline=None)
@given(
    delays=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=20),
    pause_at=st.floats(1.0, 20.0),
    pause_for=st.floats(0.0, 8.0),
    dies_after=st.floats(0.0, 20.0),
)
def test_never_two_holders_and_the_standby_takes_over_within_a_ttl_and_a_renewal(
    delays: list[float], pause_at: float, pause_for: float, dies_after: float
) -> None:
    pause = (pause_at, pause_at + pause_for)
    world = World(delays, pause, death=pause[1] + dies_after)
    world.run(until=world.death + 30.0)
    a, b = world.held["a"], world.held["b"]
    assert b, "the standby holds the lease once the other is gone"
    # Whoever holds it stops (the end of its interval) at least a renewal, longer than any
    # write takes to land, before the other starts: a write checked in time lands in time.
    for start_a, end_a in a:
        for start_b, end_b in b:
            assert end_a + RENEW <= start_b or end_b + RENEW <= start_a
    # The standby holds it within a TTL and a renewal (its next look), after the other's last
    # write the key took was sent, give or take the round trips; one renewal more when its
    # first look raced that write, so that it saw the revision a round later.
    last_by_a = world.last_sent.get("a", 0.0)
    takeover = min(start for start, _ in b if start > last_by_a)
    assert takeover - last_by_a <= TTL + 2 * RENEW + 10 * max(delays)
