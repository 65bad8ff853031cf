"""Handshakes from people who are not chargers: floods of bad requests, look-alike charger
ids, password guessing (issue #16, findings 8, 10 and 11)."""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from ocpp.v16 import call
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hub.config import Settings
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import running_gateway
from schemas.events import ChargerConnected, ConnectionRefused
from tests.conftest import with_gateway
from tests.integration.helpers import (
    basic_auth,
    charger_events,
    ocpp_charger,
    register_charger,
    stored_events,
)

ROOT = Path(__file__).resolve().parents[2]

# -- finding 8: a flood of bad requests ------------------------------------------------------

_UPGRADE = (
    b"Host: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)
BAD_REQUESTS = {
    "request line over 8 KiB": b"GET /ocpp/" + b"A" * 9000 + b" HTTP/1.1\r\n" + _UPGRADE,
    "header over 8 KiB": b"GET /ocpp/CP-1 HTTP/1.1\r\nX-Pad: " + b"A" * 9000 + b"\r\n" + _UPGRADE,
    "garbage bytes": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xff\xfe\r\n\r\n",
    "not an upgrade": b"GET /ocpp/CP-1 HTTP/1.1\r\nHost: hub\r\n\r\n",
    "path with a bad IPv6 host": b"GET //[x/CP-1 HTTP/1.1\r\n" + _UPGRADE,
    "invalid charger id": b"GET /ocpp/bad%3Aid HTTP/1.1\r\n" + _UPGRADE,
}
FLOOD_PER_KIND = 100


async def _send_raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


async def _gather_limited(coroutines: Iterable[Any], limit: int = 20) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coroutine: Any) -> Any:
        async with gate:
            return await coroutine

    return await asyncio.gather(*(one(c) for c in coroutines))


