"""The seeds' design as a baseline for ``bench.run integrity``: a service that polls the
database every ``interval`` seconds for sessions gone wrong (seed 002's ``DatabaseSyncService``).

Here the database is the hub's projections, read through ``hub query --format json``: the
poller sees a condition once the projections hold it, its query runs, and its answer is back.
Its detection latency is therefore threshold + U(0, interval) + projection lag + query time.
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import time
from pathlib import Path
from typing import Any

# Seed 002 looks for these two; the hub's other detectors have no counterpart there.
SEED_KINDS = ("orphaned", "ghost")
# Conditions the projections can express as well. None is left out: every detector of the hub
# has an SQL shadow, though the seeds ran only the first two.
POLLED_KINDS = (*SEED_KINDS, "stale", "duplicate_start", "meter_backwards", "power_exceeded")


def detection_sql(threshold_s: float, max_power_w: float) -> str:
    """One read-only statement: a row (kind, charge_point_id) per condition that holds now.

    Timed conditions use the hub's receive times against ``now64()``, like the hub's own
    detectors; meter readings use the charger's timestamps, as the hub's do.
    """
    threshold_ms = int(threshold_s * 1000)
    return f"""
WITH
  latest AS (
    SELECT charge_point_id, connector_id, status, received_at FROM ocpp.connector_status
    WHERE connector_id > 0
    ORDER BY charge_point_id, connector_id, seq DESC LIMIT 1 BY charge_point_id, connector_id
  ),
  ongoing AS (
    SELECT charge_point_id, connector_id, session_id, version FROM ocpp.sessions
    WHERE state = 'ongoing'
  ),
  ended AS (
    SELECT charge_point_id, connector_id, max(updated_at) AS ended_at FROM ocpp.sessions
    WHERE state != 'ongoing' GROUP BY charge_point_id, connector_id
  ),
  last_event AS (
    SELECT o.charge_point_id AS charge_point_id, greatest(o.version, r.last_seq) AS seq
    FROM ongoing AS o
    LEFT JOIN (
      SELECT charge_point_id, session_id, max(seq) AS last_seq FROM ocpp.meter_values
      WHERE session_id != '' GROUP BY charge_point_id, session_id
    ) AS r ON r.charge_point_id = o.charge_point_id AND r.session_id = o.session_id
  ),
  readings AS (
    SELECT charge_point_id, value, timestamp,
      row_number() OVER w AS n, lagInFrame(value) OVER w AS prev_value,
      lagInFrame(timestamp) OVER w AS prev_ts
    FROM ocpp.meter_values
    WHERE measurand = 'Energy.Active.Import.Register' AND phase = '' AND session_id != ''
    WINDOW w AS (PARTITION BY charge_point_id, session_id ORDER BY timestamp, seq
                 ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
  ),
  now64(3) - toIntervalMillisecond({threshold_ms}) AS cutoff
SELECT 'ghost' AS kind, o.charge_point_id AS charge_point_id FROM ongoing AS o
  INNER JOIN latest AS l ON l.charge_point_id = o.charge_point_id
    AND l.connector_id = o.connector_id
  WHERE l.status IN ('Available', 'Faulted') AND l.received_at <= cutoff
UNION ALL
-- Charging with no session since the status came or the last session ended, as the hub has it.
SELECT 'orphaned', l.charge_point_id FROM latest AS l
  LEFT JOIN ended AS e ON e.charge_point_id = l.charge_point_id
    AND e.connector_id = l.connector_id
  WHERE l.status IN ('Charging', 'SuspendedEV', 'SuspendedEVSE')
    AND greatest(l.received_at, e.ended_at) <= cutoff
    AND (l.charge_point_id, l.connector_id) NOT IN (
      SELECT charge_point_id, connector_id FROM ongoing)
UNION ALL
-- A session's version is not rewritten for every reading: its latest reading's event says
-- when the charger last reported, in the hub's time.
SELECT 'stale', charge_point_id FROM last_event
  WHERE seq IN (SELECT seq FROM ocpp.events
                WHERE seq IN (SELECT seq FROM last_event) AND received_at <= cutoff)
UNION ALL
SELECT 'duplicate_start', charge_point_id FROM ongoing
  GROUP BY charge_point_id, connector_id HAVING count() > 1
UNION ALL
SELECT DISTINCT 'meter_backwards', charge_point_id FROM readings WHERE n > 1 AND value < prev_value
UNION ALL
SELECT DISTINCT 'power_exceeded', charge_point_id FROM readings
  WHERE n > 1 AND timestamp > prev_ts
    AND (value - prev_value) * 3600000 / dateDiff('millisecond', prev_ts, timestamp) > {max_power_w}
"""


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Poller:
    """Runs the query on a fixed grid of ``interval`` seconds and remembers, for each
    (kind, charger), the ``time.monotonic()`` at which an answer first listed it."""

    def __init__(
        self,
        hub: Path,
        data_dir: Path,
        sql: str,
        interval: float,
        progress: asyncio.Event | None = None,
    ) -> None:
        self._hub, self._data_dir, self._sql = hub, data_dir, sql
        self._progress = progress or asyncio.Event()
        self.interval = interval
        self.first_seen: dict[tuple[str, str], float] = {}
        self.query_seconds: list[float] = []
        self.cpu_seconds = 0.0
        self.failures: list[str] = []

    async def run(self, stop: asyncio.Event) -> None:
        started = time.monotonic()
        while not stop.is_set():
            await self.poll_once()
            # A poll that overran its slot waits for the next one, as a cron-style job does.
            slot = math.floor((time.monotonic() - started) / self.interval) + 1
            delay = started + slot * self.interval - time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, delay)):
                    await stop.wait()
            except TimeoutError:
                pass

    async def poll_once(self) -> None:
        began, cpu_before = time.monotonic(), _children_cpu_s()
        try:
            rows = await query_json(self._hub, self._data_dir, self._sql)
        except RuntimeError as error:
            self.failures.append(str(error))
            return
        finally:
            self.cpu_seconds += _children_cpu_s() - cpu_before
        answered = time.monotonic()
        self.query_seconds.append(answered - began)
        for row in rows:
            self.first_seen.setdefault((row["kind"], row["charge_point_id"]), answered)
        self._progress.set()


async def query_json(hub: Path, data_dir: Path, sql: str) -> list[dict[str, Any]]:
    """``hub query --format json``'s rows; RuntimeError if it fails or takes over a minute."""
    command = [str(hub), "query", "--data-dir", str(data_dir), "--format", "json", sql]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError("hub query took over 60 s") from None
    if proc.returncode != 0:
        raise RuntimeError(err.decode(errors="replace").strip()[-300:])
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]
