"""``audit verify`` and chain-head recovery on the real broker, against hostile audit partitions.

Each test writes to a one-partition audit topic of its own (the bus's ``bus.audit`` is shared
with every other test, and the session's closing checks verify it): valid chained records, and
what the bus never writes there (values that are no audit record, tombstones, records written in
transactions, whose markers take offsets no consumer ever sees).
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.catalog import Catalog, SchemaVersion
from schemas.codec import encode
from schemas.registration import COMPATIBILITY, register_versions, value_subject
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.audit.chain import (
    GENESIS,
    HASH_VERSION,
    AuditChains,
    deletion_record,
    file_sink_chain,
    record_hash,
)
from streams.audit.checkpoint_log import log_starts, prove_heads
from streams.audit.checkpoints import Checkpoint, CheckpointReport, Head, sign
from streams.audit.encoder import AuditEncoder
from streams.audit.heads import AuditChainError, recover_heads, recover_named_head
from streams.audit.trail import Verification, read_chains, verify_trail
from streams.kafka import clients
from streams.kafka.admin import ensure_topics
from streams.kafka.topics import TopicSpec
from streams.settings import Settings
from tests.conftest import Services

AUDIT = Catalog.load().bus_record("audit")
READER = AUDIT.latest.parsed
VERIFY_TIMEOUT_S = 60
"""Far longer than reading a few records takes; a read that never ends fails the test."""
UNREGISTERED_SCHEMA_ID = 987_655
KEY = ("sr1_" + "ab" * 32).encode()
"""Audit records are keyed by their subject reference (a tombstone needs a key)."""


class AuditPartition:
    """A one-partition audit topic of a test's own, and what it writes there, in order."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.serde = AvroSerde(SchemaRegistry(settings.schema_registry_url))
        self.chains = AuditChains()
        self._encoder = AuditEncoder(AUDIT.latest.raw)
        self._decided = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

    async def create(self) -> None:
        await ensure_topics(self.settings, [TopicSpec(self.topic, 1, 1, {
            "cleanup.policy": "delete", "retention.ms": "-1"})])

    def current(self) -> bytes:
        """The next record of the chain, as a worker writes it now."""
        self._decided += timedelta(seconds=1)
        record = self.chains.record(
            0, event_id=str(uuid.uuid4()), contract_id="lyon-cantine-2026",
            subscriber="ville-de-lyon", provider="cnaf", dataset="quotient_familial",
            subject_ref="sr1_" + "ab" * 32, reason=None,
            fields_delivered=("quotient_familial", "annee"), decided_at=self._decided,
            delivery_id=str(uuid.uuid4()))
        return self._framed(AUDIT.latest, self._encoder.encode(record))

    def second_form(self) -> bytes:
        """The next record of the chain as a writer of audit schema version 2 wrote it (hashed
        form 2, no delivery id)."""
        self._decided += timedelta(seconds=1)
        record: dict[str, Any] = {
            "event_id": str(uuid.uuid4()), "contract_id": "lyon-cantine-2026",
            "subscriber": "ville-de-lyon", "provider": "cnaf", "dataset": "quotient_familial",
            "subject_ref": "sr1_" + "ef" * 32, "decision": "delivered", "reason": None,
            "decided_at": self._decided, "fields_delivered": ["quotient_familial"],
            "hash_version": 2, "previous_hash": self.chains.heads.get(0, GENESIS)}
        record["record_hash"] = self.chains.heads[0] = record_hash(record)
        return self._framed(AUDIT.version(2), encode(AUDIT.version(2).parsed, record))

    def first_form(self) -> bytes:
        """The next record of the chain as a writer of audit schema version 1 wrote it."""
        self._decided += timedelta(seconds=1)
        record: dict[str, Any] = {
            "event_id": str(uuid.uuid4()), "contract_id": "lyon-cantine-2026",
            "subscriber": "ville-de-lyon", "provider": "cnaf", "dataset": "quotient_familial",
            "subject_ref": "sr1_" + "cd" * 32, "decision": "withheld", "reason": "no_consent",
            "decided_at": self._decided, "fields_delivered": [], "hash_version": None,
            "previous_hash": self.chains.heads.get(0, GENESIS)}
        record["record_hash"] = self.chains.heads[0] = record_hash(record)
        del record["hash_version"]
        return self._framed(AUDIT.version(1), encode(AUDIT.version(1).parsed, record))

    def _framed(self, schema: SchemaVersion, body: bytes) -> bytes:
        return self.serde.framed(value_subject(self.topic), schema, body)

    def deletion(self, previous: str, day: date) -> tuple[dict[str, Any], bytes]:
        """A file sink's deletion of the file of ``day``, linked to ``previous``: the record
        and its framed value."""
        record = deletion_record(previous, contract_id="lyon-cantine-2026",
                                 subscriber="ville-de-lyon", day=day, deliveries=12,
                                 deleted_at=self._decided)
        return record, self._framed(AUDIT.latest, self._encoder.encode(record))

    async def write(self, *values: bytes | None, key: bytes = KEY) -> None:
        """Append ``values`` one after the other, as a bus producer does."""
        producer = clients.producer(self.settings)
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(self.topic, value, key, partition=0)
        finally:
            await producer.stop()

    async def write_in_a_transaction(self, value: bytes, *, commit: bool) -> None:
        """Append ``value`` in a transaction, committed or aborted: its marker follows it."""
        producer = AIOKafkaProducer(**clients.connection_options(self.settings),
                                    transactional_id=f"{self.topic}.{uuid.uuid4().hex[:8]}")
        await producer.start()
        try:
            await producer.begin_transaction()
            await producer.send_and_wait(self.topic, value, KEY, partition=0)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
        finally:
            await producer.stop()

    async def verify(self) -> Verification:
        return await asyncio.wait_for(verify_trail(self.settings, topic=self.topic),
                                      VERIFY_TIMEOUT_S)

    async def head(self) -> str:
        heads = await recover_heads(self.settings, self.serde, READER, [0], topic=self.topic)
        return heads[0]


