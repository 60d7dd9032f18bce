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
moved before the writes are left to the next run, and a record that still landed between that
check and its key's tombstone is written again after it, so the person's latest choice stands.

"Latest" is by offset, as the state follower folds a partition: a person's records all share
one partition, whose order is the one routing saw, while ``recorded_at`` is the clock of
whichever writer recorded them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

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
    offset: int
    """Where the record is in its partition: the order routing folded it in."""


def expired(choices: Iterable[Choice], contracts: Mapping[str, Contract],
            before: datetime) -> list[Choice]:
    """The keys to tombstone: every key of a (topic, contract, subject) whose latest choice
    ended it before ``before``, but the marker of a standing objection (module docstring)."""
    pairs: dict[tuple[str, str, str], list[Choice]] = {}
    for choice in choices:
        pairs.setdefault((choice.topic, choice.contract_id, choice.subject), []).append(choice)
    gone = []
    for (topic, contract_id, _), history in pairs.items():
        latest = max(history, key=lambda c: c.offset)
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
    restored: list[str] = field(default_factory=list)
    """Keys whose record written during the run was written again after its tombstone."""


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
        tombstones = await _tombstone(producer, written)
        restored = await restore_overwritten(settings, producer, tombstones, read_to)
    finally:
        await producer.stop()
    log.info("state history expired", tombstones=len(written), deferred=len(deferred),
             restored=len(restored))
    return HistoryExpiry(written, deferred, restored)


Tombstones = dict[tuple[TopicPartition, str], int]
"""Each key tombstoned, by partition, and the offset its tombstone was written at."""


async def _tombstone(producer: AIOKafkaProducer, choices: list[Choice]) -> Tombstones:
    """Write a tombstone for each key, once the broker acknowledged every one of them: a run
    that could not write must fail, not report what it did not do."""
    sent = [await producer.send(c.topic, None, key=c.key.encode(), partition=c.partition)
            for c in choices]
    acknowledged = await asyncio.gather(*sent)
    return {(TopicPartition(c.topic, c.partition), c.key): metadata.offset
            for c, metadata in zip(choices, acknowledged, strict=True)}


async def restore_overwritten(settings: Settings, producer: AIOKafkaProducer,
                              tombstones: Tombstones, read_to: Positions) -> list[str]:
    """Write again each record that landed under a tombstoned key after the run read its
    partition (``read_to``) and before the tombstone: the tombstone deleted a choice made
    meanwhile (an enrolment made again), which must stay the key's latest."""
    written: dict[TopicPartition, list[int]] = {}
    for (tp, _), offset in tombstones.items():
        written.setdefault(tp, []).append(offset)
    ends = {tp: max(offsets) + 1 for tp, offsets in written.items()}
    # the run's tombstones alone, one after the other from where it read: nothing came between
    starts = {tp: read_to.get(tp, 0) for tp, offsets in written.items()
              if ends[tp] - read_to.get(tp, 0) != len(offsets)}
    if not starts:
        return []
    again = overwritten(await _records_between(settings, starts, ends), tombstones)
    for (tp, key), (value, headers) in sorted(again.items(), key=lambda i: str(i[0])):
        await (await producer.send(tp.topic, value, key=key.encode(), partition=tp.partition,
                                   headers=headers))
    return sorted(key for _, key in again)


Written = tuple[TopicPartition, str, int, bytes | None, list[tuple[str, bytes]]]
"""A record read back: partition, key, offset, value, headers."""


def overwritten(records: Iterable[Written], tombstones: Tombstones
                ) -> dict[tuple[TopicPartition, str], tuple[bytes, list[tuple[str, bytes]]]]:
    """Of the records read back, the last value written under each tombstoned key before its
    tombstone (the run's own tombstone is no choice; an earlier tombstone erased it)."""
    last: dict[tuple[TopicPartition, str], tuple[bytes, list[tuple[str, bytes]]] | None] = {}
    for tp, key, offset, value, headers in records:
        ours = tombstones.get((tp, key))
        if ours is not None and offset < ours:
            last[(tp, key)] = None if value is None else (value, headers)
    return {k: v for k, v in last.items() if v is not None}


async def _records_between(settings: Settings, starts: Positions,
                           ends: Positions) -> list[Written]:
    """Every keyed record of each partition from ``starts`` to ``ends`` (exclusive)."""
    return [(tp, r.key.decode("utf-8", "replace"), r.offset, r.value, list(r.headers))
            async for tp, r in _records(settings, dict(starts), ends) if r.key is not None]


async def _records(settings: Settings, starts: Mapping[TopicPartition, int | None],
                   ends: Positions) -> AsyncIterator[tuple[TopicPartition, ConsumerRecord]]:
    """Each record of each partition of ``starts`` from its start (None: the partition's
    beginning) up to its end in ``ends`` (exclusive), in each partition's order."""
    pending = {tp for tp in starts if ends.get(tp, 0) > 0}
    if not pending:
        return
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(pending))
        await consumer.seek_to_beginning(*(tp for tp in pending if starts[tp] is None))
        for tp in pending:
            start = starts[tp]
            if start is not None:
                consumer.seek(tp, start)
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield tp, record
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()


async def read_choices(settings: Settings, serde: AvroSerde,
                       catalog: Catalog) -> tuple[list[Choice], Positions]:
    """The latest record of every live key of both state topics, read to the end offsets
    they had when asked (which are returned): a key whose latest record is a tombstone, or
    that cannot be read, is left out."""
    partitions = await topic_partitions(settings, list(_RECORDS), missing_ok=True)
    ends = await end_offsets(settings, list(_RECORDS), missing_ok=True)
    latest: dict[tuple[str, int, str], Choice | None] = {}
    readers = {topic: catalog.bus_record(name).latest.parsed for topic, name in _RECORDS.items()}
    async for tp, record in _records(settings, dict.fromkeys(partitions), ends):
        if record.key is not None:
            key = record.key.decode("utf-8", "replace")
            latest[(tp.topic, tp.partition, key)] = _choice(
                tp, key, record.value, serde, readers[tp.topic], record.offset)
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
                      datum["recorded_at"], ended, offset)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("state record unreadable, left as it is", topic=tp.topic,
                    partition=tp.partition, offset=offset, error=record_error(exc, datum))
        return None
