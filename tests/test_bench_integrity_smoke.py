"""bench.run integrity end to end, tiny: the plumbing and the report's shape, no timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.simulator.anomalies import SCENARIOS

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(150)
def test_integrity_benchmark_quick_run_writes_reports(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "integrity", "--quick", "--out-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "integrity-latest.json").read_text())
    assert report["error"] is None
    assert set(report["kinds"]) == set(SCENARIOS)
    for kind, result in report["kinds"].items():
        hub = result["hub"]
        assert {"n", "missed", "p50_ms", "p95_ms", "max_ms"} <= set(hub)
        assert hub["n"] + hub["missed"] == result["chargers"] == 2
        timed = kind in ("orphaned", "ghost", "stale")
        assert (result["hub_minus_threshold"] is not None) == timed
        assert result["poll"] is not None and {"p50_ms", "p95_ms", "max_ms"} <= set(result["poll"])
        assert {"p50_ms", "p95_ms", "max_ms"} <= set(result["seed_model_60s"])
    assert report["poller"]["polls"] > 0
    assert {"false_alerts_ui", "false_alerts_stream", "sessions"} <= set(report["fleet"])
    assert report["fleet"]["chargers"] == 3
    assert {p["name"] for p in report["memory_end"]} >= {"hub"}
    assert set(report["checks"]) == {"every_scenario_detected", "fleet_false_alerts_zero"}
    markdown = (tmp_path / "integrity-latest.md").read_text()
    assert "| orphaned | 2.0 |" in markdown and "poll/hub p50" in markdown
    assert "False alerts:" in markdown
