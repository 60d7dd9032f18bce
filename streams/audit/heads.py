"""The heads of the audit chains a worker extends: read from the topic, never guessed.

A worker extends a chain only from the hash of its last record on ``bus.audit``. After a
rebalance another worker may have extended a chain this one wrote before, so every head is
forgotten on assignment and read again, after this worker's own pending writes have landed,
before the first decision linked to it. An unreadable head stops routing rather than start an
unlinked chain that would no longer prove what came before it.

A partition also holds the chains of sinks whose key falls on it
(:func:`~streams.audit.chain.named_chain`): a head is the last record *of its chain*, found by
reading back from the end, past the other chains' records, by their keys alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from schemas.codec import DecodeError
from schemas.serde import AvroSerde
from streams.audit.chain import GENESIS, AuditChains, named_chain
from streams.kafka import clients
from streams.kafka.admin import topic_partitions
from streams.kafka.partitioning import kafka_partition
from streams.kafka.topics import AUDIT
from streams.settings import Settings

HEAD_READ_TIMEOUT_S = 10.0
"""How long reading back towards a chain's head may go without progress before routing (or
the sink) stops on it."""
Belongs = Callable[[ConsumerRecord[Any, Any]], bool]
"""Whether a record read back is one of the chain whose head is looked for."""


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
    form changes with the first record this worker writes. The records of sinks' chains on
    the partition are not the routing chain's, and are read past.
    """
    def routing(record: ConsumerRecord[Any, Any]) -> bool:
        return named_chain(record.key) is None

    heads = {}
    for partition, head in (await _last_records(settings, topic, partitions, routing)).items():
        heads[partition] = GENESIS
        if head is not None:
            await serde.fetch_writers([head.value])  # off the event loop
            heads[partition] = _head_hash(serde, reader, head)
    return heads


async def recover_named_head(settings: Settings, serde: AvroSerde, reader: Any, chain: str,
                             topic: str = AUDIT) -> tuple[int, Mapping[str, Any] | None]:
    """The partition of the sink's chain ``chain`` (its key's, as any producer places it) and
    its last record, decoded (None when the chain has none yet).

    Reading back costs the records written to that partition since the chain's last one; a
    chain's first start reads the whole partition, once.
    """
    key = chain.encode()
    partition = kafka_partition(key, len(await topic_partitions(settings, [topic])))

    def own(record: ConsumerRecord[Any, Any]) -> bool:
        return bool(record.key == key)

    head = (await _last_records(settings, topic, [partition], own))[partition]
    if head is None:
        return partition, None
    await serde.fetch_writers([head.value])  # off the event loop
    _head_hash(serde, reader, head)  # an unreadable head stops the sink as it stops routing
    return partition, dict(serde.decode(head.value, reader)[1])


async def last_of_keys(settings: Settings, serde: AvroSerde, reader: Any, partition: int,
                       keys: Iterable[bytes], topic: str = AUDIT
                       ) -> dict[bytes, Mapping[str, Any] | None]:
    """The last record of ``partition`` under each of ``keys``, decoded (None for a key with
    none), found in one read back from the end: a worker taking a state partition over learns
    from there which of its state records were audited already. Reading back costs the records
    written since the oldest of them; a key never written reads the whole partition, once."""
    wanted = set(keys)
    found: dict[bytes, Any] = {}

    def belongs(record: ConsumerRecord[Any, Any]) -> bool:
        if record.key in wanted:
            found.setdefault(record.key, record)  # read newest first: the first seen is last
        return wanted <= found.keys()

    await _last_records(settings, topic, [partition], belongs, newest_first=True)
    await serde.fetch_writers(record.value for record in found.values())  # off the event loop
    decoded: dict[bytes, Mapping[str, Any] | None] = dict.fromkeys(wanted)
    for key, record in found.items():
        _head_hash(serde, reader, record)  # an unreadable record stops as a head's would
        decoded[key] = dict(serde.decode(record.value, reader)[1])
    return decoded


async def _last_records(settings: Settings, topic: str, partitions: list[int],
                        belongs: Belongs, newest_first: bool = False) -> dict[int, Any | None]:
    """The last record of each of ``partitions`` that ``belongs`` to the chain sought;
    ``newest_first``: each window is shown to ``belongs`` from its newest record back, and the
    read goes back until ``belongs`` holds for one (a predicate that remembers what it saw)."""
    consumer = clients.consumer(settings, enable_auto_commit=False,
                                isolation_level="read_uncommitted")
    await consumer.start()
    try:
        wanted = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(wanted)
        ends = await consumer.end_offsets(wanted)
        starts = await consumer.beginning_offsets(wanted)
        return {tp.partition: await _last_record(consumer, tp, starts[tp], ends[tp], belongs,
                                                 newest_first)
                for tp in wanted}
    finally:
        await consumer.stop()


async def _last_record(consumer: Any, tp: TopicPartition, start: int, end: int,
                       belongs: Belongs, newest_first: bool = False) -> Any | None:
    """The last record before ``end`` that ``belongs``, None when there is none. The last
    offsets may be transaction markers, which take offsets but are never returned, and other
    chains' records may come after the one sought, so the read goes back in windows, each
    twice as long as the one after it, each read to the consumer's position, not to a
    record."""
    back = 1
    while end > start:
        first = max(start, end - back)
        consumer.seek(tp, first)
        window = await _read_to(consumer, tp, end)
        if newest_first:
            window.reverse()
        found = [record for record in window if belongs(record)]
        if found:
            return found[-1]
        end = first
        back *= 2
    return None


async def _read_to(consumer: Any, tp: TopicPartition, end: int) -> list[Any]:
    """The records of ``tp`` from the consumer's position up to ``end``; it gives up when no
    record came for :data:`HEAD_READ_TIMEOUT_S`."""
    records: list[Any] = []
    clock = asyncio.get_running_loop().time
    deadline = clock() + HEAD_READ_TIMEOUT_S
    while await consumer.position(tp) < end:
        if clock() > deadline:
            raise RuntimeError(f"cannot read the head of audit chain {tp.partition}")
        fetched = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
        if fetched:
            deadline = clock() + HEAD_READ_TIMEOUT_S
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
