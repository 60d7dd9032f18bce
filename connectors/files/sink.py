"""The file sink's Kafka side: a contract's deliveries into its day files, committed only once
they are on disk, and the files whose deliveries expired deleted and audited.

It reads the delivery topic in the consumer group ``sink.<contract>.files``
(:func:`~connectors.sinks.sink_group`), apart from a webhook sink of the same contract, and
takes what arrives for up to :data:`FLUSH_INTERVAL_S` (or :data:`FLUSH_RECORDS` records)
before a flush: the deliveries are grouped by day and added to their files
(:class:`~connectors.files.day_files.DayFiles`: atomic, durable, each delivery once), and only
then are the offsets just past them committed. A kill before the commit reads them again, and
the day files already hold them; nothing is committed that is not on disk. Each partition's
deliveries are written in offset order, so one person's stay in order in a day's file.

A delivery already expired when it arrives is not written: the subscriber may no longer keep
it. One that cannot be read (not a delivery, a missing attribute) becomes a dead letter and the
next is written. Every :data:`EXPIRY_CHECK_S`, and when it starts, the sink deletes each day's
file whose every delivery has expired, having first written the deletion to its own audit chain
(:mod:`connectors.files.deletions`).

One sink per contract: a lock file in the contract's folder keeps a second process off the same
files, and the audit chain of the contract's deletions must have a single writer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from cloudevents.core.exceptions import BaseCloudEventException

from connectors.deliveries import delivery_json
from connectors.durable_files import Locked, exclusive_lock
from connectors.files.day_files import DayFiles, Line, contract_folder
from connectors.files.deletions import DeletionChain
from connectors.sinks import send_dead_letter, sink_consumer, sink_group
from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.routing.dead_letters import DeadLetters
from streams.settings import Settings
from streams.state.contract import Contract

log = structlog.get_logger(__name__)
GROUP_KIND = "files"
FLUSH_INTERVAL_S = 0.5
"""How long deliveries are gathered before a flush: each flush copies the day's file once."""
FLUSH_RECORDS = 5000
"""Deliveries gathered at most before a flush."""
EXPIRY_CHECK_S = 60.0
"""How often the sink looks for files whose deliveries have all expired."""
LOCK_NAME = ".lock"
READ_FAULTS = (ValueError, KeyError, TypeError, BaseCloudEventException)
"""What reading one delivery may raise because of that record alone: a dead letter."""

Clock = Callable[[], datetime]


def files_group(contract_id: str) -> str:
    """The consumer group of the file sink of ``contract_id``."""
    return sink_group(contract_id, GROUP_KIND)


class SinkLocked(Locked):
    """Another file sink of the contract writes to the same folder."""


@dataclass
class Flush:
    """What one flush read, wrote and set aside."""

    read: int = 0
    written: int = 0
    expired: int = 0
    dead_letters: int = 0
    days: dict[date, list[Line]] = field(default_factory=dict)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class FileSink:
    """One contract's file sink, from its start to its stop."""

    def __init__(self, settings: Settings, contract: Contract, root: Path,
                 clock: Clock = lambda: datetime.now(UTC)) -> None:
        self.contract = contract
        self.files = DayFiles(contract_folder(root, contract.id),
                              timedelta(milliseconds=contract.retention_ms))
        self._settings = settings
        self._clock = clock

    async def run(self, stop: asyncio.Event, expiry_check_s: float = EXPIRY_CHECK_S) -> None:
        """Write the contract's deliveries to their day files, and delete the expired ones,
        until ``stop`` is set. :class:`SinkLocked` when another sink holds the folder,
        :class:`~connectors.files.day_files.UnreadableDayFile` for a file it cannot read
        back: both before any connection."""
        self.files.folder.parent.mkdir(mode=0o700, exist_ok=True)
        self.files.folder.mkdir(mode=0o700, exist_ok=True)
        lock = self.files.folder / LOCK_NAME
        try:
            with exclusive_lock(lock, f"another file sink writes to {self.files.folder} "
                                      f"({lock} is locked): one sink per contract"):
                self.files.open()
                await _Session(self._settings, self.contract, self.files,
                               self._clock).run(stop, expiry_check_s)
        except Locked as exc:
            raise SinkLocked(str(exc)) from None


