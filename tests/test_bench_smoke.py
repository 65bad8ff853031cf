"""bench.run end to end, tiny: two baselines, N=10, ~1 s windows.

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


@pytest.mark.timeout(60)
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
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads((tmp_path / "ingest-latest.json").read_text())
    assert {"environment", "settings", "targets", "results", "summary", "ratios", "checks"} <= set(
        report
    )
    assert report["environment"]["cpu_count"] >= 1
    assert len(report["environment"]["loadavg_start"]) == 3
    assert set(report["targets"]) == {"ocpp_lib", "echo"}

    runs = {(r["target"], r["scenario"]) for r in report["results"]}
    assert runs == {
        (target, scenario)
        for target in ("ocpp_lib", "echo")
        for scenario in ("idle", "rate", "saturation")
    }
    for r in report["results"]:
        assert r["error"] is None, r
        assert r["connected"] == 10
        if r["scenario"] == "idle":
            assert {"rss_before_kib", "rss_after_kib", "kib_per_connection"} <= set(r["memory"])
        else:
            assert {"p50_ms", "p99_ms", "count", "errors"} <= set(r["latency"])
    saturation = [r for r in report["results"] if r["scenario"] == "saturation"]
    assert all(r["messages"] > 0 for r in saturation)

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
