"""The sink learns the metadata of every new delivery topic of a batch at once.

aiokafka asks a topic's metadata when a record is first sent to it, naming every topic it
tracks: thousands of delivery topics first written in one batch made thousands of requests.
The sink tracks them all before it asks any topic's partitions, so one request serves them.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
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
        return _Batch(self.capacity)

    capacity = 1000
    ends: dict[tuple[str, int], int]

    async def send_batch(self, batch: Any, topic: str,
                         partition: int) -> asyncio.Future[SimpleNamespace]:
        """Acknowledged at once, with the batch's first offset, as the broker does."""
        self.ends = getattr(self, "ends", {})
        base = self.ends.get((topic, partition), 0)
        self.ends[(topic, partition)] = base + batch.count
        done: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(offset=base))
        return done


class _Batch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.count = 0

    def append(self, **_: Any) -> object | None:
        if self.count == self.capacity:
            return None
        self.count += 1
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


async def test_a_send_says_where_each_partitions_last_record_landed() -> None:
    """What a signed checkpoint names: the offset of a chain's newest record, also when a
    partition's records took more than one batch."""
    sink = BatchSink(Settings())
    producer = _Producer(set())
    producer.capacity = 2
    sink._producer = producer  # type: ignore[assignment]
    audit = [Outgoing("bus.audit", b"k", b"v", [], partition=1) for _ in range(5)]
    other = [Outgoing("bus.audit", b"k", b"v", [], partition=2)]
    assert await (await sink.send([*audit, *other])) == {("bus.audit", 1): 4,
                                                           ("bus.audit", 2): 0}
    assert await (await sink.send(audit[:3])) == {("bus.audit", 1): 7}
