"""A simulated charger behind a real gateway obeys the profile the hub sends: its car's draw
falls to the limit after the reaction delay, and the MeterValues it stores say so."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import msgspec
import nats
import pytest

from hub.commands import send_command
from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from schemas.events import Event, OcppFrame
from tests.integration.helpers import wait_for_event
from tests.integration.test_commands import until_held
from tools.simulator.obey import Car
from tools.simulator.site import DrawLog, ObedientCharger

CAR = Car(max_a=32.0, phases=3, capacity_wh=60_000, start_soc=20, target_wh=50_000, stay_s=120)


def currents(event: Event) -> list[float]:
    """The Current.Import values of a stored MeterValues CALL, one a phase."""
    if not (
        isinstance(event, OcppFrame)
        and event.action == "MeterValues"
        and event.message_type == "CALL"
    ):
        return []
    payload: dict[str, Any] = msgspec.json.decode(event.payload)
    return [
        float(sample["value"])
        for value in payload["meterValue"]
        for sample in value["sampledValue"]
        if sample.get("measurand") == "Current.Import"
    ]


@pytest.mark.timeout(60)
async def test_a_simulated_car_draws_what_the_tx_profile_allows(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    draws = DrawLog()
    charger = ObedientCharger(
        "CP-OBEY",
        f"ws://127.0.0.1:{gateway.port}/ocpp",
        draws=draws,
        reaction_s=0.5,
        meter_interval_s=0.3,
        tick_s=0.1,
        rng=random.Random(3),
    )
    client = await nats.connect(nats_server.url)
    stop = asyncio.Event()
    await charger.start()
    charging = asyncio.create_task(charger.charge(CAR, stop))
    try:
        await until_held(client, "CP-OBEY")
        subject = "ev.cp.CP-OBEY.in.MeterValues"
        await wait_for_event(nats_server.url, subject, lambda e: currents(e) == [32.0] * 3)
        start = await wait_for_event(
            nats_server.url,
            "ev.cp.CP-OBEY.out.StartTransaction",
            lambda e: isinstance(e, OcppFrame) and e.message_type == "CALLRESULT",
        )
        assert isinstance(start, OcppFrame)
        transaction_id = msgspec.json.decode(start.payload)["transactionId"]
        profile = {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 1,
                "stackLevel": 1,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative",
                "transactionId": transaction_id,
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": 10.0, "numberPhases": 3}
                    ],
                },
            },
        }
        reply = await send_command(
            client, "CP-OBEY", "SetChargingProfile", msgspec.json.encode(profile)
        )
        assert msgspec.json.decode(reply.payload) == {"status": "Accepted"}
        await wait_for_event(nats_server.url, subject, lambda e: currents(e) == [10.0] * 3)
        limited = [r for r in draws.records if r.limit_a == 10.0]
        assert limited and all(r.drawn_a == 10.0 and r.phases == 3 for r in limited)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await charging
        await charger.close()
        await client.close()
