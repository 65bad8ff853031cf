"""Settings for every hub process, read once from a TOML file, the environment and CLI flags
(flags over ``HUB_*`` variables over the file over the defaults)."""

from __future__ import annotations

import difflib
import os
import tomllib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from hub.domain.ocpp_versions import DEFAULT_VERSIONS, parse_versions
from hub.domain.policy import Policy, format_actions, parse_actions, parse_fee_rate
from hub.domain.security_profiles import BadRegistration

BootPolicy = Literal["accept", "known", "pending"]
AuthorizePolicy = Literal["accept", "list"]
StorageKind = Literal["file", "memory"]

# The largest event the hub stores: a frame up to the gateway's limit (1 MiB by default), its
# envelope and NATS headers fit with room to spare. The embedded nats-server's max_payload and
# the stream's max_msg_size are set to it.
MAX_EVENT_BYTES: Final = 4 * 1024 * 1024


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "OCPP_EVENTS"
    storage: StorageKind = "file"
    replicas: int = 1
    max_age_s: float = 0.0  # 0 keeps events forever
    max_bytes: int = -1
    duplicate_window_s: float = 600.0
    max_msg_size: int = MAX_EVENT_BYTES


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
    # OCPP-J sets no limit; real StopTransactions with hours of transactionData and
    # GetConfiguration answers of whole chargers run to hundreds of kilobytes.
    max_frame_bytes: int = 1024 * 1024
    # Configuration keys whose values are redacted in stored events, comma-separated, on top
    # of AuthorizationKey, which always is (hub.domain.redaction).
    secret_config_keys: str = ""
    ping_interval_s: float = 30.0
    ping_timeout_s: float = 30.0
    close_timeout_s: float = 10.0
    require_subprotocol: bool = True
    # OCPP versions the gateway negotiates, comma-separated (hub.domain.ocpp_versions).
    ocpp_versions: str = ",".join(DEFAULT_VERSIONS)
    tls_cert: str = ""
    tls_key: str = ""
    # PEM bundle of the CA(s) that sign chargers' client certificates (security profile 3);
    # empty: <data dir>/ca/ca.crt when the hub's own CA exists (with_client_ca).
    tls_client_ca: str = ""
    publish_timeout_s: float = 2.0
    txid_ttl_s: float = 7 * 24 * 3600.0


class FanoutSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The UI fan-out (hub/fanout): WebSockets and REST reads for UIs, and the dashboard."""

    enabled: bool = True  # whether `hub up` starts it
    host: str = "127.0.0.1"
    port: int = 8080
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: str = ""  # HS256; empty: generated once under the data directory
    jwt_public_key: str = ""  # RS256: PEM file that verifies tokens
    jwt_private_key: str = ""  # RS256: PEM file `hub token` signs with
    rebuild_max_events: int = 1_000_000  # startup replays at most this many events
    rebuild_max_age_s: float = 0.0  # ... and none older than this (0: no time bound)
    history_per_charger: int = 64  # UI messages kept per charger for resume
    client_queue: int = 256  # messages queued per client before it counts as too slow
    heartbeat_s: float = 30.0
    compress: bool = True  # permessage-deflate when the client offers it
    max_client_message_bytes: int = 4096
    client_messages_per_s: float = 20.0


class ProjectionSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ClickHouse projections (projections/): where they go and how they batch."""

    enabled: bool = True  # whether `hub up` runs the projection runner
    clickhouse_url: str = ""  # empty: embedded chDB under <data_dir>/clickhouse
    database: str = "ocpp"
    batch_size: int = 5000
    linger_s: float = 0.5  # longer: fewer, larger parts; shorter: less lag
    snapshot_every: int = 50_000
    # How much `hub up` lowers its `hub project` child's CPU priority (nice, 0-19): under
    # overload, answering chargers comes first and the tables catch up after.
    nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 0


class CaSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The certificate authority that signs chargers' CSRs (SignCertificate): the local one
    ``hub ca init`` makes under ``<data dir>/ca``, or an external command (docs/ca.md)."""

    # Given a CSR (PEM) on stdin, prints the certificate chain (PEM, leaf first).
    command: str = ""
    command_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # How long a certificate the local CA signs is valid.
    certificate_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 365


class OpsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Each process's /metrics, /healthz and /readyz (hub/ops.py, docs/operations.md)."""

    host: str = "127.0.0.1"
    # 0: a free port, recorded in the OCPP_OPS bucket; under `hub up` a fixed port is the
    # gateway's and each child takes the next (fan-out +1, projections +2, supervisor +3).
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    # A follower further behind than this many events is not ready (/readyz 503).
    ready_max_lag_events: Annotated[int, msgspec.Meta(ge=0)] = 10_000


_POLICY: Final = Policy()


class SupervisorSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Money and session integrity (hub/supervisor); docs/integrity.md explains each one."""

    enabled: bool = True  # whether `hub up` runs the supervisor
    tick_s: float = 5.0  # how often the clock.tick event is stored
    orphaned_after_s: float = _POLICY.orphaned_after_s
    ghost_after_s: float = _POLICY.ghost_after_s
    ghost_offline_after_s: float = _POLICY.ghost_offline_after_s
    stale_after_s: float = _POLICY.stale_after_s
    max_power_w: float = _POLICY.max_power_w
    platform_fee_rate: str = _POLICY.platform_fee_rate
    certificate_warning_days: float = _POLICY.certificate_warning_days
    load_management: bool = _POLICY.load_management  # docs/smart-charging.md
    load_stack_level: int = _POLICY.load_stack_level
    load_hysteresis_a: float = _POLICY.load_hysteresis_a
    load_min_interval_s: float = _POLICY.load_min_interval_s
    load_reaction_allowance_s: float = _POLICY.load_reaction_allowance_s
    # <kind>=<action>,...: trigger_status, remote_stop or close_session per anomaly kind.
    actions: str = format_actions(_POLICY.actions)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path = Path("data")
    nats_url: str = ""  # empty: start the embedded nats-server
    nats_port: int = -1  # embedded server: -1 lets it pick a free port
    stream: StreamSettings = StreamSettings()
    gateway: GatewaySettings = GatewaySettings()
    fanout: FanoutSettings = FanoutSettings()
    projections: ProjectionSettings = ProjectionSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    ca: CaSettings = CaSettings()
    ops: OpsSettings = OpsSettings()
    # Seconds `hub up` may take to stop once told to; past that it exits anyway (code 1).
    shutdown_grace_s: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    # The lease that makes one of several `hub supervise` (`hub project`) the active one
    # (hub/lease.py): a standby takes over this long after the active one stopped renewing.
    lease_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    lease_renew_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    log_level: str = "info"
    # auto: console on a terminal, JSON lines otherwise (a 5x cheaper line per exchange).
    log_format: Literal["auto", "console", "json"] = "auto"


# Every setting an operator may give through the environment: variable -> (section, field).
ENVIRONMENT: Final[dict[str, tuple[str, str]]] = {
    "HUB_DATA_DIR": ("", "data_dir"),
    "HUB_NATS_URL": ("", "nats_url"),
    "HUB_SHUTDOWN_GRACE": ("", "shutdown_grace_s"),
    "HUB_LEASE_TTL": ("", "lease_ttl_s"),
    "HUB_LEASE_RENEW": ("", "lease_renew_s"),
    "HUB_LOG_LEVEL": ("", "log_level"),
    "HUB_LOG_FORMAT": ("", "log_format"),
    "HUB_GATEWAY_ID": ("gateway", "gateway_id"),
    "HUB_ALLOW_UNKNOWN_CHARGERS": ("gateway", "allow_unknown_chargers"),
    "HUB_BOOT_POLICY": ("gateway", "boot_policy"),
    "HUB_AUTHORIZE_POLICY": ("gateway", "authorize_policy"),
    "HUB_HEARTBEAT_INTERVAL": ("gateway", "heartbeat_interval_s"),
    "HUB_MAX_FRAME_BYTES": ("gateway", "max_frame_bytes"),
    "HUB_SECRET_CONFIG_KEYS": ("gateway", "secret_config_keys"),
    "HUB_OCPP_VERSIONS": ("gateway", "ocpp_versions"),
    "HUB_TLS_CERT": ("gateway", "tls_cert"),
    "HUB_TLS_KEY": ("gateway", "tls_key"),
    "HUB_TLS_CLIENT_CA": ("gateway", "tls_client_ca"),
    "HUB_STREAM_STORAGE": ("stream", "storage"),
    "HUB_STREAM_REPLICAS": ("stream", "replicas"),
    "HUB_STREAM_MAX_AGE": ("stream", "max_age_s"),
    "HUB_STREAM_MAX_BYTES": ("stream", "max_bytes"),
    "HUB_STREAM_DUPLICATE_WINDOW": ("stream", "duplicate_window_s"),
    "HUB_FANOUT": ("fanout", "enabled"),
    "HUB_FANOUT_HOST": ("fanout", "host"),
    "HUB_FANOUT_PORT": ("fanout", "port"),
    "HUB_JWT_ALGORITHM": ("fanout", "jwt_algorithm"),
    "HUB_JWT_SECRET": ("fanout", "jwt_secret"),
    "HUB_JWT_PUBLIC_KEY": ("fanout", "jwt_public_key"),
    "HUB_JWT_PRIVATE_KEY": ("fanout", "jwt_private_key"),
    "HUB_FANOUT_REBUILD_EVENTS": ("fanout", "rebuild_max_events"),
    "HUB_FANOUT_REBUILD_AGE": ("fanout", "rebuild_max_age_s"),
    "HUB_FANOUT_HISTORY": ("fanout", "history_per_charger"),
    "HUB_FANOUT_CLIENT_QUEUE": ("fanout", "client_queue"),
    "HUB_FANOUT_COMPRESS": ("fanout", "compress"),
    "HUB_PROJECTIONS": ("projections", "enabled"),
    "HUB_CLICKHOUSE_URL": ("projections", "clickhouse_url"),
    "HUB_CLICKHOUSE_DATABASE": ("projections", "database"),
    "HUB_PROJECTION_BATCH_SIZE": ("projections", "batch_size"),
    "HUB_PROJECTION_LINGER": ("projections", "linger_s"),
    "HUB_PROJECTION_NICE": ("projections", "nice"),
    "HUB_SUPERVISOR": ("supervisor", "enabled"),
    "HUB_TICK_INTERVAL": ("supervisor", "tick_s"),
    "HUB_ORPHANED_AFTER": ("supervisor", "orphaned_after_s"),
    "HUB_GHOST_AFTER": ("supervisor", "ghost_after_s"),
    "HUB_GHOST_OFFLINE_AFTER": ("supervisor", "ghost_offline_after_s"),
    "HUB_STALE_AFTER": ("supervisor", "stale_after_s"),
    "HUB_MAX_POWER_W": ("supervisor", "max_power_w"),
    "HUB_PLATFORM_FEE_RATE": ("supervisor", "platform_fee_rate"),
    "HUB_INTEGRITY_ACTIONS": ("supervisor", "actions"),
    "HUB_CERTIFICATE_WARNING_DAYS": ("supervisor", "certificate_warning_days"),
    "HUB_LOAD_MANAGEMENT": ("supervisor", "load_management"),
    "HUB_LOAD_STACK_LEVEL": ("supervisor", "load_stack_level"),
    "HUB_LOAD_HYSTERESIS": ("supervisor", "load_hysteresis_a"),
    "HUB_LOAD_MIN_INTERVAL": ("supervisor", "load_min_interval_s"),
    "HUB_LOAD_REACTION_ALLOWANCE": ("supervisor", "load_reaction_allowance_s"),
    "HUB_CA_COMMAND": ("ca", "command"),
    "HUB_CA_COMMAND_TIMEOUT": ("ca", "command_timeout_s"),
    "HUB_CERTIFICATE_DAYS": ("ca", "certificate_days"),
    "HUB_METRICS_HOST": ("ops", "host"),
    "HUB_METRICS_PORT": ("ops", "port"),
    "HUB_READY_MAX_LAG": ("ops", "ready_max_lag_events"),
}


# The variable that names a TOML settings file when ``--config`` does not.
CONFIG_VARIABLE: Final = "HUB_CONFIG"


class ConfigFile(msgspec.Struct, frozen=True):
    """A TOML settings file, read and checked: its tables mirror ``Settings``' structs."""

    path: Path
    document: dict[str, Any]


