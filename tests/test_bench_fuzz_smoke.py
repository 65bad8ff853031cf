"""bench.run fuzz end to end, tiny: the plumbing and the report's shape, no verdicts.

The verdicts are the fuzz tests' business (tests/fuzz/); here a run must complete against a
real ``hub up`` and report what it measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.fuzz_frames import MUTATIONS

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(150)
def test_fuzz_benchmark_quick_run_writes_reports(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "fuzz", "--quick", "--out-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    # 0: every check passed, 1: findings; 2 would be a broken run.
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "fuzz-latest.json").read_text())
    assert report["error"] is None
    assert report["frames"]["sent"] >= 2000
    assert set(report["frames"]["by_class"]) == set(MUTATIONS)
    assert report["frames_per_s"] > 0
    for when in ("before", "after"):
        assert {"hub", "nats-server", "fanout"} <= set(report[when]), report[when]
        assert all(p["rss_kib"] and p["fds"] for p in report[when].values()), report[when]
    assert report["canary"]["answered"] > 0
    assert {"calls", "timeouts", "disconnects", "ui_missed"} <= set(report["bystanders"])
    assert {c["distinct"] for c in report["recording"].values()} != {0}
    assert set(report["checks"]) == {
        "no_crash",
        "no_hang",
        "answers_as_documented",
        "bystanders_undisturbed",
        "every_frame_recorded",
    }
    assert done.returncode == (0 if all(report["checks"].values()) else 1)
    markdown = (tmp_path / "fuzz-latest.md").read_text()
    assert "| frames sent | frames/s |" in markdown and "## Processes" in markdown
