"""Keeps the journal's view up to date: follows ``bus.audit`` and the state topics.

A plain consumer outside any group reads every partition of the audit trail and of
``bus.contracts``, ``bus.consents`` and ``bus.population``, from where the view says it stopped
(from the beginning for a fresh view), and writes what each read adds, with the positions it
reached, in one batch. Only committed records are read: a routing transaction that was aborted
delivered nothing, and its decisions are not the person's history. Positions are the
consumer's, not the last record's plus one, so that transaction markers at a partition's end do
not leave a reader forever one offset short of it.

Records are decoded through the registry, as the audit trail's verifier decodes them, read as
this version's schemas; one that cannot be read is logged by place (never by value) and
skipped, so that a record written by a newer version does not stop the journal of everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from schemas.catalog import Catalog
from schemas.codec import DecodeError, to_json
from schemas.serde import AvroSerde
from streams.journal.entries import (
    Made,
    Source,
    from_audit,
    from_consent,
    from_population,
    from_release,
)
from streams.journal.view import Batch, JournalView
from streams.kafka import clients
from streams.kafka.admin import topic_partitions
from streams.kafka.topics import AUDIT, BUS_RECORD_TOPICS, CONSENTS, CONTRACTS, POPULATION
from streams.settings import Settings
from streams.state.contract import Contract

log = structlog.get_logger(__name__)

FOLLOWED = {BUS_RECORD_TOPICS[name]: name
            for name in ("audit", "consent", "population", "contract")}
"""The topics the journal follows, and the bus record each carries."""
BATCH_RECORDS = 20_000
PRUNE_EVERY_S = 3600.0
"""How often audit entries past the audit retention leave the view (also once at start)."""


def follower_consumer(settings: Settings) -> AIOKafkaConsumer:
    """The follower's consumer, not started. ``earliest`` when a position is out of range:
    retention may delete the segment a rebuild is reading, and aiokafka's default (``latest``)
    would then jump to the end, silently leaving out everything between."""
    return clients.consumer(settings, enable_auto_commit=False, auto_offset_reset="earliest",
                            isolation_level="read_committed",
                            max_partition_fetch_bytes=4 * 1024 * 1024)


class JournalFollowerStopped(RuntimeError):
    """The follower's task ended: the view no longer follows the bus."""


