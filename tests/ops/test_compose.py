"""ops/compose: the compose file against the Compose specification, and everything in it
that names the hub (commands, flags, variables, ports, files) against the hub itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

import check_jsonschema
import jsonschema

from tests.ops.deployment import (
    COMPOSE,
    METRICS_PORT,
    compose,
    hub_services,
    known_variables,
    parse_hub_command,
)

# The Compose specification's JSON schema (github.com/compose-spec/compose-spec, Apache-2.0),
# as check-jsonschema vendors it.
SCHEMA = Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/compose-spec.json"


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(compose())
    ]
    assert not problems, problems


def test_the_topology_is_the_one_the_issue_asks_for() -> None:
    services = compose()["services"]
    roles = [service["command"][0] for service in hub_services().values()]
    assert sorted(roles) == ["fanout", "gateway", "gateway", "project", "supervise", "supervise"]
    assert {"nats-1", "nats-2", "nats-3", "clickhouse", "prometheus", "grafana"} <= set(services)
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert (
        "grafana-clickhouse-datasource" in services["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    )


def test_every_hub_command_is_one_the_hub_takes() -> None:
    for name, service in hub_services().items():
        args = parse_hub_command(service["command"])
        assert args.command == service["command"][0], name


def test_every_hub_variable_is_one_the_hub_reads() -> None:
    known = known_variables()
    for name, service in hub_services().items():
        unknown = {v for v in service["environment"] if v.startswith("HUB_")} - known
        assert not unknown, f"{name} sets {unknown}, which the hub does not read"


def test_every_file_mounted_is_in_the_repository() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name} mounts {source}, which is missing"
        build = service.get("build")
        if build:
            assert (COMPOSE / build["context"] / build["dockerfile"]).is_file()


def test_the_stream_is_replicated_on_the_three_nats_nodes() -> None:
    services = compose()["services"]
    nodes = sorted(name for name in services if re.fullmatch(r"nats-\d", name))
    conf = (COMPOSE / "nats/nats.conf").read_text()
    routes = re.findall(r"nats-route://([\w-]+):6222", conf)
    assert routes == nodes
    assert "max_payload: 4MB" in conf  # the hub's largest event
    for name, service in hub_services().items():
        environment = service["environment"]
        assert environment["HUB_STREAM_REPLICAS"] == str(len(nodes)), name
        urls = environment["HUB_NATS_URL"].split(",")
        assert sorted(re.findall(r"nats://([\w-]+):4222", ",".join(urls))) == nodes, name


def test_the_gateways_drain_before_docker_kills_them() -> None:
    for name, service in hub_services().items():
        grace = float(service["environment"]["HUB_SHUTDOWN_GRACE"])
        assert service["stop_signal"] == "SIGTERM"
        assert float(service["stop_grace_period"].removesuffix("s")) > grace, name


def test_the_load_balancer_passes_chargers_to_both_gateways() -> None:
    config = (COMPOSE / "haproxy/haproxy.cfg").read_text()
    assert re.search(r"^\s*mode tcp$", config, re.MULTILINE)
    servers = re.findall(r"^\s*server ([\w-]+) ([\w-]+):(\d+)$", config, re.MULTILINE)
    gateways = {
        name: service
        for name, service in hub_services().items()
        if service["command"][0] == "gateway"
    }
    assert sorted(host for _, host, _ in servers) == sorted(gateways)
    for _, host, port in servers:
        assert parse_hub_command(gateways[host]["command"]).port == int(port)
    assert f"check port {METRICS_PORT}" in config
    assert compose()["services"]["charger-lb"]["ports"] == ["9000:9000"]