@pytest.fixture
async def partition(services: Services, topic_name: str) -> AuditPartition:
    created = AuditPartition(services.settings(), topic_name)
    await created.create()
    return created


def _breaks(found: Verification) -> list[tuple[int, str]]:
    assert all(b.partition == 0 for b in found.breaks)
    return [(b.offset, b.reason) for b in found.breaks]


UNDECODABLE = "not an audit record: its value cannot be decoded as one"
TOMBSTONE = "an empty value (a tombstone), not an audit record"
MARKER = ("no record a consumer reads at this offset (a transaction marker: something other "
          "than the bus wrote to the audit trail)")


async def test_values_that_are_no_audit_record_are_breaks_at_their_offsets(
        partition: AuditPartition) -> None:
    unregistered = b"\x00" + struct.pack(">I", UNREGISTERED_SCHEMA_ID) + b"\x02"
    await partition.write(partition.current(), partition.current(), b"garbage", None,
                          partition.current(), unregistered, partition.current())
    found = await partition.verify()
    assert _breaks(found) == [(2, UNDECODABLE), (3, TOMBSTONE), (5, UNDECODABLE)]
    assert (found.chains, found.records) == (1, 7)


async def test_transaction_markers_are_breaks_and_the_read_ends_on_them(
        partition: AuditPartition) -> None:
    await partition.write(partition.current())
    committed = partition.current()
    await partition.write_in_a_transaction(committed, commit=True)  # offsets 1, marker 2

    # The last offset is a marker: reading up to it ends, and the head is the record before it.
    assert _breaks(await partition.verify()) == [(2, MARKER)]
    assert await asyncio.wait_for(partition.head(), VERIFY_TIMEOUT_S) == \
        partition.chains.heads[0]

    await partition.write(partition.current())  # 3, linked to 1 across the marker
    await partition.write_in_a_transaction(b"garbage", commit=False)  # 4, marker 5
    found = await partition.verify()
    assert _breaks(found) == [(2, MARKER), (4, UNDECODABLE), (5, MARKER)]
    assert found.records == 6
    with pytest.raises(AuditChainError, match="offset 4"):
        await asyncio.wait_for(partition.head(), VERIFY_TIMEOUT_S)


