"""The routing worker's sink against the real broker: every record where the bus places it, in
order per key, and a batch that cannot be written fails with what went wrong, at once.

The sink writes through librdkafka and chooses partitions itself
(:func:`streams.kafka.partitioning.partition_of`), so a person's deliveries land where they
always did, whichever producer wrote them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest

from streams.kafka import clients
from streams.kafka.admin import ensure_topics
from streams.kafka.partitioning import partition_of
from streams.kafka.topics import TopicSpec
from streams.routing.records import Outgoing
from streams.settings import Settings
from streams.worker.sink import BatchSink, SinkError

PARTITIONS = 5


def _pseudonym(n: int) -> bytes:
    return b"ps2_" + hashlib.sha256(b"%d" % n).hexdigest().encode()


async def _read_all(settings: Settings, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of the first ``count`` records, in offset order per partition."""
    consumer = clients.consumer(settings, topic, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[int, bytes, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < count:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    found += [(tp.partition, r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return found


@pytest.fixture
async def sink(settings: Settings) -> AsyncIterator[BatchSink]:
    started = BatchSink(settings)
    await started.start()
    yield started
    await started.stop()


async def test_records_land_on_the_partition_of_their_key_in_order(
        settings: Settings, sink: BatchSink, topic_name: str) -> None:
    await ensure_topics(settings, [TopicSpec(topic_name, PARTITIONS, 1)])
    keys = [_pseudonym(n) for n in range(20)] + [b"552100554", None]
    batches = [[Outgoing(topic_name, key, b"%d:%d" % (b, i), [("n", b"%d" % i)])
                for i, key in enumerate(keys)] for b in range(3)]
    explicit = Outgoing(topic_name, b"chain", b"explicit", [], partition=3)
    # three batches handed over before any is acknowledged: each key's records stay in order
    pending = [await sink.send(batch) for batch in batches] + [await sink.send([explicit])]
    await asyncio.gather(*pending)

    found = await _read_all(settings, topic_name, 3 * len(keys) + 1)
    by_key: dict[bytes | None, list[bytes]] = defaultdict(list)
    for partition, key, value in found:
        if key == b"chain":
            assert (partition, value) == (3, b"explicit")
            continue
        if key is not None:
            assert partition == partition_of(key, PARTITIONS, 0), key
        by_key[key].append(value.split(b":")[0])
    assert all(values == [b"0", b"1", b"2"] for key, values in by_key.items() if key), by_key
    assert len(by_key[None]) == 3


async def test_a_batch_naming_a_missing_topic_fails_naming_it(
        settings: Settings, sink: BatchSink, topic_name: str) -> None:
    missing = f"{topic_name}.absent"
    with pytest.raises(SinkError, match=f"no such topic: {missing}"):
        await sink.send([Outgoing(missing, _pseudonym(1), b"x", [])])


async def test_a_record_the_broker_refuses_fails_its_batch_and_the_next_is_written(
        settings: Settings, sink: BatchSink, topic_name: str) -> None:
    await ensure_topics(settings, [TopicSpec(topic_name, 1, 1, {"max.message.bytes": "1024"})])
    refused = await sink.send([Outgoing(topic_name, b"k", b"x" * 4096, [])])
    with pytest.raises(SinkError, match=topic_name):
        await refused
    await (await sink.send([Outgoing(topic_name, b"k", b"after", [])]))
    assert [value for _, _, value in await _read_all(settings, topic_name, 1)] == [b"after"]


async def test_an_empty_batch_is_acknowledged_at_once(sink: BatchSink) -> None:
    assert await (await sink.send([])) is None
