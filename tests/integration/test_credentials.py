"""Charger credentials and acceptance end to end (issue #14, defects 1, 2, 4, 6 and 10):
password rotation, binary keys, the 16-character minimum, Pending that ends, and refusals an
operator can see. Real nats-server, real gateway, ocpp-library chargers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as call_result201
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from hub.api.credentials import rotate
from hub.api.money_rules import Origin
from hub.config import Settings
from hub.domain.credentials import password_secret
from hub.fanout import running_fanout
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from hub.runtime import event_backbone, running_gateway
from schemas.events import (
    ChargerAccepted,
    CommandFinished,
    CommandRequested,
    ConnectionRefused,
    Event,
    OcppFrame,
    PasswordRotationEnded,
    PasswordRotationStarted,
)
from tests.conftest import with_gateway
from tests.integration.api_helpers import api_client, api_token
from tests.integration.fanout_helpers import messages_until, ui_socket, with_fanout
from tests.integration.helpers import (
    HUB_CLI,
    ocpp_charger,
    register_charger,
    stored_events,
)

E = TypeVar("E", bound=Event)

OLD = "old-password-0123"
BOOT = call.BootNotification(charge_point_vendor="Acme", charge_point_model="X")


def basic(user: str, password: bytes) -> dict[str, str]:
    token = base64.b64encode(user.encode() + b":" + password).decode()
    return {"Authorization": f"Basic {token}"}


async def login(
    port: int, charge_point_id: str, password: bytes, subprotocol: str = "ocpp1.6"
) -> int:
    """The HTTP status a handshake with this password gets: 101 when the charger got in."""
    try:
        async with connect(
            f"ws://127.0.0.1:{port}/ocpp/{charge_point_id}",
            subprotocols=[Subprotocol(subprotocol)],
            additional_headers=basic(charge_point_id, password),
        ):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


async def hub_command(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *HUB_CLI,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def refusals(url: str) -> list[ConnectionRefused]:
    return [
        e for _, e in await stored_events(url, "ev.gw.refused") if isinstance(e, ConnectionRefused)
    ]


@pytest.fixture
async def strict(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway that lets in registered chargers only."""
    async with running_gateway(
        with_gateway(settings, allow_unknown_chargers=False), nats_server.url
    ) as gateway:
        yield gateway


@pytest.fixture
async def ui_port(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[int]:
    async with running_fanout(with_fanout(settings), nats_server.url) as port:
        yield port


# -- defect 2: binary keys ---------------------------------------------------------------------


async def test_a_binary_key_logs_in_as_raw_bytes_or_as_hex_and_a_wrong_one_is_bad_credentials(
    strict: Gateway, nats_server: EmbeddedNats
) -> None:
    key = bytes.fromhex("ff00c3a5") + secrets.token_bytes(16)  # not UTF-8, on purpose
    code, out, err = await hub_command(
        "chargers", "add", "CP-BIN", "--key", key.hex(), "--nats-url", nats_server.url
    )
    assert code == 0, err
    assert out.strip() == "registered CP-BIN"
    # Firmware that decodes the hex sends the raw bytes; firmware that does not, the hex.
    assert await login(strict.port, "CP-BIN", key) == 101
    assert await login(strict.port, "CP-BIN", key.hex().encode()) == 101
    assert await login(strict.port, "CP-BIN", key.hex().upper().encode()) == 101
    wrong = bytes.fromhex("ff00c3a5") + secrets.token_bytes(16)
    assert await login(strict.port, "CP-BIN", wrong) == 401
    assert await login(strict.port, "CP-BIN", wrong.hex().encode()) == 401
    # Credentials were sent: a wrong password is never "missing".
    assert [e.reason for e in await refusals(nats_server.url)] == ["bad_credentials"] * 2


# -- defect 4: at least 16 characters ----------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (("--password", "short"), "--password: must be 16 to 40 characters, got 5"),
        (("--password", "x" * 41), "--password: must be 16 to 40 characters, got 41"),
        (("--password", "sixteen-chars-\u00e9\u00e9"), "--password: must be printable ASCII"),
        (("--key", "00" * 15), "--key: must be 16 to 20 bytes (32 to 40 hex digits), got 15"),
        (("--key", "zz" * 16), "--key: must be hex digits"),
    ],
)
async def test_short_or_malformed_passwords_are_refused_by_the_cli(
    tmp_path: Path, flags: tuple[str, ...], problem: str
) -> None:
    code, _, err = await hub_command(
        "chargers", "add", "CP-SHORT", *flags, "--data-dir", str(tmp_path)
    )
    assert code != 0 and problem in err, err
    # Refused before anything started or was recorded.
    assert not (tmp_path / "nats").exists()