async def test_a_chain_in_the_first_hashed_form_switches_once_and_never_back(
        partition: AuditPartition) -> None:
    await partition.write(partition.first_form(), partition.first_form())
    head = partition.chains.heads[0]

    # A worker taking the chain over links its first record to the last one in form 1.
    taken_over = AuditPartition(partition.settings, partition.topic)
    taken_over.chains.heads[0] = await partition.head()
    assert taken_over.chains.heads[0] == head
    await taken_over.write(taken_over.current(), taken_over.current())
    assert _breaks(await partition.verify()) == []
    read = (await read_chains(partition.settings, topic=partition.topic))[0]
    assert [(offset, record["hash_version"]) for offset, record in read] == [  # type: ignore[index]
        (0, None), (1, None), (2, HASH_VERSION), (3, HASH_VERSION)]

    taken_over.chains.heads[0] = await taken_over.head()
    await taken_over.write(taken_over.first_form())
    (problem,) = (await partition.verify()).breaks
    assert problem.offset == 4
    assert f"hashed form 1 after its chain switched to form {HASH_VERSION}" in problem.reason


async def test_a_chain_in_form_2_goes_on_in_the_current_form_naming_delivery_ids_and_never_back(
        partition: AuditPartition) -> None:
    """Records written before audit records named the delivery's id keep verifying, read
    under the current schema (``delivery_id`` null); the next ones are in the current form."""
    await partition.write(partition.second_form(), partition.second_form())
    taken_over = AuditPartition(partition.settings, partition.topic)
    taken_over.chains.heads[0] = await partition.head()
    await taken_over.write(taken_over.current(), taken_over.current())
    assert _breaks(await partition.verify()) == []
    read = (await read_chains(partition.settings, topic=partition.topic))[0]
    records = [record for _, record in read]
    assert [r["hash_version"] for r in records] == [  # type: ignore[index]
        2, 2, HASH_VERSION, HASH_VERSION]
    named = [r["delivery_id"] is not None for r in records]  # type: ignore[index]
    assert named == [False, False, True, True]

    taken_over.chains.heads[0] = await taken_over.head()
    await taken_over.write(taken_over.second_form())
    (problem,) = (await partition.verify()).breaks
    assert problem.offset == 4
    assert f"hashed form 2 after its chain switched to form {HASH_VERSION}" in problem.reason


async def test_a_sink_s_chain_shares_a_partition_and_each_chain_links_and_keeps_its_head(
        partition: AuditPartition) -> None:
    """A file sink's deletions, keyed by their chain, sit among the routing records of their
    partition: each chain links over its own records only, and each writer finds its own head
    past the other's records."""
    chain = file_sink_chain("lyon-cantine-2026")
    first, first_value = partition.deletion(GENESIS, date(2026, 11, 1))
    second, second_value = partition.deletion(first["record_hash"], date(2026, 11, 2))
    await partition.write(partition.current())
    await partition.write(first_value, key=chain.encode())
    await partition.write(partition.current(), partition.current())  # linked to offset 0
    await partition.write(second_value, key=chain.encode())
    found = await partition.verify()
    assert _breaks(found) == []
    assert (found.chains, found.records) == (2, 5)
    read = await read_chains(partition.settings, topic=partition.topic)
    assert [offset for offset, _ in read[0]] == [0, 2, 3]
    assert [offset for offset, _ in read[chain]] == [1, 4]

    assert await asyncio.wait_for(partition.head(), VERIFY_TIMEOUT_S) == \
        partition.chains.heads[0], "a worker links to its own chain's head, past the sink's"
    home, head = await recover_named_head(partition.settings, partition.serde, READER, chain,
                                          topic=partition.topic)
    assert home == 0
    assert head is not None
    assert (head["record_hash"], head["file_day"]) == (second["record_hash"], date(2026, 11, 2))

    linked_to_routing = partition.deletion(partition.chains.heads[0], date(2026, 11, 3))[1]
    await partition.write(linked_to_routing)  # keyed as a routing record
    (problem,) = (await partition.verify()).breaks
    assert (problem.offset, problem.chain) == (5, None)
    assert "belongs to another chain" in problem.reason


