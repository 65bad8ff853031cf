"""The ``hub`` command as an operator runs it: real processes, real embedded NATS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ocpp.v16 import call

from tests.integration.helpers import gateway_port, hub_up, ocpp_charger

HUB = [sys.executable, "-m", "hub.cli"]


def hub(
    *args: str, data_dir: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HUB, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_registering_chargers_and_id_tags_is_remembered(tmp_path: Path) -> None:
    added = hub("chargers", "add", "CP-1", "--password", "0123456789abcdef", data_dir=tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "registered CP-1"
    generated = hub("chargers", "add", "CP-2", "--generate-password", data_dir=tmp_path)
    assert re.search(r"^password: \S{20,}$", generated.stdout, re.MULTILINE)
    assert (
        hub(
            "idtags", "add", "TAG-1", "--expiry", "2030-01-01T00:00:00+01:00", data_dir=tmp_path
        ).returncode
        == 0
    )
    listed = hub("chargers", "list", data_dir=tmp_path)
    assert listed.stdout.splitlines() == ["CP-1\tpassword", "CP-2\tpassword"]
    tags = hub("idtags", "list", data_dir=tmp_path)
    assert tags.stdout.splitlines() == ["TAG-1\tAccepted\t2029-12-31T23:00:00.000Z\t-"]
    assert hub("chargers", "remove", "CP-1", data_dir=tmp_path).returncode == 0
    assert hub("chargers", "list", data_dir=tmp_path).stdout.splitlines() == ["CP-2\tpassword"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("idtags", "add", "T", "--expiry", "next tuesday"), "--expiry"),
        (("idtags", "add", "X" * 21), "20 characters"),
        (("idtags", "add", "T", "--parent", "P" * 21), "20 characters"),
        (("chargers", "add", "bad:id"), "invalid charge point id"),
        (("chargers", "add", "CP\u20101"), "U+2010 HYPHEN is not allowed"),
        (("chargers", "add", "CP", "--password"), "expected one argument"),
        (("up", "--boot-policy", "sometimes"), "invalid choice"),
        (("up", "--ocpp-versions", "1.6,2.2"), "invalid --ocpp-versions: unknown OCPP version"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = hub(*args, data_dir=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    # Refused before anything started or was recorded.
    assert not (tmp_path / "nats").exists()


def test_bad_environment_is_refused_naming_the_variable(tmp_path: Path) -> None:
    result = hub("chargers", "list", data_dir=tmp_path, env={"HUB_STREAM_REPLICAS": "three"})
    assert result.returncode == 2
    assert "HUB_STREAM_REPLICAS" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("HUB_INTEGRITY_ACTIONS", "ghost=explode", "integrity action 'ghost=explode'"),
        ("HUB_INTEGRITY_ACTIONS", "ghost", "expected <kind>=<action>"),
        ("HUB_PLATFORM_FEE_RATE", "ten percent", "is not a decimal number"),
        ("HUB_PLATFORM_FEE_RATE", "1.5", "must be from 0 to 1"),
        ("HUB_GHOST_AFTER", "soon", "HUB_GHOST_AFTER"),
    ],
)
def test_bad_supervisor_settings_are_refused_at_start(
    tmp_path: Path, variable: str, value: str, says: str
) -> None:
    result = hub("chargers", "list", data_dir=tmp_path, env={variable: value})
    assert result.returncode == 2
    assert variable in result.stderr and says in result.stderr
    assert not (tmp_path / "nats").exists()


async def test_hub_up_serves_chargers_and_stops_cleanly(tmp_path: Path) -> None:
    async with hub_up(tmp_path, "--allow-unknown-chargers") as process:
        async with ocpp_charger(await gateway_port(process), "CP-UP") as cp:
            boot = await cp.call(
                call.BootNotification(charge_point_model="M", charge_point_vendor="V")
            )
            assert boot.status == "Accepted"
        assert (tmp_path / "nats.url").exists()
    assert not (tmp_path / "nats.url").exists()


def test_data_transfer_vendor_policy_flags() -> None:
    from hub.cli import _settings, build_parser

    args = build_parser().parse_args(
        [
            "up",
            "--data-transfer-vendor",
            "flash:PreChargeData,Ping",
            "--data-transfer-vendor",
            "acme",
        ]
    )
    assert _settings(args).gateway.data_transfer_vendors == {
        "flash": ["PreChargeData", "Ping"],
        "acme": ["*"],
    }
    with pytest.raises(ValueError, match="vendorId is empty"):
        _settings(build_parser().parse_args(["up", "--data-transfer-vendor", ":x"]))
