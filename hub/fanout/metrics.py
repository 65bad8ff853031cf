"""The fan-out's metrics, rendered on scrape from what its broker and clients count."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from hub.fanout.broker import Broker
from hub.metrics import labelled, sample


def families(broker: Broker) -> Iterator[Metric]:
    clients = list(broker.clients)
    coalesced = broker.gone_coalesced + sum(client.coalesced for client in clients)
    dropped = broker.gone_dropped + sum(client.dropped for client in clients)
    too_slow = broker.gone_too_slow + sum(client.too_slow for client in clients)
    yield sample("ocpp_hub_ui_clients", len(clients))
    yield labelled(
        "ocpp_hub_ui_queue_drops_total", {("coalesced",): coalesced, ("too_slow",): dropped}
    )
    yield sample("ocpp_hub_ui_slow_client_closes_total", too_slow)