def test_the_registry_s_rule_for_bus_records_accepts_every_audit_version(
        services: Services, topic_name: str) -> None:
    subject = value_subject(topic_name)
    with SchemaRegistry(services.registry_url) as registry:
        done = register_versions(registry, subject, AUDIT.versions)
        assert registry.compatibility(subject) == COMPATIBILITY == "BACKWARD_TRANSITIVE"
        assert [r.version for r in done] == sorted(AUDIT.versions) == [1, 2, 3, 4, 5]
        assert registry.versions(subject) == [1, 2, 3, 4, 5]


# --- signed checkpoints: what a valid chain cannot prove about its own tail --------------------

CHECKPOINT_KEY = Ed25519PrivateKey.generate()


async def _copy_with_checkpoint(settings: Settings, topic: str, records: int,
                                signed_at: int) -> tuple[AuditPartition, list[Checkpoint]]:
    """A chain of ``records`` records on a topic of its own, and a checkpoint signing its
    record at offset ``signed_at`` (as its worker would have)."""
    trail = AuditPartition(settings, topic)
    await trail.create()
    values = []
    hashes = []
    for _ in range(records):
        values.append(trail.current())
        hashes.append(trail.chains.heads[0])
    await trail.write(*values)
    signed = sign(CHECKPOINT_KEY, [Head(0, signed_at, hashes[signed_at])], datetime.now(UTC))
    return trail, [signed]


async def _proof(trail: AuditPartition, checkpoints: list[Checkpoint]) -> CheckpointReport:
    chains = await read_chains(trail.settings, topic=trail.topic)
    starts = await log_starts(trail.settings, trail.topic)
    return prove_heads(chains, starts, checkpoints, CHECKPOINT_KEY.public_key())


async def test_an_intact_chain_holds_its_checkpoint_and_says_what_is_newer(
        services: Services, topic_name: str) -> None:
    trail, signed = await _copy_with_checkpoint(services.settings(), topic_name, 10, 7)
    assert _breaks(await trail.verify()) == []
    proof = await _proof(trail, signed)
    assert proof.problems == []
    assert proof.uncovered == {0: 2}


async def test_a_truncated_tail_verifies_as_a_chain_but_fails_its_checkpoint(
        services: Services, topic_name: str) -> None:
    original, signed = await _copy_with_checkpoint(services.settings(), topic_name, 10, 7)
    copy = AuditPartition(original.settings, f"{topic_name}.truncated")
    await copy.create()
    kept = [r.value for r in await _read_values(original, 6)]
    await copy.write(*kept)
    assert _breaks(await copy.verify()) == [], "the six records left are a valid chain"
    (problem,) = (await _proof(copy, signed)).problems
    assert (problem.partition, problem.offset) == (0, 7)
    assert "truncated" in problem.problem


async def test_a_tail_rewritten_with_valid_hashes_fails_its_checkpoint(
        services: Services, topic_name: str) -> None:
    original, signed = await _copy_with_checkpoint(services.settings(), topic_name, 10, 7)
    copy = AuditPartition(original.settings, f"{topic_name}.rewritten")
    await copy.create()
    await copy.write(*[r.value for r in await _read_values(original, 5)])
    copy.chains.heads[0] = original_head = await copy.head()
    assert original_head
    await copy.write(*[copy.current() for _ in range(5)])  # new records, correctly linked
    assert _breaks(await copy.verify()) == [], "a rewritten tail is a valid chain"
    (problem,) = (await _proof(copy, signed)).problems
    assert (problem.partition, problem.offset) == (0, 7)
    assert "rewritten" in problem.problem


async def test_a_forged_checkpoint_is_reported(services: Services, topic_name: str) -> None:
    trail, signed = await _copy_with_checkpoint(services.settings(), topic_name, 4, 3)
    forged = sign(Ed25519PrivateKey.generate(), signed[0].heads, signed[0].signed_at)
    (problem,) = (await _proof(trail, [forged])).problems
    assert "signature does not hold" in problem.problem


async def _read_values(trail: AuditPartition, count: int) -> list[Any]:
    """The first ``count`` records of ``trail``'s partition."""
    consumer = clients.consumer(trail.settings, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(trail.topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        found: list[Any] = []
        while len(found) < count:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                found += messages
        return found[:count]
    finally:
        await consumer.stop()
