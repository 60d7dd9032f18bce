"""A contract's deliveries read as its subscriber's Kafka client reads them, as CloudEvents JSON.

It reads the delivery topic in the consumer group ``subscriber.<subscriber>.<contract>`` (so
operators see its lag), decodes each value with the writer schema named by its registry id, and
gives one CloudEvents JSON object per delivery, with only the data the contract allows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.cloudevent import from_kafka
from schemas.codec import rfc3339_millis, to_json
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.settings import Settings
from streams.state.contract import delivery_topic

EXTENSIONS = ("contract", "purpose", "legalbasis", "expiresat")


def delivery_json(serde: AvroSerde, headers: list[tuple[str, bytes]], key: bytes | None,
                  value: bytes) -> dict[str, Any]:
    """One delivery as a CloudEvents JSON object with only the data the contract allows. A
    notice about a whole contract (its end) is about no one: it has no ``subject``, which
    CloudEvents leaves optional."""
    attributes, _ = from_kafka(headers, key, value)
    schema, datum = serde.decode_record(value)
    data = to_json(schema, datum)
    event: dict[str, Any] = {
        "specversion": "1.0", "id": attributes["id"], "source": attributes["source"],
        "type": attributes["type"], "time": rfc3339_millis(attributes["time"]), "data": data,
    }
    event.update({name: attributes[name] for name in ("subject", *EXTENSIONS)
                  if name in attributes})
    return event


def compact_json(event: dict[str, Any]) -> str:
    """A delivery's CloudEvents JSON on one line, as a sink hands it on (a webhook's body, a
    line of a file): no spaces, characters as they are."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


async def read_deliveries(settings: Settings, subscriber: str, contract_id: str,
                          emit: Callable[[Any], None], from_beginning: bool = False,
                          max_events: int | None = None, timeout: float = 10.0) -> int:
    """Hand each delivery of ``subscriber``'s contract ``contract_id`` to ``emit`` until
    ``max_events`` or ``timeout`` seconds, committing the group's offsets as it goes; returns
    how many were emitted.

    The commits are explicit: each partition's offset is just past the last delivery emitted
    from it (or where this run started on it), so a record fetched but not emitted is read by
    the group's next run, never skipped.
    """
    serde = AvroSerde(clients.schema_registry(settings))
    consumer = clients.consumer(
        settings, delivery_topic(subscriber, contract_id),
        group_id=f"subscriber.{subscriber}.{contract_id}",
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    emitted = 0
    deadline = time.monotonic() + timeout
    try:
        if from_beginning:
            await consumer.seek_to_beginning()
        while time.monotonic() < deadline and (max_events is None or emitted < max_events):
            left = None if max_events is None else max_events - emitted
            batches = await consumer.getmany(timeout_ms=200, max_records=left)
            if batches:
                emitted += await _emit_and_commit(consumer, serde, batches, emit, left)
    finally:
        await consumer.stop()
    return emitted


async def _emit_and_commit(consumer: AIOKafkaConsumer, serde: AvroSerde,
                           batches: Mapping[TopicPartition, list[Any]],
                           emit: Callable[[Any], None], left: int | None) -> int:
    """Emit at most ``left`` of the fetched records, then commit exactly what was emitted
    (also when ``emit`` fails half-way); returns how many were emitted."""
    next_offsets = {partition: await consumer.position(partition)
                    for partition in consumer.assignment() if partition not in batches}
    emitted = 0
    try:
        for partition, records in batches.items():
            next_offsets[partition] = records[0].offset
            for record in records:
                if left is not None and emitted >= left:
                    return emitted
                emit(delivery_json(serde, list(record.headers), record.key, record.value))
                emitted += 1
                next_offsets[partition] = record.offset + 1
        return emitted
    finally:
        await consumer.commit(next_offsets)
