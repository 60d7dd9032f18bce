"""The audit trail read back from ``bus.audit``, to prove every chain intact.

Reads every partition from its beginning to the end offsets seen when it starts, so a
verification covers a fixed trail while workers and sinks go on writing. A partition holds its
routing chain and any sink's chain whose key falls on it (:func:`~streams.audit.chain.named_chain`);
each is verified on its own. What is no record at all (an offset no record came from) is a break
of the partition's routing chain, where the bus's own writes are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from schemas.catalog import Catalog
from schemas.codec import DecodeError
from schemas.serde import AvroSerde
from streams.audit.chain import (
    GENESIS,
    ChainBreak,
    Entry,
    NotARecord,
    hashed_form,
    named_chain,
    verify_chain,
)
from streams.kafka import clients
from streams.kafka.admin import end_offsets, existing_topics, topic_partitions
from streams.kafka.topics import AUDIT
from streams.settings import Settings

ChainId = int | str
"""A chain: the routing chain of a partition (its number), or a sink's chain (its name)."""
Chains = dict[ChainId, list[Entry]]
"""Every offset of each chain as read, in offset order: its decoded audit record, or why it
holds none."""


@dataclass(frozen=True)
class Verification:
    """What a verification of the whole trail found."""

    chains: int
    records: int
    breaks: list[ChainBreak]


class _ChainReader:
    """Reads chains to fixed end offsets, turning what is not an audit record into an entry
    that says why, so that one bad offset is a break to report, not the end of the check."""

    def __init__(self, serde: AvroSerde, reader: Any, ends: Mapping[TopicPartition, int],
                 firsts: Mapping[TopicPartition, int]) -> None:
        self._serde = serde
        self._reader = reader
        self.ends = ends
        self.expected = dict(firsts)
        """Per partition, the next offset a record would have if no offset were skipped."""
        self.chains: Chains = {tp.partition: [] for tp in firsts}
        self.homes: dict[ChainId, int] = {tp.partition: tp.partition for tp in firsts}
        """The partition each chain is on."""

    def add(self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]) -> None:
        """Take ``records`` read from ``tp`` (those past its end offset belong to a later
        verification)."""
        for record in records:
            if record.offset >= self.ends[tp]:
                return
            self._skip_to(tp, record.offset)
            name = named_chain(record.key)
            chain: ChainId = tp.partition if name is None else name
            self.homes.setdefault(chain, tp.partition)
            self.chains.setdefault(chain, []).append((record.offset, self._entry(record.value)))
            self.expected[tp] = record.offset + 1

    def finish(self, tp: TopicPartition) -> None:
        """``tp`` was read up to its end offset: what remains unseen before it is a gap."""
        self._skip_to(tp, self.ends[tp])

    def _skip_to(self, tp: TopicPartition, offset: int) -> None:
        """Offsets before ``offset`` that no record came from: on an append-only topic never
        compacted, control records (transaction markers), which the bus never writes there."""
        first = self.expected[tp]
        if offset <= first:
            return
        what = ("at this offset (a transaction marker" if offset - first == 1 else
                f"at this offset and the {offset - first - 1} after it (transaction markers")
        self.chains[tp.partition].append((first, NotARecord(
            f"no record a consumer reads {what}: something other than the bus wrote to the "
            "audit trail)")))

    def _entry(self, value: bytes | None) -> Mapping[str, Any] | NotARecord:
        if value is None:
            return NotARecord("an empty value (a tombstone), not an audit record")
        try:
            return dict(self._serde.decode(value, self._reader)[1])
        except DecodeError:  # its message may quote the bytes: only the kind is said
            return NotARecord("not an audit record: its value cannot be decoded as one")


async def read_chains(settings: Settings, since: dict[int, int] | None = None,
                      topic: str = AUDIT) -> Chains:
    """Every offset of every chain of ``topic``, in offset order, up to the end offsets seen
    now; from the offsets ``since`` names (per partition) instead of the beginning."""
    return (await _read(settings, since, topic)).chains


