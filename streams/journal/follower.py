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
from collections.abc import AsyncIterator, Sequence
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
        self._task.add_done_callback(lambda _: asyncio.ensure_future(self._notify()))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    def ensure_following(self) -> None:
        """Raise :class:`JournalFollowerStopped` when the follower's task has ended."""
        task = self._task
        if task is None or task.done():
            error = None if task is None or task.cancelled() else task.exception()
            raise JournalFollowerStopped(f"the journal follower stopped: {error!r}")

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

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH_RECORDS)
            await self._serde.fetch_writers(r.value for rs in batches.values() for r in rs)
            batch = self.view.batch()
            for tp, records in batches.items():
                self._fold(batch, tp, records)
            moved = {tp: await consumer.position(tp) for tp in self._partitions}
            if batches or moved != self._positions:
                batch.commit({(tp.topic, tp.partition): offset for tp, offset in moved.items()})
                self._positions = moved
            await self._notify()

    def _fold(self, batch: Batch, tp: TopicPartition,
              records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        self.records += len(records)
        for record in records:
            try:
                self._fold_one(batch, tp, record)
            except (DecodeError, ValueError, KeyError, TypeError) as exc:
                log.error("journal: record unreadable, skipped", topic=tp.topic,
                          partition=tp.partition, offset=record.offset,
                          error=type(exc).__name__)

    def _fold_one(self, batch: Batch, tp: TopicPartition,
                  record: ConsumerRecord[Any, Any]) -> None:
        key = None if record.key is None else bytes(record.key).decode("utf-8", "replace")
        if record.value is None:
            made: Made | None = None
            if tp.topic == CONTRACTS and key is not None:
                batch.contract(key, None)
            elif tp.topic == POPULATION and key is not None:
                made = from_release(key, record.timestamp)
        else:
            made = self._made(batch, tp.topic, record.value)
        if made is not None:
            batch.add(made, Source(tp.topic, tp.partition, record.offset))

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
