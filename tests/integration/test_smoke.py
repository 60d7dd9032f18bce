"""The foundation works: a produce/consume round trip and a schema read back by id."""

from __future__ import annotations

import json

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.registry import SchemaRegistry
from tests.conftest import Services


async def test_produce_consume_round_trip(services: Services, topic_name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=services.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(30)}
    producer = AIOKafkaProducer(bootstrap_servers=services.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in sent.items():
            await producer.send(topic_name, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic_name, bootstrap_servers=services.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    received: dict[bytes, bytes] = {}
    partitions_seen = set()
    try:
        for _ in range(20):
            batches = await consumer.getmany(timeout_ms=1000)
            for partition, records in batches.items():
                partitions_seen.add(partition.partition)
                received.update((r.key, r.value) for r in records)
            if len(received) == len(sent):
                break
    finally:
        await consumer.stop()
    assert received == sent
    assert len(partitions_seen) > 1, "keys should spread over the topic's three partitions"


def test_schema_registered_and_read_back_by_id(services: Services, topic_name: str) -> None:
    schema = {
        "type": "record", "name": "Ping", "namespace": "fr.gouv.circulation.test",
        "doc": "A smoke-test record.",
        "fields": [{"name": "n", "type": "int", "doc": "a number"}],
    }
    subject = f"{topic_name}-value"
    with SchemaRegistry(services.registry_url) as registry:
        schema_id = registry.register(subject, schema)
        again = SchemaRegistry(services.registry_url)
        try:
            assert again.schema(schema_id) == schema
            assert again.register(subject, json.dumps(schema)) == schema_id
            assert again.versions(subject) == [1]
        finally:
            again.close()
        assert subject in registry.subjects()
