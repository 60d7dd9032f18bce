"""The sink learns the metadata of every new delivery topic of a batch at once.

aiokafka asks a topic's metadata when a record is first sent to it, naming every topic it
tracks: thousands of delivery topics first written in one batch made thousands of requests.
The sink tracks them all before it asks any topic's partitions, so one request serves them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from streams.routing.records import Outgoing
from streams.settings import Settings
from streams.worker.sink import BatchSink


class _Client:
    def __init__(self) -> None:
        self.tracked: set[str] = set()

    def add_topic(self, topic: str) -> asyncio.Future[bool]:
        self.tracked.add(topic)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        done.set_result(True)
        return done


class _Producer:
    def __init__(self, expected: set[str]) -> None:
        self.client = _Client()
        self.expected = expected
        self.asked: list[str] = []

    async def partitions_for(self, topic: str) -> set[int]:
        assert self.client.tracked >= self.expected, "a topic asked before all were tracked"
        self.asked.append(topic)
        return {0, 1, 2}

    def create_batch(self) -> Any:
        return _Batch()

    async def send_batch(self, batch: Any, topic: str, partition: int) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _Batch:
    def append(self, **_: Any) -> object:
        return object()

    def close(self) -> None:
        return None


async def test_every_new_topic_of_a_batch_is_tracked_before_any_is_asked() -> None:
    topics = {f"deliver.commune-{n:05d}.cantine" for n in range(300)}
    sink = BatchSink(Settings())
    producer = _Producer(topics)
    sink._producer = producer  # type: ignore[assignment]
    records = [Outgoing(topic, b"ps2_" + b"ab" * 32, b"value", []) for topic in sorted(topics)]
    records.append(Outgoing("bus.audit", b"sr1_key", b"audit", [], partition=1))
    await (await sink.send(records))
    assert sorted(producer.asked) == sorted(topics), "each topic's partitions asked once"
    assert "bus.audit" not in producer.client.tracked, "an explicit partition needs no metadata"
    await (await sink.send(records))
    assert len(producer.asked) == len(topics), "known topics are not asked again"
