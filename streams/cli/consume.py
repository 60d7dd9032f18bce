"""``circulation consume CONTRACT``: a subscriber's view of its deliveries, as CloudEvents JSON.

It reads the delivery topic like any subscriber's Kafka client would, in the consumer group
``subscriber.<subscriber>.<contract>`` so that operators see its lag, decodes each value with
the writer schema named by its registry id, and prints one CloudEvents JSON object per line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Annotated, Any

import typer

from schemas.cloudevent import from_kafka
from schemas.codec import rfc3339_millis, to_json
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.cli.console import fail, settings
from streams.kafka import clients
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.subjects import find_contract

EXTENSIONS = ("contract", "purpose", "legalbasis", "expiresat")


def delivery_json(serde: AvroSerde, headers: list[tuple[str, bytes]], key: bytes | None,
                  value: bytes) -> dict[str, Any]:
    """One delivery as a CloudEvents JSON object with only the data the contract allows."""
    attributes, _ = from_kafka(headers, key, value)
    schema, datum = serde.decode_record(value)
    data = to_json(schema, datum)
    event: dict[str, Any] = {
        "specversion": "1.0", "id": attributes["id"], "source": attributes["source"],
        "type": attributes["type"], "subject": attributes["subject"],
        "time": rfc3339_millis(attributes["time"]), "data": data,
    }
    event.update({name: attributes[name] for name in EXTENSIONS if name in attributes})
    return event


async def _consume(config: Settings, contract: Contract, from_beginning: bool,
                   max_events: int | None, timeout: float) -> int:
    serde = AvroSerde(SchemaRegistry(config.schema_registry_url))
    consumer = clients.consumer(
        config, contract.delivery_topic,
        group_id=f"subscriber.{contract.subscriber}.{contract.id}",
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    printed = 0
    deadline = time.monotonic() + timeout
    try:
        if from_beginning:
            await consumer.seek_to_beginning()
        while time.monotonic() < deadline and (max_events is None or printed < max_events):
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    line = delivery_json(serde, list(record.headers), record.key, record.value)
                    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
                    printed += 1
                    if max_events is not None and printed >= max_events:
                        break
            if batches:
                await consumer.commit()
        sys.stdout.flush()
    finally:
        await consumer.stop()
    return printed


def consume(
    contract: Annotated[str, typer.Argument(help="Contract id.")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning",
                                                 help="Read the whole topic.")] = False,
    max_events: Annotated[int | None, typer.Option("--max", min=1,
                                                   help="Stop after N deliveries.")] = None,
    timeout: Annotated[float, typer.Option(help="Stop after S seconds.")] = 10.0,
) -> None:
    """Print a contract's deliveries as CloudEvents JSON lines."""
    config = settings()
    try:
        found = asyncio.run(find_contract(config, contract))
    except LookupError as exc:
        fail(str(exc))
    asyncio.run(_consume(config, found, from_beginning, max_events, timeout))
