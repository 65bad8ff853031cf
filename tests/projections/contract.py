"""The projection contract, one suite for every backend (subclassed per backend).

Each test runs the real runner against a real nats-server and the backend under test,
and reads the tables back through the same backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from hub.bus import event_backbone
from hub.config import Settings
from hub.nats_server import EmbeddedNats
from projections import store
from projections.fold import apply
from projections.query import QueryRefused, run_query
from projections.replay import SHADOW, Progress
from projections.rows import MeterValueRow, Output
from projections.runner import Fenced, retrying
from projections.service import Projections, running_projections
from projections.state import State
from projections.store import Encoded
from schemas.events import Event
from tests.projections.helpers import dump, last_seq, meter_values, replay_in, rows
from tests.projections.scenario import (
    BEYOND_INT64,
    INT64_MIN,
    fleet,
    mixed,
    odd_readings,
    overpriced,
    wide_values,
)

# Long enough for any batch here; a runner stuck on one batch never gets there.
_CATCH_UP_S = 30.0


async def store_events(settings: Settings, url: str, events: list[Event]) -> None:
    async with event_backbone(settings, url, name="test") as (_, store):
        for start in range(0, len(events), 500):
            await store.store(events[start : start + 500])


class ProjectionContract:
    """Subclasses provide ``projection_settings``: the Settings that select their backend."""

    @pytest.fixture
    def projection_settings(self, settings: Settings) -> Settings:
        raise NotImplementedError

    @pytest.fixture
    async def projections(
        self, projection_settings: Settings, nats_server: EmbeddedNats
    ) -> AsyncIterator[Projections]:
        async with running_projections(projection_settings, nats_server.url) as running:
            yield running

    async def caught_up(self, projections: Projections, url: str) -> None:
        await projections.runner.wait_for(await last_seq(url))

    async def test_late_out_of_order_and_offline_messages(
        self, projections: Projections, projection_settings: Settings, nats_server: EmbeddedNats
    ) -> None:
        await store_events(projection_settings, nats_server.url, mixed().events)
        await self.caught_up(projections, nats_server.url)
        backend = projections.backend

        sessions = await rows(
            backend,
            "SELECT charge_point_id, session_id, transaction_id, state, energy_wh, "
            "duration_s, flags FROM ocpp.sessions ORDER BY charge_point_id, session_id",
        )
        by_cp: dict[str, list[dict[str, Any]]] = {}
        for session in sessions:
            by_cp.setdefault(session["charge_point_id"], []).append(session)
        (a,) = by_cp["CP-A"]
        assert a["state"] == "completed" and a["energy_wh"] == 6000.0
        assert a["duration_s"] == 3600.0 and a["flags"] == []
        b_sessions = sorted(by_cp["CP-B"], key=lambda s: s["transaction_id"])
        assert len(b_sessions) == 2
        orphan, offline = b_sessions
        # The -1 samples and Stop joined the session the flushed Start opened.
        assert offline["state"] == "completed" and offline["energy_wh"] == 9000.0
        assert offline["flags"] == ["unknown_transaction_id"]
        # The Stop for id 0 with nothing open is kept, flagged, not dropped.
        assert orphan["transaction_id"] == 0 and orphan["state"] == "completed"
        assert orphan["flags"] == ["unknown_transaction_id", "no_start"]

        hourly = await rows(
            backend,
            "SELECT charge_point_id, toString(hour) AS hour, energy_wh FROM ocpp.energy_hourly "
            "ORDER BY charge_point_id, hour",
        )
        assert [r for r in hourly if r["charge_point_id"] == "CP-A"] == [
            # 09:40 10000 -> 10:00 12000 -> 10:20 14000 -> 10:30 15000 -> 10:40 16000
            {"charge_point_id": "CP-A", "hour": "2026-11-22 09:00:00", "energy_wh": 2000.0},
            {"charge_point_id": "CP-A", "hour": "2026-11-22 10:00:00", "energy_wh": 4000.0},
        ]
        assert [r for r in hourly if r["charge_point_id"] == "CP-B"] == [
            {"charge_point_id": "CP-B", "hour": "2026-11-22 08:00:00", "energy_wh": 9000.0},
        ]

        bills = await rows(
            backend,
            "SELECT charge_point_id, tariff_id, toString(energy_cost) AS energy, "
            "toString(total) AS total FROM ocpp.billing WHERE session_id NOT LIKE 'unknown%' "
            "ORDER BY charge_point_id",
        )
        # CP-A started under "day" (0.30/kWh); CP-B's Start came after "day-2" (0.50/kWh).
        assert [(b["charge_point_id"], b["tariff_id"]) for b in bills] == [
            ("CP-A", "day"),
            ("CP-B", "day-2"),
        ]
        assert Decimal(bills[0]["energy"]) == Decimal("1.8")  # 6 kWh x 0.30
        assert Decimal(bills[0]["total"]) == Decimal("1.8") + Decimal("0.6") + Decimal("0.5")

        errors = await rows(backend, "SELECT `projection`, reason FROM ocpp.projection_errors")
        assert [e["projection"] for e in errors] == ["ocpp"]
        assert "schema_violation" in errors[0]["reason"]

    async def test_replay_equals_the_incremental_build(
        self, projections: Projections, projection_settings: Settings, nats_server: EmbeddedNats
    ) -> None:
        await store_events(projection_settings, nats_server.url, fleet(6, 4).events)
        await store_events(projection_settings, nats_server.url, mixed().events)
        await self.caught_up(projections, nats_server.url)
        incremental = await dump(projections.backend)
        assert len(incremental["billing_versions"]) > 20
        tariffs = {row["tariff_id"] for row in incremental["billing_versions"]}
        assert {"std", "std-0", "day", "day-2"} <= tariffs

        seen: list[Progress] = []
        await replay_in(projections, on_progress=seen.append)
        assert seen[-1].finished and seen[-1].done == await last_seq(nats_server.url)
        assert await dump(projections.backend) == incremental

        await replay_in(projections, "sessions", from_seq=200)
        assert await dump(projections.backend) == incremental

        # The events log is made apart from the fold: rebuilt on its own, from a seq on.
        await replay_in(projections, "events", from_seq=150)
        assert await dump(projections.backend) == incremental
        # The runner goes on after a replay, without doubling anything.
        await store_events(projection_settings, nats_server.url, mixed().events)
        await self.caught_up(projections, nats_server.url)
        after = await dump(projections.backend)
        assert len(after["events"]) == await last_seq(nats_server.url)
        assert len({row["seq"] for row in after["events"]}) == len(after["events"])

    async def test_readings_are_stored_as_the_fold_made_them_by_runner_and_replay_alike(
        self, projections: Projections, projection_settings: Settings, nats_server: EmbeddedNats
    ) -> None:
        """meter_values, which the store makes of one row per message (projections.reshapes),
        holds a row per sample exactly as the fold made them itself before (ch_time's text
        of each reading's time), from the runner's batches and from replay's files alike."""
        events = odd_readings().events
        await store_events(projection_settings, nats_server.url, events)
        await self.caught_up(projections, nats_server.url)
        state, out = State(), Output()
        for seq, event in enumerate(events, 1):
            apply(state, out, seq, event)
        expected = meter_values(out.rows["meter_values"])  # type: ignore[arg-type]
        # Every MeterValues with samples, the one beyond the calendar with its set before.
        assert len({row.seq for row in expected}) == 10
        assert {row.timestamp[:4] for row in expected} >= {"0001", "1899", "1969", "2299", "9999"}

        columns = ", ".join(MeterValueRow.__struct_fields__)
        read = f"SELECT {columns} FROM ocpp.meter_values ORDER BY {columns}"
        decoder = msgspec.json.Decoder(MeterValueRow)

        async def stored() -> list[MeterValueRow]:
            data = await projections.backend.query(read, fmt="JSONCompactEachRow")
            return [decoder.decode(line) for line in data.splitlines()]

        runner = await stored()
        assert sorted(runner, key=str) == sorted(expected, key=str)
        errors = await rows(
            projections.backend, "SELECT seq, reason FROM ocpp.projection_errors ORDER BY seq"
        )
        assert [e["reason"] for e in errors if e["reason"] == "date value out of range"]

        incremental = await dump(projections.backend)
        await replay_in(projections, "meter_values", "projection_errors")
        assert await stored() == runner
        assert await dump(projections.backend) == incremental

    async def test_a_replay_by_a_process_that_lost_its_lease_swaps_nothing_in(
        self, projections: Projections, projection_settings: Settings, nats_server: EmbeddedNats
    ) -> None:
        await store_events(projection_settings, nats_server.url, mixed().events)
        await self.caught_up(projections, nats_server.url)
        live = await dump(projections.backend)
        # A row a replay would not make: gone once a replay swaps its tables in.
        await projections.backend.execute(
            "INSERT INTO ocpp.events SELECT * FROM ocpp.events WHERE seq = 1"
        )
        doubled = await dump(projections.backend)
        assert len(doubled["events"]) == len(live["events"]) + 1
        # The lease runs out after the first table's swap; the events log is not swapped in.
        checks: list[bool] = []
        lease_back = False

        def fence() -> bool:
            checks.append(True)
            return len(checks) == 1 or lease_back

        projections.runner.fence = fence
        with pytest.raises(Fenced):
            await replay_in(projections, "sessions", "events")
        assert await dump(projections.backend) == doubled
        # Its positions may not match the tables any more: it writes nothing again, even
        # if its lease is renewed; a new runner recovers from the tables.
        lease_back = True
        assert not projections.runner.fence()

    async def test_a_replay_ends_when_the_last_events_were_deleted(
        self, projections: Projections, projection_settings: Settings, nats_server: EmbeddedNats
    ) -> None:
        await store_events(projection_settings, nats_server.url, mixed().events)
        end = await last_seq(nats_server.url)
        client = await nats.connect(nats_server.url)
        try:
            # An operator removed the last two events by hand: the stream's last seq stays.
            for seq in (end - 1, end):
                await client.jetstream().delete_msg("OCPP_EVENTS", seq)
        finally:
            await client.close()
        progress = await asyncio.wait_for(
            replay_in(projections, "events", alongside_runner=False), timeout=60
        )
        assert progress.finished and progress.done == end - 2
        logged = await rows(projections.backend, "SELECT max(seq) AS seq FROM ocpp.events")
        assert logged == [{"seq": end - 2}]

    async def test_a_spooled_body_that_vanished_fails_the_store_instead_of_waiting(
        self, projections: Projections, tmp_path: Path
    ) -> None:
        gone = Encoded(tmp_path / "1-events.json", 5)
        with pytest.raises(FileNotFoundError):
            await asyncio.wait_for(
                retrying(
                    "replay insert",
                    lambda: store.store_encoded(
                        projections.backend,
                        "ocpp",
                        {"events": gone},
                        1,
                        5,
                        suffix=SHADOW,
                        known={},
                        structures={"events": "seq UInt64"},
                    ),
                ),
                timeout=10,
            )

    async def test_an_undecodable_message_is_recorded_and_the_runner_goes_on(
        self, projections: Projections, projection_settings: Settings, nats_server: EmbeddedNats
    ) -> None:
        client = await nats.connect(nats_server.url)
        try:
            await client.jetstream().publish("ev.cp.CP-X.in.Heartbeat", b"{not json")
        finally:
            await client.close()
        await store_events(projection_settings, nats_server.url, mixed().events)
        await self.caught_up(projections, nats_server.url)
        errors = await rows(
            projections.backend, "SELECT seq, `projection`, reason FROM ocpp.projection_errors"
        )
        assert errors[0]["seq"] == 1 and errors[0]["projection"] == "events"
        assert errors[0]["reason"].startswith("undecodable event")
        events = await rows(projections.backend, "SELECT count() AS n FROM ocpp.events")
        assert events == [{"n": await last_seq(nats_server.url)}]
        sessions = await rows(projections.backend, "SELECT count() AS n FROM ocpp.sessions")
        assert sessions == [{"n": 3}]
        # A replay records it exactly as the runner did.
        incremental = await dump(projections.backend)
        await replay_in(projections)
        assert await dump(projections.backend) == incremental

    async def test_query_reads_in_every_format_and_refuses_writes(
        self, projections: Projections, projection_settings: Settings, nats_server: EmbeddedNats
    ) -> None:
        await store_events(projection_settings, nats_server.url, mixed().events[:3])
        await self.caught_up(projections, nats_server.url)
        backend = projections.backend
        sql = "SELECT seq, type FROM ocpp.events ORDER BY seq LIMIT 2"
        as_json = await run_query(backend, sql, "json")
        assert [msgspec.json.decode(line) for line in as_json.splitlines()] == [
            {"seq": 1, "type": "admin.tariff.set"},
            {"seq": 2, "type": "connection.opened"},
        ]
        as_csv = await run_query(backend, sql, "csv")
        assert as_csv.decode().splitlines() == [
            '"seq","type"',
            '1,"admin.tariff.set"',
            '2,"connection.opened"',
        ]
        assert "connection.opened" in (await run_query(backend, sql, "table")).decode()
        for write in (
            "INSERT INTO ocpp.events (seq) VALUES (99)",
            "DROP TABLE ocpp.events",
            "SELECT 1; DROP TABLE ocpp.events",
            "  /* hi */ ALTER TABLE ocpp.events DELETE WHERE 1",
        ):
            with pytest.raises(QueryRefused, match=r"read-only|one statement"):
                await run_query(backend, write, "json")
        assert await rows(backend, "SELECT count() AS n FROM ocpp.events") == [{"n": 3}]

    async def test_every_integer_the_schema_allows_is_stored_or_recorded(
        self, projections: Projections, projection_settings: Settings, nats_server: EmbeddedNats
    ) -> None:
        await store_events(projection_settings, nats_server.url, wide_values().events)
        await asyncio.wait_for(self.caught_up(projections, nats_server.url), _CATCH_UP_S)
        backend = projections.backend

        statuses = await rows(
            backend,
            "SELECT connector_id FROM ocpp.connector_status WHERE charge_point_id = 'CP-ODD' "
            "ORDER BY seq",
        )
        assert [s["connector_id"] for s in statuses] == [-1, 1 << 32, INT64_MIN]
        sessions = await rows(
            backend,
            "SELECT charge_point_id, connector_id, transaction_id, meter_start, energy_wh, "
            "state FROM ocpp.sessions ORDER BY charge_point_id, connector_id",
        )
        odd = [s for s in sessions if s["charge_point_id"] == "CP-ODD"]
        # The Start on connector 2 (reservationId -5, kept nowhere) opened a session too.
        assert [(s["connector_id"], s["state"]) for s in odd] == [
            (-1, "completed"),
            (2, "ongoing"),
            (1 << 32, "ongoing"),
        ]
        assert odd[0]["meter_start"] == float(1 << 40) and odd[0]["energy_wh"] == 9_000.0
        assert odd[2]["transaction_id"] == -1
        (ok,) = [s for s in sessions if s["charge_point_id"] == "CP-OK"]
        assert ok["state"] == "completed" and ok["energy_wh"] == 8_000.0
        meters = await rows(
            backend,
            "SELECT charge_point_id, connector_id, transaction_id, value FROM ocpp.meter_values "
            "WHERE measurand = 'Energy.Active.Import.Register' ORDER BY seq",
        )
        assert [(m["connector_id"], m["transaction_id"]) for m in meters[:2]] == [
            (-1, odd[0]["transaction_id"]),
            (1, ok["transaction_id"]),
        ]
        assert (meters[2]["connector_id"], meters[2]["transaction_id"]) == (1 << 32, -1)
        assert [m["charge_point_id"] for m in meters[3:]] == ["CP-OK"]
        hourly = await rows(
            backend,
            "SELECT sum(energy_wh) AS wh FROM ocpp.energy_hourly WHERE charge_point_id = 'CP-OK'",
        )
        assert hourly == [{"wh": 8_000.0}]
        bills = await rows(
            backend,
            "SELECT toString(energy_cost) AS cost FROM ocpp.billing "
            "WHERE charge_point_id = 'CP-OK'",
        )
        assert [Decimal(b["cost"]) for b in bills] == [Decimal("2")]  # 8 kWh at 0.25

        errors = await rows(
            backend, "SELECT `projection`, reason FROM ocpp.projection_errors ORDER BY seq"
        )
        assert [e["projection"] for e in errors] == ["ocpp"] * 3
        for error, field in zip(
            errors,
            (
                f"connector_id {BEYOND_INT64}",
                f"transaction_id {-(1 << 64)}",
                f"connector_id {1 << 70}",
            ),
            strict=True,
        ):
            assert f"{field} is beyond the Int64 columns" in error["reason"]

        incremental = await dump(backend)
        await replay_in(projections)
        assert await dump(backend) == incremental

    async def test_rows_the_store_refuses_are_recorded_and_the_rest_is_stored(
        self, projections: Projections, projection_settings: Settings, nats_server: EmbeddedNats
    ) -> None:
        await store_events(projection_settings, nats_server.url, overpriced().events)
        await asyncio.wait_for(self.caught_up(projections, nats_server.url), _CATCH_UP_S)
        backend = projections.backend
        sessions = await rows(
            backend,
            "SELECT charge_point_id, energy_wh, state FROM ocpp.sessions ORDER BY 1",
        )
        assert sessions == [
            {"charge_point_id": "CP-GOLD", "energy_wh": 1_000_000.0, "state": "completed"},
            {"charge_point_id": "CP-OK", "energy_wh": 6_000.0, "state": "completed"},
        ]
        # CP-GOLD's bill at 10^12 a kWh is beyond Decimal(18, 4): only its first version,
        # at 0 Wh, was stored.
        bills = await rows(
            backend,
            "SELECT charge_point_id, toString(total) AS total FROM ocpp.billing ORDER BY 1",
        )
        assert bills == [
            {"charge_point_id": "CP-GOLD", "total": "0"},
            # 6 kWh at 0.25, 60 minutes at 0.01, a 0.50 fee.
            {"charge_point_id": "CP-OK", "total": "2.6"},
        ]
        errors = await rows(
            backend,
            "SELECT charge_point_id, `projection`, reason FROM ocpp.projection_errors",
        )
        assert len(errors) == 2
        for error in errors:
            assert error["charge_point_id"] == "CP-GOLD"
            assert error["projection"] == "store:billing_versions"
            assert error["reason"].startswith("refused by the store: Code: 69.")
        health = projections.runner.health
        assert health.refused_rows == 2 and "store:billing_versions" in health.last_refusal
        assert not health.stalled.is_set()

        # Replay meets the same refusals, whatever it rebuilds, and keeps what the runner
        # recorded.
        incremental = await dump(backend)
        await replay_in(projections)
        assert await dump(backend) == incremental
        await replay_in(projections, "sessions")
        assert await dump(backend) == incremental
        await replay_in(projections, "projection_errors")
        assert await dump(backend) == incremental
        await replay_in(projections, "sessions", "projection_errors", from_seq=10)
        assert await dump(backend) == incremental
        # The runner goes on: a later session of the same charger is refused and recorded too.
        await store_events(projection_settings, nats_server.url, overpriced().events)
        await asyncio.wait_for(self.caught_up(projections, nats_server.url), _CATCH_UP_S)
        errors = await rows(backend, "SELECT count() AS n FROM ocpp.projection_errors")
        assert errors == [{"n": 4}]
