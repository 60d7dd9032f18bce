"""Audit records: one per routing decision, delivered or withheld, hash-chained.

Each record carries the hash of the previous record of its chain and its own hash over its
content, so a verifier finds any record changed, removed or reordered.

A chain is one partition of ``bus.audit``, read in offset order. The decisions about partition
*p* of the provider topics are written to audit partition *p*: Faust assigns co-partitioned
topics (same partition count, same subscribers) together, so exactly one worker owns partition
*p* of every provider topic and is the only writer of chain *p*. A worker that takes a partition
over recovers the chain's head from the last record of that audit partition before extending it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

import fastavro
from aiokafka import TopicPartition

from schemas.codec import DecodeError, encode
from schemas.projection import field_names, project_schema
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.topics import AUDIT
from streams.routing.rules import Decision
from streams.settings import Settings

GENESIS = "0" * 64
"""The ``previous_hash`` of the first record of a chain."""


HASHED_FIELDS = ("event_id", "contract_id", "subscriber", "provider", "dataset", "subject_ref",
                 "decision", "reason", "decided_at", "fields_delivered")
"""The fields a record's hash covers, in this order (both hashes excluded)."""


def _millis(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)  # timestamp-millis, as stored


def _digest(previous_hash: str, event_id: str, contract_id: str, subscriber: str, provider: str,
            dataset: str, subject_ref: str, decision: str, reason: str | None, decided_ms: int,
            fields_delivered: Iterable[str]) -> str:
    """SHA-256 of the previous hash and the fields in :data:`HASHED_FIELDS` order: the one
    definition of the canonical form, used to write (typed values on the hot path) and to verify
    (values decoded from the topic)."""
    canonical = "\x1f".join((event_id, contract_id, subscriber, provider, dataset, subject_ref,
                             decision, reason or "", str(decided_ms), ",".join(fields_delivered)))
    return hashlib.sha256(f"{previous_hash}\x1e{canonical}".encode()).hexdigest()


