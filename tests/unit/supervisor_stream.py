"""A small stream writer for the supervisor's pure tests: events as the gateway and the
admin tools would store them, with the supervisor's own derived events fed back in order,
the way they come back through JetStream."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import msgspec

from hub.domain.policy import Policy
from hub.supervisor.core import Intent, Supervisor
from schemas.events import ChargerConnected, ClockTick, Event, OcppFrame

T0 = 1_790_000_000_000  # hub time of the first event, ms


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class Stream:
    def __init__(self, policy: Policy | None = None) -> None:
        self.supervisor = Supervisor(policy)
        self.events: list[Event] = []
        self.intents: list[Intent] = []
        self.now = T0
        self._ids = itertools.count(1)

    def add(self, event: Event) -> list[Intent]:
        self.now = max(self.now, event.received_at)
        self.events.append(event)
        made = self.supervisor.apply(len(self.events), event)
        self.intents.extend(made)
        for intent in made:
            self.events.append(intent.event)
            self.supervisor.apply(len(self.events), intent.event)
        return made

    def at(self, seconds: float) -> int:
        return T0 + int(seconds * 1000)

    def frame(
        self,
        cp: str,
        direction: str,
        message_type: str,
        unique_id: str,
        action: str,
        payload: dict[str, Any],
        at: int,
    ) -> list[Intent]:
        return self.add(
            OcppFrame(
                id=f"f{next(self._ids)}",
                received_at=at,
                charge_point_id=cp,
                gateway_id="gw",
                connection_id="c",
                ocpp_version="1.6",
                direction=direction,  # type: ignore[arg-type]
                message_type=message_type,  # type: ignore[arg-type]
                unique_id=unique_id,
                action=action,
                payload=msgspec.Raw(msgspec.json.encode(payload)),
            )
        )

    def call(self, cp: str, action: str, payload: dict[str, Any], at: int) -> list[Intent]:
        return self.frame(cp, "in", "CALL", f"u{next(self._ids)}", action, payload, at)

    def status(self, cp: str, connector: int, status: str, at: int) -> list[Intent]:
        return self.call(
            cp,
            "StatusNotification",
            {"connectorId": connector, "errorCode": "NoError", "status": status},
            at,
        )

    def start(
        self, cp: str, connector: int, tx: int, at: int, id_tag: str = "TAG", meter: int = 0
    ) -> list[Intent]:
        unique_id = f"s{next(self._ids)}"
        payload = {
            "connectorId": connector,
            "idTag": id_tag,
            "meterStart": meter,
            "timestamp": iso(at),
        }
        made = self.frame(cp, "in", "CALL", unique_id, "StartTransaction", payload, at)
        answer = {"transactionId": tx, "idTagInfo": {"status": "Accepted"}}
        return made + self.frame(
            cp, "out", "CALLRESULT", unique_id, "StartTransaction", answer, at + 5
        )

    def meter(self, cp: str, connector: int, tx: int, wh: float, at: int) -> list[Intent]:
        return self.call(
            cp,
            "MeterValues",
            {
                "connectorId": connector,
                "transactionId": tx,
                "meterValue": [{"timestamp": iso(at), "sampledValue": [{"value": f"{wh:g}"}]}],
            },
            at,
        )

    def stop(self, cp: str, tx: int, wh: float, at: int, reason: str = "Local") -> list[Intent]:
        return self.call(
            cp,
            "StopTransaction",
            {"transactionId": tx, "meterStop": int(wh), "timestamp": iso(at), "reason": reason},
            at,
        )

    def connect(self, cp: str, at: int) -> list[Intent]:
        return self.add(
            ChargerConnected(
                id=f"open-{cp}-{at}",
                received_at=at,
                charge_point_id=cp,
                gateway_id="gw",
                connection_id="c",
                ocpp_version="1.6",
                remote_address="127.0.0.1",
                security_profile=0,
            )
        )

    def tick(self, at: int) -> list[Intent]:
        return self.add(ClockTick(id=f"tick-{at}", received_at=at))

    def ticks_until(self, until: int, every_ms: int = 5_000) -> list[Intent]:
        made: list[Intent] = []
        at = self.now - self.now % every_ms + every_ms
        while at <= until:
            made += self.tick(at)
            at += every_ms
        return made

    def kinds(self, tag: str) -> list[str]:
        found = []
        for intent in self.intents:
            event = intent.event
            if event.__struct_config__.tag == tag:
                found.append(getattr(event, "kind", getattr(event, "limit", "")))
        return found
