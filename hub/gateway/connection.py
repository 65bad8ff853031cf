"""One charger connection: a reader and a processor joined by a bounded queue, and the CALLs
the hub sends it, one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog
from nats.aio.msg import Msg
from websockets.exceptions import ConnectionClosed

from hub.bus import EventRefused
from hub.clock import now_ms
from hub.gateway import frames
from hub.gateway.frames import CallError, CallResult, Malformed
from hub.gateway.handover import Handover
from hub.gateway.protocol import (
    Admission,
    CallOutcome,
    HeldCalls,
    Received,
    ValidCall,
    check_command,
    inspect,
    outbound_call,
    record_answer,
    refused_answer,
    repeat,
    unstorable,
)
from schemas.commands import CommandReply, CommandRequest, request_decoder, request_encoder

if TYPE_CHECKING:
    from hub.gateway.server import ChargerLink, Gateway

QUEUE_DEPTH: Final = 16
# Commands for one charger wait in order for the one outstanding CALL; more are refused busy.
COMMANDQUEUE_DEPTH: Final = 32
# Room in a NATS message for the reply subject and protocol line around a command's reply.
_REPLY_OVERHEAD: Final = 1024


class ChargerConnection:
    """One reader and one processor per connection, joined by a bounded queue.

    The reader keeps reading while the processor waits on JetStream, which is how a retry or
    a second CALL sent before the first was answered is seen; ``HeldCalls`` decides what
    each gets. The queue's bound pushes back on the charger through TCP when storage is slow.
    """

    def __init__(
        self, gateway: Gateway, charger: ChargerLink, log: structlog.typing.FilteringBoundLogger
    ) -> None:
        self._gateway = gateway
        self._charger = charger
        self._link = charger.link
        self._websocket = charger.websocket
        self._log = log
        self._queue: Handover[tuple[Received, Admission] | None] = Handover(QUEUE_DEPTH)
        # Where the next frame stands on this connection: part of its events' ids.
        self._position = 0
        self._held = HeldCalls(late_after_ms=gateway.settings.publish_timeout_s * 1000)
        self._call_lock = asyncio.Lock()
        self._commands_waiting = 0
        self._awaiting: _AwaitedAnswer | None = None
        # A CSR of this charger is being signed and delivered: the next one waits its turn.
        self.signing = False
        # The connection owns its command tasks: run() waits for every one before it returns.
        self._command_tasks: set[asyncio.Task[None]] = set()
        # Frames read and not yet stored and answered; drain() waits for none (made when it
        # waits: an Event a charger would cost a deque, 760 bytes, at every gateway).
        self.unanswered = 0
        self._all_answered: asyncio.Future[None] | None = None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._process(), name=f"process-{self._link.connection_id}")
            try:
                await self._read()
            finally:
                if self._awaiting is not None and not self._awaiting.future.done():
                    self._awaiting.future.set_result(None)
                # Frames already read are stored even though the socket is gone.
                await self._queue.put(None)
        # Commands still queued find the connection closed and answer "offline" at once.
        await asyncio.gather(*self._command_tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Close with 1001 once every frame read so far is stored and answered, and the answer
        to the CALL the hub awaits (if any) has come: the charger goes to another gateway
        with nothing to send again. The gateway bounds how long this may take."""
        if self.unanswered:
            self._all_answered = asyncio.get_running_loop().create_future()
            await self._all_answered
        if (awaiting := self._awaiting) is not None:
            # Not cancelled with the drain: the command still gets its outcome.
            await asyncio.wait([awaiting.future])
        await self._websocket.close(1001, "gateway going away")

    def _unanswered(self, change: int) -> None:
        self.unanswered += change
        waiting = self._all_answered
        if not self.unanswered and waiting is not None and not waiting.done():
            waiting.set_result(None)

    # -- commands: CALLs the hub sends --------------------------------------------------------

    async def on_command(self, msg: Msg) -> None:
        try:
            request = request_decoder.decode(msg.data)
        except msgspec.DecodeError as error:
            await _respond(
                msg,
                CommandReply(
                    command_id="",
                    status="invalid",
                    error_description=f"bad command request: {error}",
                ),
            )
            return
        problem = check_command(self._link, request)
        if problem is not None:
            self._gateway.metrics.commanded(request.action, problem.status)
            await _respond(msg, problem)
            return
        self.spawn(self._answer_command(msg, request))

    def send_own(self, action: str, payload: bytes) -> None:
        """A CALL the gateway sends of its own accord, behind any commands; the CALL and the
        answer are stored like a command's, and the outcome is logged."""
        request = CommandRequest(
            command_id=uuid.uuid4().hex, action=action, payload=msgspec.Raw(payload)
        )
        self.spawn(self._answer_command(None, request))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the connection (the hub's own CALLs); the connection waits
        for it before it is done."""
        task = asyncio.get_running_loop().create_task(work)
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    async def _answer_command(self, msg: Msg | None, request: CommandRequest) -> None:
        reply = await self.call(request)
        self._gateway.metrics.commanded(request.action, reply.status)
        self._log.info(
            "ocpp.command",
            action=request.action,
            unique_id=request.command_id,
            outcome=reply.status,
            error_code=reply.error_code or None,
        )
        if msg is not None:
            await _respond(msg, reply)

    async def call(self, request: CommandRequest) -> CommandReply:
        """Send one CALL to the charger and wait for its answer, one CALL at a time."""
        if self._commands_waiting >= COMMANDQUEUE_DEPTH:
            return CommandReply(
                command_id=request.command_id,
                status="busy",
                error_description=f"{COMMANDQUEUE_DEPTH} commands already wait for this charger",
            )
        self._commands_waiting += 1
        try:
            async with self._call_lock:
                return await self._call_locked(request)
        finally:
            self._commands_waiting -= 1

    async def _call_locked(self, request: CommandRequest) -> CommandReply:
        event, frame = outbound_call(
            self._link, request.command_id, request.action, request.payload, at=now_ms()
        )
        future: asyncio.Future[CallOutcome | None] = asyncio.get_running_loop().create_future()
        self._awaiting = _AwaitedAnswer(request.command_id, request.action, future)
        try:
            # Persist, then send: the CALL is in the stream before the charger sees it.
            try:
                new = await self._gateway.store_new(event)
            except EventRefused as error:
                return CommandReply(
                    command_id=request.command_id, status="invalid", error_description=str(error)
                )
            if not new:
                # Its id was sent on this connection already: a requester that failed over
                # asked again for what its predecessor had asked for. Sent once only.
                return CommandReply(
                    command_id=request.command_id,
                    status="invalid",
                    error_description="a CALL with this unique id was sent on this connection",
                )
            try:
                await self._websocket.send(frame, text=True)
            except ConnectionClosed:
                # The reader may have seen the close first, while the CALL was being stored,
                # and said so already.
                if not future.done():
                    future.set_result(None)
            try:
                async with asyncio.timeout(request.timeout_s):
                    outcome = await future
            except TimeoutError:
                return CommandReply(
                    command_id=request.command_id,
                    status="timeout",
                    error_description=f"no answer within {request.timeout_s} s",
                )
        finally:
            self._awaiting = None
        if outcome is None:
            return CommandReply(
                command_id=request.command_id,
                status="offline",
                error_description="the charger disconnected before answering",
            )
        return CommandReply(
            command_id=request.command_id,
            status=outcome.status,
            payload=outcome.payload,
            error_code=outcome.error_code,
            error_description=outcome.error_description,
        )

    async def _read(self) -> None:
        settings = self._gateway.settings
        with contextlib.suppress(ConnectionClosed):
            while True:
                # Text frames arrive decoded, so websockets itself fails one that is not
                # UTF-8 with 1007 (RFC 6455 §8.1); binary ones arrive as bytes.
                message = await self._websocket.recv()
                received_at = now_ms()
                self._position += 1
                if isinstance(message, bytes):
                    # Recorded, then the connection is closed: nothing after it is read.
                    received = Received(message, received_at, self._position)
                    self._unanswered(+1)
                    await self._queue.put((received, Admission(frames.binary_frame())))
                    return
                data = message.encode()
                inbound = inspect(
                    self._link.ocpp_version, data, max_frame_bytes=settings.max_frame_bytes
                )
                if isinstance(inbound, ValidCall) or (
                    isinstance(inbound, Malformed)
                    and inbound.answerable
                    and inbound.unique_id != frames.UNREADABLE_ID
                ):
                    admission = self._held.admit(
                        inbound,
                        now_ms=time.monotonic() * 1000,
                        stalled=self._gateway.storage_stalled,
                    )
                else:
                    admission = Admission(inbound)
                self._unanswered(+1)
                await self._queue.put((Received(data, received_at, self._position), admission))

    async def _process(self) -> None:
        while (item := await self._queue.get()) is not None:
            received, admission = item
            inbound = admission.inbound
            started = time.perf_counter()
            awaited = self._awaiting
            outcome: CallOutcome | None = None
            if admission.nth > 1:
                assert isinstance(inbound, ValidCall)  # only a valid CALL is ever a retry
                answer = self._held.answer_for(admission)
                exchange = repeat(self._link, inbound, received, answer=answer)
            elif (
                isinstance(inbound, CallResult | CallError)
                and awaited is not None
                and awaited.unique_id == inbound.unique_id
            ):
                exchange, outcome = record_answer(self._link, awaited.action, inbound, received)
            elif (
                isinstance(inbound, Malformed)
                and not inbound.answerable
                and awaited is not None
                and awaited.unique_id == inbound.unique_id
            ):
                exchange, outcome = refused_answer(self._link, awaited.action, inbound, received)
            else:
                exchange = await self._gateway.exchange(self._link, inbound, received)
            try:
                sequences = await self._gateway.store(exchange)
            except EventRefused as error:
                self._log.error("store.refused", unique_id=exchange.unique_id, error=str(error))
                exchange = unstorable(self._link, inbound, received, str(error))
                sequences = await self._gateway.store(exchange)
            stored_in = time.perf_counter() - started
            if outcome is not None and awaited is not None and not awaited.future.done():
                awaited.future.set_result(outcome)
            reply = self._held.reply(admission, exchange)
            self._gateway.metrics.exchanged(
                self._link, exchange, sent=reply is not None, seconds=stored_in
            )
            if reply is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._websocket.send(reply, text=True)
            if exchange.signing is not None:
                self._gateway.sign(self, self._link, exchange.signing)
            if isinstance(inbound, Malformed) and inbound.close_code:
                await self._websocket.close(inbound.close_code, inbound.description)
            self._held.done(admission, now_ms=time.monotonic() * 1000)
            self._log.info(
                "ocpp.exchange",
                action=exchange.action[:64],  # a charger can send any action: a line stays short
                unique_id=exchange.unique_id[:64],
                # superseded: stored, but the charger retried under a newer uniqueId meanwhile
                outcome=exchange.outcome if reply or not exchange.reply else "superseded",
                seq=sequences[0] if sequences else None,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
            self._unanswered(-1)


class _AwaitedAnswer(msgspec.Struct):
    unique_id: str
    action: str
    # None: the connection closed before the charger answered.
    future: asyncio.Future[CallOutcome | None]


async def _respond(msg: Msg, reply: CommandReply) -> None:
    if not msg.reply:
        return
    data = request_encoder.encode(reply)
    limit = msg._client.max_payload - _REPLY_OVERHEAD
    if len(data) > limit:
        # An answer NATS cannot carry would leave the requester waiting for a timeout; it is
        # in the stream (stored before this reply), so the requester is told where to look.
        data = request_encoder.encode(
            CommandReply(
                command_id=reply.command_id,
                status="invalid_answer",
                error_code="AnswerTooLarge",
                error_description=f"the answer ({len(data)} bytes) is larger than NATS "
                f"carries ({limit} bytes); it is stored in the stream as an ocpp.frame event",
            )
        )
    await msg.respond(data)
