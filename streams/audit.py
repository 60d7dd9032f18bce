"""Audit records: one per routing decision, delivered or withheld, hash-chained.

Each record carries the hash of the previous record of its chain and its own hash over its
content, so a verifier finds any record changed, removed or reordered. A worker keeps one chain
per provider partition it routes (the key of the chain is ``<topic>/<partition>``), which is the
unit whose order Kafka itself guarantees.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.routing import Decision

GENESIS = "0" * 64
"""The ``previous_hash`` of the first record of a chain."""


HASHED_FIELDS = ("event_id", "contract_id", "subscriber", "provider", "dataset", "subject_ref",
                 "decision", "reason", "decided_at", "fields_delivered")
"""The fields a record's hash covers, in this order (both hashes excluded)."""


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return str(int(value.timestamp() * 1000))  # timestamp-millis, as stored
    if isinstance(value, list):
        return ",".join(value)
    return "" if value is None else str(value)


def record_hash(previous_hash: str, content: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the record's fields, unit-separated, in a fixed order.

    The form is rebuilt exactly from a decoded record (instants as epoch milliseconds), so a
    verifier recomputes every hash from the topic alone.
    """
    canonical = "\x1f".join(_text(content[name]) for name in HASHED_FIELDS)
    return hashlib.sha256(f"{previous_hash}\x1e{canonical}".encode()).hexdigest()


@dataclass
class AuditChains:
    """The running hash of every chain this worker writes to."""

    heads: dict[str, str] = field(default_factory=dict)

    def record(self, chain: str, decision: Decision, *, event_id: str, provider: str,
               subject_ref: str, decided_at: datetime) -> dict[str, Any]:
        """The audit record of ``decision``, linked to the head of ``chain``."""
        terms = decision.terms
        content: dict[str, Any] = {
            "event_id": event_id, "contract_id": terms.contract_id,
            "subscriber": terms.contract.subscriber, "provider": provider, "dataset": terms.dataset,
            "subject_ref": subject_ref,
            "decision": "delivered" if decision.delivered else "withheld",
            "reason": decision.reason, "decided_at": decided_at,
            "fields_delivered": list(terms.fields) if decision.delivered else [],
        }
        previous = self.heads.get(chain, GENESIS)
        digest = record_hash(previous, content)
        self.heads[chain] = digest
        return {**content, "previous_hash": previous, "record_hash": digest}
