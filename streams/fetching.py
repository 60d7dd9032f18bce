"""How long the routing worker's Kafka consumer lets the broker hold a fetch: short.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``, and aiokafka keeps one fetch
in flight per broker, sent only for the partitions that have no unconsumed records buffered. A
busy worker therefore often sends a fetch for its *idle* partitions alone; the broker holds it
the full 1.5 s, since nothing arrives there, and meanwhile the busy partitions cannot be fetched
at all. Measured under steady load: routing stopped for 0.5 to 0.9 s every 1.6 s, which made the
latency seconds instead of milliseconds. A short wait bounds that stall, at the price of an idle
worker asking the broker a few dozen times a second.

Faust has no setting for it, so the app's transport is given a consumer whose aiokafka consumer
is created as Faust creates it, then told the wait before it starts (aiokafka hands the value to
its fetcher at start).
"""

from __future__ import annotations

from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class ShortFetchApp(faust.App):
    """A Faust app whose worker consumer lets the broker hold a fetch ``fetch_max_wait_ms``."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms

    def _new_transport(self) -> Any:
        """Faust's aiokafka transport (the ``kafka://`` one), with the consumer below."""
        return _ShortFetchTransport(self.conf.broker_consumer, self)


class _ShortFetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = cast(ShortFetchApp, self.app).fetch_max_wait_ms
        return consumer


class _ShortFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ShortFetchThread(self, loop=self.loop, beacon=self.beacon)


class _ShortFetchTransport(faust_aiokafka.Transport):
    Consumer = _ShortFetchConsumer
