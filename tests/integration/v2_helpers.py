"""An ocpp-library OCPP 2.0.1 or 2.1 charging station that answers the hub's commands (its
``call_result`` objects, which the library checks against the official schemas), and how
to bring one online where the command API sees it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

from ocpp.routing import on
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests.integration.api_helpers import api_token
from tests.integration.fanout_helpers import messages_until, ui_socket

VARIABLE: Final = {
    "component": {"name": "OCPPCommCtrlr"},
    "variable": {"name": "HeartbeatInterval"},
}
PASSWORD: Final = {
    "component": {"name": "SecurityCtrlr"},
    "variable": {"name": "BasicAuthPassword"},
}


def _results(request: list[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    return [
        {"component": item["component"], "variable": item["variable"], **extra} for item in request
    ]


class _Answering:
    """Records what it got and answers every command the tests send, schema-valid."""

    received: list[tuple[str, dict[str, Any]]]
    results: Any

    def _got(self, action: str, **kwargs: Any) -> None:
        self.received.append((action, kwargs))

    @on("Reset")
    async def on_reset(self, **kwargs: Any) -> Any:
        self._got("Reset", **kwargs)
        return self.results.Reset(status="Accepted")

    @on("GetVariables")
    async def on_get_variables(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self._got("GetVariables", get_variable_data=get_variable_data)
        return self.results.GetVariables(
            get_variable_result=_results(
                get_variable_data, attribute_status="Accepted", attribute_value="300"
            )
        )

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self._got("SetVariables", set_variable_data=set_variable_data)
        return self.results.SetVariables(
            set_variable_result=_results(set_variable_data, attribute_status="Accepted")
        )

    @on("RequestStartTransaction")
    async def on_request_start(self, **kwargs: Any) -> Any:
        self._got("RequestStartTransaction", **kwargs)
        return self.results.RequestStartTransaction(status="Accepted", transaction_id="tx-1")

    @on("RequestStopTransaction")
    async def on_request_stop(self, **kwargs: Any) -> Any:
        self._got("RequestStopTransaction", **kwargs)
        return self.results.RequestStopTransaction(status="Accepted")

    @on("GetTransactionStatus")
    async def on_transaction_status(self, **kwargs: Any) -> Any:
        self._got("GetTransactionStatus", **kwargs)
        return self.results.GetTransactionStatus(messages_in_queue=False, ongoing_indicator=True)

    @on("ChangeAvailability")
    async def on_change_availability(self, **kwargs: Any) -> Any:
        self._got("ChangeAvailability", **kwargs)
        return self.results.ChangeAvailability(status="Scheduled")

    @on("SetNetworkProfile")
    async def on_set_network_profile(self, **kwargs: Any) -> Any:
        self._got("SetNetworkProfile", **kwargs)
        return self.results.SetNetworkProfile(status="Accepted")

    @on("GetBaseReport")
    async def on_get_base_report(self, **kwargs: Any) -> Any:
        self._got("GetBaseReport", **kwargs)
        return self.results.GetBaseReport(status="Accepted")

    @on("GetReport")
    async def on_get_report(self, **kwargs: Any) -> Any:
        self._got("GetReport", **kwargs)
        return self.results.GetReport(status="EmptyResultSet")


class Station201(_Answering, ChargePoint201):  # type: ignore[misc]  # no hints in ocpp
    results = result201

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.received = []
        super().__init__(*args, **kwargs)


class Station21(_Answering, ChargePoint21):  # type: ignore[misc]
    results = result21

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.received = []
        super().__init__(*args, **kwargs)


STATIONS: Final[dict[str, type[Station201] | type[Station21]]] = {
    "2.0.1": Station201,
    "2.1": Station21,
}


@contextlib.asynccontextmanager
async def station_online(
    port: int,
    ui_port: int,
    charge_point_id: str,
    version: str,
    station_class: type[Station201] | type[Station21] | None = None,
) -> AsyncIterator[Station201 | Station21]:
    """A 2.x station connected with ``version`` (of ``station_class``, by default the
    version's answering one), once the API's live state has seen it."""
    async with ui_socket(
        ui_port, f"/ws/chargers/{charge_point_id}", token_value=api_token("viewer")
    ) as ws:
        async with connect(
            f"ws://127.0.0.1:{port}/ocpp/{charge_point_id}",
            subprotocols=[Subprotocol(f"ocpp{version}")],
        ) as websocket:
            assert websocket.subprotocol == f"ocpp{version}"
            station = (station_class or STATIONS[version])(charge_point_id, websocket)
            runner = asyncio.create_task(station.start())
            try:
                await messages_until(
                    ws, lambda m: m["type"] == "connection" and m["state"] == "connected"
                )
                yield station
            finally:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await runner
