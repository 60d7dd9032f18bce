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
from streams.audit.chain import GENESIS, ChainBreak, verify_chain
from streams.kafka import clients
from streams.kafka.admin import end_offsets, existing_topics, topic_partitions
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
    return {tp.partition: offset for tp, offset in (await end_offsets(settings, [AUDIT])).items()}


def _verification(chains: Chains, since: dict[int, int]) -> Verification:
    """Verify each chain; one read from the record before ``since`` (its offset there) starts
    from that record, the anchor, which is not counted."""
    breaks: list[ChainBreak] = []
    checked = 0
    for partition, records in sorted(chains.items()):
        previous = GENESIS
        if since.get(partition, 0) > 0 and records:
            (_, anchor), *records = records
            previous = anchor["record_hash"]
        breaks += verify_chain(partition, records, previous)
        checked += len(records)
    return Verification(len(chains), checked, breaks)


async def verify_since(settings: Settings, since: dict[int, int]) -> Verification:
    """Check the records written to every chain since the offsets ``since`` names: each links
    to the one before it and its hash recomputes (the first of each chain is the anchor)."""
    if not await _audit_exists(settings):
        return Verification(0, 0, [])
    chains = await read_chains(settings, {p: max(o - 1, 0) for p, o in since.items()})
    return _verification(chains, since)


async def verify_trail(settings: Settings) -> Verification:
    """Recompute every hash of every chain of ``bus.audit``."""
    return _verification(await read_chains(settings), {})
