"""Records whose header *names* are not UTF-8, written to the broker as a Go or C producer can.

Kafka takes any bytes as a header name; aiokafka's and confluent-kafka's producers take only
text. This writer builds the record batch with aiokafka's own pure-Python builder, which spells
a name with the name's ``encode``, and hands it to the producer whole: only the name's spelling
differs from what a producer writes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from unittest import mock

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.structs import RecordMetadata


class RawHeaderName(str):
    """A header name written as the bytes ``raw``, whatever they are."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawHeaderName:
        name = super().__new__(cls, raw.decode("utf-8", "replace"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


def has_raw_names(headers: Sequence[tuple[str, object]]) -> bool:
    """Whether a producer's own ``send`` cannot write ``headers``."""
    return any(isinstance(name, RawHeaderName) for name, _ in headers)


async def send_with_raw_names(producer: AIOKafkaProducer, topic: str, partition: int,
                              key: bytes | None, value: bytes | None,
                              headers: Sequence[tuple[str, bytes | None]]) -> RecordMetadata:
    """Write one record whose header names may be :class:`RawHeaderName`; its metadata, with
    the record's timestamp (a broker does not return one it did not set)."""
    timestamp = int(time.time() * 1000)
    with mock.patch("aiokafka.producer.message_accumulator.DefaultRecordBatchBuilder",
                    _DefaultRecordBatchBuilderPy):
        batch = producer.create_batch()
    batch.append(timestamp=timestamp, key=key, value=value, headers=list(headers))
    batch.close()
    sent: RecordMetadata = await (await producer.send_batch(batch, topic, partition=partition))
    return sent._replace(timestamp=timestamp)
