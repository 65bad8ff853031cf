"""Replay's fold process (``projections.fold_process`` and its child) on its own pipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from projections.fold_process import FoldProcess, Spare
from projections.rows import TABLES
from schemas.events import OcppFrame, encode_event
from tests.projections.scenario import Builder

# Samples per MeterValues: many rows from few events, so that rows dominate what the fold
# process holds.
_SAMPLES = 20
_MIB = 1 << 20


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _metered_session(readings: int) -> list[tuple[int, bytes]]:
    """One long session of MeterValues with ``_SAMPLES`` readings each, as stored: the
    events the fold process is sent (the answers to MeterValues it is not)."""
    b = Builder()
    b.tariff("std", "0.25")
    b.connect("CP-1")
    tx = b.start("CP-1", 1, "2026-11-22T00:00:00Z", 0)
    for n in range(readings):
        at = f"2026-11-22T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"
        samples: list[dict[str, Any]] = [{"value": f"{n * 10}", "unit": "Wh"}]
        samples += [
            {"value": "16.0", "measurand": "Current.Import", "unit": "A"}
            for _ in range(_SAMPLES - 1)
        ]
        payload = {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [{"timestamp": at, "sampledValue": samples}],
        }
        b.call("CP-1", "MeterValues", payload, {})
    return [
        (seq, encode_event(event))
        for seq, event in enumerate(b.events, 1)
        if not (isinstance(event, OcppFrame) and event.direction == "out")
        or event.action != "MeterValues"
    ]


async def test_a_batch_rows_are_written_as_they_are_folded_not_held(tmp_path: Path) -> None:
    """A replay's batch is 50,000 events: the fold process writes their rows to the batch's
    files as it folds them instead of holding them all until the batch ends (about 40 MB of
    rows for the benchmark's batch, each page a fault in the fresh process), and the files
    hold every row."""
    events = _metered_session(10_000)
    skip = {table: 0 for table in TABLES} | {"events": 1 << 62}
    async with Spare() as spare:
        pid = spare.pid
        assert pid is not None
        folder = FoldProcess(skip, TABLES, tmp_path, spare)
        await folder.start()
        try:
            # The first events load what the fold loads once (caches, lazy imports).
            await folder.add(events[:500])
            warm = await folder.flush(1)
            await warm
            before = _peak_rss(pid)
            for start in range(500, len(events), 500):
                await folder.add(events[start : start + 500])
            bodies = await (await folder.flush(events[500][0]))
            grown = _peak_rss(pid) - before
        finally:
            await folder.close()
    body = bodies["meter_values"].body
    assert isinstance(body, Path)
    meter_rows = msgspec.json.decode(b"[" + body.read_bytes() + b"]")
    # Every event after the warm-up is a MeterValues: a row of its samples, for the store
    # to make a meter_values row of each (projections.reshapes).
    assert len(meter_rows) == len(events[500:])
    assert {len(row[-1]) for row in meter_rows} == {_SAMPLES}
    assert bodies["meter_values"].last_seq == events[-1][0]
    # Held until the batch ends, its 190,000 rows took 40 MB and more.
    assert grown < 15 * _MIB, f"the fold process grew by {grown / _MIB:.1f} MiB"
