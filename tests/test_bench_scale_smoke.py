"""bench.run scale end to end, tiny: two gateways and one, 200 chargers, short windows.

Checks the plumbing and the report's shape only; no timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_scale_quick_run_writes_its_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "scale", "--quick", "--out-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "scale-latest.json").read_text())
    assert [row["gateways"] for row in report["targets"]] == [2, 1]
    for row in report["targets"]:
        assert row["connected"] == 200 and not row["error"]
        assert row["messages"] > 0
        assert sum(g["chargers"] for g in row["per_gateway"]) == 200
    assert set(report["ratios"]) == {"p99", "gateway_cpu", "memory"}
    assert "Scale-out benchmark" in (tmp_path / "scale-latest.md").read_text()
