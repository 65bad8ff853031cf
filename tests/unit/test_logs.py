from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import structlog

from hub import logs
from hub.logs import Throttle


def _log_line(fmt: str) -> str:
    program = (
        "from pathlib import Path\n"
        "import structlog\n"
        "from hub import logs\n"
        f"logs.configure('info', {fmt!r})\n"
        "log = structlog.get_logger('t').bind(charge_point_id='CP-1')\n"
        "log.info('ocpp.exchange', action='Heartbeat', where=Path('/x'))\n"
        "log.debug('hidden', payload='secret')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=30
    )
    return result.stderr


def test_json_logs_are_one_parseable_line_per_event() -> None:
    lines = _log_line("json").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "ocpp.exchange"
    assert record["charge_point_id"] == "CP-1"
    assert record["level"] == "info"
    assert record["where"] == "/x"
    assert record["timestamp"].endswith("Z")


def test_console_logs_filter_below_the_level() -> None:
    output = _log_line("console")
    assert "ocpp.exchange" in output and "CP-1" in output
    assert "secret" not in output


def test_throttle_lets_a_burst_through_then_counts_what_it_drops() -> None:
    now = [0.0]
    throttle = Throttle(burst=3, window_s=10.0, clock=lambda: now[0])
    assert [throttle.admit("refused") for _ in range(5)] == [0, 0, 0, None, None]
    assert throttle.admit("other") == 0  # kinds are counted apart
    now[0] = 10.0
    assert throttle.admit("refused") == 2  # the next line says what was left out
    assert [throttle.admit("refused") for _ in range(3)] == [0, 0, None]
    assert throttle.drain() == [("refused", 1)]
    assert throttle.drain() == []


def test_throttle_forgets_the_oldest_kind_past_its_bound() -> None:
    throttle = Throttle(burst=1, max_kinds=4, clock=lambda: 0.0)
    for n in range(100):
        throttle.admit(f"kind-{n}")
    assert len(throttle._windows) == 4


@pytest.mark.parametrize(
    "ns",
    [
        1_796_215_716_619_218_000,  # a fraction
        1_796_215_716_000_000_000,  # none: isoformat() leaves it out
        1_796_215_716_000_001_999,  # a microsecond and a bit
        1_796_215_799_999_999_999,  # the last microsecond of a second, then the next second
    ],
)
def test_the_timestamp_is_structlogs_iso_utc_text(monkeypatch: pytest.MonkeyPatch, ns: int) -> None:
    # Every log line's timestamp is formatted per line (the gateway logs one per frame):
    # the cheaper stamper must write exactly what structlog's TimeStamper does.
    stamper = logs.UtcStamper()
    for at in (ns, ns + 1_000):
        monkeypatch.setattr(logs.time, "time_ns", lambda at=at: at)
        ours = stamper(None, "info", {})["timestamp"]
        when = datetime.fromtimestamp(at // 1000 / 1_000_000, UTC)
        monkeypatch.setattr(structlog.processors.datetime, "datetime", _Fixed(when), raising=True)
        theirs = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})
        assert ours == theirs["timestamp"]


class _Fixed:
    """``datetime.datetime`` whose ``now`` is ``when``."""

    def __init__(self, when: datetime) -> None:
        self.when = when

    def now(self, tz: object = None) -> datetime:
        return self.when
