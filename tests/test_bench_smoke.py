"""bench.run end to end, tiny: the baselines (1.6 and the 2.0.1 one), N=10, ~1 s windows.

Checks the plumbing and the report's shape only; timings on a shared CI
machine mean nothing, so none are asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(90)
def test_bench_quick_run_writes_reports(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "ingest",
            "--quick",
            "--sizes",
            "10",
            "--targets",
            "ocpp_lib,echo",
            "--ocpp",
            "1.6,2.0.1",
            "--warmup",
            "0.2",
            "--window",
            "1",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads((tmp_path / "ingest-latest.json").read_text())
    assert {"environment", "settings", "targets", "results", "summary", "ratios", "checks"} <= set(
        report
    )
    assert report["environment"]["cpu_count"] >= 1
    assert len(report["environment"]["loadavg_start"]) == 3
    # echo has no 2.0.1 counterpart; the ocpp library's v201 CSMS is 2.0.1's baseline.
    targets = ("ocpp_lib", "echo", "ocpp_lib@2.0.1")
    assert set(report["targets"]) == set(targets)

    runs = {(r["target"], r["scenario"]) for r in report["results"]}
    assert runs == {
        (target, scenario) for target in targets for scenario in ("idle", "rate", "saturation")
    }
    for r in report["results"]:
        assert r["error"] is None, r
        assert r["connected"] == 10
        if r["scenario"] == "idle":
            assert {"rss_before_kib", "rss_after_kib", "kib_per_connection"} <= set(r["memory"])
        else:
            assert {"p50_ms", "p99_ms", "count", "errors"} <= set(r["latency"])
            # Where each message's CPU went, by process: the baselines are one process each.
            [server] = [p for p in r["cpu_by_process"] if p["role"] == "server"]
            assert server["cpu_seconds"] >= 0 and server["us_per_msg"] is not None
    saturation = [r for r in report["results"] if r["scenario"] == "saturation"]
    assert all(r["messages"] > 0 for r in saturation)
    # The 2.0.1 chargers send the 1.6 load's counterpart: meter values in TransactionEvents.
    v201 = next(r for r in saturation if r["target"] == "ocpp_lib@2.0.1")
    assert v201["actions"]["TransactionEvent"] > 0 and "StartTransaction" not in v201["actions"]
    assert report["summary"]["10"]["ocpp_lib@2.0.1"]["saturation_msgs_per_s"] > 0
    assert "saturation_throughput" in report["ratios"]["10"]["ocpp_lib@2.0.1/ocpp_lib"]

    row = report["summary"]["10"]["echo"]
    assert {
        "saturation_msgs_per_s",
        "saturation_p50_ms",
        "saturation_p99_ms",
        "rate_p50_ms",
        "rate_p99_ms",
        "idle_kib_per_connection",
    } <= set(row)
    assert row["saturation_msgs_per_s"] > 0
    assert "saturation_throughput" in report["ratios"]["10"]["ocpp_lib/echo"]
    assert report["checks"]["hub_rate_p99_under_25ms_at_1000"]["passed"] is None

    markdown = (tmp_path / "ingest-latest.md").read_text()
    assert "| 10 | echo |" in markdown and "ocpp_lib/echo" in markdown
    assert "| 10 | ocpp_lib@2.0.1 |" in markdown and "OCPP 1.6, 2.0.1" in markdown
    assert "## CPU µs per message by process" in markdown
    assert "| 10 | saturation | echo | python (server) |" in markdown


def test_cpu_by_process_divides_each_process_window_by_the_messages() -> None:
    from bench.run import cpu_by_process

    start = {
        10: ("hub", "server", 5.0),
        11: ("nats-server", "child", 1.0),
        12: ("gone", "child", 9.0),
    }
    end = {10: ("hub", "server", 6.5), 11: ("nats-server", "child", 1.5), 13: ("new", "child", 0.2)}
    rows = {row["name"]: row for row in cpu_by_process(start, end, 5000)}
    # A process gone by the window's end counts no more; one born inside it from zero.
    assert set(rows) == {"hub", "nats-server", "new"}
    assert rows["hub"]["cpu_seconds"] == 1.5 and rows["hub"]["us_per_msg"] == 300.0
    assert rows["nats-server"]["us_per_msg"] == 100.0 and rows["new"]["us_per_msg"] == 40.0
    assert cpu_by_process(start, end, 0)[0]["us_per_msg"] is None


@pytest.mark.timeout(60)
def test_projections_benchmark_refuses_no_rounds(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "projections",
            "--rounds",
            "0",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "--rounds must be 1 or more" in done.stderr
    assert not list(tmp_path.iterdir())


def test_hub_full_target_is_hub_up_with_everything_on(tmp_path: Path) -> None:
    from bench.run import target_spec

    full = target_spec("hub_full", 9100, tmp_path, "/ocpp")
    plain = target_spec("hub", 9100, tmp_path, "/ocpp")
    assert full.command[1:2] == ["up"] and "--allow-unknown-chargers" in full.command
    assert "--no-ui" not in full.command and full.command[-2:] == ["--ui-port", "0"]
    assert full.env == {"HUB_FANOUT": "true", "HUB_PROJECTIONS": "true", "HUB_SUPERVISOR": "true"}
    assert plain.command[-1] == "--no-ui" and plain.env == {}
    assert "--ocpp-versions" not in full.command


def test_the_201_pair_is_hub_up_allowing_201_and_the_ocpp_library_v201_csms(
    tmp_path: Path,
) -> None:
    from bench.run import target_labels, target_spec

    assert target_labels(["hub_full", "hub", "ocpp_lib", "echo"], ["1.6", "2.0.1"]) == [
        "hub_full",
        "hub",
        "ocpp_lib",
        "echo",
        "hub_full@2.0.1",
        "ocpp_lib@2.0.1",
    ]
    full = target_spec("hub_full", 9100, tmp_path, "/ocpp", "2.0.1")
    assert full.name == "hub_full@2.0.1"
    assert full.command[-4:] == ["--ocpp-versions", "2.0.1,1.6", "--ui-port", "0"]
    assert full.env == target_spec("hub_full", 9100, tmp_path, "/ocpp").env
    baseline = target_spec("ocpp_lib", 9100, tmp_path, "/ocpp", "2.0.1")
    assert baseline.name == "ocpp_lib@2.0.1"
    assert baseline.command[1:3] == ["-m", "bench.baselines.ocpp_lib_csms_v201"]


def test_report_checks_hub_full_against_twice_ocpp_lib() -> None:
    from bench.run import checks, ratios, render_markdown

    def row(msgs_per_s: float) -> dict[str, object]:
        return {
            "saturation_msgs_per_s": msgs_per_s,
            "saturation_p50_ms": 10.0,
            "saturation_p99_ms": 20.0,
            "rate_msgs_per_s": 50.0,
            "rate_p50_ms": 2.0,
            "rate_p99_ms": 8.0,
            "idle_kib_per_connection": 40.0,
            "errors": [],
        }

    summary = {
        "100": {
            "hub_full": row(1800.0),
            "hub": row(2000.0),
            "ocpp_lib": row(1000.0),
            "hub_full@2.0.1": row(1500.0),
            "ocpp_lib@2.0.1": row(600.0),
        }
    }
    found = checks(summary)["hub_full_saturation_at_least_2x_ocpp_lib"]
    assert found["ratios"] == {"100": 1.8} and found["passed"] is False
    summary["1000"] = {"hub_full": row(2400.0), "ocpp_lib": row(1000.0)}
    summary["100"]["hub_full"] = row(2100.0)
    assert checks(summary)["hub_full_saturation_at_least_2x_ocpp_lib"]["passed"] is True
    assert ratios(summary)["100"]["hub_full/hub"]["saturation_throughput"] == 1.05

    report = {
        "generated_at": "now",
        "git_commit": "abc",
        "environment": {
            "cpu_count": 2,
            "loadavg_start": [1.0, 1.0, 1.0],
            "loadavg_end": [1.0, 1.0, 1.0],
            "python": "3",
            "websockets": "?",
            "ocpp": "?",
        },
        "settings": {"warmup": 3.0, "window": 10.0, "rate_interval": 2.0, "quick": False},
        "targets": {},
        "summary": summary,
        "ratios": ratios(summary),
        "checks": checks(summary),
        "results": [],
    }
    markdown = render_markdown(report)
    assert "| 100 | hub_full/ocpp_lib | 2.10 |" in markdown
    assert "ocpp_lib: **PASS** (N=100: 2.10, N=1000: 2.40)" in markdown
    assert "| 100 | hub_full@2.0.1/ocpp_lib@2.0.1 | 2.50 |" in markdown
    assert "/ ocpp_lib@2.0.1: **N=100: 2.50**" in markdown
    assert "| 100 | hub_full@2.0.1/hub_full | 0.71 |" in markdown
