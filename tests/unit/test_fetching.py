"""The routing worker's Kafka consumer gets the fetch wait of the settings, not Faust's 1.5 s.

Faust hard-codes ``fetch_max_wait_ms=1500`` where it builds its aiokafka consumer; the worker
replaces it through Faust's own transport classes (:mod:`streams.fetching`). Were a Faust upgrade
to rename what is overridden, the override would silently stop applying and busy partitions would
stall again behind idle ones: this test fails instead.
"""

from __future__ import annotations

from streams.settings import Settings
from streams.worker import create_app


async def test_the_worker_consumer_lets_the_broker_hold_a_fetch_only_as_configured() -> None:
    app = create_app(Settings(fetch_max_wait_ms=37))
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # as Faust does
    try:
        assert consumer._fetch_max_wait_ms == 37
        assert consumer._group_id == app.conf.id  # still the consumer Faust builds, group and all
    finally:
        await consumer.stop()

