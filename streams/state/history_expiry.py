"""The end of a person's history on the state topics: tombstones for ended choices past the audit
retention, so that compaction really removes them.

``bus.consents`` and ``bus.population`` are compacted: they keep each key's latest record for
ever. A person removed from a contract's population, or who withdrew their consent, still has
records there, pseudonymous but personal, after the decisions they justified have left the
audit trail. Once the latest record of such a choice is older than the audit retention, this
module writes a tombstone for its keys.

What a tombstone changes for routing is what was decided already:

- a population key gone reads as *not enrolled*, which a removal said (the state follower
  applies the tombstone as a release, :func:`streams.state.directory.release_of`);
- a consent key gone reads as *no decision*. Under ``opt_in`` that withholds as a withdrawal
  does (``no_consent`` either way), and ``not_required`` reads no consent at all. Under
  ``opt_out``, no decision *delivers*: a forgotten objection would send a person's data to
  the very subscriber they objected to. So the latest withdrawal of an ``opt_out`` contract
  is kept, as the one marker of the objection, for as long as the contract is not revoked
  (revocation is final; a recorded contract never becomes ``opt_out``,
  :func:`streams.state.contract_store._check_transition`); only the decisions before it go.
  A withdrawal for a contract no longer recorded is kept too: nothing says how it was read.

A person who changed their mind again is untouched: only a pair whose *latest* choice ended it
is expired. Tombstones are written by the operator's ``circulation retention expire-history``
(the principal that writes the persons' choices; the routing workers only read them), to the
partition of the record they delete. Between reading a partition and writing its tombstones, a
new record (an enrolment made again) could land under a population key: partitions whose end
moved meanwhile are left to the next run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from aiokafka import TopicPartition

from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.admin import end_offsets, topic_partitions
from streams.kafka.topics import CONSENTS, POPULATION
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.fences import Positions
from streams.state.record_errors import record_error

log = structlog.get_logger(__name__)

_RECORDS = {CONSENTS: "consent", POPULATION: "population"}


@dataclass(frozen=True)
class Choice:
    """The latest record under one key of a state topic, as far as expiry reads it."""

    topic: str
    partition: int
    key: str
    contract_id: str
    subject: str
    recorded_at: datetime
    ended: bool
    """A withdrawal (consents) or a removal (population)."""


def expired(choices: Iterable[Choice], contracts: Mapping[str, Contract],
            before: datetime) -> list[Choice]:
    """The keys to tombstone: every key of a (topic, contract, subject) whose latest choice
    ended it before ``before``, but the marker of a standing objection (module docstring)."""
    pairs: dict[tuple[str, str, str], list[Choice]] = {}
    for choice in choices:
        pairs.setdefault((choice.topic, choice.contract_id, choice.subject), []).append(choice)
    gone = []
    for (topic, contract_id, _), history in pairs.items():
        latest = max(history, key=lambda c: (c.recorded_at, c.key))
        if not latest.ended or latest.recorded_at >= before:
            continue
        keep_marker = topic == CONSENTS and _objection_stands(contracts.get(contract_id))
        gone += [c for c in history if not (keep_marker and c is latest)]
    return sorted(gone, key=lambda c: (c.topic, c.partition, c.key))


def _objection_stands(contract: Contract | None) -> bool:
    """Whether a withdrawal may still be what keeps a delivery from happening."""
    if contract is None:
        return True
    return contract.consent == "opt_out" and not contract.revoked


@dataclass(frozen=True)
class HistoryExpiry:
    """What a run found and did: the keys tombstoned, and partitions left to the next run."""

    tombstoned: list[Choice]
    deferred: list[TopicPartition]


async def expire_history(settings: Settings, serde: AvroSerde, catalog: Catalog,
                         contracts: Mapping[str, Contract], before: datetime,
                         dry_run: bool = False) -> HistoryExpiry:
    """Tombstone the keys :func:`expired` names (none with ``dry_run``)."""
    choices, read_to = await read_choices(settings, serde, catalog)
    due = expired(choices, contracts, before)
    if dry_run or not due:
        return HistoryExpiry(due, [])
    now = await end_offsets(settings, list(_RECORDS))
    deferred = sorted({TopicPartition(c.topic, c.partition) for c in due
                       if now.get(TopicPartition(c.topic, c.partition))
                       != read_to.get(TopicPartition(c.topic, c.partition))})
    written = [c for c in due if TopicPartition(c.topic, c.partition) not in deferred]
    producer = clients.producer(settings)
    await producer.start()
    try:
        for choice in written:
            await producer.send(choice.topic, None, key=choice.key.encode(),
                                partition=choice.partition)
        await producer.flush()
    finally:
        await producer.stop()
    log.info("state history expired", tombstones=len(written), deferred=len(deferred))
    return HistoryExpiry(written, deferred)


async def read_choices(settings: Settings, serde: AvroSerde,
                       catalog: Catalog) -> tuple[list[Choice], Positions]:
    """The latest record of every live key of both state topics, read to the end offsets
    they had when asked (which are returned): a key whose latest record is a tombstone, or
    that cannot be read, is left out."""
    partitions = await topic_partitions(settings, list(_RECORDS), missing_ok=True)
    ends = await end_offsets(settings, list(_RECORDS), missing_ok=True)
    latest: dict[tuple[str, int, str], Choice | None] = {}
    readers = {topic: catalog.bus_record(name).latest.parsed for topic, name in _RECORDS.items()}
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
                for record in records:
                    if record.offset < ends[tp] and record.key is not None:
                        key = record.key.decode("utf-8", "replace")
                        latest[(tp.topic, tp.partition, key)] = _choice(
                            tp, key, record.value, serde, readers[tp.topic], record.offset)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return [c for c in latest.values() if c is not None], ends


def _choice(tp: TopicPartition, key: str, value: bytes | None, serde: AvroSerde,
            reader: Any, offset: int) -> Choice | None:
    if value is None:
        return None
    datum = None
    try:
        _, datum = serde.decode(value, reader)
        ended = (datum["status"] == "withdrawn" if tp.topic == CONSENTS
                 else not datum["enrolled"])
        return Choice(tp.topic, tp.partition, key, datum["contract_id"], datum["subject_ref"],
                      datum["recorded_at"], ended)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("state record unreadable, left as it is", topic=tp.topic,
                    partition=tp.partition, offset=offset, error=record_error(exc, datum))
        return None