class _Session:
    """One run's clients, made once the folder is locked and read, closed when it ends."""

    def __init__(self, settings: Settings, contract: Contract, files: DayFiles,
                 clock: Clock) -> None:
        self.contract = contract
        self.files = files
        self._clock = clock
        self._registry = clients.schema_registry(settings)
        self._serde = AvroSerde(self._registry)
        self._dead_letters = DeadLetters(Catalog.load(), self._serde)
        self.producer: AIOKafkaProducer = clients.producer(settings)
        self.consumer: AIOKafkaConsumer = sink_consumer(settings, files_group(contract.id))
        self.deletions = DeletionChain(settings, self._serde, self.producer, contract)

    async def run(self, stop: asyncio.Event, expiry_check_s: float) -> None:
        try:
            await self.producer.start()
            await self.consumer.start()
            await self.deletions.start()
            await self.delete_expired()
            checked = time.monotonic()
            self.consumer.subscribe([self.contract.delivery_topic])
            while not stop.is_set():
                await self.flush(await self._gather(stop))
                if time.monotonic() - checked >= expiry_check_s:
                    await self.delete_expired()
                    checked = time.monotonic()
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            self._registry.close()

    async def _gather(self, stop: asyncio.Event) -> list[Any]:
        """The records that arrive within :data:`FLUSH_INTERVAL_S` of the first (at most
        :data:`FLUSH_RECORDS`), in each partition's offset order."""
        records: list[Any] = []
        deadline: float | None = None
        while not stop.is_set() and len(records) < FLUSH_RECORDS:
            wait = 0.2 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            batches = await self.consumer.getmany(timeout_ms=int(wait * 1000),
                                                  max_records=FLUSH_RECORDS - len(records))
            for fetched in batches.values():
                records += fetched
            if records and deadline is None:
                deadline = time.monotonic() + FLUSH_INTERVAL_S
            if deadline is None:
                break  # nothing came: let the caller look at the clock
        return records

    async def flush(self, records: list[Any]) -> Flush:
        """Write ``records`` to their day files, then commit just past them."""
        done = Flush(read=len(records))
        if not records:
            return done
        await self._serde.fetch_writers(record.value for record in records)  # off the loop
        now = self._clock()
        for record in records:
            done.offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
            await self._take(record, now, done)
        done.written = self.files.add(done.days)
        await self.consumer.commit(done.offsets)
        report = log.info if done.expired or done.dead_letters else log.debug
        report("deliveries written", contract=self.contract.id, read=done.read,
               written=done.written, already_written=done.read - done.written - done.expired
               - done.dead_letters, expired_on_arrival=done.expired,
               dead_letters=done.dead_letters)
        return done

    async def _take(self, record: Any, now: datetime, done: Flush) -> None:
        """Add ``record`` to its day's lines, or count it expired, or dead-letter it."""
        try:
            event = delivery_json(self._serde, list(record.headers), record.key, record.value)
            line = Line.of(event, self.files.retention)
        except READ_FAULTS as exc:
            await send_dead_letter(self.producer, self._dead_letters, record, exc)
            done.dead_letters += 1
            return
        if line.expires <= now:
            done.expired += 1
            return
        done.days.setdefault(line.day, []).append(line)

    async def delete_expired(self) -> list[date]:
        """Delete each day's file whose every delivery has expired, each audited first;
        returns their days."""
        now = self._clock()
        deleted = []
        for day, summary in sorted(self.files.summaries.items()):
            if not summary.expired(now):
                continue
            if not self.deletions.recorded(day, summary.deliveries):
                at = now.replace(microsecond=now.microsecond // 1000 * 1000)
                await self.deletions.record(day, summary.deliveries, at)
            self.files.delete(day)
            deleted.append(day)
            log.info("expired deliveries deleted", contract=self.contract.id,
                     day=day.isoformat(), deliveries=summary.deliveries)
        return deleted
