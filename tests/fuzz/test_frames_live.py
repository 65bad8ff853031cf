"""Fuzzing a real gateway (``hub up``, real nats-server) with batches of generated frames.

A fuzzing charger sends each batch, waiting for the answer wherever one is due, while a
well-behaved charger keeps sending Heartbeats. Then: every answer was the documented one,
the canary got every answer within a bound, the hub process is still up, and every frame
of the batch is recorded in the stream, once.
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

from bench.fuzz_frames import MUTATIONS, FuzzFrame, check_answer, enabled, expected_answer
from hub.config import GatewaySettings
from schemas.events import FrameRejected, OcppFrame
from tests.fuzz.conftest import RunningHub
from tests.fuzz.strategies import frames
from tests.integration.helpers import charger_events

LIMIT: Final = GatewaySettings().max_frame_bytes
ANSWER_WITHIN_S: Final = 10.0
CANARY_WITHIN_S: Final = 10.0
# What RFC 6455 lets a server do instead of answering: close on a binary message it cannot
# take (1003), or on text that is not UTF-8 (1007).
CLOSE_FOR_BINARY: Final = 1003
CLOSE_FOR_INVALID_UTF8: Final = 1007


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


def _closed_as_allowed(frame: FuzzFrame, code: int | None) -> bool:
    return (frame.binary and code == CLOSE_FOR_BINARY) or (
        not frame.utf8 and code == CLOSE_FOR_INVALID_UTF8
    )


async def _send(ws: ClientConnection, frame: FuzzFrame) -> None:
    if frame.binary:
        await ws.send(frame.data)
    else:
        await ws.send(frame.data, text=True)


async def _fuzz(hub: RunningHub, charge_point_id: str, batch: list[FuzzFrame]) -> None:
    ws = await _open(hub, charge_point_id)
    try:
        for index, frame in enumerate(batch):
            try:
                await _send(ws, frame)
                if expected_answer(frame, LIMIT) == "none":
                    continue
                async with asyncio.timeout(ANSWER_WITHIN_S):
                    reply = await ws.recv(decode=False)
            except ConnectionClosed:
                # Closed for this frame, or for an unanswered one before it.
                code = ws.close_code
                earlier = batch[max(0, index - 1) : index + 1]
                assert _closed_as_allowed(frame, code), f"frame {index}: closed {code}: {earlier}"
                ws = await _open(hub, charge_point_id)
                continue
            except TimeoutError:
                raise AssertionError(f"frame {index} {frame}: no answer in time") from None
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
    recorded = [
        e
        for e in await charger_events(hub.nats_url, charge_point_id)
        if isinstance(e, FrameRejected) or (isinstance(e, OcppFrame) and e.direction == "in")
    ]
    # Every frame of the batch (all different) and the probe, each once, in order.
    assert len(recorded) == len(batch) + 1, (
        f"{len(recorded)} frames recorded for {len(batch) + 1} sent: "
        f"{[(type(e).__name__, e.unique_id) for e in recorded]}"
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
