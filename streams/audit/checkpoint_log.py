"""The signed checkpoints as kept on ``bus.audit.checkpoints``, read back whole."""

from __future__ import annotations

from datetime import timedelta

import structlog
from aiokafka import TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from schemas.serde import AvroSerde
from streams.audit.chain import NotARecord
from streams.audit.checkpoints import (
    Checkpoint,
    CheckpointReport,
    PartitionRecords,
    check_against,
)
from streams.audit.trail import Chains
from streams.kafka import clients
from streams.kafka.admin import described_configs, end_offsets, topic_partitions
from streams.kafka.topics import AUDIT, AUDIT_CHECKPOINTS
from streams.settings import Settings

log = structlog.get_logger(__name__)


async def read_checkpoints(settings: Settings) -> list[Checkpoint]:
    """Every checkpoint on the topic up to its end offsets now, oldest first. A record that
    does not read as one is skipped with a warning: it proves nothing, and the verifier
    relies only on those whose signature holds."""
    ends = await end_offsets(settings, [AUDIT_CHECKPOINTS], missing_ok=True)
    if not any(ends.values()):
        return []
    serde = AvroSerde(clients.schema_registry(settings))
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    found: list[Checkpoint] = []
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        while [p for p, end in ends.items() if await consumer.position(p) < end]:
            messages = [m for batch in (await consumer.getmany(timeout_ms=500)).values()
                        for m in batch if m.offset < ends[TopicPartition(m.topic, m.partition)]]
            await serde.fetch_writers(m.value for m in messages)
            for message in messages:
                try:
                    found.append(Checkpoint.from_record(serde.decode(message.value)[1]))
                except Exception as exc:  # a damaged record must not hide the others
                    log.warning("checkpoint record unreadable, skipped",
                                partition=message.partition, offset=message.offset,
                                error=type(exc).__name__)
    finally:
        await consumer.stop()
    return sorted(found, key=lambda c: c.signed_at)


async def log_starts(settings: Settings, topic: str = AUDIT) -> dict[int, int]:
    """Where each partition of ``topic`` begins now: records before were removed by
    retention, which a checkpoint of them must not read as tampering."""
    partitions = await topic_partitions(settings, [topic])
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp.partition: offset
                for tp, offset in (await consumer.beginning_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def retention_ms(settings: Settings, topic: str = AUDIT) -> timedelta | None:
    """How long ``topic`` keeps records (its ``retention.ms``); None when forever (-1)."""
    async with clients.admin(settings) as admin:
        described = await described_configs(admin, [topic])
    kept = described.get(topic, {}).get("retention.ms")
    if kept is None or int(kept) < 0:
        return None
    return timedelta(milliseconds=int(kept))


def prove_heads(chains: Chains, starts: dict[int, int], checkpoints: list[Checkpoint],
                public: Ed25519PublicKey,
                retention: timedelta | None = None) -> CheckpointReport:
    """The trail as read (``chains``, from ``starts``) held against the checkpoints: the
    routing chain of each partition, which its worker signs."""
    partitions = {}
    for partition, entries in chains.items():
        if isinstance(partition, str):  # a sink's chain: workers sign the routing chains only
            continue
        start = starts.get(partition, entries[0][0] if entries else 0)
        end = entries[-1][0] + 1 if entries else start
        partitions[partition] = PartitionRecords(start, end, {
            offset: str(entry["record_hash"]) for offset, entry in entries
            if not isinstance(entry, NotARecord) and "record_hash" in entry})
    return check_against(checkpoints, public, partitions, retention)
