"""Writing a routed batch to Kafka through librdkafka, acknowledged as one.

A routed event gives one delivery and one audit record per contract that concerns its person.
With thousands of contracts on a dataset (a canteen contract per commune), the deliveries of one
routed batch are spread over thousands of delivery partitions, one or two records each. A
Python producer pays its cost per partition batch (a batch object, a future, its part of the
request and of the response), so routing slowed down with the number of partitions written
rather than the number of records. librdkafka (confluent-kafka) batches, sends and retries in C,
idempotently and in order per partition; the sink only hands it records and counts their
acknowledgements.

Partitions are chosen by :func:`streams.kafka.partitioning.partition_of`: one key always lands on
one partition, so a person's changes stay in order for the subscriber. The partition counts it
needs come from one metadata request for all of a batch's new topics.

Acknowledgements are served by a thread of the sink's own (``poll``), which hands each routed
batch's outcome back to the event loop once all its records are acknowledged or one failed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Final, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.kafka import clients
from streams.kafka.partitioning import partition_of
from streams.routing.records import Outgoing
from streams.settings import Settings

QUEUE_KBYTES: Final = 64 * 1024
"""What librdkafka may hold unacknowledged: its default (a gigabyte) would let a slow broker
grow a worker's memory that far before the sink waits."""

METADATA_TIMEOUT: Final = 30.0
"""Seconds a metadata request may take before the batch fails (and is read again)."""


_Headers = list[tuple[str, str | bytes | None]]


class SinkError(RuntimeError):
    """A record of a routed batch could not be written; the batch is not acknowledged."""


class BatchSink:
    """A producer that writes lists of :class:`Outgoing` records and acknowledges each list
    once every record of it is written."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        self._partitions: dict[str, int] = {}
        self._spread = 0

    async def start(self) -> None:
        self._producer = Producer({
            **clients.librdkafka_options(self._settings),
            **clients.LIBRDKAFKA_DURABILITY,
            "client.id": "circulation-router",
            "linger.ms": 2, "batch.size": 1 << 20, "message.max.bytes": 4 << 20,
            "queue.buffering.max.kbytes": QUEUE_KBYTES, "log_level": 3})
        self._stopping.clear()
        self._poller = threading.Thread(target=self._poll, name="sink-acknowledgements",
                                        daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        producer = self._producer
        assert producer is not None
        while not self._stopping.is_set():
            producer.poll(0.05)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        await asyncio.to_thread(producer.flush, 30)
        self._stopping.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)
            self._poller = None

    async def send(self, records: Sequence[Outgoing]) -> asyncio.Future[None]:
        """Hand ``records`` to the producer; the future resolves once all are acknowledged,
        or fails with the first error."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("the sink is not started")
        await self._learn_topics(producer, records)
        acks = _Acknowledgements(asyncio.get_running_loop(), len(records))
        for record in records:
            partition = record.partition
            if partition is None:
                self._spread += 1
                partition = partition_of(record.key, self._partitions[record.topic],
                                         self._spread)
            while True:
                try:
                    producer.produce(record.topic, record.value, record.key, partition,
                                     on_delivery=acks.delivered,
                                     headers=cast(_Headers, record.headers))
                    break
                except BufferError:  # its queue is full: wait for acknowledgements to free it
                    await asyncio.sleep(0.005)
        return acks.future


    async def _learn_topics(self, producer: Producer, records: Sequence[Outgoing]) -> None:
        """The partition counts of the topics of ``records`` not seen yet, from one request
        for the whole cluster's metadata (thousands of new delivery topics in one batch)."""
        unknown = {r.topic for r in records if r.partition is None} - self._partitions.keys()
        if not unknown:
            return
        try:
            metadata = await asyncio.to_thread(producer.list_topics, None, METADATA_TIMEOUT)
        except KafkaException as exc:
            raise SinkError(f"could not read the topics' metadata: "
                            f"{clients.refusal(exc)}") from None
        for name, topic in metadata.topics.items():
            if topic.error is None and topic.partitions:
                self._partitions[name] = len(topic.partitions)
        missing = sorted(unknown - self._partitions.keys())
        if missing:
            raise SinkError(f"no such topic: {', '.join(missing)}")


class _Acknowledgements:
    """Counts one routed batch's acknowledgements (in the polling thread) and settles its
    future on the event loop once, when the last arrives or the first error does."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self._loop = loop
        self._left = expected
        self._failed = False
        self.future: asyncio.Future[None] = loop.create_future()
        if expected == 0:
            self.future.set_result(None)

    def delivered(self, error: KafkaError | None, message: Message) -> None:
        if self._failed:
            return
        if error is not None:
            self._failed = True
            failure = SinkError(f"could not write to {message.topic()}: {error.str()}")
            self._loop.call_soon_threadsafe(_settle, self.future, failure)
            return
        self._left -= 1
        if self._left == 0:
            self._loop.call_soon_threadsafe(_settle, self.future, None)


def _settle(future: asyncio.Future[None], failure: BaseException | None) -> Any:
    if future.done():
        return
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(failure)
