"""What every routing worker must know before it routes: contracts, consents and populations.

Each worker follows the three compacted topics from the beginning, on every partition, with a
plain consumer outside any group, and keeps the result in memory. That sidesteps Faust's
GlobalTable, reported broken with several workers (faust-streaming issue 283): every worker
sees every applied or revoked contract, consent and enrolment, whatever partitions it routes.

Reading your writes: every state change is followed by a fence on every provider partition
(:mod:`streams.state.fences`). :meth:`StateFollower.reached` tells whether the worker applied what a
fence names; :meth:`StateFollower.barrier`, which returns once the worker has applied
everything the state topics held when it was called, covers what a fence cannot: a worker's
start, partitions newly assigned, a fence that cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.catalog import Catalog
from schemas.codec import to_json
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.admin import topic_partitions
from streams.kafka.topics import BUS_RECORD_TOPICS
from streams.settings import Settings
from streams.state.bus_state import BusState
from streams.state.fences import Positions
from streams.state.record_errors import record_error

log = structlog.get_logger(__name__)

class StateFollowerStopped(RuntimeError):
    """The state follower's task ended; the message carries why."""


_RECORD_OF_TOPIC = {BUS_RECORD_TOPICS[name]: name for name in ("contract", "consent", "population")}
"""The state topics a worker follows, and the bus record each carries."""


class StateFollower:
    """Keeps a :class:`BusState` up to date from the state topics, in the background."""

    def __init__(self, settings: Settings, serde: AvroSerde, catalog: Catalog) -> None:
        self.state = BusState()
        self._settings = settings
        self._serde = serde
        self._readers = {topic: catalog.bus_record(name).latest.parsed
                         for topic, name in _RECORD_OF_TOPIC.items()}
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self._positions: dict[TopicPartition, int] = {}
        self._waking: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Assign every partition of the state topics from the beginning and start following."""
        consumer = clients.consumer(self._settings, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        partitions = await topic_partitions(self._settings, list(_RECORD_OF_TOPIC))
        await consumer.start()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._positions = dict(await consumer.beginning_offsets(partitions))
        self._consumer = consumer
        # End offsets are asked on a connection of their own: on the follower's, the request
        # would queue behind its long-polling fetch (up to fetch.max.wait.ms per barrier).
        self._offsets = clients.consumer(self._settings, enable_auto_commit=False)
        await self._offsets.start()
        self._task = asyncio.create_task(self._follow(consumer), name="state-follower")
        self._task.add_done_callback(self._on_stopped)
        await self.barrier()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._offsets is not None:
            await self._offsets.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for partition, records in batches.items():
                for record in records:
                    self._apply(partition.topic, record.key, record.value,
                                partition.partition, record.offset)
                if records:
                    self._positions[partition] = records[-1].offset + 1
            await self._notify()

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    def _on_stopped(self, _: asyncio.Task[None]) -> None:
        """Wake whoever waits on a barrier, so that it learns the follower stopped."""
        self._waking = asyncio.ensure_future(self._notify())

    def ensure_following(self) -> None:
        """Raise :class:`StateFollowerStopped` when the follower's task has ended: the state
        is frozen, and routing on it would ignore every later withdrawal until a fence hung."""
        if self._task is not None and self._task.done():
            error = None if self._task.cancelled() else self._task.exception()
            raise StateFollowerStopped(f"the state follower stopped: {error!r}")

    def _apply(self, topic: str, key: bytes | None, value: bytes | None,
               partition: int | None = None, offset: int | None = None) -> None:
        """Fold one record in; one that cannot be read or does not hold (a contract that no
        longer validates) is logged, by place and never by value, and skipped rather than
        stopping every later one."""
        if value is None:
            if key is not None:
                self.state.forget(topic, key.decode("utf-8", errors="replace"))
            return
        record = None
        try:
            _, datum = self._serde.decode(value, self._readers[topic])
            record = to_json(self._readers[topic], datum)
            self.state.apply(topic, record)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("state record unreadable, skipped", topic=topic, partition=partition,
                      offset=offset, error=record_error(exc, record))

    def reached(self, positions: Positions) -> bool:
        """Whether every position named on the state topics has been applied. Other topics (a
        test's own contracts topic) concern no routing; a partition of a state topic that the
        follower does not read (added since it started) is never reached."""
        return all(self._positions.get(tp, -1) >= position
                   for tp, position in positions.items() if tp.topic in _RECORD_OF_TOPIC)

    async def barrier(self) -> None:
        """Return once everything on the state topics at call time has been applied."""
        if self._offsets is None:
            raise RuntimeError("the state follower is not started")
        ends = await self._offsets.end_offsets(list(self._positions))
        async with self._progress:
            await self._progress.wait_for(
                lambda: self.reached(ends) or (self._task is not None and self._task.done()))
        self.ensure_following()