async def test_a_16_character_password_is_the_shortest_accepted(
    strict: Gateway, nats_server: EmbeddedNats
) -> None:
    code, _, err = await hub_command(
        "chargers", "add", "CP-16", "--password", "0123456789abcdef", "--nats-url", nats_server.url
    )
    assert code == 0, err
    assert await login(strict.port, "CP-16", b"0123456789abcdef") == 101


# -- defect 1: password rotation ---------------------------------------------------------------


class KeyHolder(ChargePoint):  # type: ignore[misc]  # the ocpp library has no hints
    """Stores AuthorizationKey as told: ``answer`` Accepted or Rejected, or none at all."""

    def __init__(self, *args: Any, answer: str = "Accepted", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answer = answer
        self.keys: list[str] = []

    @on("ChangeConfiguration")
    async def on_change_configuration(self, key: str, value: str) -> Any:
        self.keys.append(value)
        if self.answer == "never":
            await asyncio.Event().wait()
        return call_result.ChangeConfiguration(status=self.answer)


def holder(answer: str) -> type[KeyHolder]:
    class Holder(KeyHolder):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, answer=answer, **kwargs)

    return Holder


@contextlib.asynccontextmanager
async def holding(
    gateway: Gateway, nats_url: str, settings: Settings, charge_point_id: str, answer: str
) -> AsyncIterator[KeyHolder]:
    """A charger registered with the OLD password, connected with it and booted."""
    await register_charger(nats_url, settings, charge_point_id, OLD)
    async with ocpp_charger(
        gateway.port,
        charge_point_id,
        charger_class=holder(answer),
        additional_headers=basic(charge_point_id, OLD.encode()),
    ) as charger:
        await charger.call(BOOT)
        yield charger


def folded(gateway: Gateway, kind: type[E]) -> asyncio.Future[E]:
    """Set once the gateway's registry has folded an event of ``kind``."""
    seen: asyncio.Future[E] = asyncio.get_running_loop().create_future()

    def listen(event: Event) -> None:
        if isinstance(event, kind) and not seen.done():
            seen.set_result(event)

    gateway.registry.listeners.append(listen)
    return seen


async def admin_events(url: str) -> list[Event]:
    return [e for _, e in await stored_events(url, "ev.admin.>")]


async def command_outcomes(url: str) -> list[tuple[str, str]]:
    """Each command's action with "requested", then with how it finished, as stored."""
    return [
        (e.action, e.status if isinstance(e, CommandFinished) else "requested")
        for e in await admin_events(url)
        if isinstance(e, CommandRequested | CommandFinished)
    ]


async def test_rotation_accepted_old_and_new_work_until_the_charger_logs_in_with_the_new(
    strict: Gateway, ui_port: int, nats_server: EmbeddedNats, settings: Settings
) -> None:
    ended = folded(strict, PasswordRotationEnded)
    async with (
        holding(strict, nats_server.url, settings, "CP-ROT", "Accepted") as charger,
        api_client(ui_port) as api,
    ):
        status, view = await api.call("POST", "/api/v1/chargers/CP-ROT/password-rotation")
        assert status == 200, view
        assert view["state"] == "accepted" and view["actor"] == "alice"
        key = view["key"]
        assert len(bytes.fromhex(key)) == 20
        assert charger.keys == [key]
        # A second rotation would drop a key the charger holds: refused while this one goes on.
        status, busy = await api.call("POST", "/api/v1/chargers/CP-ROT/password-rotation")
        assert status == 409, busy
    # Until the charger logs in with the new key, the old one still works...
    assert await login(strict.port, "CP-ROT", OLD.encode()) == 101
    assert not ended.done()
    # ...then the new one alone, sent as the raw bytes the whitepaper's firmware sends.
    assert await login(strict.port, "CP-ROT", bytes.fromhex(key)) == 101
    async with asyncio.timeout(10):
        completed = await ended
    assert completed.outcome == "completed"
    assert await login(strict.port, "CP-ROT", OLD.encode()) == 401
    assert await login(strict.port, "CP-ROT", key.encode()) == 101
    stored = await admin_events(nats_server.url)
    [started] = [e for e in stored if isinstance(e, PasswordRotationStarted)]
    assert started.actor == "alice" and started.rotation_id == view["rotationId"]
    # No admin event holds the key in clear, as hex or as bytes.
    for event in stored:
        text = repr(event)
        assert key not in text.lower() and repr(bytes.fromhex(key))[2:-1] not in text
    [requested] = [e for e in stored if isinstance(e, CommandRequested)]
    assert bytes(requested.payload) == b'{"key":"AuthorizationKey","value":"***"}'