def config_file(flag: Path | None, environ: Mapping[str, str] | None = None) -> ConfigFile | None:
    """The file ``--config`` names, else the one ``HUB_CONFIG`` names, read; None without
    either. Raises ValueError naming the file, the key and the problem."""
    env = os.environ if environ is None else environ
    if flag is not None:
        return read_config(flag)
    named = env.get(CONFIG_VARIABLE)
    return read_config(Path(named)) if named else None


def read_config(path: Path) -> ConfigFile:
    """Reads ``path`` and checks it as strictly as the structs type it: a key no struct has,
    or a value of the wrong type or out of range, is refused with its dotted key."""
    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except OSError as error:
        raise ValueError(f"config {path}: cannot read it: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config {path}: not valid TOML: {error}") from None
    for key, known in _unknown_keys(document, Settings):
        hint = difflib.get_close_matches(key.rpartition(".")[2], known, n=1)
        maybe = f" (did you mean {hint[0]}?)" if hint else ""
        raise ValueError(f"config {path}: unknown key {key}{maybe}")
    try:
        msgspec.convert(document, Settings, dec_hook=_decode_path)
    except msgspec.ValidationError as error:
        raise ValueError(f"config {path}: {_name_key(str(error))}") from None
    return ConfigFile(path, document)


def _unknown_keys(
    table: Mapping[str, object], kind: type[msgspec.Struct], prefix: str = ""
) -> list[tuple[str, list[str]]]:
    """Every key of ``table`` that ``kind`` has no field for, dotted, with the names it has."""
    fields = {field.name: field.type for field in msgspec.structs.fields(kind)}
    unknown: list[tuple[str, list[str]]] = []
    for key, value in table.items():
        if key not in fields:
            unknown.append((f"{prefix}{key}", list(fields)))
            continue
        inner = fields[key]
        if (
            isinstance(inner, type)
            and issubclass(inner, msgspec.Struct)
            and isinstance(value, dict)
        ):
            unknown.extend(_unknown_keys(value, inner, f"{prefix}{key}."))
    return unknown


