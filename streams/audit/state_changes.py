"""Audit records of the state changes a worker applies, and of the erasure notices it sends.

A consent, an enrolment or a contract changes what the bus may deliver; each change is audited
once, pseudonymously (the subject reference, never a NIR), by the worker that owns its
partition as its state follower applies it: the change of state partition *p* goes to the
routing chain of provider partition *p*, whose single writer that worker already is, and a
contract's to chain 0 (contracts are global; the owner of partition 0 audits them). A record
names the state record it audits (topic, partition, offset) and is keyed
``state.<topic>.<partition>`` (:func:`state_key`): a worker taking a partition over reads back
the last record of that key and audits only later state records, so a restore, a restart or a
rebalance audits nothing twice. A contract's end (revocation or ``valid_until`` passed), which
the worker notices by itself, is keyed :data:`CONTRACT_ENDED_KEY`.

These keys do not start with ``sink.``: the records belong to the partition's routing chain
(:func:`~streams.audit.chain.named_chain`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from streams.audit.chain import AuditChains

StateChangeKind = Literal["consent_granted", "consent_withdrawn", "enrolled", "removed",
                          "contract_applied", "contract_revoked", "contract_ended"]
NoticeReason = Literal["consent_withdrawn", "contract_ended", "retention_expired",
                       "population_removed"]
RECORDED = "recorded"
"""The decision of a state change's audit record."""
CONTRACT_ENDED_KEY = b"state.contract_ended"
"""The key of the records of contracts' ends (no state record names them)."""


def state_key(topic: str, partition: int) -> bytes:
    """The key of the audit records of the state records of ``topic``'s ``partition``."""
    return f"state.{topic}.{partition}".encode()


@dataclass(frozen=True)
class StatePosition:
    """Where a state record is: its topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class StateChange:
    """One change to audit: what, about whom, under which contract, from which state record,
    and the erasure notice it caused (``notice_id`` when the worker sent it)."""

    change: StateChangeKind
    contract_id: str
    subscriber: str
    at: datetime
    """When: the state record's own instant for a consent or an enrolment, the moment the
    worker audited it for a contract's change or end."""
    position: StatePosition | None = None
    subject_ref: str = ""
    channel: str | None = None
    principal: str | None = None
    evidence_ref: str | None = None
    erasure_reason: NoticeReason | None = None
    notice_id: str | None = None

    @property
    def key(self) -> bytes:
        """The record's key on ``bus.audit``."""
        if self.position is None:
            return CONTRACT_ENDED_KEY
        return state_key(self.position.topic, self.position.partition)


def state_change_record(chains: AuditChains, chain: int, change: StateChange) -> dict[str, Any]:
    """The audit record of ``change``, linked to the head of ``chain``."""
    position = change.position
    at = change.at.replace(microsecond=change.at.microsecond // 1000 * 1000)
    return chains.linked(chain, {
        "event_id": str(position) if position is not None else str(change.notice_id),
        "delivery_id": change.notice_id, "contract_id": change.contract_id,
        "subscriber": change.subscriber, "provider": "", "dataset": "",
        "subject_ref": change.subject_ref, "file_day": None, "deliveries_deleted": None,
        "decision": RECORDED, "reason": None, "decided_at": at, "fields_delivered": (),
        "replay": None, "change": change.change, "erasure_reason": change.erasure_reason,
        "channel": change.channel, "principal": change.principal,
        "evidence_ref": change.evidence_ref,
        "state_topic": position.topic if position else None,
        "state_partition": position.partition if position else None,
        "state_offset": position.offset if position else None})
