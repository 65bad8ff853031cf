"""The lockout that slows password guessing, without sockets or sleeping."""

from __future__ import annotations

import pytest

from hub.gateway.lockout import AuthGuard, LockoutPolicy, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fail(guard: AuthGuard, charger: str, address: str, times: int) -> int:
    """How many of ``times`` wrong-password attempts got to the password check."""
    return sum(guard.admit(charger, address) for _ in range(times))


def test_after_the_threshold_the_lock_doubles_with_each_failure_up_to_the_cap() -> None:
    clock = Clock()
    guard = AuthGuard(LockoutPolicy(pair_failures=3, max_lock_s=4.0), clock)
    assert _fail(guard, "CP", "10.0.0.1", 10) == 3
    locks = []
    for _ in range(4):
        wait = guard.retry_after("CP", "10.0.0.1")
        locks.append(wait)
        clock.now += wait
        assert _fail(guard, "CP", "10.0.0.1", 1) == 1
    assert locks == [1.0, 2.0, 4.0, 4.0]


def test_a_success_clears_the_address_and_pair_and_refunds_the_charger() -> None:
    clock = Clock()
    guard = AuthGuard(LockoutPolicy(pair_failures=5, charger_failures=5), clock)
    assert _fail(guard, "CP", "10.0.0.1", 4) == 4
    assert guard.admit("CP", "10.0.0.1")
    guard.succeeded("CP", "10.0.0.1")
    assert guard.retry_after("CP", "10.0.0.1") == 0
    # The charger's count still holds the four failures; a new address adds to them.
    assert _fail(guard, "CP", "10.0.0.2", 5) == 1


def test_a_known_address_is_held_only_to_its_own_failures() -> None:
    clock = Clock()
    guard = AuthGuard(LockoutPolicy(), clock)
    assert guard.admit("CP", "10.0.0.1")
    guard.succeeded("CP", "10.0.0.1")
    for attacker in range(20):
        _fail(guard, "CP", f"192.0.2.{attacker}", 20)
    assert guard.retry_after("CP", "192.0.2.99") > 0
    assert guard.retry_after("CP", "10.0.0.1") == 0
    # Its own failures still lock it.
    assert _fail(guard, "CP", "10.0.0.1", 20) == LockoutPolicy().pair_failures


def test_one_address_guessing_many_chargers_is_locked() -> None:
    guard = AuthGuard(LockoutPolicy(address_failures=10), Clock())
    checked = sum(_fail(guard, f"CP-{n}", "10.0.0.9", 3) for n in range(20))
    assert checked == 10


def test_quiet_keys_are_forgotten_and_tables_stay_bounded() -> None:
    clock = Clock()
    policy = LockoutPolicy(pair_failures=2, forget_after_s=60.0, max_entries=50)
    guard = AuthGuard(policy, clock)
    assert _fail(guard, "CP", "10.0.0.1", 5) == 2
    clock.now += 60
    assert _fail(guard, "CP", "10.0.0.1", 5) == 2
    for n in range(1000):
        guard.admit(f"CP-{n}", f"10.1.{n // 256}.{n % 256}")
        guard.succeeded(f"CP-{n}", f"10.1.{n // 256}.{n % 256}")
    tables = (guard._addresses, guard._chargers, guard._pairs)
    assert all(len(table._tallies) <= 50 for table in tables)
    assert len(guard._known) <= 50


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_an_ipv6_host_counts_as_its_64(host: str, key: str) -> None:
    assert address_key(host) == key
