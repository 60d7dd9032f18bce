"""What every routing worker must know before it routes: contracts, consents and populations.

Each worker follows the three compacted topics from the beginning, on every partition, with a
plain consumer outside any group, and keeps the result in memory. That sidesteps Faust's
GlobalTable, reported broken with several workers (faust-streaming issue 283): every worker
sees every applied or revoked contract, consent and enrolment, whatever partitions it routes.

Reading your writes: every state change is followed by a fence on every provider partition
(:mod:`streams.fences`), and :meth:`StateFollower.fence` returns once the worker has applied
what a fence names. :meth:`StateFollower.barrier`, which returns once the worker has applied
everything the state topics held when it was called, covers what a fence cannot: a worker's
start, partitions newly assigned, a fence that cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.catalog import Catalog
from schemas.codec import to_json
from schemas.serde import AvroSerde
from streams.contracts import Contract
from streams.fences import Positions, is_fence, read_fence
from streams.settings import Settings
from streams.topics import BUS_RECORD_TOPICS, CONSENTS, CONTRACTS, POPULATION, topic_partitions

log = structlog.get_logger(__name__)

SubjectKey = tuple[str, str]
"""(contract id, subject reference or SIREN)."""


@dataclass
class BusState:
    """The latest contract records, consent decisions and enrolments, as the topics say."""

    contracts: dict[str, Contract] = field(default_factory=dict)
    consents: dict[SubjectKey, str] = field(default_factory=dict)
    enrolled: set[SubjectKey] = field(default_factory=set)
    generation: int = 0
    """Bumped on every contract change, so routers know to recompile their plans."""

    def forget(self, topic: str, key: str) -> None:
        """Apply a tombstone: a deleted contract or enrolment is gone for routing too.

        Consent tombstones are ignored: each consent key is one decision of the history, and
        erasing an old decision must not revive an older one.
        """
        if topic == CONTRACTS and self.contracts.pop(key, None) is not None:
            self.generation += 1
        elif topic == POPULATION and "/" in key:
            contract_id, subject = key.split("/", 1)
            self.enrolled.discard((contract_id, subject))

    def apply(self, topic: str, record: dict[str, Any]) -> None:
        """Fold one record of a state topic (in its JSON form) into the state."""
        if topic == CONTRACTS:
            contract = Contract.from_record(record)
            self.contracts[contract.id] = contract
            self.generation += 1
        elif topic == CONSENTS:
            self.consents[(record["contract_id"], record["subject_ref"])] = record["status"]
        elif topic == POPULATION:
            key = (record["contract_id"], record["subject_ref"])
            if record["enrolled"]:
                self.enrolled.add(key)
            else:
                self.enrolled.discard(key)


class ProviderRecord(Protocol):
    """What :meth:`StateFollower.pass_fences` reads of a provider topic record."""

    @property
    def headers(self) -> Sequence[tuple[str, Any]]: ...

    @property
    def value(self) -> bytes | None: ...


_Record = TypeVar("_Record", bound=ProviderRecord)

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
        self._reassigned = False

    async def start(self) -> None:
        """Assign every partition of the state topics from the beginning and start following."""
        consumer = AIOKafkaConsumer(**self._settings.kafka_client_options(),
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        partitions = await topic_partitions(self._settings, list(_RECORD_OF_TOPIC))
        await consumer.start()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._positions = dict(await consumer.beginning_offsets(partitions))
        self._consumer = consumer
        # End offsets are asked on a connection of their own: on the follower's, the request
        # would queue behind its long-polling fetch (up to fetch.max.wait.ms per barrier).
        self._offsets = AIOKafkaConsumer(**self._settings.kafka_client_options(),
                                         enable_auto_commit=False)
        await self._offsets.start()
        self._task = asyncio.create_task(self._follow(consumer), name="state-follower")
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
                    self._apply(partition.topic, record.key, record.value)
                if records:
                    self._positions[partition] = records[-1].offset + 1
            async with self._progress:
                self._progress.notify_all()

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                self.state.forget(topic, key.decode("utf-8", errors="replace"))
            return
        try:
            _, datum = self._serde.decode(value, self._readers[topic])
            record = to_json(self._readers[topic], datum)
        except ValueError as exc:
            log.error("state record unreadable, skipped", topic=topic, error=str(exc))
            return
        self.state.apply(topic, record)

    def reassigned(self) -> None:
        """Partitions were newly assigned: their previous owner may have passed fences there
        that this worker's state has not reached, so the next batch waits for the state
        topics' end offsets of then."""
        self._reassigned = True

    async def pass_fences(self, records: Sequence[_Record]) -> list[_Record]:
        """Wait until routing ``records`` cannot overtake a state change; return the events
        among them (fences are acknowledged with their batch, neither routed nor audited)."""
        if self._reassigned:
            self._reassigned = False  # before the await: a rebalance meanwhile sets it again
            await self.barrier()
        events = []
        for record in records:
            if is_fence(record.headers):
                await self.fence(read_fence(record.value))
            else:
                events.append(record)
        return events

    def reached(self, positions: Positions) -> bool:
        """Whether every position named on a followed partition has been applied; partitions
        the worker does not follow (another topic, a test's own) concern no routing."""
        return all(self._positions[tp] >= position for tp, position in positions.items()
                   if tp in self._positions)

    async def fence(self, positions: Positions | None) -> None:
        """Return once what a fence names is applied (``None``: a fence that could not be
        read). Already there: at once, without asking the broker anything. Otherwise the end
        offsets of now are awaited: they cover every genuine fence, so a forged one cannot
        hold routing up for positions that will never come."""
        if positions is None or not self.reached(positions):
            await self.barrier()

    async def barrier(self) -> None:
        """Return once everything on the state topics at call time has been applied."""
        if self._offsets is None:
            raise RuntimeError("the state follower is not started")
        ends = await self._offsets.end_offsets(list(self._positions))
        async with self._progress:
            await self._progress.wait_for(lambda: self.reached(ends))