async def test_a_flood_of_bad_requests_costs_a_bounded_number_of_log_lines(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    stderr_path = tmp_path / "gateway.stderr"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.gateway_process",
            nats_server.url,
            str(tmp_path / "gateway"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            port = int(await process.stdout.readline())
        flood = [request for request in BAD_REQUESTS.values() for _ in range(FLOOD_PER_KIND)]
        answers = await _gather_limited(_send_raw(port, request) for request in flood)
        assert not [a for a in answers if a.startswith(b"HTTP/1.1 101")]
        async with ocpp_charger(port, "CP-GOOD") as cp:
            assert (await cp.call(call.Heartbeat())).current_time
    finally:
        process.terminate()
        async with asyncio.timeout(30):
            await process.wait()
    output = stderr_path.read_text()
    assert "Traceback" not in output
    lines = [json.loads(line) for line in output.splitlines()]  # every line is one JSON record
    kinds = collections.Counter(line["event"] for line in lines)
    about_bad_requests = sum(
        kinds[e] for e in ("connection.refused", "handshake.failed", "websockets.error")
    )
    # At most 10 lines per kind of failure per 10 s, against 600 bad requests.
    assert 0 < about_bad_requests <= 10 * len(BAD_REQUESTS) * 2, kinds
    assert len(lines) <= about_bad_requests + 20, kinds
    # What was left out is said, in numbers; bytes that are not HTTP get no line at all.
    suppressed = sum(line.get("suppressed", 0) for line in lines)
    assert suppressed == len(flood) - FLOOD_PER_KIND - about_bad_requests, kinds
    assert kinds["connection.opened"] == 1 and kinds["ocpp.exchange"] == 1


# -- finding 10: look-alike charger ids ------------------------------------------------------

LOOK_ALIKES = {
    "trailing space": "CP-1 ",
    "leading tab": "\tCP-1",
    "Unicode hyphen": "CP\u20101",
    "en dash": "CP\u20131",
    "fullwidth forms": "\uff23\uff30-1",
    "combining accent": "CP-1\u0301",
    "precomposed accent": "CP-\u00e91",
    "embedded slash": "CP/1",
    "Cyrillic letters": "\u0421\u0420-1",
    "zero-width space": "CP-\u200b1",
    "control character": "CP-1\x00",
}


@pytest.mark.parametrize("look_alike", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
async def test_look_alike_ids_are_refused_at_connect(
    gateway: Gateway, nats_server: EmbeddedNats, look_alike: str
) -> None:
    assert gateway.settings.allow_unknown_chargers
    path = f"/ocpp/{quote(look_alike, safe='')}"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{gateway.port}{path}", subprotocols=["ocpp1.6"]):  # type: ignore[list-item]
            pass
    response = refused.value.response
    assert response.status_code == 400
    assert b"is not allowed; ids use A-Z a-z 0-9 * - _ = + | @ ." in response.body
    refusals = [e for _, e in await stored_events(nats_server.url, "ev.gw.refused")]
    assert [(e.reason, e.path) for e in refusals if isinstance(e, ConnectionRefused)] == [
        ("invalid_charge_point_id", path)
    ]
    # The look-alike never became a charger of its own.
    assert not await charger_events(nats_server.url, look_alike)


async def test_a_charger_registered_before_the_id_rule_still_connects(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    """Upgrading must not lock out a fleet: an id the rule now refuses keeps working for the
    charger an operator registered under it, and only for that exact id."""
    legacy = "Ladestation Müller"
    await register_charger(nats_server.url, settings, legacy)
    strict = with_gateway(settings, allow_unknown_chargers=False)
    async with running_gateway(strict, nats_server.url) as gateway:
        async with ocpp_charger(gateway.port, legacy) as cp:
            assert (await cp.call(call.Heartbeat())).current_time
        with pytest.raises(InvalidStatus) as refused:
            async with ocpp_charger(gateway.port, legacy + " "):
                pass
        assert refused.value.response.status_code == 400


# -- finding 11: password guessing -----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _handshake(port: int, user: str, password: str, source: str = "127.0.0.1") -> int:
    """The HTTP status a handshake gets: 101 when the charger got in."""
    try:
        async with connect(
            f"ws://127.0.0.1:{port}/ocpp/{user}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth(user, password),
            local_addr=(source, 0),
        ):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.fixture
async def guarded(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[Gateway]:
    await register_charger(nats_server.url, settings, "CP-SECURE", "correct horse battery")
    strict = with_gateway(settings, allow_unknown_chargers=False)
    async with running_gateway(strict, nats_server.url) as gateway:
        gateway.auth_guard.clock = FakeClock()
        yield gateway


async def test_password_guessing_is_locked_out_and_the_right_password_works_after(
    guarded: Gateway, nats_server: EmbeddedNats
) -> None:
    clock = guarded.auth_guard.clock
    assert isinstance(clock, FakeClock)
    loop = asyncio.get_running_loop()
    started = loop.time()
    statuses = await _gather_limited(
        _handshake(guarded.port, "CP-SECURE", f"guess-{n}") for n in range(300)
    )
    elapsed = loop.time() - started
    # Only the first 5 guesses reach the password check; the other 295 are turned away
    # without one, with 429 and a Retry-After.
    assert collections.Counter(statuses) == {401: 5, 429: 295}, f"{elapsed:.1f} s"
    refusals = [e for _, e in await stored_events(nats_server.url, "ev.gw.refused")]
    reasons = collections.Counter(e.reason for e in refusals if isinstance(e, ConnectionRefused))
    assert reasons == {"bad_credentials": 5, "locked_out": 295}
    # Locked, even the right password waits...
    assert await _handshake(guarded.port, "CP-SECURE", "correct horse battery") == 429
    # ...until the lock (1 s after the fifth failure) runs out.
    clock.now += 1.5
    assert await _handshake(guarded.port, "CP-SECURE", "correct horse battery") == 101
    opened = [
        e
        for e in await charger_events(nats_server.url, "CP-SECURE")
        if isinstance(e, ChargerConnected)
    ]
    assert len(opened) == 1


async def test_guessing_from_other_addresses_does_not_lock_out_the_charger_at_home(
    guarded: Gateway,
) -> None:
    clock = guarded.auth_guard.clock
    assert isinstance(clock, FakeClock)
    port, right = guarded.port, "correct horse battery"
    assert await _handshake(port, "CP-SECURE", right, source="127.0.0.1") == 101
    # Three attacking addresses, 20 guesses each: 5 checked from each of the first two
    # (the lock on the pair), then none at all (10 failures lock the charger itself).
    checked = {}
    for attacker in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        statuses = [await _handshake(port, "CP-SECURE", "guess", attacker) for _ in range(20)]
        checked[attacker] = statuses.count(401)
        assert statuses.count(429) == 20 - checked[attacker]
    assert checked == {"127.0.0.2": 5, "127.0.0.3": 5, "127.0.0.4": 0}
    # The charger itself, from the address it logged in from before, still gets in.
    assert await _handshake(port, "CP-SECURE", right, source="127.0.0.1") == 101
    # From a new address it has to wait out the charger's lock: the price of the defence.
    assert await _handshake(port, "CP-SECURE", right, source="127.0.0.5") == 429
    clock.now += 60
    assert await _handshake(port, "CP-SECURE", right, source="127.0.0.5") == 101
