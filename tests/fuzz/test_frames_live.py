"""Fuzzing a real gateway (``hub up``, real nats-server) with batches of generated frames.

A fuzzing charger sends each batch, waiting for the answer wherever one is due, while a
well-behaved charger keeps sending Heartbeats. Then: every answer was the documented one,
the canary got every answer within a bound, the hub process is still up, and every frame
of the batch is recorded in the stream, once. A binary frame is recorded and closes the
connection with 1003; a text frame that is not UTF-8 closes it with 1007 and only the close
is recorded (docs/gateway.md): the charger then reconnects for the rest of the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Final

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.fuzz_frames import (
    CLOSE_FOR_INVALID_UTF8,
    MUTATIONS,
    FuzzFrame,
    check_answer,
    closing_code,
    enabled,
    expected_answer,
    recorded_as_frame,
)
from hub.config import GatewaySettings
from hub.subjects import charger_subject
from schemas.events import ChargerDisconnected, Event, FrameRejected, OcppFrame
from tests.fuzz.conftest import RunningHub
from tests.fuzz.strategies import frames
from tests.integration.helpers import charger_events, wait_for_event

LIMIT: Final = GatewaySettings().max_frame_bytes
ANSWER_WITHIN_S: Final = 10.0
CANARY_WITHIN_S: Final = 10.0


@st.composite
def any_frame(draw: st.DrawFn) -> FuzzFrame:
    mutation = draw(st.sampled_from(enabled(list(MUTATIONS))), label="mutation")
    return draw(frames(mutation))


async def _open(hub: RunningHub, charge_point_id: str) -> ClientConnection:
    return await connect(
        hub.gateway_url(charge_point_id), subprotocols=["ocpp1.6"], max_size=None, open_timeout=10
    )


async def _canary(hub: RunningHub, stop: asyncio.Event, latencies: list[float]) -> None:
    """A well-behaved charger: one Heartbeat after another, each answered in time or else."""
    async with await _open(hub, f"CANARY-{uuid.uuid4().hex[:8]}") as ws:
        serial = 0
        while not stop.is_set():
            serial += 1
            started = time.perf_counter()
            await ws.send(json.dumps([2, f"hb-{serial}", "Heartbeat", {}]))
            async with asyncio.timeout(CANARY_WITHIN_S):
                answer = json.loads(await ws.recv())
            latencies.append(time.perf_counter() - started)
            assert answer[:2] == [3, f"hb-{serial}"], answer


async def _send(ws: ClientConnection, frame: FuzzFrame) -> None:
    if frame.binary:
        await ws.send(frame.data)
    else:
        await ws.send(frame.data, text=True)


async def _fuzz(hub: RunningHub, charge_point_id: str, batch: list[FuzzFrame]) -> None:
    ws = await _open(hub, charge_point_id)
    try:
        for index, frame in enumerate(batch):
            # Waiting for the close, not only for answers: a frame sent after one that closes
            # the connection would be lost, whether or not the first was due an answer.
            closing = closing_code(frame)
            try:
                await _send(ws, frame)
                if closing is None and expected_answer(frame, LIMIT) == "none":
                    continue
                async with asyncio.timeout(ANSWER_WITHIN_S):
                    reply = await ws.recv(decode=False)
            except ConnectionClosed:
                code = ws.close_code
                assert closing is not None and code == closing, (
                    f"frame {index} {frame}: closed {code}"
                )
                ws = await _open(hub, charge_point_id)
                continue
            except TimeoutError:
                raise AssertionError(f"frame {index} {frame}: no answer in time") from None
            assert closing is None, f"frame {index} {frame}: answered {reply[:200]!r}, not closed"
            problem = check_answer(frame, reply, LIMIT)
            assert problem is None, f"frame {index} {frame}: {problem}"
        # Anything answered that should not have been arrives before this probe's answer.
        await ws.send('[2,"probe-end","Heartbeat",{}]')
        async with asyncio.timeout(ANSWER_WITHIN_S):
            last = json.loads(await ws.recv())
        assert last[:2] == [3, "probe-end"], f"an unexpected answer: {last}"
    finally:
        await ws.close()


async def _run(hub: RunningHub, batch: list[FuzzFrame]) -> None:
    charge_point_id = f"FZ-{uuid.uuid4().hex[:10]}"
    stop = asyncio.Event()
    latencies: list[float] = []
    canary = asyncio.create_task(_canary(hub, stop, latencies))
    try:
        await _fuzz(hub, charge_point_id, batch)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await canary  # re-raises what went wrong with the canary
    assert latencies, "the canary got no answer at all"
    assert hub.alive, f"hub up died:\n{hub.log_tail()}"
    sent = [(f.mutation, f.data[:80]) for f in batch]
    # Each text frame that was not UTF-8 is recorded as its connection's close. Those events
    # are stored as the connection ends, which the charger need not wait for.
    not_utf8 = sum(not recorded_as_frame(f) for f in batch)
    if not_utf8:
        closes = 0

        def all_closes(event: Event) -> bool:
            nonlocal closes
            closes += isinstance(event, ChargerDisconnected) and (
                event.close_code == CLOSE_FOR_INVALID_UTF8
            )
            return closes == not_utf8

        await wait_for_event(hub.nats_url, charger_subject(charge_point_id), all_closes)
    recorded = [
        e
        for e in await charger_events(hub.nats_url, charge_point_id)
        if isinstance(e, FrameRejected) or (isinstance(e, OcppFrame) and e.direction == "in")
    ]
    # Every other frame of the batch (all different) and the probe, each once.
    expected = len(batch) - not_utf8 + 1
    assert len(recorded) == expected, (
        f"{len(recorded)} frames recorded for {expected} sent: "
        f"{[(type(e).__name__, e.unique_id) for e in recorded]}; sent {sent}"
    )


@settings(
    max_examples=30,
    deadline=None,
    # A failing batch is reported whole: shrinking it would replay it against the live hub
    # for minutes. The pure tests shrink each frame class to a minimal example.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(any_frame(), min_size=1, max_size=12, unique_by=lambda f: f.data))
def test_a_fuzzing_charger_disturbs_nobody_and_is_recorded(
    hub: RunningHub, batch: list[FuzzFrame]
) -> None:
    assert hub.alive, f"hub up died:\n{hub.log_tail()}"
    asyncio.run(_run(hub, batch))