class JournalFollower:
    """Follows the topics into ``view``, in the background, from :meth:`start` to :meth:`stop`."""

    def __init__(self, settings: Settings, serde: AvroSerde, catalog: Catalog,
                 view: JournalView) -> None:
        self.view = view
        self._settings = settings
        self._serde = serde
        self._readers = {topic: catalog.bus_record(name).latest.parsed
                         for topic, name in FOLLOWED.items()}
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._pruning: asyncio.Future[None] | None = None
        self._writing: asyncio.Future[None] | None = None
        self._woken: asyncio.Future[None] | None = None
        self._progress = asyncio.Condition()
        self.records = 0
        """Records read since :meth:`start` (the rebuild benchmark's count)."""

    async def start(self) -> None:
        """Assign every partition at the view's positions, and follow."""
        self._partitions = await topic_partitions(self._settings, list(FOLLOWED),
                                                  missing_ok=True)
        consumer = follower_consumer(self._settings)
        self._consumer = consumer
        await consumer.start()
        consumer.assign(self._partitions)
        begins = await consumer.beginning_offsets(self._partitions)
        stored = self.view.positions()
        for tp in self._partitions:
            self._positions[tp] = max(stored.get((tp.topic, tp.partition), 0), begins[tp])
            consumer.seek(tp, self._positions[tp])
        self._task = asyncio.create_task(self._follow(consumer), name="journal-follower")
        self._task.add_done_callback(self._on_stopped)
        self._pruner = asyncio.create_task(self._prune_every(), name="journal-pruner")

    async def stop(self) -> None:
        for task in (self._task, self._pruner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._pruner = None
        for thread in (self._writing, self._pruning):  # not cancelled: the view outlives it
            if thread is not None:
                await asyncio.wait({thread})
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    def _on_stopped(self, task: asyncio.Task[None]) -> None:
        """Log why the follower ended (by kind, never a value), and wake those waiting."""
        if not task.cancelled() and task.exception() is not None:
            log.error("journal: the follower stopped, the journal page answers 503",
                      error=type(task.exception()).__name__)
        self._woken = asyncio.ensure_future(self._notify())

    def ensure_following(self) -> None:
        """Raise :class:`JournalFollowerStopped` when the follower's task has ended."""
        task = self._task
        if task is None or task.done():
            error = None if task is None or task.cancelled() else task.exception()
            raise JournalFollowerStopped("the journal follower stopped: "
                                         f"{type(error).__name__ if error else 'not running'}")

    async def caught_up(self) -> None:
        """Return once everything the topics held when called is in the view (a write made
        before the call is then read back)."""
        consumer = self._consumer
        if consumer is None:
            raise JournalFollowerStopped("the journal follower is not started")
        ends = await consumer.end_offsets(self._partitions)
        async with self._progress:
            await self._progress.wait_for(lambda: self._reached(ends) or self._ended())
        self.ensure_following()

    def _ended(self) -> bool:
        return self._task is None or self._task.done()

    def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        return all(self._positions.get(tp, 0) >= end for tp, end in ends.items())

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def _prune_every(self) -> None:
        """Prune now, then every :data:`PRUNE_EVERY_S`, off the event loop."""
        while True:
            self._pruning = asyncio.ensure_future(asyncio.to_thread(self._prune))
            await asyncio.shield(self._pruning)
            await asyncio.sleep(PRUNE_EVERY_S)

    def _prune(self) -> None:
        """Delete the audit entries whose record the audit retention deleted (an error is
        logged by kind and tried again at the next round)."""
        try:
            pruned = self.view.prune(self._retained_since(), AUDIT)
        except Exception as exc:  # a failed round must not end the next ones
            log.error("journal: pruning failed", error=type(exc).__name__)
            return
        log.info("journal: entries past the audit retention pruned", entries=pruned)

    def _retained_since(self) -> datetime:
        return datetime.now(UTC) - self._settings.audit_retention

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        """Fetch on the event loop; decode, fold and write each batch in a thread, so that a
        rebuild's thousands of records per batch do not hold up the gateway's requests (the
        view's readers meanwhile see the last batch written, RocksDB being thread-safe)."""
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH_RECORDS)
            await self._serde.fetch_writers(r.value for rs in batches.values() for r in rs)
            moved = {tp: await consumer.position(tp) for tp in self._partitions}
            if batches or moved != self._positions:
                self._writing = asyncio.ensure_future(
                    asyncio.to_thread(self._write, batches, moved))
                await asyncio.shield(self._writing)
                self._positions = moved
            await self._notify()

    def _write(self, batches: Mapping[TopicPartition, Sequence[ConsumerRecord[Any, Any]]],
               moved: Mapping[TopicPartition, int]) -> None:
        """Fold one fetch into the view, with the positions it reached, in one batch."""
        batch = self.view.batch()
        for tp, records in batches.items():
            self._fold(batch, tp, records)
        batch.commit({(tp.topic, tp.partition): offset for tp, offset in moved.items()})

    def _fold(self, batch: Batch, tp: TopicPartition,
              records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        self.records += len(records)
        since = self._retained_since()
        for record in records:
            try:
                self._fold_one(batch, tp, record, since)
            except (DecodeError, ValueError, KeyError, TypeError) as exc:
                log.error("journal: record unreadable, skipped", topic=tp.topic,
                          partition=tp.partition, offset=record.offset,
                          error=type(exc).__name__)

    def _fold_one(self, batch: Batch, tp: TopicPartition, record: ConsumerRecord[Any, Any],
                  since: datetime) -> None:
        """Fold one record; an audit entry older than the retention (a segment not yet
        deleted) is left out, as pruning would remove it."""
        raw = None if record.key is None else bytes(record.key)
        source = Source(tp.topic, tp.partition, record.offset)
        if record.value is None:
            if raw is not None:
                self._tombstone(batch, source, raw, record.timestamp)
            return
        made = self._made(batch, tp.topic, record.value)
        if made is None or (tp.topic == AUDIT and made.entry.at < since):
            return
        batch.add(made, source, None if tp.topic == AUDIT else raw)

    @staticmethod
    def _tombstone(batch: Batch, source: Source, raw: bytes, timestamp: int) -> None:
        """A contract erased; or a state key erased, with the entries its records made. A
        population key erased releases the person, which makes an entry only when they were
        enrolled (``expire-history`` erases the keys of persons released long ago)."""
        key = raw.decode("utf-8", "replace")
        if source.topic == CONTRACTS:
            batch.contract(key, None)
            return
        batch.forget(source.topic, raw)
        if source.topic != POPULATION:
            return
        made = from_release(key, timestamp)
        if made is None:
            return
        standing = batch.file_of(made.subject).get(made.entry.contract_id)
        if standing is not None and standing.enrolled:
            batch.add(made, source, raw)

    def _made(self, batch: Batch, topic: str, value: bytes) -> Made | None:
        reader = self._readers[topic]
        _, datum = self._serde.decode(value, reader)
        if topic == AUDIT:
            return from_audit(datum)
        if topic == CONSENTS:
            return from_consent(datum)
        if topic == POPULATION:
            return from_population(datum)
        contract = Contract.from_record(to_json(reader, datum))
        batch.contract(contract.id, contract)
        return None


@contextlib.asynccontextmanager
async def caught_up_view(settings: Settings) -> AsyncIterator[JournalView]:
    """The view at ``settings``' journal directory, brought up to date with the topics now
    (a command's embedded reading), then closed."""
    view = JournalView(settings.journal_view_dir())
    try:
        with clients.schema_registry(settings) as registry:
            follower = JournalFollower(settings, AvroSerde(registry), Catalog.load(), view)
            await follower.start()
            try:
                await follower.caught_up()
            finally:
                await follower.stop()
        yield view
    finally:
        view.close()
