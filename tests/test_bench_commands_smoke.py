"""bench.run commands end to end, tiny: the plumbing and the report's shape, no timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(90)
def test_commands_benchmark_quick_run_writes_reports(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "commands", "--quick", "--out-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "commands-latest.json").read_text())
    assert set(report["results"]) == {"direct", "api"}
    for result in report["results"].values():
        assert result["n"] == 30 and result["failures"] == 0
        assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert report["ratios"]["api_over_direct_p50"] > 0
    assert "| api |" in (tmp_path / "commands-latest.md").read_text()
