"""What the deployment tests share: the files under ops/, read as the tools that run them
would, and what the hub itself says it knows (its settings, its commands, its metrics)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml

from hub.cli import build_parser
from hub.config import CONFIG_VARIABLE, ENVIRONMENT
from hub.metrics import METRICS

ROOT: Final = Path(__file__).resolve().parents[2]
OPS: Final = ROOT / "ops"
COMPOSE: Final = OPS / "compose"
K8S: Final = OPS / "k8s"
GRAFANA: Final = COMPOSE / "grafana"
HUB_ROLES: Final = ("gateway", "fanout", "project", "supervise")
METRICS_PORT: Final = 9100

# Series Prometheus makes itself, for every target and every alert rule.
PROMETHEUS_SERIES: Final = frozenset(
    {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}
)


def exported_series() -> frozenset[str]:
    """Every series name a hub process exports: a histogram as its _bucket, _sum, _count."""
    kinds = {spec.name: spec.kind for spec in METRICS}
    names: set[str] = set()
    for name, kind in kinds.items():
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return frozenset(names)


def known_variables() -> frozenset[str]:
    """The HUB_* variables the hub reads."""
    return frozenset(ENVIRONMENT) | {CONFIG_VARIABLE}


def parse_hub_command(args: list[str]) -> argparse.Namespace:
    """``hub ARGS`` as the hub's own parser reads it: a flag it does not know fails."""
    try:
        return build_parser().parse_args(args)
    except SystemExit:
        raise AssertionError(
            f"hub {' '.join(args)}: the hub does not take these arguments"
        ) from None


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all_yaml(path: Path) -> list[Any]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE / "docker-compose.yml")
    return loaded


def hub_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the hub image, by name."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if str(service.get("image", "")).startswith("ocpp-hub")
    }


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for document in load_all_yaml(path):
                yield path, document


def manifest(kind: str, name: str) -> dict[str, Any]:
    [found] = [d for _, d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def hub_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container of the hub image in the manifests."""
    for _, document in manifests():
        if document["kind"] in ("Deployment", "StatefulSet"):
            for container in document["spec"]["template"]["spec"]["containers"]:
                if container["image"] == "ocpp-hub":
                    yield document, container


_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PROMQL_WORDS: Final = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
    # aggregations, which may put their grouping before the parenthesis
    | {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk"}
    | {"quantile", "count_values", "limitk", "limit_ratio"}
)


def promql_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are neither functions,
    keywords, label names in grouping clauses, nor inside label matchers or strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text
    )  # grouping labels
    text = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?(ms|s|m|h|d|w|y)?\b", "", text)  # numbers
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word in _PROMQL_WORDS:
            continue  # a function or an aggregation
        names.add(word)
    return names
