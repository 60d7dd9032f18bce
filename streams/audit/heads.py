"""The heads of the audit chains a worker extends: read from the topic, never guessed.

A worker extends a chain only from the hash of its last record on ``bus.audit``. After a
rebalance another worker may have extended a chain this one wrote before, so every head is
forgotten on assignment and read again, after this worker's own pending writes have landed,
before the first decision linked to it. An unreadable head stops routing rather than start an
unlinked chain that would no longer prove what came before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import TopicPartition

from schemas.codec import DecodeError
from schemas.serde import AvroSerde
from streams.audit.chain import GENESIS, AuditChains
from streams.kafka import clients
from streams.kafka.admin import topic_partitions
from streams.kafka.topics import AUDIT
from streams.settings import Settings

HEAD_READ_TIMEOUT_S = 10.0
"""How long reading the last offsets of a chain may take before routing stops on it."""


class ChainHeads:
    """The one owner of a worker's chain heads: how many chains, which heads are known."""

    def __init__(self, settings: Settings, serde: AvroSerde, reader: Any,
                 chains: AuditChains) -> None:
        self._settings = settings
        self._serde = serde
        self._reader = reader
        self.chains = chains

    async def start(self) -> None:
        """Learn how many chains there are (one per partition of ``bus.audit``)."""
        self.chains.partitions = len(await topic_partitions(self._settings, [AUDIT]))

    def reset(self) -> None:
        """Forget every head: after a rebalance, another worker may have extended them."""
        self.chains.heads.clear()

    async def ensure(self, source_partitions: Iterable[int],
                     settle: Callable[[], Awaitable[None]]) -> None:
        """Know the head of the chain of every one of ``source_partitions``; ``settle`` is
        awaited first when a head must be read, since a head read before this worker's own
        writes land is stale."""
        chains = self.chains
        missing = {chains.chain_of(p) for p in source_partitions} - chains.heads.keys()
        if missing:
            await settle()
            chains.heads.update(await recover_heads(self._settings, self._serde, self._reader,
                                                    sorted(missing)))


async def recover_heads(settings: Settings, serde: AvroSerde, reader: Any,
                        partitions: list[int], topic: str = AUDIT) -> dict[int, str]:
    """The ``record_hash`` of the last record of each audit partition (GENESIS when it has none).

    Whatever hashed form that record uses, the next record links to its hash; the chain's
    form changes with the first record this worker writes.
    """
    consumer = clients.consumer(settings, enable_auto_commit=False,
                                isolation_level="read_uncommitted")
    await consumer.start()
    try:
        wanted = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(wanted)
        ends = await consumer.end_offsets(wanted)
        starts = await consumer.beginning_offsets(wanted)
        heads = {}
        for tp in wanted:
            heads[tp.partition] = GENESIS
            head = await _last_record(consumer, tp, starts[tp], ends[tp])
            if head is not None:
                await serde.fetch_writers([head.value])  # off the event loop
                heads[tp.partition] = _head_hash(serde, reader, head)
        return heads
    finally:
        await consumer.stop()


async def _last_record(consumer: Any, tp: TopicPartition, start: int, end: int) -> Any | None:
    """The last record before ``end``, None when there is none. The last offsets may be
    transaction markers, which take offsets but are never returned, so the read starts one
    offset back, then twice as far each time it finds nothing, and ends at the consumer's
    position, not at a record."""
    back = 1
    while end > start:
        first = max(start, end - back)
        consumer.seek(tp, first)
        found = await _read_to(consumer, tp, end)
        if found:
            return found[-1]
        if first == start:
            break
        back *= 2
    return None


async def _read_to(consumer: Any, tp: TopicPartition, end: int) -> list[Any]:
    """The records of ``tp`` from the consumer's position up to ``end``."""
    records: list[Any] = []
    deadline = asyncio.get_running_loop().time() + HEAD_READ_TIMEOUT_S
    while await consumer.position(tp) < end:
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"cannot read the head of audit chain {tp.partition}")
        fetched = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
        records += [r for r in fetched if r.offset < end]
    return records


def _head_hash(serde: AvroSerde, reader: Any, head: Any) -> str:
    """The hash a new record must link to; an unreadable head stops routing rather than start
    an unlinked chain that would no longer prove what came before it."""
    where = f"the head of audit chain {head.partition} ({head.topic} offset {head.offset})"
    if head.value is None:
        raise AuditChainError(f"{where} is an empty value (a tombstone), so no decision can be "
                              "linked to it")
    try:
        return str(serde.decode(head.value, reader)[1]["record_hash"])
    except DecodeError as exc:
        raise AuditChainError(
            f"{where} cannot be read, so no decision can be linked to it: {exc}") from exc


class AuditChainError(RuntimeError):
    """The audit chain cannot be extended; routing must stop until an operator looks."""