async def _read(settings: Settings, since: dict[int, int] | None, topic: str) -> _ChainReader:
    """The chains of ``topic`` as :func:`read_chains` reads them, with the partition of each.

    Reading stops at a partition once the consumer's position reaches its end offset, not its
    last record's: the last offsets may be transaction markers, which no consumer ever sees.
    Aborted records are read too (``read_uncommitted``): they sit in the log like any other,
    and must prove themselves or show as breaks.
    """
    serde = AvroSerde(clients.schema_registry(settings))
    reader = Catalog.load().bus_record("audit").latest.parsed
    partitions = await topic_partitions(settings, [topic])
    consumer = clients.consumer(settings, enable_auto_commit=False,
                                isolation_level="read_uncommitted")
    await consumer.start()
    try:
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        firsts = {tp: max(starts[tp], (since or {}).get(tp.partition, 0)) for tp in partitions}
        for tp, first in firsts.items():
            consumer.seek(tp, first)
        chains = _ChainReader(serde, reader, await consumer.end_offsets(partitions), firsts)
        pending = {tp for tp in partitions if chains.ends[tp] > firsts[tp]}
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=1000,
                                                       max_records=50_000)).items():
                chains.add(tp, records)
            for tp in list(pending):
                if await consumer.position(tp) >= chains.ends[tp]:
                    chains.finish(tp)
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return chains


async def _audit_exists(settings: Settings) -> bool:
    """Whether ``bus.audit`` exists, asked without describing it: describing a topic that does
    not exist may have a broker create it with its defaults (``auto.create.topics.enable``)."""
    return AUDIT in await existing_topics(settings, AUDIT)


async def audit_ends(settings: Settings) -> dict[int, int]:
    """The end offset of every audit chain now: where the records written from now on begin
    (none when no chain exists yet)."""
    if not await _audit_exists(settings):
        return {}
    return {tp.partition: offset for tp, offset in (await end_offsets(settings, [AUDIT])).items()}


def _verification(read: _ChainReader, since: dict[int, int]) -> Verification:
    """Verify each chain; one read from the offset before ``since`` starts from what is there,
    the anchor, which is not counted: the record the first checked one of its chain must link
    to, or a break of its own when it is none (the first link is then taken as it is). The
    other chains of that partition start with no anchor: their first link is taken as it is."""
    breaks: list[ChainBreak] = []
    checked = 0
    for chain, entries in sorted(read.chains.items(), key=lambda item: _order(read, item[0])):
        partition = read.homes[chain]
        name = chain if isinstance(chain, str) else None
        previous: str | None = GENESIS
        newest_form = 1
        start = since.get(partition, 0)
        if start > 0:
            previous = None
            if entries and entries[0][0] == start - 1:
                (offset, anchor), *entries = entries
                if isinstance(anchor, NotARecord):
                    breaks.append(ChainBreak(partition, offset, anchor.reason, name))
                else:
                    previous, newest_form = anchor["record_hash"], hashed_form(anchor)
        breaks += verify_chain(partition, entries, previous, newest_form, name)
        checked += len(entries)
    return Verification(len(read.chains), checked, breaks)


def _order(read: _ChainReader, chain: ChainId) -> tuple[int, str]:
    """Chains by partition, the routing chain first, then sinks' by name."""
    return read.homes[chain], chain if isinstance(chain, str) else ""


async def verify_since(settings: Settings, since: dict[int, int]) -> Verification:
    """Check the records written to every chain since the offsets ``since`` names: each links
    to the one before it and its hash recomputes (the first of each chain is the anchor)."""
    if not await _audit_exists(settings):
        return Verification(0, 0, [])
    read = await _read(settings, {p: max(o - 1, 0) for p, o in since.items()}, AUDIT)
    return _verification(read, since)


async def verify_trail(settings: Settings, topic: str = AUDIT) -> Verification:
    """Recompute every hash of every chain of ``topic`` (the audit trail, unless a test points
    it at a topic of its own)."""
    return _verification(await _read(settings, None, topic), {})


async def read_trail(settings: Settings, topic: str = AUDIT) -> tuple[Verification, Chains]:
    """Verify every chain of ``topic`` and hand back what was read, so that the signed
    checkpoints are held against the same records (:mod:`streams.audit.checkpoint_log`)."""
    read = await _read(settings, None, topic)
    return _verification(read, {}), read.chains