class PasswordHolder(ChargePoint201):  # type: ignore[misc]  # the ocpp library has no hints
    """A 2.x station: takes SecurityCtrlr.BasicAuthPassword by SetVariables (A01)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passwords: list[str] = []

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for data in set_variable_data:
            if (data["component"]["name"], data["variable"]["name"]) == (
                "SecurityCtrlr",
                "BasicAuthPassword",
            ):
                self.passwords.append(data["attribute_value"])
            results.append(
                {
                    "attribute_status": "Accepted",
                    "component": data["component"],
                    "variable": data["variable"],
                }
            )
        return call_result201.SetVariables(set_variable_result=results)


@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_a_2x_station_gets_its_new_password_as_basic_auth_password(
    nats_server: EmbeddedNats, settings: Settings, ui_port: int, subprotocol: str
) -> None:
    """The same rotation as 1.6's, by SetVariables SecurityCtrlr.BasicAuthPassword, which
    the hub picks from the version the station connected with: no ChangeConfiguration that
    the gateway would refuse (wrong_version) comes first."""
    await register_charger(nats_server.url, settings, "CP-ROT2", OLD)
    every = with_gateway(settings, allow_unknown_chargers=False, ocpp_versions="2.1,2.0.1,1.6")
    async with running_gateway(every, nats_server.url) as gateway:
        ended = folded(gateway, PasswordRotationEnded)
        async with (
            ocpp_charger(
                gateway.port,
                "CP-ROT2",
                charger_class=PasswordHolder,
                subprotocol=subprotocol,
                additional_headers=basic("CP-ROT2", OLD.encode()),
            ) as station,
            api_client(ui_port) as api,
        ):
            boot = call201.BootNotification(
                charging_station={"model": "X", "vendor_name": "Acme"}, reason="PowerUp"
            )
            await station.call(boot)
            status, view = await api.call("POST", "/api/v1/chargers/CP-ROT2/password-rotation")
            assert status == 200, view
            assert view["state"] == "accepted"
            key = view["key"]
            assert station.passwords == [key]
        assert await login(gateway.port, "CP-ROT2", key.encode(), subprotocol) == 101
        async with asyncio.timeout(10):
            assert (await ended).outcome == "completed"
        assert await login(gateway.port, "CP-ROT2", OLD.encode(), subprotocol) == 401
    stored = await admin_events(nats_server.url)
    commands = await command_outcomes(nats_server.url)
    assert commands == [("SetVariables", "requested"), ("SetVariables", "answered")]
    for event in stored:
        assert key not in repr(event).lower()


async def test_the_cli_picks_set_variables_for_a_201_station(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    """``hub chargers rotate-password`` learns the station's version from its connections."""
    await register_charger(nats_server.url, settings, "CP-CLI2", OLD)
    every = with_gateway(settings, allow_unknown_chargers=False, ocpp_versions="2.1,2.0.1,1.6")
    new = "new-password-4567"
    async with (
        running_gateway(every, nats_server.url) as gateway,
        ocpp_charger(
            gateway.port,
            "CP-CLI2",
            charger_class=PasswordHolder,
            subprotocol="ocpp2.0.1",
            additional_headers=basic("CP-CLI2", OLD.encode()),
        ) as station,
    ):
        code, _, err = await hub_command(
            "chargers",
            "rotate-password",
            "CP-CLI2",
            "--password",
            new,
            "--nats-url",
            nats_server.url,
        )
        assert code == 0, err
        assert station.passwords == [new]
    commands = await command_outcomes(nats_server.url)
    assert commands == [("SetVariables", "requested"), ("SetVariables", "answered")]


async def test_a_charger_that_reconnected_with_another_version_gets_the_other_call(
    strict: Gateway, nats_server: EmbeddedNats, settings: Settings
) -> None:
    """The version the hub knew is stale (a 1.6 charger where it last saw a 2.0.1 station):
    the gateway refuses SetVariables for the 1.6 connection, and the hub retries once with
    ChangeConfiguration."""
    async with (
        holding(strict, nats_server.url, settings, "CP-RACE", "Accepted") as charger,
        event_backbone(settings, nats_server.url, name="test-rotation") as (connection, store),
    ):

        async def stored(event: Event) -> int:
            [seq] = await store.store([event])
            return seq

        secret = password_secret("new-password-4567")
        view = await rotate(
            connection.client,
            stored,
            "CP-RACE",
            secret,
            Origin("rotation-1", 1, "test"),
            ocpp_version="2.0.1",
            timeout_s=10,
            show_key=False,
        )
        assert view.state == "accepted", view
        assert charger.keys == ["new-password-4567"]
    commands = await command_outcomes(nats_server.url)
    assert commands == [
        ("SetVariables", "requested"),
        ("SetVariables", "wrong_version"),
        ("ChangeConfiguration", "requested"),
        ("ChangeConfiguration", "answered"),
    ]


