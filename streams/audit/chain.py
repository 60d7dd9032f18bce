"""Audit records: one per routing decision, delivered or withheld, hash-chained.

Each record carries the hash of the previous record of its chain and its own hash over its
content, so a verifier finds any record changed, removed or reordered.

A chain is one partition of ``bus.audit``, read in offset order. The decisions about partition
*p* of the provider topics are written to audit partition *p*: Faust assigns co-partitioned
topics (same partition count, same subscribers) together, so exactly one worker owns partition
*p* of every provider topic and is the only writer of chain *p*. A worker that takes a partition
over recovers the chain's head from the last routing record of that audit partition before
extending it.

A file sink deletes the files of a contract's deliveries once their retention ended, and audits
each deletion in a chain of its own: the records keyed ``sink.files.<contract>`` (so all on one
partition, in offset order), of which that sink is the single writer. They share a partition
with a routing chain, so a partition holds several chains, told apart by the record's key
(:func:`named_chain`); a record's content must agree with its key (:func:`chain_of_record`),
since its content alone is hashed.

A worker also audits, in its partitions' routing chains, the state changes it applies and the
erasure notices it sends (:mod:`streams.audit.state_changes`): same chain, same single writer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any

from schemas.catalog import Catalog
from streams.audit.encoder import AuditEncoder

GENESIS = "0" * 64
"""The ``previous_hash`` of the first record of a chain."""

HASH_VERSION = 5
"""The hashed form writers use (a record's ``hash_version``).

Form 5 hashes the record's own Avro binary encoding (audit schema version 5) of every field but
``record_hash``, ``previous_hash`` and ``hash_version`` included. Forms 4, 3 and 2 are the same
under audit schema versions 4 (no state change fields), 3 (no deletion fields, no ``replay``
either) and 2 (no ``delivery_id`` either): a record's form is the schema version it was written
under, so records written before the delivery's id, deletions, replays or state changes were
audited still verify.
Avro writes every string and array with its length or count first, the union branch and enum
symbol as indexes, and the fields in a fixed order, so two different records never give the
same bytes; and any Avro
library recomputes the form from the registered schema alone, with nothing of the bus's own to
specify or reimplement. Form 1 joined the fields with separators, which field values may
contain: it is only read, for the records written before their chain switched to form 2. Those
were written before records said their form: they read with ``hash_version`` null.
"""

HASHED_FIELDS_V1 = ("event_id", "contract_id", "subscriber", "provider", "dataset", "subject_ref",
                    "decision", "reason", "decided_at", "fields_delivered")
"""The fields the first hashed form covers, in this order (after ``previous_hash``)."""


@cache
def _hashed_form(version: int) -> AuditEncoder:
    """The encoder of form ``version`` (2 or more): pinned to that audit schema version,
    whatever later versions add."""
    return AuditEncoder(Catalog.load().bus_record("audit").version(version).raw)


def _hash_avro(version: int) -> Callable[[Mapping[str, Any]], str]:
    """Form ``version``: SHA-256 of the Avro encoding, under audit schema ``version``, of
    every field of a record but ``record_hash``."""
    def hashed(record: Mapping[str, Any]) -> str:
        return hashlib.sha256(_hashed_form(version).hashed(record)).hexdigest()
    return hashed


def _hash_v1(record: Mapping[str, Any]) -> str:
    """The first form, rebuilt exactly from a decoded record (instants as epoch milliseconds)."""
    text = {name: record[name] for name in HASHED_FIELDS_V1} | {
        "reason": record["reason"] or "",
        "decided_at": str(int(record["decided_at"].timestamp() * 1000)),  # as stored
        "fields_delivered": ",".join(record["fields_delivered"])}
    canonical = "\x1f".join(text[name] for name in HASHED_FIELDS_V1)
    return hashlib.sha256(f"{record['previous_hash']}\x1e{canonical}".encode()).hexdigest()


_FORMS = {1: _hash_v1, 2: _hash_avro(2), 3: _hash_avro(3), 4: _hash_avro(4),
          5: _hash_avro(HASH_VERSION)}
_hash_current = _FORMS[HASH_VERSION]


class UnknownHashedForm(ValueError):
    """A record names a hashed form this verifier does not know."""


def hashed_form(record: Mapping[str, Any]) -> int:
    """The hashed form ``record`` says it uses: its ``hash_version``, 1 when null."""
    version = record["hash_version"]
    return 1 if version is None else int(version)


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash of ``record`` (``record_hash`` itself aside) in the form its ``hash_version``
    names; :class:`UnknownHashedForm` for any other."""
    form = _FORMS.get(hashed_form(record))
    if form is None:
        raise UnknownHashedForm("its hash_version names no hashed form this verifier knows")
    return form({**record, "fields_delivered": tuple(record["fields_delivered"])})


NO_STATE_CHANGE: Mapping[str, None] = {
    "change": None, "erasure_reason": None, "channel": None, "principal": None,
    "evidence_ref": None, "state_topic": None, "state_partition": None, "state_offset": None}
"""The state change's fields (audit schema version 5), in every record that is no state change:
a routing decision or a deletion."""


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
               fields_delivered: tuple[str, ...], decided_at: datetime,
               delivery_id: str | None = None, replay: bool = False) -> dict[str, Any]:
        """The audit record of one contract's verdict on one event, linked to the head of
        ``chain``: delivered (with the fields it received and the delivery's own id) when
        ``reason`` is None, withheld for ``reason`` otherwise; ``replay`` when the event was
        routed again at an operator's request."""
        record = {"event_id": event_id, "delivery_id": delivery_id if reason is None else None,
                  "contract_id": contract_id, "subscriber": subscriber,
                  "provider": provider, "dataset": dataset, "subject_ref": subject_ref,
                  "file_day": None, "deliveries_deleted": None,
                  "decision": "delivered" if reason is None else "withheld", "reason": reason,
                  "decided_at": decided_at,
                  "fields_delivered": fields_delivered if reason is None else (),
                  "hash_version": HASH_VERSION, "replay": replay, **NO_STATE_CHANGE,
                  "previous_hash": self.heads.get(chain, GENESIS)}
        record["record_hash"] = self.heads[chain] = _hash_current(record)
        return record

    def linked(self, chain: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A record of ``fields`` (every field but the form and the hashes) linked to the head
        of ``chain``, which it becomes."""
        record = {**fields, "hash_version": HASH_VERSION,
                  "previous_hash": self.heads.get(chain, GENESIS)}
        record["record_hash"] = self.heads[chain] = _hash_current(record)
        return record


SINK_CHAINS = "sink."
"""The key prefix of the chains sinks write; no subject reference or SIREN starts so."""
FILE_SINK_CHAINS = f"{SINK_CHAINS}files."
DELETED = "deleted"
"""The decision of a deletion record."""


def file_sink_chain(contract_id: str) -> str:
    """The chain of the file sink of ``contract_id``: its records' key on ``bus.audit``."""
    return f"{FILE_SINK_CHAINS}{contract_id}"


def named_chain(key: bytes | None) -> str | None:
    """The chain a record of ``bus.audit`` belongs to by its key: a sink's chain (its name),
    or None for the routing chain of the record's partition."""
    if key is None or not key.startswith(SINK_CHAINS.encode()):
        return None
    return key.decode(errors="replace")


def chain_of_record(record: Mapping[str, Any]) -> str | None:
    """The chain a record belongs to by its content: a deletion to its contract's file sink
    chain, a routing decision to its partition's (None)."""
    return file_sink_chain(record["contract_id"]) if record["decision"] == DELETED else None


def deletion_record(previous: str, *, contract_id: str, subscriber: str, day: date,
                    deliveries: int, deleted_at: datetime) -> dict[str, Any]:
    """The audit record of a file sink's deletion of ``contract_id``'s file of ``day``, which
    held ``deliveries`` deliveries, linked to ``previous`` (its chain's head). It names the
    contract, the day and the count, and no person: the file held pseudonymous deliveries, and
    their ids are the subscriber's, not the audit trail's."""
    record: dict[str, Any] = {
        "event_id": f"{contract_id}/{day.isoformat()}.jsonl", "delivery_id": None,
        "contract_id": contract_id, "subscriber": subscriber, "provider": "", "dataset": "",
        "subject_ref": "", "file_day": day, "deliveries_deleted": deliveries,
        "decision": DELETED, "reason": None, "decided_at": deleted_at, "fields_delivered": (),
        "hash_version": HASH_VERSION, "replay": None, **NO_STATE_CHANGE,
        "previous_hash": previous}
    record["record_hash"] = _hash_current(record)
    return record


@dataclass(frozen=True)
class ChainBreak:
    """Where a chain stops proving itself: the offset and what is wrong there (``chain``: the
    sink's chain, None for the partition's routing chain)."""

    partition: int
    offset: int
    reason: str
    chain: str | None = None

    def __str__(self) -> str:
        where = f"audit partition {self.partition}, offset {self.offset}"
        if self.chain is not None:
            where = f"audit chain {self.chain} ({where})"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class NotARecord:
    """An offset of a chain that holds no audit record a verifier can read, and why (never the
    bytes found there)."""

    reason: str


Entry = tuple[int, Mapping[str, Any] | NotARecord]
"""One offset of a chain as read: its decoded record, or why there is none."""


def verify_chain(partition: int, entries: Iterable[Entry], previous: str | None = GENESIS,
                 newest_form: int = 1, chain: str | None = None) -> list[ChainBreak]:
    """Check a chain read in offset order: every hash recomputes in its record's form and links
    to the previous one; no record uses an older form than one before it.

    ``previous`` and ``newest_form`` describe what came before the first entry: the genesis and
    form 1, or the record before them when a chain is checked from the middle (None when that
    record could not be read: the first link is then taken as it is).

    A changed record fails its own hash; a removed or reordered one breaks the link of the next;
    an offset holding no record is a break of its own, and the next record still links across
    it, to the last record read. ``chain`` names a sink's chain (None: the partition's routing
    chain); a record whose content belongs to another chain is a break.
    """
    breaks = []
    for offset, entry in entries:
        if isinstance(entry, NotARecord):
            breaks.append(ChainBreak(partition, offset, entry.reason, chain))
            continue
        problems = _problems(entry, previous, newest_form)
        if chain_of_record(entry) != chain:
            problems.append("its content belongs to another chain than its key places it in")
        breaks += [ChainBreak(partition, offset, reason, chain) for reason in problems]
        previous = entry["record_hash"]
        if hashed_form(entry) in _FORMS:
            newest_form = max(newest_form, hashed_form(entry))
    return breaks


def _problems(record: Mapping[str, Any], previous: str | None, newest_form: int) -> list[str]:
    """What is wrong with one record, given the hash and the newest form before it."""
    problems = []
    if previous is not None and record["previous_hash"] != previous:
        problems.append("does not link to the previous record (a record was removed, inserted "
                        "or reordered)")
    try:
        if record_hash(record) != record["record_hash"]:
            problems.append("its hash does not match its content (the record was changed)")
    except UnknownHashedForm as exc:
        problems.append(str(exc))
    except (ValueError, TypeError, KeyError):  # e.g. a symbol its form's schema lacks
        problems.append("it cannot be written in the hashed form it names (a value that form "
                        "has no place for): it was not written by the bus")
    else:
        if hashed_form(record) < newest_form:
            problems.append(f"written in hashed form {hashed_form(record)} after its chain "
                            f"switched to form {newest_form} (a chain never switches back)")
    return problems
