"""ops/k8s: every manifest against the Kubernetes API schemas (kubernetes-validate bundles
them, offline), and the hub's containers against the hub: commands, variables, settings
file, probes, resources, and a grace that outlasts the gateway's drain."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate

from hub.config import Settings, from_environment, read_config
from tests.ops.deployment import (
    HUB_ROLES,
    K8S,
    METRICS_PORT,
    hub_containers,
    known_variables,
    load_yaml,
    manifest,
    manifests,
    parse_hub_command,
)

KUBERNETES = "1.32"


def test_every_manifest_follows_the_kubernetes_api_schema() -> None:
    found = list(manifests())
    assert found
    for path, document in found:
        try:
            kubernetes_validate.validate(document, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = document["metadata"]["name"]
            raise AssertionError(f"{path.name} {document['kind']} {name}: {error}") from None


def test_the_kustomization_lists_every_manifest() -> None:
    listed = load_yaml(K8S / "kustomization.yaml")["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk


def test_the_topology_matches_compose() -> None:
    replicas = {
        container["args"][0]: workload["spec"]["replicas"]
        for workload, container in hub_containers()
    }
    assert replicas == {"gateway": 2, "fanout": 1, "project": 1, "supervise": 2}
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in manifests()}
    assert {("StatefulSet", "nats"), ("StatefulSet", "clickhouse")} <= kinds
    gateway_service = manifest("Service", "gateway")
    assert gateway_service["spec"]["type"] == "LoadBalancer"


def hub_settings(tmp_path: Path) -> Settings:
    """The settings every hub container reads from the hub-config ConfigMap."""
    path = tmp_path / "hub.toml"
    path.write_text(manifest("ConfigMap", "hub-config")["data"]["hub.toml"])
    return from_environment({}, config=read_config(path))


def test_the_settings_file_is_one_the_hub_accepts(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path)
    nats = manifest("StatefulSet", "nats")
    nodes = nats["spec"]["replicas"]
    assert settings.stream.replicas == nodes
    service = nats["spec"]["serviceName"]
    assert settings.nats_url.split(",") == [
        f"nats://nats-{index}.{service}:4222" for index in range(nodes)
    ]
    nats_config = manifest("ConfigMap", "nats-config")
    routes = re.findall(r"nats-route://([\w.-]+):6222", nats_config["data"]["nats.conf"])
    assert routes == [f"nats-{index}.{service}" for index in range(nodes)]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_every_hub_container_runs_a_hub_command_with_variables_it_reads() -> None:
    known = known_variables()
    for workload, container in hub_containers():
        name = workload["metadata"]["name"]
        args = parse_hub_command(container["args"])
        assert args.command in HUB_ROLES, name
        unknown = {v for v in _env(container) if v.startswith("HUB_")} - known
        assert not unknown, f"{name} sets {unknown}, which the hub does not read"
        assert _env(container)["HUB_CONFIG"] == "/etc/ocpp-hub/hub.toml"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert volumes[mounts["/etc/ocpp-hub"]]["configMap"]["name"] == "hub-config"


def test_every_hub_container_has_probes_and_resources() -> None:
    for workload, container in hub_containers():
        name = workload["metadata"]["name"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["ops"] == METRICS_PORT == int(_env(container)["HUB_METRICS_PORT"])
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert "memory" in container["resources"]["limits"], name


def test_the_gateway_drains_before_kubernetes_kills_it(tmp_path: Path) -> None:
    grace = hub_settings(tmp_path).shutdown_grace_s
    [(workload, container)] = [(w, c) for w, c in hub_containers() if c["args"] == ["gateway"]]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    [pause] = re.findall(r"sleep\((\d+)\)", " ".join(command))
    allowed = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert allowed > int(pause) + grace
    assert workload["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
