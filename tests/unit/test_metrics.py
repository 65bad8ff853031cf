"""Counting in place, rendering on scrape: what a scrape shows is what was counted, labels a
charger chooses stay bounded, and a fan-out's dropped clients stay counted once gone."""

from __future__ import annotations

import msgspec
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from hub.children import hub_command
from hub.config import OpsSettings, Settings
from hub.fanout.broker import Broker
from hub.fanout.clients import Client
from hub.fanout.live import Live
from hub.fanout.metrics import families as fanout_families
from hub.gateway.frames import Malformed
from hub.gateway.metrics import GatewayMetrics
from hub.gateway.protocol import Link, Received, reject
from hub.metrics import Collected, Histogram
from hub.ops import role_port
from tests.unit.test_fanout_clients import SCOPE, offer, status

LINK = Link(charge_point_id="CP-1", connection_id="c1", gateway_id="gw", ocpp_version="1.6")


def scraped(*families: object) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry()
    registry.register(Collected(lambda: families))
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for metric in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in metric.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def test_a_histogram_counts_a_value_equal_to_a_bound_in_that_bound_and_renders_cumulatively() -> (
    None
):
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    samples = scraped(histogram.family("ocpp_hub_frame_store_seconds"))
    assert samples["ocpp_hub_frame_store_seconds_bucket"] == {
        (("le", "0.1"),): 2,
        (("le", "1.0"),): 4,
        (("le", "+Inf"),): 5,
    }
    assert samples["ocpp_hub_frame_store_seconds_count"] == {(): 5}
    assert samples["ocpp_hub_frame_store_seconds_sum"] == {(): 8.65}


def test_actions_and_codes_a_charger_makes_up_count_as_other() -> None:
    metrics = GatewayMetrics()
    for action in ("NoSuchAction", "Another\u2603"):
        refused = Malformed("unknown_action", "NotImplemented", "unknown", "u1", action=action)
        exchange = reject(LINK, refused, Received(b"[2]", 0, 1))
        metrics.exchanged(LINK, exchange, sent=True, seconds=0.001)
    answer = msgspec.structs.replace(exchange, outcome="MadeUpCode", action="Heartbeat")
    metrics.exchanged(LINK, answer, sent=True, seconds=0.001)
    metrics.commanded("Reset\u2603", "answered")
    samples = scraped(*metrics.families([LINK]))
    assert samples["ocpp_hub_frames_total"] == {
        (("action", "other"), ("ocpp_version", "1.6"), ("outcome", "NotImplemented")): 2,
        (("action", "Heartbeat"), ("ocpp_version", "1.6"), ("outcome", "other")): 1,
    }
    assert samples["ocpp_hub_callerrors_total"] == {
        (("code", "NotImplemented"), ("direction", "out")): 3
    }
    assert samples["ocpp_hub_commands_total"] == {(("action", "other"), ("outcome", "answered")): 1}
    connected = samples["ocpp_hub_chargers_connected"]
    assert connected == {
        (("ocpp_version", "1.6"),): 1,
        (("ocpp_version", "2.0.1"),): 0,
        (("ocpp_version", "2.1"),): 0,
    }


def test_an_answer_held_back_for_a_retry_is_superseded_and_its_callerror_not_counted() -> None:
    metrics = GatewayMetrics()
    refused = Malformed("schema_violation", "FormationViolation", "bad", "u1", action="Heartbeat")
    exchange = reject(LINK, refused, Received(b"[2]", 0, 1))
    metrics.exchanged(LINK, exchange, sent=False, seconds=0.001)
    samples = scraped(*metrics.families([]))
    assert samples["ocpp_hub_frames_total"] == {
        (("action", "Heartbeat"), ("ocpp_version", "1.6"), ("outcome", "superseded")): 1
    }
    assert "ocpp_hub_callerrors_total" not in samples


def test_a_fan_out_counts_a_too_slow_client_and_its_dropped_messages_after_it_is_gone() -> None:
    broker = Broker(Live(history_per_charger=8), client_queue=8)
    slow = Client(web.WebSocketResponse(), SCOPE, capacity=8)
    fine = Client(web.WebSocketResponse(), SCOPE, capacity=8)
    broker.add(slow)
    broker.add(fine)
    for seq in range(1, 10):  # the ninth finds the queue full: closed as too slow
        offer(slow, status(seq))
    assert slow.too_slow
    before = scraped(*fanout_families(broker))
    broker.remove(slow)
    broker.remove(slow)  # a second removal counts nothing twice
    after = scraped(*fanout_families(broker))
    assert before["ocpp_hub_ui_clients"] == {(): 2}
    assert after["ocpp_hub_ui_clients"] == {(): 1}
    for samples in (before, after):
        assert samples["ocpp_hub_ui_slow_client_closes_total"] == {(): 1}
        assert samples["ocpp_hub_ui_queue_drops_total"] == {
            (("reason", "coalesced"),): 0,
            (("reason", "too_slow"),): 8,
        }


def test_under_hub_up_a_fixed_ops_port_is_the_gateways_and_each_child_takes_its_offset() -> None:
    fixed = Settings(ops=OpsSettings(host="0.0.0.0", port=9400))
    commands = {role: hub_command(role, fixed) for role in ("fanout", "project", "supervise")}
    for role, port in (("fanout", "9401"), ("project", "9402"), ("supervise", "9403")):
        command = commands[role]
        at = command.index("--metrics-port")
        assert command[at + 1] == port
        assert command[command.index("--metrics-host") + 1] == "0.0.0.0"
    assert role_port("gateway", 9400) == 9400
    # With no fixed port each takes a free one.
    assert hub_command("project", Settings())[-1] == "0"
