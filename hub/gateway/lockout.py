"""Slowing down password guessing on HTTP Basic handshakes (security profiles 1 and 2).

Failed password checks are counted under three keys: the client's address, the charger,
and the pair of both. Past a key's threshold, every further failure locks that key out for
twice as long as the last (1 s, 2 s, 4 s... up to 15 minutes); while it is locked, attempts
are refused without checking the password at all.

A charger's own address is safe from an attacker elsewhere: an address that has logged in
as a charger is "known" for it, and a known pair is only held to the pair's own count, so
failures from other addresses neither lock it out nor let them reach it. The price: during
a sustained attack on one charger, that charger cannot log in from a *new* address (after
a move to another network) until the attack stops and its lock runs out.

Attempts are charged before the (slow) check and refunded when it succeeds, so a burst of
parallel guesses cannot slip past the threshold while the first ones are being checked.
All state is in memory, per gateway, bounded; the oldest entries are evicted first.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final

import msgspec

from hub.clock import monotonic_s


class LockoutPolicy(msgspec.Struct, frozen=True, kw_only=True):
    address_failures: int = 10  # failures from one address, any charger
    charger_failures: int = 10  # failures against one charger, from unknown addresses
    pair_failures: int = 5  # failures against one charger from one address
    first_lock_s: float = 1.0
    max_lock_s: float = 900.0
    # A key with no failure for this long starts again from zero.
    forget_after_s: float = 3600.0
    # Entries per table (addresses, chargers, pairs, known pairs), oldest evicted first.
    max_entries: int = 10_000


class _Tally(msgspec.Struct):
    failures: int
    last_at: float


class _Table:
    """Failures per key, each key locked once it has ``threshold`` or more."""

    def __init__(self, threshold: int, policy: LockoutPolicy) -> None:
        self._threshold = threshold
        self._policy = policy
        self._tallies: OrderedDict[Hashable, _Tally] = OrderedDict()

    def locked_for(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        tally = self._current(key, now)
        if tally is None or tally.failures < self._threshold:
            return 0.0
        over = tally.failures - self._threshold
        lock = min(self._policy.first_lock_s * 2.0 ** min(over, 64), self._policy.max_lock_s)
        return max(0.0, tally.last_at + lock - now)

    def charge(self, key: Hashable, now: float) -> None:
        tally = self._current(key, now) or _Tally(0, now)
        tally.failures += 1
        tally.last_at = now
        self._tallies[key] = tally
        self._tallies.move_to_end(key)
        while len(self._tallies) > self._policy.max_entries:
            self._tallies.popitem(last=False)

    def refund(self, key: Hashable) -> None:
        tally = self._tallies.get(key)
        if tally is not None:
            tally.failures = max(0, tally.failures - 1)

    def clear(self, key: Hashable) -> None:
        self._tallies.pop(key, None)

    def _current(self, key: Hashable, now: float) -> _Tally | None:
        tally = self._tallies.get(key)
        if tally is not None and now - tally.last_at >= self._policy.forget_after_s:
            del self._tallies[key]
            return None
        return tally


class AuthGuard:
    """Whether a password check may run now, and what its outcome teaches."""

    def __init__(
        self, policy: LockoutPolicy | None = None, clock: Callable[[], float] = monotonic_s
    ) -> None:
        self.policy = policy or LockoutPolicy()
        self.clock = clock
        self._addresses = _Table(self.policy.address_failures, self.policy)
        self._chargers = _Table(self.policy.charger_failures, self.policy)
        self._pairs = _Table(self.policy.pair_failures, self.policy)
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()

    def retry_after(self, charge_point_id: str, address: str) -> float:
        """Seconds until this charger may try a password from this address; 0: now."""
        now = self.clock()
        pair = (charge_point_id, address)
        locks = [self._pairs.locked_for(pair, now)]
        if pair not in self._known:
            locks.append(self._addresses.locked_for(address, now))
            locks.append(self._chargers.locked_for(charge_point_id, now))
        return max(locks)

    def admit(self, charge_point_id: str, address: str) -> bool:
        """True, and the attempt is counted as a failure until :meth:`succeeded` says
        otherwise; False while a lock holds, and nothing is counted."""
        if self.retry_after(charge_point_id, address) > 0:
            return False
        now = self.clock()
        pair = (charge_point_id, address)
        self._pairs.charge(pair, now)
        if pair not in self._known:
            self._addresses.charge(address, now)
            self._chargers.charge(charge_point_id, now)
        return True

    def succeeded(self, charge_point_id: str, address: str) -> None:
        pair = (charge_point_id, address)
        self._pairs.clear(pair)
        if pair not in self._known:
            self._addresses.clear(address)
            # Only refunded: failures other addresses caused against this charger still count.
            self._chargers.refund(charge_point_id)
        self._known[pair] = None
        self._known.move_to_end(pair)
        while len(self._known) > self.policy.max_entries:
            self._known.popitem(last=False)


IPV6_PREFIX: Final = 64


def address_key(host: str) -> str:
    """The unit an attacker controls: one IPv4 address, or an IPv6 /64 (a single host is
    routinely handed a whole /64, so counting its addresses one by one would count nothing)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
