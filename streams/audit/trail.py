"""The audit trail read back from ``bus.audit``, to prove every chain intact.

Reads every partition from its beginning to the end offsets seen when it starts, so a
verification covers a fixed trail while workers go on writing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.catalog import Catalog
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.audit.chain import ChainBreak, verify_chain
from streams.kafka import clients
from streams.kafka.admin import existing_topics, topic_partitions
from streams.kafka.topics import AUDIT
from streams.settings import Settings

Chains = dict[int, list[tuple[int, dict[str, Any]]]]
"""Decoded audit records per chain (partition), as (offset, record) in offset order."""


@dataclass(frozen=True)
class Verification:
    """What a verification of the whole trail found."""

    chains: int
    records: int
    breaks: list[ChainBreak]


async def read_chains(settings: Settings, since: dict[int, int] | None = None) -> Chains:
    """Every audit record, per partition, in offset order, up to the end offsets seen now;
    from the offsets ``since`` names (per partition) instead of the beginning."""
    serde = AvroSerde(SchemaRegistry(settings.schema_registry_url))
    reader = Catalog.load().bus_record("audit").latest.parsed
    partitions = await topic_partitions(settings, [AUDIT])
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    chains: Chains = {tp.partition: [] for tp in partitions}
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            if since and since.get(tp.partition, 0) > starts[tp]:
                consumer.seek(tp, since[tp.partition])
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions
                   if ends[tp] > max(starts[tp], (since or {}).get(tp.partition, 0))}
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=1000,
                                                       max_records=50_000)).items():
                chains[tp.partition] += [(r.offset, serde.decode(r.value, reader)[1])
                                         for r in records]
                if records and records[-1].offset + 1 >= ends[tp]:
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
    partitions = await topic_partitions(settings, [AUDIT])
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp.partition: offset for tp, offset in
                (await consumer.end_offsets(partitions)).items()} if partitions else {}
    finally:
        await consumer.stop()


async def verify_since(settings: Settings, since: dict[int, int]) -> Verification:
    """Check the records written to every chain since the offsets ``since`` names: each links
    to the one before it and its hash recomputes (the first of each chain is the anchor)."""
    if not await _audit_exists(settings):
        return Verification(0, 0, [])
    chains = await read_chains(settings, {p: max(o - 1, 0) for p, o in since.items()})
    breaks: list[ChainBreak] = []
    for partition, records in sorted(chains.items()):
        if since.get(partition, 0) > 0 and records:
            anchor, *records = records
            breaks += verify_chain(partition, records, anchor[1]["record_hash"])
        else:
            breaks += verify_chain(partition, records)
    return Verification(len(chains), sum(len(r) for r in chains.values()), breaks)


async def verify_trail(settings: Settings) -> Verification:
    """Recompute every hash of every chain of ``bus.audit``."""
    chains = await read_chains(settings)
    breaks: list[ChainBreak] = []
    for partition, records in sorted(chains.items()):
        breaks += verify_chain(partition, records)
    return Verification(len(chains), sum(len(r) for r in chains.values()), breaks)
