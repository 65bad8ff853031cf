"""The OCTT's side of the conformance cases: a charger that plays the tool (an ocpp-library v16
ChargePoint answering from a table a case can override), the test data the OCTT 1.6 CSMS
document names (<Configured valid IdTag> and friends), the reusable states "Booted",
"Authorized" and "Charging", and the operator's hand on the REST command API."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, cast

from ocpp.routing import on
from ocpp.v16 import call, call_result

from hub.config import Settings
from schemas.events import OcppFrame
from tests.integration.api_helpers import AnsweringCharger, Api, online
from tests.integration.helpers import charger_events, ocpp_charger

# The OCTT's test data: id tags the hub knows (hub idtags add), one it does not.
VALID: Final = "TAG-001"
VALID_2: Final = "100000C39B"
INVALID: Final = "100000C02"
BLOCKED: Final = "100000C06"
EXPIRED: Final = "100000C07"
GROUP: Final = "GROUP001"  # the parent of MEMBER
MEMBER: Final = "MASTERC47"
CONNECTOR: Final = 1
FUTURE: Final = "2030-01-01T00:00:00Z"
NOW: Final = "2026-03-01T10:00:00Z"
BOOT: Final = call.BootNotification(charge_point_vendor="tzi.app", charge_point_model="CP Model 1")


class OcttCharger(AnsweringCharger):
    """The OCTT as a charge point: answers every command from ``answers`` (ANSWERS by
    default) and records it; sends what the case's scenario says it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The certificate chains the hub sent in CertificateSigned, as they came.
        self.chains: asyncio.Queue[str] = asyncio.Queue()

    @on("CertificateSigned")
    async def on_certificate_signed(self, certificate_chain: str) -> Any:
        self.received.append(("CertificateSigned", {"certificate_chain": certificate_chain}))
        self.chains.put_nowait(certificate_chain)
        status = self.answers.get("CertificateSigned", {"status": "Accepted"})["status"]
        return call_result.CertificateSigned(status=status)

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(
        cls, port: int, charge_point_id: str, *, scheme: str = "ws", **connect_kwargs: Any
    ) -> AsyncIterator[OcttCharger]:
        """The charger on a connection of its own (a reboot, a reconnect with a new password
        or over TLS), not waiting for the command API to see it."""
        async with ocpp_charger(
            port, charge_point_id, charger_class=cls, scheme=scheme, **connect_kwargs
        ) as charger:
            yield cast(OcttCharger, charger)

    async def signed(self, within: float) -> str:
        async with asyncio.timeout(within):
            return await self.chains.get()

    def got(self, action: str) -> dict[str, Any]:
        """The payload of the last ``action`` the hub sent, as the ocpp library decoded it."""
        [payload, *_] = [kwargs for name, kwargs in reversed(self.received) if name == action]
        return payload

    async def boot(self) -> str:
        return str((await self.call(BOOT)).status)

    async def status(
        self, status: str, connector: int = CONNECTOR, error_code: str = "NoError"
    ) -> None:
        """A StatusNotification; the hub's answer is empty, so the call returning is it."""
        await self.call(
            call.StatusNotification(connector_id=connector, error_code=error_code, status=status)
        )

    async def authorize(self, id_tag: str = VALID) -> dict[str, Any]:
        return cast(dict[str, Any], (await self.call(call.Authorize(id_tag=id_tag))).id_tag_info)

    async def start_transaction(
        self, id_tag: str = VALID, connector: int = CONNECTOR, **extra: Any
    ) -> tuple[int, str]:
        """A StartTransaction: the transaction id the hub gave, and idTagInfo.status."""
        answer = await self.call(
            call.StartTransaction(
                connector_id=connector,
                id_tag=id_tag,
                meter_start=1000,
                timestamp=extra.pop("timestamp", NOW),
                **extra,
            )
        )
        return int(answer.transaction_id), str(answer.id_tag_info["status"])

    async def stop(self, transaction_id: int, reason: str, **extra: Any) -> str:
        answer = await self.call(
            call.StopTransaction(
                meter_stop=extra.pop("meter_stop", 4000),
                timestamp=extra.pop("timestamp", "2026-03-01T11:00:00Z"),
                transaction_id=transaction_id,
                reason=reason,
                **extra,
            )
        )
        return str(answer.id_tag_info["status"]) if answer.id_tag_info else "Accepted"

    async def charging(self, id_tag: str = VALID, **extra: Any) -> int:
        """The OCTT's reusable states Authorized then Charging (tables 200 and 201); the
        transaction id the hub gave."""
        assert (await self.authorize(id_tag))["status"] == "Accepted"
        await self.status("Preparing")
        transaction_id, verdict = await self.start_transaction(id_tag, **extra)
        assert verdict == "Accepted"
        await self.status("Charging")
        return transaction_id


@dataclass
class Octt:
    """The hub under test, as the OCTT and an operator reach it."""

    nats_url: str
    port: int
    ui_port: int
    settings: Settings
    api: Api

    @contextlib.asynccontextmanager
    async def charger(self, charge_point_id: str, **connect: Any) -> AsyncIterator[OcttCharger]:
        """A charger connected and booted (the OCTT's reusable state "Booted"), once the
        command API knows it."""
        async with online(
            self.port, self.ui_port, charge_point_id, OcttCharger, **connect
        ) as charger:
            cp = cast(OcttCharger, charger)
            assert await cp.boot() == "Accepted"
            yield cp

    async def command(
        self,
        charge_point_id: str,
        endpoint: str,
        body: Any = None,
        *,
        method: str = "POST",
        params: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """What an operator gets from the command API: the HTTP status and the command view."""
        return await self.api.call(
            method, f"/api/v1/chargers/{charge_point_id}/{endpoint}", body, params=params
        )

    async def exchanges(self, charge_point_id: str) -> list[tuple[str, str, str]]:
        """Every CALL of the charger's stored frames, in order, with who sent it and how it was
        answered: (``cp`` or ``hub``, action, ``CALLRESULT`` or ``CALLERROR`` or ``-``)."""
        frames = [
            e
            for e in await charger_events(self.nats_url, charge_point_id)
            if isinstance(e, OcppFrame)
        ]
        answers = {
            (f.direction, f.unique_id): f.message_type for f in frames if f.message_type != "CALL"
        }
        result = []
        for frame in frames:
            if frame.message_type != "CALL":
                continue
            sender = "cp" if frame.direction == "in" else "hub"
            reply = "out" if frame.direction == "in" else "in"
            result.append((sender, frame.action, answers.get((reply, frame.unique_id), "-")))
        return result

    async def sent(self, charge_point_id: str, action: str) -> list[dict[str, Any]]:
        """The payloads of the ``action`` CALLs the hub sent the charger, as stored."""
        return [
            json.loads(bytes(e.payload))
            for e in await charger_events(self.nats_url, charge_point_id)
            if isinstance(e, OcppFrame)
            and e.direction == "out"
            and e.message_type == "CALL"
            and e.action == action
        ]


def answered(*calls: str) -> list[tuple[str, str, str]]:
    """The exchanges a scenario expects: ``cp:Action`` or ``hub:Action``, each answered with a
    CALLRESULT."""
    return [(*step.split(":"), "CALLRESULT") for step in calls]  # type: ignore[misc]


def boot_then(*calls: str) -> list[tuple[str, str, str]]:
    """The exchanges of a charger that booted first (Octt.charger), then ``calls``."""
    return answered("cp:BootNotification", *calls)
