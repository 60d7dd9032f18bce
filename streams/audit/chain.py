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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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

    def record(self, chain: int, *, event_id: str, contract_id: str, subscriber: str,
               provider: str, dataset: str, subject_ref: str, reason: str | None,
               fields_delivered: tuple[str, ...], decided_at: datetime) -> dict[str, Any]:
        """The audit record of one contract's verdict on one event, linked to the head of
        ``chain``: delivered (with the fields it received) when ``reason`` is None, withheld
        for ``reason`` otherwise."""
        verdict = "delivered" if reason is None else "withheld"
        fields = fields_delivered if reason is None else ()
        previous = self.heads.get(chain, GENESIS)
        digest = _digest(previous, event_id, contract_id, subscriber, provider, dataset,
                         subject_ref, verdict, reason, _millis(decided_at), fields)
        self.heads[chain] = digest
        return {"event_id": event_id, "contract_id": contract_id, "subscriber": subscriber,
                "provider": provider, "dataset": dataset, "subject_ref": subject_ref,
                "decision": verdict, "reason": reason, "decided_at": decided_at,
                "fields_delivered": fields, "previous_hash": previous, "record_hash": digest}


@dataclass(frozen=True)
class ChainBreak:
    """Where a chain stops proving itself: the offset and what is wrong there."""

    partition: int
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"audit partition {self.partition}, offset {self.offset}: {self.reason}"


def verify_chain(partition: int, records: Iterable[tuple[int, dict[str, Any]]],
                 previous: str = GENESIS) -> list[ChainBreak]:
    """Check a chain read in offset order: every hash recomputes and links to the previous one
    (``previous`` before the first: the genesis, or the hash of the record before them when a
    chain is checked from the middle).

    A changed record fails its own hash; a removed or reordered one breaks the link of the next.
    """
    breaks = []
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
