"""One simulated charge point on a raw `websockets` connection: the OCPP-J link every
version shares (ChargerLink) and the OCPP 1.6J messages (SimulatedCharger); 2.0.1 and 2.1
stations make theirs in ocpp2.py.

Deliberately not built on `ocpp.ChargePoint`: its per-message jsonschema
validation costs more CPU than everything else here combined, and a fleet of
thousands of chargers has to share a couple of cores with the system under
test. Frames are encoded and decoded with msgspec instead; tests validate what
we send against the OCPP schemas separately.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Self, TypeAlias
from urllib.parse import quote

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.typing import Subprotocol

from tools.simulator.stats import LatencyRecorder

__all__ = [
    "OFFLINE_TRANSACTION_ID",
    "QUEUED_WHILE_OFFLINE",
    "CallError",
    "CallHook",
    "ChargerDisconnected",
    "ChargerLink",
    "ChargerOffline",
    "Payload",
    "SimulatedCharger",
    "default_response",
    "utc_timestamp",
]

log = logging.getLogger(__name__)

Payload: TypeAlias = dict[str, Any]
CallHook: TypeAlias = Callable[[str, Payload], Payload | Awaitable[Payload | None] | None]

MSG_CALL: Final = 2
MSG_CALLRESULT: Final = 3
MSG_CALLERROR: Final = 4
SUBPROTOCOL: Final = Subprotocol("ocpp1.6")

# What EVerest and libocpp use for a transaction started while offline: the
# queued MeterValues/StopTransaction keep it even after the CSMS hands out a
# real id for the flushed StartTransaction, so the hub has to correlate them.
OFFLINE_TRANSACTION_ID: Final = -1

# OCPP 1.6 §4.7 / §4.2.1: only transaction-related messages must survive an
# outage; everything else is meaningless by the time the link is back.
QUEUED_WHILE_OFFLINE: Final = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class CallError(Exception):
    """The peer answered a CALL with a CALLERROR (or a hook wants to send one)."""

    def __init__(
        self, code: str, description: str = "", details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(code, description)
        self.code = code
        self.description = description
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.description}" if self.description else self.code


class ChargerDisconnected(ConnectionError):
    """The connection went away while a CALL was waiting for its answer."""


class ChargerOffline(ChargerDisconnected):
    """A CALL that cannot be queued was made while the charger is offline."""


def utc_timestamp(when: datetime | str | None = None) -> str:
    """OCPP wants RFC 3339 in UTC; millisecond precision is what chargers send."""
    if isinstance(when, str):
        return when
    if when is None:
        when = datetime.now(UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_ACCEPTED: Final[Payload] = {"status": "Accepted"}
ACCEPTED_IN_EVERY_VERSION: Final = frozenset(
    {
        "Reset",
        "ChangeAvailability",
        "TriggerMessage",
        "ClearCache",
        "DataTransfer",
        "SendLocalList",
        "ReserveNow",
        "CancelReservation",
        "SetChargingProfile",
        "ClearChargingProfile",
    }
)
"""CSMS requests a cooperative charger answers {"status": "Accepted"} in 1.6 and 2.x."""
_ACCEPTING: Final = ACCEPTED_IN_EVERY_VERSION | {
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "ChangeConfiguration",
    "ExtendedTriggerMessage",
}

_DEFAULT_CONFIGURATION: Final[dict[str, tuple[str, bool]]] = {
    "HeartbeatInterval": ("300", False),
    "MeterValueSampleInterval": ("60", False),
    "MeterValuesSampledData": (
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC",
        False,
    ),
    "ConnectionTimeOut": ("60", False),
    "NumberOfConnectors": ("1", True),
    "AuthorizeRemoteTxRequests": ("false", False),
    "LocalPreAuthorize": ("false", False),
    "StopTransactionOnEVSideDisconnect": ("true", False),
    "WebSocketPingInterval": ("60", False),
}


def default_response(action: str, payload: Payload) -> Payload:
    """Answer a CSMS-initiated CALL the way a cooperative charger would."""
    if action == "GetConfiguration":
        wanted = payload.get("key") or list(_DEFAULT_CONFIGURATION)
        known = [
            {
                "key": k,
                "readonly": _DEFAULT_CONFIGURATION[k][1],
                "value": _DEFAULT_CONFIGURATION[k][0],
            }
            for k in wanted
            if k in _DEFAULT_CONFIGURATION
        ]
        unknown = [k for k in wanted if k not in _DEFAULT_CONFIGURATION]
        result: Payload = {"configurationKey": known}
        if unknown:
            result["unknownKey"] = unknown
        return result
    if action == "UnlockConnector":
        return {"status": "Unlocked"}
    if action == "GetLocalListVersion":
        return {"listVersion": 0}
    if action == "GetCompositeSchedule":
        # No charging profiles are simulated, so there is nothing to compose.
        return {"status": "Rejected"}
    if action in ("GetDiagnostics", "UpdateFirmware"):
        return {}
    if action in _ACCEPTING:
        return dict(_ACCEPTED)
    raise CallError("NotImplemented", f"{action} is not supported by the simulator")


class ChargerLink:
    """A charge point's OCPP-J link, one outstanding CALL at a time, whatever the version:
    connecting, booting, the offline queue and its flush, answering CSMS-initiated CALLs.
    A subclass makes its version's messages.

    CSMS-initiated CALLs are answered by `on_call(action, payload)` (sync or
    async) or, when it is unset or returns None, by its version's default answer. A hook
    may raise CallError to send a CALLERROR, and may itself make CALLs (say,
    StartTransaction after RemoteStartTransaction). It must not take its own
    charger offline; answer first, then call go_offline() from outside.
    """

    def __init__(
        self,
        charge_point_id: str,
        url: str,
        *,
        password: str | None = None,
        connectors: int = 1,
        call_timeout: float = 30.0,
        on_call: CallHook | None = None,
        recorder: LatencyRecorder | None = None,
        max_offline_queue: int = 1000,
        connect_timeout: float = 10.0,
        ping_interval: float | None = None,
        phases: int = 3,
        vendor: str = "HubSim",
        model: str = "HubSim-AC22",
    ) -> None:
        if connectors < 1:
            raise ValueError("a charger needs at least one connector")
        if max_offline_queue < 1:
            raise ValueError("max_offline_queue must be positive")
        self.charge_point_id = charge_point_id
        self.url = url
        self.endpoint = f"{url.rstrip('/')}/{quote(charge_point_id, safe='')}"
        self.password = password
        self.connectors = connectors
        self.call_timeout = call_timeout
        self.on_call = on_call
        self.recorder = recorder
        self.max_offline_queue = max_offline_queue
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.phases = phases
        self.vendor = vendor
        self.model = model

        # Energy registers only ever grow, like a real meter, across sessions.
        self.meter_wh: list[float] = [0.0] * (connectors + 1)
        self.last_boot: Payload | None = None
        self.offline_queued = 0
        self.offline_dropped = 0
        self.offline_flushed = 0
        self.flush_errors = 0
        self.flushed_transaction_ids: list[int] = []
        self.protocol_errors = 0
        self.unexpected_responses = 0
        self.server_calls: Counter[str] = Counter()

        self._headers: dict[str, str] = {}
        if password is not None:
            token = base64.b64encode(f"{charge_point_id}:{password}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"

        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._call_worker: asyncio.Task[None] | None = None
        # OCPP allows one CSMS CALL in flight; a little slack absorbs a sloppy hub.
        self._incoming: asyncio.Queue[tuple[ClientConnection, list[Any]]] = asyncio.Queue(8)
        self._lock = asyncio.Lock()
        self._lifecycle_lock = asyncio.Lock()
        self._want_online = False
        self._pending: tuple[str, asyncio.Future[Payload], int] | None = None
        self._raw_waiter: asyncio.Future[str] | None = None
        self._offline: deque[tuple[str, Payload]] = deque()
        # Unique ids must not repeat across runs against the same hub, which may
        # deduplicate on them, so a random prefix replaces a costlier uuid4.
        self._uid_prefix = secrets.token_hex(4) + "-"
        self._seq = 0

    # ------------------------------------------------------- version hooks

    subprotocol: Subprotocol
    queued_while_offline: ClassVar[frozenset[str]]
    """The actions that wait in the offline queue; any other CALL fails while offline."""
    boots_on_reconnect: ClassVar[bool] = True
    """1.6 chargers here boot on every connection; a 2.x station only when it restarts."""

    def _boot_payload(self) -> Payload:
        raise NotImplementedError

    def _default_response(self, action: str, payload: Payload) -> Payload:
        raise NotImplementedError

    def _expendable(self, action: str, payload: Payload) -> bool:
        """May this queued message be dropped to make room (a periodic sample)?"""
        raise NotImplementedError

    def _flushed(self, action: str, payload: Payload, result: Payload) -> None:
        """A queued message was answered on reconnect."""

    async def announce(self) -> None:
        """After boot a charger reports the status of every connector."""
        raise NotImplementedError

    async def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None
    ) -> Payload:
        """DataTransfer, the data as the version wants it."""
        raise NotImplementedError

    # ------------------------------------------------------------------ state

    @property
    def online(self) -> bool:
        ws = self._ws
        return ws is not None and ws.state is State.OPEN

    @property
    def wants_online(self) -> bool:
        """False between go_offline() and come_online(): outages we caused."""
        return self._want_online

    @property
    def offline_queue_length(self) -> int:
        return len(self._offline)

    def queued_actions(self) -> list[str]:
        return [action for action, _ in self._offline]

    def queued_messages(self) -> list[tuple[str, Payload]]:
        """(action, payload) of every queued message, oldest first."""
        return list(self._offline)

    # ------------------------------------------------------------- lifecycle

    async def connect(self) -> None:
        """Open the WebSocket without booting (see come_online for that)."""
        self._want_online = True
        async with self._lifecycle_lock:
            if not self.online:
                await self._open()

    async def come_online(self) -> Payload:
        """Reconnect if needed, send BootNotification, then flush queued messages.

        Returns the BootNotification answer. Only an Accepted boot flushes: a
        Pending/Rejected charger must not send transaction messages (§4.2.1).
        """
        self._want_online = True
        async with self._lifecycle_lock:
            if not self.online:
                await self._open()
            async with self._lock:
                boot = self.last_boot
                # Calling again after a Pending/Rejected boot retries the boot;
                # after an Accepted one it only retries an interrupted flush.
                if boot is None or boot.get("status") != "Accepted":
                    boot = await self._call_locked("BootNotification", self._boot_payload())
                    self.last_boot = boot
                if boot.get("status") == "Accepted":
                    await self._flush_locked()
            return boot

    async def go_offline(self, *, abrupt: bool = False) -> None:
        """Drop the link; transaction messages queue until come_online().

        `abrupt` kills the TCP connection without a closing handshake, which is
        what a charger losing its modem looks like from the hub's side.
        """
        if self._call_worker is not None and self._call_worker is asyncio.current_task():
            # Teardown would have to await the very task asking for it. A hook
            # simulating a reboot should answer first; go offline from outside.
            raise RuntimeError("an on_call hook cannot take its own charger offline")
        self._want_online = False
        async with self._lifecycle_lock:
            ws = self._ws
            if ws is not None:
                if abrupt:
                    ws.transport.abort()
                else:
                    await ws.close()
            await self._teardown()

    async def close(self) -> None:
        """Shut down for good (same as go_offline, but without the intent to return)."""
        await self.go_offline()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _open(self) -> None:
        await self._teardown()
        ws = await connect(
            self.endpoint,
            subprotocols=[self.subprotocol],
            additional_headers=self._headers or None,
            user_agent_header="hub-simulator/0.1",
            # Chargers rarely negotiate permessage-deflate, and a zlib context
            # per connection would dominate memory at fleet scale.
            compression=None,
            proxy=None,
            open_timeout=self.connect_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_interval,
            close_timeout=5,
        )
        if ws.subprotocol != self.subprotocol:
            # OCPP-J §3.1.2: without an agreed subprotocol the link is unusable.
            await ws.close(1002, f"{self.subprotocol} subprotocol required")
            raise ChargerDisconnected(
                f"{self.charge_point_id}: server did not select {self.subprotocol}"
            )
        self._ws = ws
        if self.boots_on_reconnect:
            self.last_boot = None
        self._reader = asyncio.create_task(
            self._read_loop(ws), name=f"sim-read:{self.charge_point_id}"
        )

    async def _teardown(self) -> None:
        """Reap the tasks of the current connection, which must be closing or closed."""
        worker, self._call_worker = self._call_worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        reader, self._reader = self._reader, None
        if reader is not None:
            ws = self._ws
            if ws is not None and ws.state is not State.CLOSED:
                ws.transport.abort()
            await reader
        self._ws = None
        while not self._incoming.empty():
            self._incoming.get_nowait()

    # ----------------------------------------------------------------- calls

    async def call(self, action: str, payload: Payload) -> Payload:
        """Send one CALL and return the CALLRESULT payload.

        Raises CallError on CALLERROR, TimeoutError after `call_timeout`,
        ChargerOffline when not connected, ChargerDisconnected if the link
        drops while waiting.
        """
        async with self._lock:
            return await self._call_locked(action, payload)

    async def send_raw(self, text: str | bytes) -> str:
        """Send an arbitrary text frame and return the next frame received, verbatim.

        For bad-input tests: no framing, no validation. Whatever arrives next
        (an answer, an error, or a CSMS-initiated CALL) is returned; a close
        raises ChargerDisconnected and silence TimeoutError after call_timeout.
        """
        async with self._lock:
            ws = self._ws
            if ws is None or ws.state is not State.OPEN:
                raise ChargerOffline(f"{self.charge_point_id} is offline")
            waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._raw_waiter = waiter
            try:
                async with asyncio.timeout(self.call_timeout):
                    await ws.send(text, text=True)
                    return await waiter
            except ConnectionClosed as exc:
                raise ChargerDisconnected(f"{self.charge_point_id}: connection closed") from exc
            finally:
                self._raw_waiter = None

    async def _call_or_queue(self, action: str, payload: Payload) -> Payload | None:
        async with self._lock:
            # Anything already queued must go first, so new transaction messages
            # join the back of the queue even if the link is up (e.g. a Pending boot).
            if not self.online or self._offline:
                self._queue_offline(action, payload)
                return None
            try:
                return await self._call_locked(action, payload)
            except ChargerDisconnected:
                # Unconfirmed transaction messages must be retransmitted after
                # reconnecting (OCPP 1.6 §4.7), even if the hub did see them:
                # at-least-once delivery is what real chargers give the hub.
                self._queue_offline(action, payload)
                return None

    async def _call_locked(self, action: str, payload: Payload) -> Payload:
        ws = self._ws
        if ws is None or ws.state is not State.OPEN:
            raise ChargerOffline(f"{self.charge_point_id} is offline")
        self._seq += 1
        unique_id = f"{self._uid_prefix}{self._seq}"
        frame = _encode([MSG_CALL, unique_id, action, payload])
        future: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
        pending = (unique_id, future, time.perf_counter_ns())
        self._pending = pending
        recorder = self.recorder
        if recorder is not None:
            recorder.record_action(action)
        try:
            async with asyncio.timeout(self.call_timeout):
                await ws.send(frame, text=True)
                return await future
        except TimeoutError:
            if recorder is not None:
                recorder.record_error("timeout")
            raise
        except ConnectionClosed as exc:
            # The reader may have noticed the close first and already failed
            # (and counted) this call.
            if recorder is not None and not future.done():
                recorder.record_error("disconnected")
            raise ChargerDisconnected(f"{self.charge_point_id}: connection closed") from exc
        finally:
            if self._pending is pending:
                self._pending = None
            if future.done() and not future.cancelled():
                # Mark it retrieved so asyncio does not log it at GC time.
                future.exception()

    def _queue_offline(self, action: str, payload: Payload) -> None:
        if action not in self.queued_while_offline:
            raise ChargerOffline(f"{self.charge_point_id} is offline; {action} is not queued")
        queue = self._offline
        if len(queue) >= self.max_offline_queue:
            # Like real firmware, sacrifice periodic samples before the
            # records of starts and stops that billing depends on.
            self.offline_dropped += 1
            if self._expendable(action, payload):
                return
            for i, (queued_action, queued) in enumerate(queue):
                if self._expendable(queued_action, queued):
                    del queue[i]
                    break
            else:
                queue.popleft()
        queue.append((action, payload))
        self.offline_queued += 1

    async def _flush_locked(self) -> None:
        queue = self._offline
        while queue:
            action, payload = queue[0]
            try:
                result = await self._call_locked(action, payload)
            except CallError as exc:
                # The hub has seen it and refused it; retrying cannot help.
                self.flush_errors += 1
                log.debug("%s: flushed %s rejected: %s", self.charge_point_id, action, exc)
            else:
                self.offline_flushed += 1
                self._flushed(action, payload, result)
            # Timeouts and disconnects propagate with the message still at the
            # head of the queue, to be retried on the next come_online().
            queue.popleft()

    # ---------------------------------------------------------------- reader

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            while True:
                raw = await ws.recv(decode=False)
                call = self._on_frame(raw)
                if call is not None:
                    await self._enqueue_server_call(ws, call)
        except ConnectionClosed:
            pass
        finally:
            pending, self._pending = self._pending, None
            if pending is not None and not pending[1].done():
                if self.recorder is not None:
                    self.recorder.record_error("disconnected")
                pending[1].set_exception(
                    ChargerDisconnected(f"{self.charge_point_id}: connection closed")
                )
            waiter = self._raw_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(
                    ChargerDisconnected(f"{self.charge_point_id}: connection closed")
                )

    def _on_frame(self, raw: bytes) -> list[Any] | None:
        """Settle the pending CALL; return the frame if it is a CSMS-initiated CALL."""
        waiter = self._raw_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(raw.decode("utf-8", "replace"))
        try:
            msg = _decode(raw)
        except msgspec.DecodeError:
            self.protocol_errors += 1
            return None
        if not isinstance(msg, list) or len(msg) < 3 or type(msg[0]) is not int:
            self.protocol_errors += 1
            return None
        kind = msg[0]
        if kind in (MSG_CALLRESULT, MSG_CALLERROR):
            pending = self._pending
            if pending is None or pending[0] != msg[1] or pending[1].done():
                self.unexpected_responses += 1
                return None
            self._pending = None
            future = pending[1]
            recorder = self.recorder
            if kind == MSG_CALLRESULT:
                if recorder is not None:
                    recorder.record(time.perf_counter_ns() - pending[2])
                body = msg[2]
                future.set_result(body if isinstance(body, dict) else {})
            else:
                if recorder is not None:
                    recorder.record_error("call_error")
                description = msg[3] if len(msg) > 3 else ""
                details = msg[4] if len(msg) > 4 and isinstance(msg[4], dict) else {}
                future.set_exception(CallError(str(msg[2]), str(description), details))
            return None
        if kind == MSG_CALL and len(msg) >= 4 and isinstance(msg[2], str):
            return msg
        self.protocol_errors += 1
        return None

    async def _enqueue_server_call(self, ws: ClientConnection, msg: list[Any]) -> None:
        try:
            self._incoming.put_nowait((ws, msg))
        except asyncio.QueueFull:
            error = [MSG_CALLERROR, msg[1], "GenericError", "too many outstanding CALLs", {}]
            await ws.send(_encode(error), text=True)
            return
        if self._call_worker is None:
            # Answering runs apart from the reader so that a hook may itself
            # make CALLs (e.g. StartTransaction after RemoteStart) and still
            # get their answers read.
            self._call_worker = asyncio.create_task(
                self._answer_server_calls(), name=f"sim-answer:{self.charge_point_id}"
            )

    async def _answer_server_calls(self) -> None:
        while True:
            ws, msg = await self._incoming.get()
            reply = await self._answer(msg)
            try:
                await ws.send(reply, text=True)
            except ConnectionClosed:
                continue

    async def _answer(self, msg: list[Any]) -> bytes:
        unique_id, action, payload = msg[1], msg[2], msg[3]
        if not isinstance(payload, dict):
            payload = {}
        self.server_calls[action] += 1
        try:
            result: Any = None
            if self.on_call is not None:
                result = self.on_call(action, payload)
                if inspect.isawaitable(result):
                    result = await result
            if result is None:
                result = self._default_response(action, payload)
            return _encode([MSG_CALLRESULT, unique_id, result])
        except CallError as exc:
            return _encode([MSG_CALLERROR, unique_id, exc.code, exc.description, exc.details])
        except Exception as exc:
            log.exception("%s: on_call hook failed for %s", self.charge_point_id, action)
            return _encode([MSG_CALLERROR, unique_id, "InternalError", str(exc), {}])

    async def boot(self) -> Payload:
        boot = await self.call("BootNotification", self._boot_payload())
        self.last_boot = boot
        return boot

    async def heartbeat(self) -> Payload:
        return await self.call("Heartbeat", {})

    def __repr__(self) -> str:
        state = "online" if self.online else "offline"
        name = type(self).__name__
        return f"<{name} {self.charge_point_id!r} {state} queued={len(self._offline)}>"


class SimulatedCharger(ChargerLink):
    """A charge point speaking OCPP 1.6J (see ChargerLink for the link)."""

    subprotocol = SUBPROTOCOL
    queued_while_offline = QUEUED_WHILE_OFFLINE

    def _default_response(self, action: str, payload: Payload) -> Payload:
        return default_response(action, payload)

    def _expendable(self, action: str, payload: Payload) -> bool:
        return action == "MeterValues"

    def _flushed(self, action: str, payload: Payload, result: Payload) -> None:
        if action == "StartTransaction":
            tx = result.get("transactionId")
            if isinstance(tx, int):
                self.flushed_transaction_ids.append(tx)

    async def announce(self) -> None:
        # Connector 0 is the charge point itself.
        for connector in range(self.connectors + 1):
            await self.status(connector, "Available")

    def _boot_payload(self) -> Payload:
        return {
            "chargePointVendor": self.vendor[:20],
            "chargePointModel": self.model[:20],
            "chargePointSerialNumber": self.charge_point_id[-25:],
            "chargeBoxSerialNumber": self.charge_point_id[-25:],
            "firmwareVersion": "sim-1.6.0",
            "meterType": "SimMeter DC/AC",
            "meterSerialNumber": f"M-{self.charge_point_id}"[-25:],
        }

    async def status(
        self,
        connector_id: int,
        status: str,
        error_code: str = "NoError",
        *,
        info: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> Payload:
        payload: Payload = {
            "connectorId": connector_id,
            "errorCode": error_code,
            "status": status,
            "timestamp": utc_timestamp(timestamp),
        }
        if info is not None:
            payload["info"] = info[:50]
        return await self.call("StatusNotification", payload)

    async def authorize(self, id_tag: str) -> Payload:
        return await self.call("Authorize", {"idTag": id_tag})

    async def start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: datetime | str | None = None,
    ) -> int | None:
        """Return the hub's transactionId, or None when queued while offline."""
        result = await self._call_or_queue(
            "StartTransaction",
            {
                "connectorId": connector_id,
                "idTag": id_tag,
                "meterStart": int(meter_start),
                "timestamp": utc_timestamp(timestamp),
            },
        )
        if result is None:
            return None
        tx = result.get("transactionId")
        if not isinstance(tx, int):
            raise CallError("FormationViolation", "StartTransaction answer lacks transactionId")
        return tx

    async def meter_values(
        self,
        connector_id: int,
        transaction_id: int | None,
        energy_wh: float,
        power_w: float,
        current_a: float,
        voltage_v: float,
        soc: float | None,
        *,
        timestamp: datetime | str | None = None,
        context: str = "Sample.Periodic",
        phases: int | None = None,
    ) -> Payload | None:
        """Send one sample set; None when queued while offline. ``phases``: the phases the
        car draws on (a one-phase car on a three-phase charger: L1 only; default the
        charger's)."""
        sampled: list[Payload] = [
            {
                "value": f"{energy_wh:.0f}",
                "context": context,
                "format": "Raw",
                "measurand": "Energy.Active.Import.Register",
                "location": "Outlet",
                "unit": "Wh",
            },
            {
                "value": f"{power_w:.1f}",
                "context": context,
                "format": "Raw",
                "measurand": "Power.Active.Import",
                "location": "Outlet",
                "unit": "W",
            },
        ]
        used = self.phases if phases is None else phases
        for phase in ("L1", "L2", "L3")[: max(1, min(used, 3))]:
            sampled.append(
                {
                    "value": f"{current_a:.1f}",
                    "context": context,
                    "format": "Raw",
                    "measurand": "Current.Import",
                    "phase": phase,
                    "location": "Outlet",
                    "unit": "A",
                }
            )
            sampled.append(
                {
                    "value": f"{voltage_v:.1f}",
                    "context": context,
                    "format": "Raw",
                    "measurand": "Voltage",
                    "phase": f"{phase}-N",
                    "location": "Outlet",
                    "unit": "V",
                }
            )
        if soc is not None:
            sampled.append(
                {
                    "value": f"{soc:.0f}",
                    "context": context,
                    "format": "Raw",
                    "measurand": "SoC",
                    "location": "EV",
                    "unit": "Percent",
                }
            )
        payload: Payload = {
            "connectorId": connector_id,
            "meterValue": [{"timestamp": utc_timestamp(timestamp), "sampledValue": sampled}],
        }
        if transaction_id is not None:
            payload["transactionId"] = transaction_id
        return await self._call_or_queue("MeterValues", payload)

    async def stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        reason: str = "Local",
        timestamp: datetime | str | None = None,
        *,
        id_tag: str | None = None,
    ) -> Payload | None:
        """End a transaction; None when queued while offline."""
        payload: Payload = {
            "transactionId": transaction_id,
            "meterStop": int(meter_stop),
            "timestamp": utc_timestamp(timestamp),
            "reason": reason,
        }
        if id_tag is not None:
            payload["idTag"] = id_tag
        return await self._call_or_queue("StopTransaction", payload)

    async def data_transfer(
        self,
        vendor_id: str,
        message_id: str | None = None,
        data: str | Mapping[str, Any] | None = None,
    ) -> Payload:
        """DataTransfer; a mapping is sent as a JSON string, as OCPP 1.6 requires."""
        payload: Payload = {"vendorId": vendor_id}
        if message_id is not None:
            payload["messageId"] = message_id
        if data is not None:
            payload["data"] = data if isinstance(data, str) else _encode(dict(data)).decode()
        return await self.call("DataTransfer", payload)
