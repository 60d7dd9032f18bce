"""Consumer groups driven into each Burrow state on purpose, on a delivery topic of their own.

The integration test of ``circulation lag`` and the benchmark that draws its picture both drive
the same four groups of one subscriber (``subscriber.<subscriber>.<role>``):

- a producer writes to partitions 0 and 1 all along;
- ``keeps_up`` reads everything and commits after every fetch (OK), until ``until`` is set: then
  it keeps polling without committing, a live member whose offsets stand still (STALL), or, with
  ``leave``, closes its consumer and leaves the group (STOP);
- ``falls_behind`` commits, but reads one record per partition every ~0.3 s (WARN once the
  producer writes faster than that).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


class LagGroups:
    """The producer and the consumer groups of one subscriber on ``topic`` (two partitions)."""

    def __init__(self, options: dict[str, Any], subscriber: str, topic: str) -> None:
        self.options = options
        self.subscriber = subscriber
        self.topic = topic

    def group(self, role: str) -> str:
        return f"subscriber.{self.subscriber}.{role}"

    def consumer(self, role: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(self.topic, **self.options, group_id=self.group(role),
                                auto_offset_reset="earliest", enable_auto_commit=False)

    async def produce(self, size: int, interval: float) -> None:
        """One record of ``size`` bytes to each partition every ``interval`` seconds."""
        producer = AIOKafkaProducer(**self.options, linger_ms=0)
        await producer.start()
        try:
            while True:
                for partition in (0, 1):
                    await producer.send(self.topic, b"x" * size, partition=partition)
                await asyncio.sleep(interval)
        finally:
            await producer.stop()

    async def keeps_up(self, role: str, until: asyncio.Event | None = None,
                       leave: bool = False) -> None:
        consumer = self.consumer(role)
        await consumer.start()
        try:
            while not (leave and until is not None and until.is_set()):
                batch = await consumer.getmany(timeout_ms=100)
                if batch and (until is None or not until.is_set()):
                    await consumer.commit()
        finally:
            await consumer.stop()

    async def falls_behind(self) -> None:
        consumer = self.consumer("falls-behind")
        await consumer.start()
        try:
            while True:
                assigned = sorted(consumer.assignment())
                if not assigned:  # still joining the group
                    await consumer.getmany(timeout_ms=100, max_records=1)
                    continue
                for partition in assigned:
                    await consumer.getmany(partition, timeout_ms=50, max_records=1)
                await consumer.commit()
                await asyncio.sleep(0.25)
        finally:
            await consumer.stop()
