"""``hub query``, ``hub replay`` and ``hub tariffs`` against a running hub that owns chDB."""

from __future__ import annotations

import argparse
import os

import msgspec
import pytest

from hub.cli import build_parser
from hub.config import Settings
from hub.nats_server import EmbeddedNats
from projections import cli as projections_cli
from projections.fold_process import Spare
from projections.service import Status, running_projections
from tests.projections.contract import store_events
from tests.projections.helpers import dump, last_seq, rows
from tests.projections.scenario import mixed, overpriced


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


async def test_query_replay_and_tariffs_go_through_the_running_hub(
    settings: Settings, nats_server: EmbeddedNats, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = msgspec.structs.replace(settings, nats_url=nats_server.url)
    async with running_projections(settings, nats_server.url) as projections:
        await store_events(settings, nats_server.url, mixed().events)
        assert (
            await projections_cli.main(
                settings,
                parse(
                    "tariffs",
                    "set",
                    "night",
                    "--per-kwh",
                    "0.2",
                    "--band",
                    "22:00-06:00=0.1/0",
                    "--idle-per-minute",
                    "0.3",
                    "--idle-grace-minutes",
                    "10",
                    "--max-energy-wh",
                    "50000",
                ),
            )
            == 0
        )
        assert "tariff night in force for all chargers" in capsys.readouterr().out
        await projections.runner.wait_for(await last_seq(nats_server.url))

        assert (
            await projections_cli.main(
                settings,
                parse("query", "SELECT count() AS n FROM ocpp.sessions", "--format", "json"),
            )
            == 0
        )
        assert capsys.readouterr().out == '{"n":3}\n'
        assert (
            await projections_cli.main(
                settings, parse("query", "SELECT 1 AS one", "--format", "csv")
            )
            == 0
        )
        assert capsys.readouterr().out == '"one"\n1\n'

        assert (
            await projections_cli.main(settings, parse("query", "DELETE FROM ocpp.events WHERE 1"))
            == 2
        )
        captured = capsys.readouterr()
        assert "read-only: DELETE statements are refused" in captured.err
        assert await rows(projections.backend, "SELECT count() AS n FROM ocpp.events") == [
            {"n": await last_seq(nats_server.url)}
        ]

        assert await projections_cli.main(settings, parse("replay", "--projection", "billing")) == 0
        assert "100.0%" in capsys.readouterr().err
        assert await projections_cli.main(settings, parse("replay", "--projection", "nope")) == 2
        assert "not a projection" in capsys.readouterr().err

        assert await projections_cli.main(settings, parse("tariffs", "list")) == 0
        listed = capsys.readouterr().out
        assert "night\t*" in listed and "22:00-06:00=0.1/0" in listed
        assert "idle 0.3 after 10 min" in listed and "max Wh 50000" in listed


async def test_bad_tariff_arguments_name_the_flag(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in (
        (("--per-kwh", "abc"), "--per-kwh: 'abc' is not a decimal price"),
        (("--session-fee", "-1"), "--session-fee: '-1' is not a decimal price"),
        (("--band", "25:00-06:00=0.1"), "--band '25:00-06:00=0.1': '25:00' is not a time"),
        (("--currency", "EURO"), "--currency: 'EURO' is not a three-letter ISO 4217 code"),
        (("--effective-from", "soon"), "--effective-from: 'soon' is not an ISO 8601 date-time"),
    ):
        assert await projections_cli.main(settings, parse("tariffs", "set", "t", *argv)) == 2
        assert message in capsys.readouterr().err


async def test_status_shows_lag_and_the_rows_the_store_refused(
    settings: Settings, nats_server: EmbeddedNats, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = msgspec.structs.replace(settings, nats_url=nats_server.url)
    async with running_projections(settings, nats_server.url) as projections:
        await store_events(settings, nats_server.url, overpriced().events)
        end = await last_seq(nats_server.url)
        await projections.runner.wait_for(end)

        assert await projections_cli.main(settings, parse("status")) == 0
        shown = capsys.readouterr().out.splitlines()
        assert shown[:4] == [
            "backend        chdb",
            f"projected seq  {end}",
            "lag            0 events, 0.0 s",
            "stalled        no",
        ]
        assert shown[4] == "refused rows   2 (in ocpp.projection_errors)"
        assert shown[5].startswith("last refused   seq ") and "store:billing_versions" in shown[5]

        assert await projections_cli.main(settings, parse("status", "--json")) == 0
        status = msgspec.json.decode(capsys.readouterr().out, type=Status)
        assert (status.projected_seq, status.lag_events, status.stalled) == (end, 0, False)
        assert status.refused_rows == 2

    # No hub: said so, and a failure for scripts.
    assert await projections_cli.main(settings, parse("status")) == 1
    assert "no" in capsys.readouterr().err


def test_a_stalled_runner_shows_why() -> None:
    status = Status(
        backend="clickhouse",
        projected_seq=10,
        lag_events=5,
        lag_seconds=12.25,
        stalled=True,
        retries=7,
        last_error="Connection refused",
        last_error_age_s=0.4,
    )
    assert projections_cli.status_text(status).splitlines()[2:4] == [
        "lag            5 events, 12.2 s",
        "stalled        yes: 7 failed attempts, the latest 0.4 s ago: Connection refused",
    ]


async def test_a_replay_in_the_hub_takes_the_waiting_fold_process_and_another_waits_next(
    settings: Settings, nats_server: EmbeddedNats, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hub project`` keeps a fold process started ahead, so a replay does not wait a
    quarter of a second for its imports: the replay takes it (it folds, and ends with the
    replay) and a new one waits for the next."""
    settings = msgspec.structs.replace(settings, nats_url=nats_server.url)
    await store_events(settings, nats_server.url, mixed().events)
    async with (
        Spare() as spare,
        running_projections(settings, nats_server.url, spare=spare) as projections,
    ):
        await projections.runner.wait_for(await last_seq(nats_server.url))
        before = await dump(projections.backend)
        warm = spare.pid
        assert warm is not None
        assert await projections_cli.main(settings, parse("replay")) == 0
        assert "100.0%" in capsys.readouterr().err
        assert await dump(projections.backend) == before
        with pytest.raises(ProcessLookupError):  # the waiting process folded, and ended
            os.kill(warm, 0)
        assert spare.pid not in (None, warm)
    assert spare.pid is None
