"""ops/compose/grafana: every panel asks the data sources that are provisioned; every
Prometheus panel asks for series a hub process exports, every ClickHouse panel runs on the
projected tables as the projections create them (real chDB)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from projections.backends import open_backend
from projections.schema import ddl
from tests.ops.deployment import (
    GRAFANA,
    PROMETHEUS_SERIES,
    exported_series,
    load_yaml,
    promql_metrics,
)

DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def targets(kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(dashboard, panel title, target) for every target of data-source type ``kind``."""
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel["datasource"]
                if source["type"] == kind:
                    yield path.name, panel["title"], target


def test_dashboards_are_provisioned_and_use_provisioned_data_sources() -> None:
    assert {path.name for path in DASHBOARDS} == {"hub-operations.json", "hub-business.json"}
    sources = load_yaml(GRAFANA / "provisioning/datasources/datasources.yml")["datasources"]
    provisioned = {(source["type"], source["uid"]) for source in sources}
    assert ("grafana-clickhouse-datasource", "clickhouse") in provisioned
    providers = load_yaml(GRAFANA / "provisioning/dashboards/dashboards.yml")["providers"]
    assert [provider["options"]["path"] for provider in providers] == [
        "/var/lib/grafana/dashboards"
    ]
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] not in uids
        uids.add(dashboard["uid"])
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            source = panel["datasource"]
            assert (source["type"], source["uid"]) in provisioned, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])


def test_every_prometheus_panel_asks_for_series_a_hub_process_exports() -> None:
    known = exported_series() | PROMETHEUS_SERIES
    found = list(targets("prometheus"))
    assert found
    asked: set[str] = set()
    for dashboard, title, target in found:
        names = promql_metrics(target["expr"])
        assert names, f"{dashboard} {title!r}: no metric in {target['expr']!r}"
        unknown = names - known
        assert not unknown, f"{dashboard} {title!r} asks for {unknown}: no process exports it"
        asked |= names
    # What a reader most needs: ingest, latency, lag, health.
    for needed in (
        "ocpp_hub_chargers_connected",
        "ocpp_hub_frames_total",
        "ocpp_hub_frame_store_seconds_bucket",
        "ocpp_hub_projection_lag_seconds",
        "ocpp_hub_follower_lag_seconds",
        "ALERTS",
    ):
        assert needed in asked, needed


def grafana_macros(sql: str) -> str:
    """The ClickHouse data source's macros as it expands them, over the last day."""
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        r"\1 >= now() - INTERVAL 1 DAY AND \1 <= now()",
        sql,
    )
    assert "$" not in sql, sql
    return sql


@pytest.fixture
async def projected_tables(tmp_path: Path) -> Any:
    backend = open_backend("", tmp_path)
    try:
        for statement in ddl("ocpp"):
            await backend.execute(statement)
        yield backend
    finally:
        await backend.close()


async def test_every_clickhouse_panel_runs_on_the_projected_tables(projected_tables: Any) -> None:
    found = list(targets("grafana-clickhouse-datasource"))
    assert {title for _, title, _ in found} >= {
        "Energy delivered per hour",
        "Sessions started per hour",
        "Revenue per day",
    }
    for dashboard, title, target in found:
        sql = grafana_macros(target["rawSql"])
        try:
            await projected_tables.query(sql, readonly=True)
        except Exception as error:
            raise AssertionError(f"{dashboard} {title!r}: {error}") from None
