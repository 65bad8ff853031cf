"""bench.run load end to end, short (a minute with load management, one without): the
plumbing and the report's shape only, no figure is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(420)
def test_load_quick_run_writes_its_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "load", "--quick", "--out-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=410,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "load-latest.json").read_text())
    assert report["settings"]["chargers"] == 50
    assert [run["managed"] for run in report["runs"]] == [True, False]
    for run in report["runs"]:
        assert set(run["nodes"]) == {"grid", "feeder-1"}
        assert run["sessions"] > 0 and run["draw_records"] > 0
        assert len(run["limit_changes"]) == 2
        for figures in run["nodes"].values():
            assert {"over_s", "over_wh", "settling_s", "utilisation", "max_excess_a"} <= set(
                figures
            )
            assert len(figures["settling_s"]) == 2
        assert {"jain_admitted", "jain_all"} <= set(run["fairness"])
        assert {"p50_ms", "p99_ms"} <= set(run["meter_to_profile"])
        assert set(run["decisions_by_reason"]) <= {
            "start",
            "meter",
            "limit",
            "end",
            "tick",
            "connect",
            "rejected",
        }
        assert run["hub_rss_mib"]["max"] is not None
    managed, baseline = report["runs"]
    assert managed["profile_calls"] > 0 and managed["allocation_decisions"] > 0
    assert baseline["profile_calls"] == 0
    assert "Site load management" in (tmp_path / "load-latest.md").read_text()
