"""The simulator against the real gateway: sessions, and a charger that goes offline and
flushes its queued transaction messages on reconnect."""

from __future__ import annotations

from collections import Counter

import msgspec

from hub.gateway.server import Gateway
from hub.nats_server import EmbeddedNats
from schemas.events import ChargerConnected, FrameRejected, OcppFrame
from tests.integration.helpers import charger_events
from tools.simulator import OFFLINE_TRANSACTION_ID, SessionPlan, SimulatedCharger, run_session


async def test_offline_charger_flushes_its_transaction_messages_in_order(
    gateway: Gateway, nats_server: EmbeddedNats
) -> None:
    charger = SimulatedCharger("SIM-FLUSH", f"ws://127.0.0.1:{gateway.port}/ocpp")
    await charger.come_online()
    await run_session(charger, SessionPlan(meter_values=2), boot=False)
    await charger.go_offline(abrupt=True)
    offline = await run_session(charger, SessionPlan(meter_values=3), boot=False)
    assert offline.transaction_id == OFFLINE_TRANSACTION_ID
    await charger.come_online()
    await charger.go_offline()

    events = await charger_events(nats_server.url, "SIM-FLUSH")
    assert not [e for e in events if isinstance(e, FrameRejected)]
    assert len([e for e in events if isinstance(e, ChargerConnected)]) == 2
    calls = [e for e in events if isinstance(e, OcppFrame) and e.message_type == "CALL"]
    answered = {e.unique_id for e in events if isinstance(e, OcppFrame) and e.direction == "out"}
    assert {c.unique_id for c in calls} == answered
    actions = Counter(c.action for c in calls)
    # Both sessions' transaction messages reached the stream; the offline one's afterwards.
    assert actions["StartTransaction"] == 2 and actions["StopTransaction"] == 2
    assert actions["MeterValues"] == 2 + 3
    flushed = [c for c in calls if c.connection_id == calls[-1].connection_id]
    flushed_actions = [c.action for c in flushed if c.action != "BootNotification"]
    assert flushed_actions == [
        "StartTransaction",
        "MeterValues",
        "MeterValues",
        "MeterValues",
        "StopTransaction",
    ]
    stop = msgspec.json.decode(flushed[-1].payload)
    assert stop["transactionId"] == OFFLINE_TRANSACTION_ID
