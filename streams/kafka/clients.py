"""Every Kafka client the bus builds, with one policy, so that no writer is weaker than another.

Producers wait for every in-sync replica (``acks=all``) and are idempotent: a send retried after
a lost acknowledgement is written once, so a delivery, an audit record, a consent or an erasure
notice is never doubled by the client itself, and records of one partition keep their order
through retries. Callers may tune batching and sizes; they cannot weaken durability.

Consumers and admin clients only carry the connection and security settings; what a consumer
commits, and when, is its caller's decision (most of the bus's readers assign partitions and
never commit). The Faust app builds its own clients from the same settings
(:func:`streams.worker.app.broker_credentials`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient

from streams.settings import Settings

DURABILITY = {"acks": "all", "enable_idempotence": True}
"""What every producer of the bus promises; a caller asking otherwise is a bug."""


def producer(settings: Settings, **tuning: Any) -> AIOKafkaProducer:
    """A producer under :data:`DURABILITY`; ``tuning`` sets batching and sizes only."""
    overridden = sorted(DURABILITY.keys() & tuning.keys())
    if overridden:
        raise TypeError(f"a bus producer's {', '.join(overridden)} cannot be changed")
    return AIOKafkaProducer(**settings.kafka_client_options(), **DURABILITY, **tuning)


def consumer(settings: Settings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer on the bus's cluster; without ``group_id`` it only reads what it assigns."""
    return AIOKafkaConsumer(*topics, **settings.kafka_client_options(), **options)


def admin_client(settings: Settings, **options: Any) -> AIOKafkaAdminClient:
    """An admin client on the bus's cluster, not started (for a long-lived owner)."""
    return AIOKafkaAdminClient(**settings.kafka_client_options(), **options)


def cluster_client(settings: Settings, **options: Any) -> AIOKafkaClient:
    """A bare cluster client, for requests the other clients do not expose (group listings)."""
    return AIOKafkaClient(**settings.kafka_client_options(), **options)


@asynccontextmanager
async def admin(settings: Settings, **options: Any) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client for the span of an ``async with``."""
    client = admin_client(settings, **options)
    await client.start()
    try:
        yield client
    finally:
        await client.close()
