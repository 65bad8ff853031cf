"""Shared pieces of the integration tests: real NATS, a real gateway, ocpp-library chargers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import nats
from nats.js.api import DeliverPolicy
from ocpp.v16 import ChargePoint
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from hub.bus import EventStore
from hub.config import Settings
from hub.passwords import hash_password
from hub.registry import Registry
from hub.runtime import event_backbone
from hub.subjects import charger_subject
from schemas.events import (
    ChargerRegistered,
    CommandFinished,
    Event,
    LimitReached,
    SecurityProfile,
    decode_event,
)


@contextlib.asynccontextmanager
async def ocpp_charger(
    port: int,
    charge_point_id: str,
    *,
    path: str = "/ocpp/",
    charger_class: type[ChargePoint] = ChargePoint,
    scheme: str = "ws",
    subprotocol: str = "ocpp1.6",
    **connect_kwargs: Any,
) -> AsyncIterator[ChargePoint]:
    """A charger built on the ocpp library's v16 ChargePoint (or the ``charger_class`` of the
    ``subprotocol``'s version), which validates every answer against the official JSON
    schemas (``scheme`` wss, with ``ssl=``, for TLS)."""
    from urllib.parse import quote

    url = f"{scheme}://127.0.0.1:{port}{path}{quote(charge_point_id, safe='')}"
    offered = [Subprotocol(subprotocol)]
    async with connect(url, subprotocols=offered, **connect_kwargs) as websocket:
        assert websocket.subprotocol == subprotocol
        charger = charger_class(charge_point_id, websocket)
        runner = asyncio.create_task(charger.start())
        try:
            yield charger
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner


@contextlib.asynccontextmanager
async def raw_socket(
    port: int, charge_point_id: str, **kwargs: Any
) -> AsyncIterator[ClientConnection]:
    kwargs.setdefault("subprotocols", ["ocpp1.6"])
    async with connect(f"ws://127.0.0.1:{port}/ocpp/{charge_point_id}", **kwargs) as websocket:
        yield websocket


async def stored_events(
    nats_url: str, subject: str = "ev.>", stream: str = "OCPP_EVENTS"
) -> list[tuple[int, Event]]:
    """Every event stored under ``subject``, with its stream sequence, read straight from
    JetStream."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        info = await js.stream_info(stream, subjects_filter=subject)
        expected = sum((info.state.subjects or {}).values())
        result: list[tuple[int, Event]] = []
        if expected == 0:
            return result
        done = asyncio.Event()

        async def on_message(msg: Any) -> None:
            result.append((msg.metadata.sequence.stream, decode_event(msg.data)))
            if len(result) >= expected:
                done.set()

        sub = await js.subscribe(
            subject,
            cb=on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            stream=stream,
        )
        async with asyncio.timeout(10):
            await done.wait()
        await sub.unsubscribe()
        return result
    finally:
        await client.close()


async def charger_events(nats_url: str, charge_point_id: str) -> list[Event]:
    return [event for _, event in await stored_events(nats_url, charger_subject(charge_point_id))]


async def wait_for_event(
    nats_url: str, subject: str, predicate: Callable[[Event], bool], *, within: float = 10.0
) -> Event:
    """The first stored event under ``subject`` that satisfies ``predicate``, waiting for it
    to arrive if need be (a JetStream subscription, no polling)."""
    client = await nats.connect(nats_url)
    found: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Any) -> None:
        event = decode_event(msg.data)
        if predicate(event) and not found.done():
            found.set_result(event)

    try:
        js = client.jetstream()
        await js.subscribe(
            subject,
            cb=on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            stream="OCPP_EVENTS",
        )
        async with asyncio.timeout(within):
            return await found
    finally:
        await client.close()


async def limit_stop(nats_url: str) -> tuple[LimitReached, CommandFinished]:
    """The supervisor's first ``session.limit_reached``, and what became of the stop it sent."""
    reached = await wait_for_event(nats_url, "ev.session.>", lambda e: isinstance(e, LimitReached))
    finished = await wait_for_event(
        nats_url,
        "ev.admin.command.finished",
        lambda e: isinstance(e, CommandFinished) and e.actor == "supervisor",
    )
    assert isinstance(reached, LimitReached) and isinstance(finished, CommandFinished)
    return reached, finished


HUB_CLI = [sys.executable, "-m", "hub.cli"]


async def start_hub_up(data_dir: Path, *flags: str) -> asyncio.subprocess.Process:
    """``hub up`` on free ports, its stdout piped; stopping it is the caller's business."""
    return await asyncio.create_subprocess_exec(
        *HUB_CLI,
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        "--ui-port",
        "0",
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def gateway_port(process: asyncio.subprocess.Process) -> int:
    """The gateway port ``hub up`` announces on its first line of output."""
    assert process.stdout is not None
    async with asyncio.timeout(30):
        ready = (await process.stdout.readline()).decode()
    match = re.search(r"ws://127\.0\.0\.1:(\d+)/ocpp/\{chargePointId\}", ready)
    assert match, ready
    return int(match.group(1))


@contextlib.asynccontextmanager
async def hub_up(data_dir: Path, *flags: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``hub up`` as an operator runs it, on free ports; it must stop cleanly on Ctrl-C."""
    process = await start_hub_up(data_dir, *flags)
    assert process.stdout is not None
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            code = await process.wait()
    assert code == 0, f"hub up exited with {code}"


@contextlib.asynccontextmanager
async def role_process(
    role: str, data_dir: Path, nats_url: str, *flags: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``hub ROLE`` against ``nats_url`` (with ``env``), once ready, and its ready line; at
    the end stopped with SIGTERM as an orchestrator would, expecting a clean exit, unless
    the test killed it."""
    process = await asyncio.create_subprocess_exec(
        *HUB_CLI,
        role,
        "--data-dir",
        str(data_dir),
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, **(env or {}), "HUB_NATS_URL": nats_url},
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            while not (line := (await process.stdout.readline()).decode()).startswith(
                f"{role} ready: "
            ):
                assert line, f"hub {role} exited before it was ready"
        yield process, line
    finally:
        killed = process.returncode is not None
        if not killed:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await process.wait()
        assert killed or code == 0, f"hub {role} exited with {code}"


async def register_charger(
    nats_url: str,
    settings: Settings,
    charge_point_id: str,
    password: str = "",
    *,
    security_profile: SecurityProfile | None = None,
) -> None:
    """What ``hub chargers add`` stores, stored directly (so ids the CLI refuses can be too)."""
    async with event_backbone(settings, nats_url, name="test-admin") as (_, store):
        await EventStore.store(
            store,
            [
                ChargerRegistered(
                    id=f"reg-{charge_point_id}",
                    received_at=1,
                    actor="test",
                    charge_point_id=charge_point_id,
                    password_hash=hash_password(password) if password else "",
                    security_profile=security_profile,
                )
            ],
        )


def registrations_folded(registry: Registry, *charge_point_ids: str) -> asyncio.Event:
    """Set once ``registry`` has folded a registration of every one of ``charge_point_ids``."""
    folded: set[str] = set()
    done = asyncio.Event()

    def on_registry(event: Event) -> None:
        if isinstance(event, ChargerRegistered):
            folded.add(event.charge_point_id)
            if folded >= set(charge_point_ids):
                done.set()

    registry.listeners.append(on_registry)
    return done


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
