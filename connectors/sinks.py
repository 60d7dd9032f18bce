"""What every sink of a contract's deliveries shares: who it reads as, and how.

A sink runs as the ``bus-sink`` principal, which may use the consumer groups prefixed
``sink.`` (:data:`streams.security.access.SINK_GROUPS`). Each kind of sink reads a contract's
delivery topic in a group of its own, so that a webhook and a file sink of one contract each
get every delivery, and operators see each one's lag apart (the lag monitor watches every
group reading a delivery topic, and names the subscriber from the topic). Offsets are never
committed automatically: a sink commits only what it has handed on for good.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka import clients
from streams.routing.dead_letters import DeadLetters
from streams.routing.records import SourceRecord
from streams.security.access import SINK_GROUPS
from streams.settings import Settings


def sink_group(contract_id: str, kind: str | None = None) -> str:
    """The consumer group a sink of ``contract_id`` reads in: ``sink.<contract>`` for the
    webhook sink (its name since it came first), ``sink.<contract>.<kind>`` for the others. A
    contract id holds no dot, so no two of these names meet."""
    group = f"{SINK_GROUPS}{contract_id}"
    return group if kind is None else f"{group}.{kind}"


def sink_consumer(settings: Settings, group: str) -> AIOKafkaConsumer:
    """A consumer in ``group``, not started, reading a new group's topic from its beginning
    and committing only when told to."""
    return clients.consumer(settings, group_id=group, auto_offset_reset="earliest",
                            enable_auto_commit=False)


async def send_dead_letter(producer: AIOKafkaProducer, dead_letters: DeadLetters, record: Any,
                           error: Exception) -> None:
    """Write the dead letter of ``record``, a delivery the sink cannot hand on: where it is and
    ``error``, nothing it holds."""
    source = SourceRecord(record.topic, record.partition, record.offset, record.timestamp,
                          record.key, record.value, list(record.headers))
    letter = dead_letters.letter(source, error, datetime.now(UTC))
    await producer.send_and_wait(letter.topic, letter.value, key=letter.key,
                                 headers=letter.headers)
