"""ops/compose/prometheus: every hub process is scraped where it serves /metrics, under its
role as the job, and every alert rule asks for series a hub process exports."""

from __future__ import annotations

from tests.ops.deployment import (
    COMPOSE,
    HUB_ROLES,
    METRICS_PORT,
    PROMETHEUS_SERIES,
    exported_series,
    hub_services,
    load_yaml,
    promql_metrics,
)

PROMETHEUS = COMPOSE / "prometheus"


def test_every_hub_process_is_scraped_once_under_its_role() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    scraped: dict[str, str] = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                assert target not in scraped, f"{target} is scraped twice"
                scraped[target] = job["job_name"]
    for name, service in hub_services().items():
        port = int(service["environment"]["HUB_METRICS_PORT"])
        assert port == METRICS_PORT
        target = f"{name}:{port}"
        assert scraped.get(target) == service["command"][0], f"{target} is not scraped"
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert set(HUB_ROLES) <= jobs
    hubs = {f"{name}:{METRICS_PORT}" for name in hub_services()}
    strays = {t for t, job in scraped.items() if job in HUB_ROLES and t not in hubs}
    assert not strays, f"no hub process serves {strays}"


def test_the_rule_files_are_mounted_and_their_rules_ask_for_exported_series() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    mounted = {
        volume.split(":")[1]: volume.split(":")[0]
        for volume in load_yaml(COMPOSE / "docker-compose.yml")["services"]["prometheus"]["volumes"]
    }
    known = exported_series() | PROMETHEUS_SERIES
    for rule_file in config["rule_files"]:
        source = mounted[rule_file]
        rules = load_yaml(COMPOSE / source)
        for group in rules["groups"]:
            for rule in group["rules"]:
                assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
                unknown = promql_metrics(rule["expr"]) - known
                assert not unknown, f"{rule['alert']} asks for {unknown}: no process exports it"


def test_the_promql_reader_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_seconds_bucket{job="x"}[5m])))'
        " / on (job) group_left sum without (instance) (b_total offset 5m) > bool 0.5"
    )
    assert promql_metrics(expr) == {"a_seconds_bucket", "b_total"}