async def test_rotation_rejected_keeps_the_old_password(
    strict: Gateway, nats_server: EmbeddedNats, settings: Settings
) -> None:
    ended = folded(strict, PasswordRotationEnded)
    new = "new-password-4567"
    async with holding(strict, nats_server.url, settings, "CP-REJ", "Rejected") as charger:
        # Through the CLI this time: the same rules and steps as the REST endpoint.
        code, out, err = await hub_command(
            "chargers",
            "rotate-password",
            "CP-REJ",
            "--password",
            new,
            "--nats-url",
            nats_server.url,
        )
        assert code == 1, err
        assert "refused the new password (Rejected); the old one stays" in out
        assert charger.keys == [new]
    async with asyncio.timeout(10):
        rejected = await ended
    assert (rejected.outcome, rejected.detail) == ("rejected", "Rejected")
    assert rejected.actor.startswith("cli:")
    assert await login(strict.port, "CP-REJ", OLD.encode()) == 101
    assert await login(strict.port, "CP-REJ", new.encode()) == 401


async def test_rotation_timed_out_keeps_the_old_password_and_short_passwords_are_refused(
    strict: Gateway, ui_port: int, nats_server: EmbeddedNats, settings: Settings
) -> None:
    ended = folded(strict, PasswordRotationEnded)
    new = "new-password-8901"
    path = "/api/v1/chargers/CP-MUTE/password-rotation"
    async with (
        holding(strict, nats_server.url, settings, "CP-MUTE", "never"),
        api_client(ui_port) as api,
    ):
        status, short = await api.call("POST", path, {"password": "short"})
        assert status == 400
        assert short["message"].startswith("must be 16 to 40 characters, got 5")
        status, view = await api.call("POST", path, {"password": new}, params={"timeout": "0.5"})
        assert status == 504, view
        assert view["state"] == "timeout" and "key" not in view
    async with asyncio.timeout(10):
        timed_out = await ended
    assert timed_out.outcome == "timeout"
    assert await login(strict.port, "CP-MUTE", OLD.encode()) == 101
    assert await login(strict.port, "CP-MUTE", new.encode()) == 401


# -- defect 6: Pending that ends ---------------------------------------------------------------


