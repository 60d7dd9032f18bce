"""Erasure notices: what a subscriber is told to erase, and when a contract ended.

A notice goes to the contract's delivery topic, under the registry subject of its own
(:attr:`~streams.state.contract.Contract.erasure_subject`). A notice about one person names them
by the subscriber's pseudonym, as its deliveries did; a contract's end concerns everything
delivered under it, whoever it was about: the bus keeps no list of who got what (only the audit
trail does), so that notice names no subject (``subject_pseudonym`` null, no CloudEvents
``subject``).

A contract ends when it is revoked (at ``revoked_at``) or when its last valid day is over
(midnight UTC after ``valid_until``, as routing judges a contract active by the UTC day). The
id of its end's notice is derived from the contract and that instant (:func:`ending_notice_id`):
the notice of one end is the same notice however often it is sent, and a subscriber recognises
a second copy; a contract re-applied with another end date ends again, under another id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from schemas.cloudevent import kafka_headers, to_kafka
from schemas.serde import AvroSerde, WriterSchema
from streams.state.contract import Contract

ErasureReason = Literal["consent_withdrawn", "contract_ended", "retention_expired",
                        "population_removed"]
_ENDINGS = uuid.UUID("6f1d7a52-3c1e-5b8e-9a61-0c5e2d1b9f47")
"""The namespace of the ids of contracts' ends' notices (uuid5)."""


@dataclass(frozen=True)
class Notice:
    """One erasure notice, encoded, as it is written to the contract's delivery topic."""

    id: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def erasure_notice(serde: AvroSerde, schema: WriterSchema, contract: Contract,
                   pseudonym: str | None, reason: ErasureReason, issued_at: datetime,
                   notice_id: str | None = None) -> Notice:
    """The notice telling ``contract``'s subscriber to erase what it holds on ``pseudonym``
    (everything delivered under the contract when None); its id is ``notice_id``, or a fresh
    one. ``serde`` must know the registry id of the contract's erasure subject already when
    called on an event loop that must not block."""
    notice_id = notice_id or str(uuid.uuid4())
    value = serde.encode_datum(contract.erasure_subject, schema, {
        "contract_id": contract.id, "subject_pseudonym": pseudonym, "reason": reason,
        "issued_at": issued_at})
    attributes = {"id": notice_id, "source": "circulation", "type": "erasure_notice",
                  "time": issued_at, "contract": contract.id}
    key = pseudonym if pseudonym is not None else contract.id
    if pseudonym is not None:
        attributes["subject"] = pseudonym
    return Notice(notice_id, key.encode(), value,
                  kafka_headers(to_kafka(attributes, value, key)))


def contract_end(contract: Contract) -> datetime | None:
    """When ``contract`` ended or will end: its revocation, else midnight UTC after its last
    valid day; None for a contract in force with no end date."""
    if contract.revoked_at is not None:
        return contract.revoked_at
    if contract.valid_until is None:
        return None
    return datetime.combine(contract.valid_until + timedelta(days=1), time(), tzinfo=UTC)


def ending_notice_id(contract_id: str, end: datetime) -> str:
    """The id of the notice of a contract's end: the same for the same contract and instant."""
    return str(uuid.uuid5(_ENDINGS, f"{contract_id}/contract_ended/{end.isoformat()}"))
