"""How fast ``circulation audit verify`` proves a chain: audit records per second.

On a fresh private stack (ports of its own, a temporary run folder, the jar cache shared): one
chain of ``--count`` audit records (default 100,000) on a one-partition topic, written as a
worker writes them (Avro, hash-chained, form of the current schema), and a signed checkpoint
of its head every 1,000 records, as the workers sign theirs. Then, ``--repeat`` times:

- **verification**: the chain read back and every hash recomputed, and the trail held against
  every checkpoint (signatures checked, each signed head found): what ``audit verify`` does;
- **reading alone**, in the same round: the same records consumed and decoded, nothing
  verified: the part of the time that is Kafka and Avro, not the proof.

Run: ``.venv/bin/python tests/benchmarks/audit_verify.py [--count 100000] [--repeat 3]``, from
the repository root. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.serde import AvroSerde
from streams.audit.chain import AuditChains
from streams.audit.checkpoint_log import log_starts, prove_heads
from streams.audit.checkpoints import Checkpoint, Head, sign
from streams.audit.encoder import AuditEncoder
from streams.audit.trail import read_trail
from streams.dev.localstack import LocalStack
from streams.dev.settings import LocalStackSettings
from streams.kafka import clients
from streams.kafka.admin import ensure_topics
from streams.kafka.topics import TopicSpec
from streams.settings import Settings

STACK = LocalStackSettings(local_kafka_port=29892, local_controller_port=29893,
                           local_registry_port=29881, local_identity_port=29880)
TOPIC = "bench.audit"
CHECKPOINT_EVERY = 1000
AUDIT = Catalog.load().bus_record("audit").latest


async def write_chain(settings: Settings, count: int, key: Ed25519PrivateKey
                      ) -> list[Checkpoint]:
    """The chain on :data:`TOPIC`, and the checkpoints its writer signed."""
    await ensure_topics(settings, [TopicSpec(TOPIC, 1, 1, {"retention.ms": "-1"})])
    serde = AvroSerde(clients.schema_registry(settings))
    encoder = AuditEncoder(AUDIT.raw)
    chains = AuditChains()
    decided = datetime(2026, 12, 1, tzinfo=UTC)
    producer = clients.producer(settings, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    checkpoints = []
    try:
        for first in range(0, count, CHECKPOINT_EVERY):
            sends = []
            for index in range(first, min(first + CHECKPOINT_EVERY, count)):
                record = chains.record(
                    0, event_id=str(uuid.uuid4()), contract_id="lyon-cantine-2026",
                    subscriber="ville-de-lyon", provider="cnaf", dataset="quotient_familial",
                    subject_ref=f"sr1_{index:064x}", reason=None if index % 3 else "no_consent",
                    fields_delivered=("quotient_familial", "annee"),
                    decided_at=decided + timedelta(milliseconds=index),
                    delivery_id=str(uuid.uuid4()))
                value = serde.framed(value_subject(TOPIC), AUDIT, encoder.encode(record))
                sends.append(await producer.send(TOPIC, value, key=b"sr1", partition=0))
            written = await asyncio.gather(*sends)
            checkpoints.append(sign(key, [Head(0, written[-1].offset, chains.heads[0])],
                                    datetime.now(UTC)))
    finally:
        await producer.stop()
    return checkpoints


async def verification(settings: Settings, checkpoints: list[Checkpoint],
                       key: Ed25519PrivateKey, count: int) -> float:
    started = time.perf_counter()
    found, chains = await read_trail(settings, TOPIC)
    proof = prove_heads(chains, await log_starts(settings, TOPIC), checkpoints, key.public_key())
    elapsed = time.perf_counter() - started
    assert found.records == count, found.records
    assert not found.breaks, found.breaks[:3]
    assert not proof.problems, proof.problems[:3]
    assert proof.checkpoints == len(checkpoints)
    return elapsed


async def reading(settings: Settings, count: int) -> float:
    """The records consumed and decoded, nothing verified."""
    serde = AvroSerde(clients.schema_registry(settings))
    consumer = clients.consumer(settings, enable_auto_commit=False)
    started = time.perf_counter()
    await consumer.start()
    try:
        partition = TopicPartition(TOPIC, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        read = 0
        while read < count:
            for messages in (await consumer.getmany(timeout_ms=1000,
                                                    max_records=50_000)).values():
                for message in messages:
                    serde.decode(message.value, AUDIT.parsed)
                read += len(messages)
    finally:
        await consumer.stop()
    return time.perf_counter() - started


def main(count: int, repeat: int) -> None:
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as folder:
        local = STACK.model_copy(update={"local_data_dir": Path(folder) / "stack"})
        stack = LocalStack(local)
        settings = local.bus_settings()
        stack.up(fresh=True)
        try:
            checkpoints = asyncio.run(write_chain(settings, count, key))
            rounds = [(asyncio.run(verification(settings, checkpoints, key, count)),
                       asyncio.run(reading(settings, count))) for _ in range(repeat)]
        finally:
            stack.down()
    verify_rates = [count / v for v, _ in rounds]
    read_rates = [count / r for _, r in rounds]
    print(f"| audit verify, one chain of {count:,} records, {len(checkpoints)} signed "
          f"checkpoints, {repeat} rounds | median | range |")
    print("|---|---|---|")
    for name, values in (("verified, records/s", verify_rates),
                         ("read and decoded alone, records/s", read_rates)):
        print(f"| {name} | {statistics.median(values):,.0f} | "
              f"{min(values):,.0f}–{max(values):,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    main(arguments.count, arguments.repeat)