def record_hash(previous_hash: str, content: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the record's fields, unit-separated, in a fixed order.

    The form is rebuilt exactly from a decoded record (instants as epoch milliseconds), so a
    verifier recomputes every hash from the topic alone.
    """
    return _digest(previous_hash, content["event_id"], content["contract_id"],
                   content["subscriber"], content["provider"], content["dataset"],
                   content["subject_ref"], content["decision"], content["reason"],
                   _millis(content["decided_at"]), content["fields_delivered"])


@dataclass
class AuditChains:
    """The running hash of every chain (audit partition) this worker writes to."""

    partitions: int = 1
    heads: dict[int, str] = field(default_factory=dict)

    def chain_of(self, source_partition: int) -> int:
        """The audit partition (chain) of decisions about a provider partition."""
        return source_partition % self.partitions

    def record(self, chain: int, decision: Decision, *, event_id: str, provider: str,
               subject_ref: str, decided_at: datetime) -> dict[str, Any]:
        """The audit record of ``decision``, linked to the head of ``chain``."""
        terms = decision.terms
        verdict = "delivered" if decision.delivered else "withheld"
        fields = terms.fields if decision.delivered else ()
        subscriber = terms.contract.subscriber
        previous = self.heads.get(chain, GENESIS)
        digest = _digest(previous, event_id, terms.contract_id, subscriber, provider,
                         terms.dataset, subject_ref, verdict, decision.reason,
                         _millis(decided_at), fields)
        self.heads[chain] = digest
        return {"event_id": event_id, "contract_id": terms.contract_id, "subscriber": subscriber,
                "provider": provider, "dataset": terms.dataset, "subject_ref": subject_ref,
                "decision": verdict, "reason": decision.reason, "decided_at": decided_at,
                "fields_delivered": fields, "previous_hash": previous, "record_hash": digest}


AUDIT_PARTS = (("event_id",), ("contract_id", "subscriber"), ("provider", "dataset"),
               ("subject_ref",), ("decision", "reason", "decided_at", "fields_delivered"),
               ("previous_hash",), ("record_hash",))
"""The audit record's fields in schema order, in the parts :class:`AuditEncoder` writes: one
string field alone, or a group whose values repeat (per contract, per topic, per verdict)."""
PART_MEMO_SIZE = 4096
"""Encoded groups remembered per part before its memo starts afresh (bounds its memory)."""

_Part = tuple[Callable[[Mapping[str, Any]], Any], tuple[str, ...], Any, bool, dict[Any, bytes]]


class AuditEncoder:
    """The Avro body of audit records, written by parts that are mostly already encoded.

    A routed event gives one audit record per contract, and fastavro took about 10 µs for each
    (about a tenth of the worker's main thread under steady load: README, Performance), while
    most of a record repeats from one record to the next. Avro writes a record as the
    concatenation of its fields' encodings, so the record is written part by part
    (:data:`AUDIT_PARTS`), each by fastavro under a schema made of exactly those fields of the
    audit schema:

    - a group (the contract and its subscriber, the provider and dataset, the verdict with its
      instant and fields) is encoded once and remembered;
    - a string alone (event id, subject reference, the two hashes, which change with every
      record or event) is written as fastavro's prefix for its length in bytes, remembered per
      length, then its UTF-8 bytes: Avro's prefix of a string is its length and nothing else.

    The result is byte for byte fastavro's encoding of the whole record; a property test holds
    it to that.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        names = field_names(schema)
        if tuple(name for part in AUDIT_PARTS for name in part) != names:
            raise ValueError("the audit schema's fields are not the ones AuditEncoder writes "
                             f"in this order: {list(names)}")
        types = {f["name"]: f["type"] for f in schema["fields"]}
        self._parts: list[_Part] = [
            (itemgetter(*part), part, _part_schema(schema, part),
             len(part) == 1 and types[part[0]] == "string", {})
            for part in AUDIT_PARTS]

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """The Avro body of ``record`` (the mapping :meth:`AuditChains.record` returns; its
        values must be hashable, so ``fields_delivered`` is a tuple)."""
        body: list[bytes] = []
        for key_of, names, schema, is_string, memo in self._parts:
            if is_string:
                value = key_of(record).encode()
                prefix = memo.get(len(value))
                if prefix is None:
                    prefix = memo[len(value)] = _length_prefix(schema, names[0], len(value))
                body += (prefix, value)
                continue
            key = key_of(record)
            encoded = memo.get(key)
            if encoded is None:
                if len(memo) >= PART_MEMO_SIZE:
                    memo.clear()
                encoded = memo[key] = encode(schema, {name: record[name] for name in names})
            body.append(encoded)
        return b"".join(body)


def _length_prefix(schema: Any, name: str, length: int) -> bytes:
    """What fastavro writes before a string of ``length`` bytes in the one-field ``schema``."""
    value = "0" * length
    written = encode(schema, {name: value})
    if not written.endswith(value.encode()):
        raise ValueError(f"{name} is not written as a length-prefixed string")
    return written[:len(written) - length]


def _part_schema(schema: Mapping[str, Any], part: tuple[str, ...]) -> Any:
    """The audit schema projected on ``part``, parsed (names do not change Avro's bytes)."""
    return fastavro.parse_schema(project_schema(
        schema, part, namespace=str(schema["namespace"]),
        doc="One part of the audit record, encoded apart by AuditEncoder."))


async def recover_heads(settings: Settings, serde: AvroSerde, reader: Any,
                        partitions: list[int]) -> dict[int, str]:
    """The ``record_hash`` of the last record of each audit partition (GENESIS when empty)."""
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        wanted = [TopicPartition(AUDIT, p) for p in partitions]
        consumer.assign(wanted)
        ends = await consumer.end_offsets(wanted)
        starts = await consumer.beginning_offsets(wanted)
        heads = {}
        for tp in wanted:
            heads[tp.partition] = GENESIS
            if ends[tp] > starts[tp]:
                consumer.seek(tp, ends[tp] - 1)
                records = (await consumer.getmany(tp, timeout_ms=10_000)).get(tp, [])
                if not records:
                    raise RuntimeError(f"cannot read the head of audit chain {tp.partition}")
                heads[tp.partition] = _head_hash(serde, reader, records[-1])
        return heads
    finally:
        await consumer.stop()


def _head_hash(serde: AvroSerde, reader: Any, head: Any) -> str:
    """The hash a new record must link to; an unreadable head stops routing rather than start
    an unlinked chain that would no longer prove what came before it."""
    try:
        return str(serde.decode(head.value, reader)[1]["record_hash"])
    except DecodeError as exc:
        raise AuditChainError(
            f"the head of audit chain {head.partition} ({AUDIT} offset {head.offset}) cannot be "
            f"read, so no decision can be linked to it: {exc}") from exc


class AuditChainError(RuntimeError):
    """The audit chain cannot be extended; routing must stop until an operator looks."""


@dataclass(frozen=True)
class ChainBreak:
    """Where a chain stops proving itself: the offset and what is wrong there."""

    partition: int
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"audit partition {self.partition}, offset {self.offset}: {self.reason}"


def verify_chain(partition: int, records: Iterable[tuple[int, dict[str, Any]]]) -> list[ChainBreak]:
    """Check a chain read in offset order: every hash recomputes and links to the previous one.

    A changed record fails its own hash; a removed or reordered one breaks the link of the next.
    """
    breaks = []
    previous = GENESIS
    for offset, record in records:
        if record["previous_hash"] != previous:
            breaks.append(ChainBreak(partition, offset, "does not link to the previous record "
                                     "(a record was removed, inserted or reordered)"))
        content = {name: record[name] for name in HASHED_FIELDS}
        if record_hash(record["previous_hash"], content) != record["record_hash"]:
            breaks.append(ChainBreak(partition, offset, "its hash does not match its content "
                                     "(the record was changed)"))
        previous = record["record_hash"]
    return breaks
