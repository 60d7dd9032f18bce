"""Fences: how a change of state overtakes every event published after it.

A consent withdrawal, a release from a population or a revoked contract must be in force for
every event published after the command that recorded it returned. Routing workers read the
state topics on a consumer of their own, so nothing orders a state record against an event on a
provider topic. A fence does. Once its state records are acknowledged, the command writes one
fence record to every partition of every provider topic, and returns only when those are
acknowledged too. An event published after the command returned therefore sits behind the fence
in its partition, and a worker routes nothing behind a fence before its state follower has
applied the positions the fence names (:meth:`streams.state.StateFollower.fence`).

Why not ask the state topics' end offsets before every batch, as the workers did: that is one
``ListOffsets`` round trip on the path of every event, for changes that are rare next to events.
Under load it was a tenth of a batch's latency, and more when the broker answered slowly (README,
Performance). A fence costs one record per provider partition per state change, and nothing per
batch when no state changed.

A fence names, for each state partition written, the position after its last record, so that
a worker already there routes at once. A worker that is not, or that cannot read the fence,
asks the end offsets then and waits for them: they cover every genuine fence, so a damaged or
forged fence costs one round trip, never a wait for positions that will not come.

A fence that the previous owner of a partition passed and committed is not read again by the
next: a worker therefore asks the end offsets once before routing partitions it was newly
assigned (:class:`streams.worker.RoutingService`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from schemas.catalog import Catalog
from streams.settings import Settings
from streams.topics import topic_partitions

FENCE_HEADER = "circulation-fence"
"""The header that marks a record of a provider topic as a fence, not an event."""
FENCE_KEY = b"circulation-fence"

Positions = dict[TopicPartition, int]
"""For each state partition, the offset a follower must have reached (the next one to read)."""


def positions_after(written: Iterable[RecordMetadata]) -> Positions:
    """The position after the last record written on each partition."""
    positions: Positions = {}
    for sent in written:
        partition = TopicPartition(sent.topic, sent.partition)
        positions[partition] = max(positions.get(partition, 0), sent.offset + 1)
    return positions


def is_fence(headers: Sequence[tuple[str, Any]]) -> bool:
    """Whether a provider topic record is a fence (it carries the fence header)."""
    return any(name == FENCE_HEADER for name, _ in headers)


def encode_fence(positions: Positions) -> bytes:
    """A fence's value: ``{"topic": {"partition": position}}`` as JSON, readable by anyone."""
    by_topic: dict[str, dict[str, int]] = {}
    for partition, position in sorted(positions.items()):
        by_topic.setdefault(partition.topic, {})[str(partition.partition)] = position
    return json.dumps(by_topic, sort_keys=True).encode()


def read_fence(value: bytes | None) -> Positions | None:
    """The positions a fence names; None when it cannot be read (the worker then asks the end
    offsets, which cover any genuine fence)."""
    try:
        by_topic = json.loads(value or b"")
        return {TopicPartition(topic, int(partition)): int(position)
                for topic, positions in by_topic.items()
                for partition, position in positions.items()}
    except (ValueError, TypeError, AttributeError):
        return None


async def raise_fences(settings: Settings, producer: AIOKafkaProducer, catalog: Catalog,
                       written: Iterable[RecordMetadata]) -> int:
    """Write a fence behind acknowledged state records on every provider partition; return how
    many, once every one is acknowledged.

    ``producer`` must wait for all replicas (``acks="all"``): a fence a broker could lose would
    let an event overtake the change it guards. A provider topic that does not exist yet holds
    no event to fence: workers create every provider topic before they subscribe, and fence
    partitions they are newly assigned anyway.
    """
    positions = positions_after(written)
    if not positions:
        return 0
    value = encode_fence(positions)
    partitions = await topic_partitions(settings, catalog.provider_topics(), missing_ok=True)
    sends = [await producer.send(p.topic, value, key=FENCE_KEY, partition=p.partition,
                                 headers=[(FENCE_HEADER, b"1")])
             for p in partitions]
    for sent in sends:
        await sent
    return len(sends)
