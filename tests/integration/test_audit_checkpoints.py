"""Signed checkpoints on the real broker: the session's workers sign the heads of the chains
they extend; each signature holds under the key's public half, and each signed head is the
record at its offset of ``bus.audit``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from streams.audit.checkpoint_log import read_checkpoints
from streams.audit.checkpoints import (
    Checkpoint,
    Head,
    key_id,
    read_public_key,
    signature_holds,
    signing_key,
)
from streams.kafka import clients
from streams.kafka.admin import end_offsets
from streams.kafka.topics import AUDIT, AUDIT_CHECKPOINTS
from tests.integration.routing_harness import Bus, event_for, fresh_people

pytest_plugins = ("tests.integration.routing_harness",)
CATALOG = Catalog.load()
DATASET = "quotient_familial"


async def _records_from(bus: Bus, start: dict[TopicPartition, int]) -> list[Any]:
    consumer = clients.consumer(bus.settings, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(start))
        consumer.assign(list(start))
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        found: list[Any] = []
        while [p for p, end in ends.items() if await consumer.position(p) < end]:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                found += messages
        return found
    finally:
        await consumer.stop()


async def _record_hash_at(bus: Bus, serde: AvroSerde, partition: int, offset: int) -> str:
    (record,) = [r for r in await _records_from(bus, {TopicPartition(AUDIT, partition): offset})
                 if r.offset == offset]
    return str(serde.decode(record.value)[1]["record_hash"])


async def test_workers_sign_heads_that_are_on_the_trail(bus: Bus) -> None:
    contract = bus.contract("checkpointed", {DATASET: ["quotient_familial"]})
    await bus.apply(contract)
    start = await end_offsets(bus.settings, [AUDIT_CHECKPOINTS])
    people = fresh_people(12)
    for round_ in range(1, 4):  # a checkpoint is due a second after the last, at a batch
        await bus.publish([event_for(DATASET, p) for p in people])
        await bus.delivered(contract, round_ * len(people))
        await asyncio.sleep(1.2)
    serde = AvroSerde(bus.registry)
    checkpoints = []
    for _ in range(50):
        checkpoints = [Checkpoint.from_record(serde.decode(r.value)[1])
                       for r in await _records_from(bus, start)]
        if checkpoints:
            break
        await bus.publish([event_for(DATASET, people[0])])
        await asyncio.sleep(0.5)
    assert checkpoints, "no checkpoint signed while routing"
    public = signing_key(bus.settings).public_key()
    for checkpoint in checkpoints:
        assert signature_holds(public, checkpoint)
        assert checkpoint.heads
        for head in checkpoint.heads:
            assert await _record_hash_at(bus, serde, head.partition, head.offset) == \
                head.record_hash


async def test_exported_checkpoints_read_back_and_still_verify(bus: Bus, tmp_path: Path) -> None:
    """What ``audit export-checkpoints`` keeps outside Kafka is each checkpoint as signed."""
    on_topic = await read_checkpoints(bus.settings)
    kept = tmp_path / "checkpoints.jsonl"
    code, out, err = await bus.run_cli("audit", "export-checkpoints", str(kept))
    assert code == 0, err
    exported = [Checkpoint.from_record(json.loads(line))
                for line in kept.read_text(encoding="utf-8").splitlines()]
    assert len(exported) >= len(on_topic) > 0
    assert exported[:len(on_topic)] == on_topic
    public = signing_key(bus.settings).public_key()
    assert all(signature_holds(public, c) for c in exported)
    code, out, err = await bus.run_cli("audit", "public-key")
    assert code == 0, err
    assert key_id(read_public_key(out.encode())) == key_id(public)


async def test_audit_verify_holds_the_trail_against_the_checkpoints(
        bus: Bus, tmp_path: Path) -> None:
    code, out, err = await bus.run_cli("audit", "verify", "--json", timeout=180)
    assert code == 0, out + err
    report = json.loads(out)
    assert report["status"] == "OK"
    assert report["checkpoints"]["checked"] > 0
    assert report["checkpoints"]["problems"] == []
    kept = tmp_path / "checkpoints.jsonl"
    code, _, err = await bus.run_cli("audit", "export-checkpoints", str(kept))
    assert code == 0, err
    forged = Checkpoint.from_record(json.loads(kept.read_text().splitlines()[0]))
    altered = Checkpoint(forged.key_id, forged.signed_at,
                         tuple(Head(h.partition, h.offset + 1, h.record_hash)
                               for h in forged.heads), forged.signature)
    kept.write_text(json.dumps(altered.as_json()) + "\n", encoding="utf-8")
    code, out, err = await bus.run_cli("audit", "verify", "--checkpoints", str(kept),
                                       timeout=180)
    assert code == 1
    assert "signature does not hold" in err
    kept.write_text("not a checkpoint\n", encoding="utf-8")
    code, out, err = await bus.run_cli("audit", "verify", "--checkpoints", str(kept))
    assert code == 1
    assert "line 1: not a checkpoint" in err
