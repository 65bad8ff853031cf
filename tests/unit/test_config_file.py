"""The TOML settings file: the same settings and checks as the environment, with errors that
name the file and the key, and flags over variables over the file over the defaults."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from hub.cli import _loaded, build_parser
from hub.config import (
    ENVIRONMENT,
    Settings,
    StreamSettings,
    config_file,
    from_environment,
    read_config,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "ops" / "hub.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


def test_the_example_file_loads_into_the_settings_it_shows() -> None:
    settings = from_environment({}, config=read_config(EXAMPLE))
    assert settings.stream.replicas == 3
    assert settings.gateway.host == "0.0.0.0"
    assert settings.gateway.data_transfer_vendors == {"com.example": ["*"]}
    assert settings.projections.clickhouse_url.startswith("http://")
    assert settings.log_format == "json"


def test_every_setting_the_file_takes_is_in_the_configuration_reference() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()

    def keys(kind: type[msgspec.Struct], prefix: str = "") -> list[str]:
        found: list[str] = []
        for field in msgspec.structs.fields(kind):
            inner = field.type
            if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
                found.extend(keys(inner, f"{field.name}."))
            else:
                found.append(prefix + field.name)
        return found

    missing = [key for key in keys(Settings) if f"`{key}`" not in reference]
    assert not missing, f"docs/configuration.md does not describe {missing}"
    unmapped = [name for name in ENVIRONMENT if f"`{name}`" not in reference]
    assert not unmapped, f"docs/configuration.md does not name {unmapped}"


def test_flags_win_over_variables_which_win_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        '[gateway]\nport = 9100\nboot_policy = "pending"\nheartbeat_interval_s = 60\n'
        "[stream]\nreplicas = 3\n",
    )
    for variable in ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HUB_BOOT_POLICY", "known")
    monkeypatch.setenv("HUB_STREAM_REPLICAS", "2")
    args = build_parser().parse_args(
        ["gateway", "--config", str(path), "--heartbeat-interval", "30"]
    )
    settings, _ = _loaded(args)
    assert settings.gateway.heartbeat_interval_s == 30  # flag over file
    assert settings.gateway.boot_policy == "known"  # variable over file
    assert settings.stream.replicas == 2  # variable over file
    assert settings.gateway.port == 9100  # file over default
    assert settings.gateway.authorize_policy == "accept"  # default


def test_config_flag_wins_over_hub_config(tmp_path: Path) -> None:
    named = tmp_path / "named.toml"
    named.write_text("[stream]\nreplicas = 5\n")
    flagged = tmp_path / "flagged.toml"
    flagged.write_text("[stream]\nreplicas = 3\n")
    env = {"HUB_CONFIG": str(named)}
    from_variable = config_file(None, env)
    assert from_variable is not None
    assert from_environment(env, config=from_variable).stream.replicas == 5
    from_flag = config_file(flagged, env)
    assert from_flag is not None
    assert from_environment(env, config=from_flag).stream.replicas == 3
    assert config_file(None, {}) is None
    assert from_environment({}).stream == StreamSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[stream]\nreplica = 3\n", "unknown key stream.replica (did you mean replicas?)"),
        ("[gatway]\nport = 1\n", "unknown key gatway (did you mean gateway?)"),
        ("HUB_NATS_URL = 'x'\n", "unknown key HUB_NATS_URL"),
        ("[stream]\nreplicas = '3'\n", "Expected `int`, got `str` - in stream.replicas"),
        ("[gateway]\nboot_policy = 'maybe'\n", "Invalid enum value 'maybe' - in gateway"),
        ("shutdown_grace_s = 0\n", "Expected `float` > 0.0 - in shutdown_grace_s"),
        ("[ca]\ncertificate_days = 0\n", "Expected `int` >= 1 - in ca.certificate_days"),
        ("stream = 3\n", "Expected `object`, got `int` - in stream"),
        ("[stream\nreplicas = 3\n", "not valid TOML: "),
        (
            "[supervisor]\nactions = 'ghost=explode'\n",
            "- in supervisor.actions",
        ),
        (
            "[supervisor]\nplatform_fee_rate = 'lots'\n",
            "- in supervisor.platform_fee_rate",
        ),
        (
            "[gateway]\nocpp_versions = '1.6,3'\n",
            "- in gateway.ocpp_versions",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as refused:
        from_environment({}, config=read_config(path))
    assert str(refused.value).startswith(f"config {path}: ")
    assert message in str(refused.value)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"config .*nowhere\.toml: cannot read it: No such file"):
        config_file(tmp_path / "nowhere.toml", {})


def test_a_bad_variable_is_still_named_over_a_good_file(tmp_path: Path) -> None:
    config = read_config(write(tmp_path, "[supervisor]\nactions = 'ghost=remote_stop'\n"))
    with pytest.raises(ValueError, match="in HUB_INTEGRITY_ACTIONS"):
        from_environment({"HUB_INTEGRITY_ACTIONS": "ghost=explode"}, config=config)
    with pytest.raises(ValueError, match="in HUB_STREAM_REPLICAS"):
        from_environment({"HUB_STREAM_REPLICAS": "three"}, config=config)
