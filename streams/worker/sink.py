"""Writing a routed batch to Kafka in few requests: one record batch per topic partition.

Producing record by record costs a partitioner call (pure-Python murmur2), a future and a log
call per record; a routed event gives one delivery and one audit record per contract, so that
cost is multiplied by the fan-out. The sink instead groups a batch's records by partition, fills
aiokafka's batch builders and submits each as one produce request.

Partitions are chosen by :func:`streams.kafka.partitioning.partition_of`: one key always lands on
one partition, so a person's changes stay in order for the subscriber.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.kafka import clients
from streams.kafka.partitioning import partition_of
from streams.routing.records import Outgoing
from streams.settings import Settings


class BatchSink:
    """A producer that writes lists of :class:`Outgoing` records, grouped per partition."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}
        self._spread = 0

    async def start(self) -> None:
        self._producer = clients.producer(self._settings, linger_ms=2,
                                          max_batch_size=1 << 20, max_request_size=4 << 20)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def _partition_count(self, producer: AIOKafkaProducer, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = len(await producer.partitions_for(topic))
        return count

    async def _learn_topics(self, producer: AIOKafkaProducer,
                            records: Sequence[Outgoing]) -> None:
        """Ask the metadata of every topic of ``records`` not seen yet, in one request.

        aiokafka asks the metadata of a topic it does not know when a record is first sent to
        it, with every topic it tracks: with thousands of delivery topics first written in one
        batch (thousands of communes' contracts on one dataset), that was one request per topic,
        each naming them all, and the first deliveries took minutes. Tracking them all first
        makes it one request."""
        unknown = {r.topic for r in records if r.partition is None} - self._partitions.keys()
        if unknown:
            await asyncio.gather(*(producer.client.add_topic(topic) for topic in unknown))

    async def send(self, records: Sequence[Outgoing]) -> asyncio.Future[Written]:
        """Hand ``records`` to the producer; the future resolves once all are acknowledged, to
        the offset of the last record written to each topic partition."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("the sink is not started")
        await self._learn_topics(producer, records)
        groups: dict[tuple[str, int], list[Outgoing]] = defaultdict(list)
        for record in records:
            if record.partition is not None:
                groups[(record.topic, record.partition)].append(record)
                continue
            count = await self._partition_count(producer, record.topic)
            self._spread += 1
            groups[(record.topic, partition_of(record.key, count, self._spread))].append(record)
        pending: list[Any] = []
        lasts: list[tuple[str, int, Any, int]] = []
        for (topic, partition), group in groups.items():
            futures, last_count = await self._send(producer, topic, partition, group)
            pending += futures
            lasts.append((topic, partition, futures[-1], last_count))
        return asyncio.ensure_future(_written(pending, lasts))

    @staticmethod
    async def _send(producer: AIOKafkaProducer, topic: str, partition: int,
                    records: list[Outgoing]) -> tuple[list[Any], int]:
        """Submit ``records`` in as few batches as fit; their futures, and how many records
        the last batch holds."""
        futures = []
        batch = producer.create_batch()
        count = 0
        for record in records:
            if batch.append(key=record.key, value=record.value, timestamp=None,
                            headers=record.headers) is None:
                futures.append(await _submit(producer, batch, topic, partition))
                batch = producer.create_batch()
                batch.append(key=record.key, value=record.value, timestamp=None,
                             headers=record.headers)
                count = 0
            count += 1
        futures.append(await _submit(producer, batch, topic, partition))
        return futures, count


Written = dict[tuple[str, int], int]
"""The offset of the last record a send wrote to each (topic, partition)."""


async def _written(pending: list[Any], lasts: list[tuple[str, int, Any, int]]) -> Written:
    """Once every batch is acknowledged: where each partition's last record landed (a batch's
    acknowledgement gives its first record's offset, and a batch is written contiguously)."""
    await asyncio.gather(*pending)
    return {(topic, partition): last.result().offset + count - 1
            for topic, partition, last, count in lasts}


async def _submit(producer: AIOKafkaProducer, batch: Any, topic: str, partition: int) -> Any:
    """Hand a complete record batch to the producer, closed: nothing more will be appended to
    it, and an open batch would wait out the producer's linger before being sent. The batches
    of one routed batch still travel in one produce request: handing one over does not yield
    to the sender unless its partition still has a batch waiting to be sent."""
    batch.close()
    return await producer.send_batch(batch, topic, partition=partition)
