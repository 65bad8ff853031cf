"""Settings for every hub process, read once from the environment and CLI flags."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Literal

import msgspec

BootPolicy = Literal["accept", "known", "pending"]
AuthorizePolicy = Literal["accept", "list"]
StorageKind = Literal["file", "memory"]


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "OCPP_EVENTS"
    storage: StorageKind = "file"
    replicas: int = 1
    max_age_s: float = 0.0  # 0 keeps events forever
    max_bytes: int = -1
    duplicate_window_s: float = 600.0


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 9000
    gateway_id: str = ""
    allow_unknown_chargers: bool = False
    boot_policy: BootPolicy = "accept"
    heartbeat_interval_s: int = 300
    authorize_policy: AuthorizePolicy = "accept"
    # vendorId -> accepted messageIds ("*" for all); an empty map accepts every vendor.
    data_transfer_vendors: dict[str, list[str]] = {}
    max_frame_bytes: int = 65536
    ping_interval_s: float = 30.0
    ping_timeout_s: float = 30.0
    require_subprotocol: bool = True
    tls_cert: str = ""
    tls_key: str = ""
    publish_timeout_s: float = 2.0
    txid_ttl_s: float = 7 * 24 * 3600.0


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path = Path("data")
    nats_url: str = ""  # empty: start the embedded nats-server
    nats_port: int = -1  # embedded server: -1 lets it pick a free port
    stream: StreamSettings = StreamSettings()
    gateway: GatewaySettings = GatewaySettings()
    log_level: str = "info"
    log_format: Literal["console", "json"] = "console"


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def from_environment(environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
    """``HUB_*`` variables override the defaults; CLI flags are applied on top by the caller."""
    env = os.environ if environ is None else environ
    settings = Settings()
    gateway = settings.gateway
    stream = settings.stream
    if "HUB_DATA_DIR" in env:
        settings = msgspec.structs.replace(settings, data_dir=Path(env["HUB_DATA_DIR"]))
    if "HUB_NATS_URL" in env:
        settings = msgspec.structs.replace(settings, nats_url=env["HUB_NATS_URL"])
    if "HUB_ALLOW_UNKNOWN_CHARGERS" in env:
        allow = _env_bool(env["HUB_ALLOW_UNKNOWN_CHARGERS"])
        gateway = msgspec.structs.replace(gateway, allow_unknown_chargers=allow)
    if "HUB_GATEWAY_ID" in env:
        gateway = msgspec.structs.replace(gateway, gateway_id=env["HUB_GATEWAY_ID"])
    if "HUB_STREAM_REPLICAS" in env:
        stream = msgspec.structs.replace(stream, replicas=int(env["HUB_STREAM_REPLICAS"]))
    if "HUB_LOG_FORMAT" in env:
        fmt = env["HUB_LOG_FORMAT"]
        if fmt != "console" and fmt != "json":
            raise ValueError(f"HUB_LOG_FORMAT must be console or json, not {fmt!r}")
        settings = msgspec.structs.replace(settings, log_format=fmt)
    return msgspec.structs.replace(settings, gateway=gateway, stream=stream)


def with_gateway_id(settings: Settings) -> Settings:
    if settings.gateway.gateway_id:
        return settings
    gateway = msgspec.structs.replace(settings.gateway, gateway_id=f"gw-{uuid.uuid4().hex[:8]}")
    return msgspec.structs.replace(settings, gateway=gateway)
