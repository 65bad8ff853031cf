"""Simulated OCPP 1.6J, 2.0.1 and 2.1 chargers for tests, demos and load generation.

Built on raw `websockets` + msgspec rather than the ocpp library so that a
single process can drive thousands of chargers; see charger.py for why.
"""

from __future__ import annotations

from tools.simulator.charger import (
    OFFLINE_TRANSACTION_ID,
    QUEUED_WHILE_OFFLINE,
    CallError,
    CallHook,
    ChargerDisconnected,
    ChargerLink,
    ChargerOffline,
    Payload,
    SimulatedCharger,
    default_response,
    utc_timestamp,
)
from tools.simulator.cli import add_simulate_arguments, simulate_main
from tools.simulator.fleet import (
    OCPP_VERSIONS,
    FleetHooks,
    FleetMode,
    FleetOptions,
    FleetProgress,
    FleetReport,
    raise_nofile_limit,
    run_fleet,
)
from tools.simulator.ocpp2 import (
    STATION_VERSIONS,
    SimulatedStation,
    StationTransaction,
    default_station_response,
    run_station_session,
)
from tools.simulator.session import (
    PRE_CHARGE_MESSAGE_ID,
    Sample,
    SessionPlan,
    SessionResult,
    pre_charge_data,
    run_session,
)
from tools.simulator.stats import LatencyRecorder, LatencySummary

__all__ = [
    "OCPP_VERSIONS",
    "OFFLINE_TRANSACTION_ID",
    "PRE_CHARGE_MESSAGE_ID",
    "QUEUED_WHILE_OFFLINE",
    "STATION_VERSIONS",
    "CallError",
    "CallHook",
    "ChargerDisconnected",
    "ChargerLink",
    "ChargerOffline",
    "FleetHooks",
    "FleetMode",
    "FleetOptions",
    "FleetProgress",
    "FleetReport",
    "LatencyRecorder",
    "LatencySummary",
    "Payload",
    "Sample",
    "SessionPlan",
    "SessionResult",
    "SimulatedCharger",
    "SimulatedStation",
    "StationTransaction",
    "add_simulate_arguments",
    "default_response",
    "default_station_response",
    "pre_charge_data",
    "raise_nofile_limit",
    "run_fleet",
    "run_session",
    "run_station_session",
    "simulate_main",
    "utc_timestamp",
]