class Patient(ChargePoint):  # type: ignore[misc]
    """Answers TriggerMessage BootNotification, then boots; remembers every boot answer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.boots: asyncio.Queue[str] = asyncio.Queue()
        self.configured: list[tuple[str, str]] = []

    async def boot(self) -> str:
        answer = await self.call(BOOT)
        await self.boots.put(answer.status)
        return str(answer.status)

    @on("TriggerMessage")
    async def on_trigger(self, requested_message: str, **_: Any) -> Any:
        return call_result.TriggerMessage(status="Accepted")

    @after("TriggerMessage")
    async def after_trigger(self, requested_message: str, **_: Any) -> None:
        if requested_message == "BootNotification":
            await self.boot()

    @on("ChangeConfiguration")
    async def on_change_configuration(self, key: str, value: str) -> Any:
        self.configured.append((key, value))
        return call_result.ChangeConfiguration(status="Accepted")


async def test_a_pending_charger_is_configured_then_accepted_by_an_operator(
    nats_server: EmbeddedNats, settings: Settings, ui_port: int
) -> None:
    pending = with_gateway(settings, boot_policy="pending")
    async with (
        running_gateway(pending, nats_server.url) as gateway,
        api_client(ui_port) as api,
        ui_socket(ui_port, "/ws/chargers/CP-PEND", token_value=api_token("viewer")) as ws,
    ):
        async with ocpp_charger(gateway.port, "CP-PEND", charger_class=Patient) as charger:
            assert await charger.boot() == "Pending"
            await messages_until(ws, lambda m: m["type"] == "boot")
            # While Pending, the hub configures it.
            status, answer = await api.call(
                "PUT",
                "/api/v1/chargers/CP-PEND/configuration",
                {"key": "HeartbeatInterval", "value": "60"},
            )
            assert (status, answer["status"]) == (200, "accepted")
            assert charger.configured == [("HeartbeatInterval", "60")]
            assert await charger.boot() == "Pending"  # still: nobody accepted it yet
            status, accepted = await api.call("POST", "/api/v1/chargers/CP-PEND/accept")
            assert status == 200, accepted
            assert accepted["actor"] == "alice"
            # The hub asks for a BootNotification (TriggerMessage), and accepts it.
            async with asyncio.timeout(10):
                while (await charger.boots.get()) != "Accepted":
                    pass
        # And every boot after that, on a new connection too.
        async with ocpp_charger(gateway.port, "CP-PEND", charger_class=Patient) as charger:
            assert await charger.boot() == "Accepted"
        # A charger accepted before it ever connected (hub chargers accept) boots Accepted.
        accepted_later = folded(gateway, ChargerAccepted)
        code, out, err = await hub_command(
            "chargers", "accept", "CP-LATER", "--nats-url", nats_server.url
        )
        assert code == 0, err
        assert out.startswith("accepted CP-LATER")
        async with asyncio.timeout(10):
            await accepted_later
        async with ocpp_charger(gateway.port, "CP-LATER", charger_class=Patient) as later:
            assert await later.boot() == "Accepted"
    frames = [
        e for _, e in await stored_events(nats_server.url, "ev.cp.>") if isinstance(e, OcppFrame)
    ]
    triggers = [f for f in frames if f.action == "TriggerMessage" and f.direction == "out"]
    assert len(triggers) == 1 and triggers[0].charge_point_id == "CP-PEND"
    accepts = [e for e in await admin_events(nats_server.url) if isinstance(e, ChargerAccepted)]
    assert [(e.charge_point_id, e.actor[:4]) for e in accepts] == [
        ("CP-PEND", "alic"),
        ("CP-LATER", "cli:"),
    ]


# -- defect 10: refusals an operator can see ---------------------------------------------------


async def test_refused_chargers_are_listed_with_reason_time_address_and_subprotocols(
    strict: Gateway, ui_port: int, nats_server: EmbeddedNats, settings: Settings
) -> None:
    await register_charger(nats_server.url, settings, "CP-PW", OLD)
    await register_charger(nats_server.url, settings, "CP-V201")
    await register_charger(nats_server.url, settings, "CP-OK")
    offered = ["ocpp2.0.1", "ocpp1.6"]
    with pytest.raises(InvalidStatus):
        async with connect(
            f"ws://127.0.0.1:{strict.port}/ocpp/CP-NEW",
            subprotocols=offered,  # type: ignore[arg-type]
        ):
            pass
    assert await login(strict.port, "CP-PW", b"wrong-password-000") == 401
    async with connect(
        f"ws://127.0.0.1:{strict.port}/ocpp/CP-V201",
        subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
    ) as websocket:
        with pytest.raises(ConnectionClosed) as closed:
            await websocket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002
    stored = {e.charge_point_id: e for e in await refusals(nats_server.url)}
    assert stored["CP-NEW"].offered_subprotocols == ("ocpp2.0.1", "ocpp1.6")
    assert stored["CP-NEW"].remote_address.startswith("127.0.0.1:")
    assert stored["CP-V201"].offered_subprotocols == ("ocpp2.0.1",)
    # Once a later charger's connection reached the UI, the refusals before it are folded.
    async with (
        ui_socket(ui_port, "/ws/chargers/CP-OK", token_value=api_token("viewer")) as ws,
        ocpp_charger(strict.port, "CP-OK"),
    ):
        await messages_until(ws, lambda m: m["type"] == "connection")
    async with api_client(ui_port) as api:
        status, listed = await api.call("GET", "/api/v1/refusals", token=api_token("viewer"))
        assert status == 200
        rows = {r["chargePointId"]: r for r in listed["refused"]}
        assert {cp: r["reason"] for cp, r in rows.items()} == {
            "CP-NEW": "unknown_charger",
            "CP-PW": "bad_credentials",
            "CP-V201": "unsupported_subprotocol",
        }
        assert rows["CP-NEW"]["offeredSubprotocols"] == offered
        assert rows["CP-NEW"]["remoteAddress"].startswith("127.0.0.1:")
        assert rows["CP-NEW"]["lastAttemptAt"].endswith("Z") and rows["CP-PW"]["attempts"] == 1
        status, one = await api.call("GET", "/api/v1/chargers/CP-PW", token=api_token("viewer"))
        assert status == 404
        assert one["message"] == "no charger 'CP-PW': its connections are refused (bad_credentials)"
        assert one["refused"]["reason"] == "bad_credentials"
        # A token scoped to other chargers sees none of them.
        scoped = api_token("viewer", chargers=["CP-OK"])
        assert await api.call("GET", "/api/v1/refusals", token=scoped) == (200, {"refused": []})