def _name_key(message: str) -> str:
    """msgspec's ``at `$.stream.replicas``` as the file's key, ``in stream.replicas``."""
    head, marker, path = message.rpartition(" - at `$.")
    return f"{head} - in {path.rstrip('`')}" if marker else message


def from_environment(
    environ: Mapping[str, str] | None = None, *, config: ConfigFile | None = None
) -> Settings:
    """``HUB_*`` variables over ``config``'s values over the defaults; CLI flags are applied
    on top by the caller."""
    env = os.environ if environ is None else environ
    document: dict[str, Any] = {
        key: dict(value) if isinstance(value, dict) else value
        for key, value in (config.document if config else {}).items()
    }
    for variable, (section, field) in ENVIRONMENT.items():
        if variable in env:
            (document.setdefault(section, {}) if section else document)[field] = env[variable]
    try:
        # Lax: variables are strings. The file's values passed the strict check already,
        # so whatever fails here came from a variable.
        settings = msgspec.convert(document, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as error:
        raise ValueError(f"invalid environment: {_name_variable(str(error))}") from None
    _check_supervisor(settings.supervisor, env, config)
    if settings.lease_renew_s >= settings.lease_ttl_s:
        problem = "must be shorter than the lease's TTL (HUB_LEASE_TTL)"
        raise _refusal("HUB_LEASE_RENEW", problem, env, config)
    try:
        parse_versions(settings.gateway.ocpp_versions)
    except BadRegistration as error:
        if config is not None and "HUB_OCPP_VERSIONS" not in env:
            raise _refusal("HUB_OCPP_VERSIONS", error.problem, env, config) from None
        raise ValueError(f"invalid HUB_OCPP_VERSIONS: {error.problem}") from None
    return settings


def _refusal(
    variable: str, problem: str, env: Mapping[str, str], config: ConfigFile | None
) -> ValueError:
    """A value refused at start, named where it came from: the variable, else the file's key."""
    if config is None or variable in env:
        return ValueError(f"invalid environment: {problem} - in {variable}")
    section, field = ENVIRONMENT[variable]
    return ValueError(f"config {config.path}: {problem} - in {section}.{field}")


def check_ocpp_versions(gateway: GatewaySettings, source: str) -> None:
    """Refuse at start a version list the gateway could not negotiate with."""
    try:
        parse_versions(gateway.ocpp_versions)
    except BadRegistration as error:
        raise ValueError(f"invalid {source}: {error.problem}") from None


def _check_supervisor(
    supervisor: SupervisorSettings, env: Mapping[str, str], config: ConfigFile | None
) -> None:
    """Refuse at start what the supervisor could only fail on later."""
    for variable, check in (
        ("HUB_INTEGRITY_ACTIONS", lambda: parse_actions(supervisor.actions)),
        ("HUB_PLATFORM_FEE_RATE", lambda: parse_fee_rate(supervisor.platform_fee_rate)),
    ):
        try:
            check()
        except ValueError as error:
            raise _refusal(variable, str(error), env, config) from None


def _decode_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


def _name_variable(message: str) -> str:
    """Point at the variable, not at msgspec's path into the Settings struct."""
    for variable, (section, field) in ENVIRONMENT.items():
        path = f"$.{section}.{field}" if section else f"$.{field}"
        if message.endswith(f"at `{path}`"):
            return message.replace(f"at `{path}`", f"in {variable}")
    return message


def hub_ca_certificate(data_dir: Path) -> Path:
    """Where ``hub ca init`` keeps the certificate of the hub's own CA."""
    return data_dir / "ca" / "ca.crt"


def with_client_ca(settings: Settings) -> Settings:
    """Without ``--tls-client-ca``, a TLS gateway trusts the hub's own CA, if there is one,
    to sign chargers' client certificates. Raises ValueError for a client CA that cannot
    work, so the hub refuses to start instead of serving without it."""
    gateway = settings.gateway
    if gateway.tls_client_ca:
        if not gateway.tls_cert:
            raise ValueError("--tls-client-ca (HUB_TLS_CLIENT_CA) needs --tls-cert and --tls-key")
        if not Path(gateway.tls_client_ca).is_file():
            raise ValueError(f"--tls-client-ca: no such file: {gateway.tls_client_ca}")
        return settings
    default = hub_ca_certificate(settings.data_dir)
    if not gateway.tls_cert or not default.is_file():
        return settings
    gateway = msgspec.structs.replace(gateway, tls_client_ca=str(default))
    return msgspec.structs.replace(settings, gateway=gateway)


def with_gateway_id(settings: Settings) -> Settings:
    if settings.gateway.gateway_id:
        return settings
    gateway = msgspec.structs.replace(settings.gateway, gateway_id=f"gw-{uuid.uuid4().hex[:8]}")
    return msgspec.structs.replace(settings, gateway=gateway)
