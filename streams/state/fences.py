"""Fences: how a change of state overtakes every event published after it.

A consent withdrawal, a release from a population or a revoked contract must be in force for
every event published after the command that recorded it returned. Routing workers read the
state topics on a consumer of their own, so nothing orders a state record against an event on a
provider topic. A fence does. Once its state records are acknowledged, the command writes one
fence record to every partition of every provider topic, and returns only when those are
acknowledged too. An event published after the command returned therefore sits behind the fence
in its partition, and a worker routes nothing behind a fence before its state follower has
applied the positions the fence names (:class:`FenceGate`).

Why not ask the state topics' end offsets before every batch, as the workers did: that is one
``ListOffsets`` round trip on the path of every event, for changes that are rare next to events.
Under load that round trip was a visible share of a batch's latency, and more when the broker
answered slowly. A fence costs one record per provider partition per state change, and nothing per
batch when no state changed.

A fence names, for each state partition written, the position after its last record, so that
a worker already there routes at once. A worker that is not, or that cannot read the fence,
asks the end offsets then and waits for them: they cover every genuine fence, so a damaged or
forged fence costs one round trip, never a wait for positions that will not come. A record
that carries the fence header but does not read as a fence is routed like any other, so it
becomes a dead letter with its error rather than vanishing.

A fence that the previous owner of a partition passed and committed is not read again by the
next: :class:`FenceGate` therefore asks the end offsets once before routing a partition it has
not routed since it was last assigned.

A command that finds nothing to change (a contract applied again, a revocation already
recorded) fences all the same, at the positions it read: it may be the retry of one whose
fences failed after its records were written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from streams.kafka.admin import existing_topics, topic_partitions
from streams.kafka.topics import PROVIDER_PREFIX
from streams.settings import Settings

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
    # Anyone may write one; JSON reads 1e400 as infinity, which no int holds.
    except (ValueError, TypeError, AttributeError, RecursionError, OverflowError):
        return None


async def raise_fences(settings: Settings, producer: AIOKafkaProducer,
                       positions: Positions) -> int:
    """Write a fence naming ``positions`` (state already acknowledged) on every partition of
    every provider topic of the cluster; return how many, once every one is acknowledged.

    ``producer`` must wait for all replicas (``acks="all"``): a fence a broker could lose would
    let an event overtake the change it guards. The topics are the cluster's, not a catalog's:
    a worker running a newer catalog may route a topic this command's catalog does not know.
    """
    if not positions:
        return 0
    value = encode_fence(positions)
    topics = await existing_topics(settings, PROVIDER_PREFIX)
    partitions = await topic_partitions(settings, topics) if topics else []
    sends = [await producer.send(p.topic, value, key=FENCE_KEY, partition=p.partition,
                                 headers=[(FENCE_HEADER, b"1")])
             for p in partitions]
    for sent in sends:
        await sent
    return len(sends)


class StateProgress(Protocol):
    """What a :class:`FenceGate` asks of the worker's state follower."""

    def reached(self, positions: Positions) -> bool: ...

    async def barrier(self) -> None: ...

    def ensure_following(self) -> None: ...


class ProviderRecord(Protocol):
    """What a :class:`FenceGate` reads of a provider topic record."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, Any]]: ...


_Record = TypeVar("_Record", bound=ProviderRecord)


class FenceGate:
    """Lets a batch be routed only once routing it cannot overtake a state change."""

    def __init__(self, state: StateProgress) -> None:
        self._state = state
        self._covered: set[tuple[str, int]] = set()
        """Partitions routed since a barrier, while this worker held them without a break."""
        self._releases = 0

    def release(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions revoked or assigned: another worker may pass fences there before this
        one routes them again, so the next batch from any of them waits for a barrier."""
        self._covered.difference_update(partitions)
        self._releases += 1

    async def admit(self, records: Sequence[_Record]) -> list[_Record]:
        """Wait until ``records`` may be routed; return those to route (every record but the
        fences, which are acknowledged with their batch, neither routed nor audited).

        One barrier serves the whole batch: every fence in it was written before the batch was
        read, so the end offsets asked now cover them all.
        """
        self._state.ensure_following()
        partitions = {(r.topic, r.partition) for r in records}
        behind = not partitions <= self._covered
        events = []
        for record in records:
            if not is_fence(record.headers):
                events.append(record)
                continue
            positions = read_fence(record.value) if record.key == FENCE_KEY else None
            if positions is None:
                events.append(record)  # not a fence the bus wrote: routing dead-letters it
            behind = behind or positions is None or not self._state.reached(positions)
        while behind:
            releases = self._releases
            await self._state.barrier()
            # A rebalance meanwhile may have given partitions away and back, their state
            # restored from an older point: the barrier is asked again, until one ran through.
            behind = releases != self._releases
            if not behind:
                self._covered |= partitions
        return events
