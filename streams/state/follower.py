"""What a worker must know before it routes: every contract, and its partitions' directory.

Each worker follows the state topics with a plain consumer outside any group. It reads every
partition of ``bus.contracts`` (contracts are few and global) and keeps them in memory. Of
``bus.population`` and ``bus.consents`` it reads only the partitions of the provider partitions
it is assigned (:meth:`StateFollower.hold`), into the stores of its share of the reference
directory (:mod:`streams.state.directory_partitions`), from where each store left off: a worker
holds, and reads at start, its share of the population, not all of it. That also sidesteps
Faust's GlobalTable, reported broken with several workers (faust-streaming issue 283).

Reading your writes: every state change is followed by a fence on every provider partition
(:mod:`streams.state.fences`). :meth:`StateFollower.reached` tells whether the worker applied what a
fence names, for the partitions it holds (a subject's events and its state share a partition
number, so a change on another one concerns none of them); :meth:`StateFollower.barrier`, which
returns once the worker has applied everything the state topics held when it was called, covers
what a fence cannot: a worker's start, partitions newly assigned (their stores are brought up to
date, as Kafka Streams restores a task), a fence that cannot be read.

Changes applied live are told to whoever counts them (``on_changes``: the worker's metrics). A
population or consent record is *live* when it was written after the worker took its partition:
at or past the end offset the partition had when its store was opened. What a store reads up to
that point is a replay (a restart, a restore, a partition taken over from another worker), which
the worker that first applied it already told: each change is told once, by the worker holding
its partition. A change recorded while no worker held its partition is read at the next restore
and not told; one recorded during a rebalance may be told by the worker giving the partition up
and by the one taking it, or by neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.catalog import Catalog
from schemas.codec import to_json
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.admin import TopicError, topic_layout, topic_partitions
from streams.kafka.topics import BUS_RECORD_TOPICS, CONSENTS, CONTRACTS, POPULATION
from streams.settings import Settings
from streams.state import heap
from streams.state.bus_state import BusState
from streams.state.directory import Change, Standing, consent_change, population_change
from streams.state.directory_partitions import MisplacedState, PartitionedDirectory
from streams.state.directory_store import Positions as StorePositions
from streams.state.fences import Positions
from streams.state.record_errors import record_error
from streams.state.slots import StateSlot

log = structlog.get_logger(__name__)

PARTITIONED = (CONSENTS, POPULATION)
"""The state topics read per partition, into the directory."""
PROGRESS_EVERY = 5.0
"""Seconds between two log lines of a long restore."""

HELD_TOLD_EVERY = 1.0
"""Seconds between two reports of the state partitions held and their memory (``on_held``)."""


class StateFollowerStopped(RuntimeError):
    """The state follower's task ended; the message carries why."""


_RECORD_OF_TOPIC = {BUS_RECORD_TOPICS[name]: name for name in ("contract", "consent", "population")}
"""The state topics a worker follows, and the bus record each carries."""


class StateWitness(Protocol):
    """Told of the state records the follower applies, in order: the worker's audit of state
    changes (:mod:`streams.worker.state_audit`). It says, when state partitions are opened, from
    which offsets they must be read at least (a store may have applied records the witness was
    never told of: a crash in between), and which records it wants to be told of."""

    async def opening(self, partitions: Sequence[int]) -> Mapping[tuple[str, int], int]: ...

    def released(self, partitions: Iterable[int]) -> None: ...

    def wants(self, topic: str, partition: int, offset: int) -> bool: ...

    def applied(self, topic: str, partition: int, offset: int, record: Mapping[str, Any],
                before: Standing | None) -> None: ...


@dataclass
class _Restore:
    """Partitions being brought up to date, for the operator's log lines."""

    partitions: list[int]
    ends: dict[TopicPartition, int]
    started: float = field(default_factory=time.monotonic)
    records: int = 0
    logged: float = field(default_factory=time.monotonic)


class StateFollower:
    """Keeps a :class:`BusState` up to date from the state topics, in the background."""

    def __init__(self, settings: Settings, serde: AvroSerde, catalog: Catalog,
                 on_changes: Callable[[Sequence[Change]], None] | None = None,
                 on_held: Callable[[int, int], None] | None = None,
                 witness: StateWitness | None = None) -> None:
        """``witness`` is told of the records applied (:class:`StateWitness`); ``on_changes``
        is told the population and consent changes applied live (see the module's docstring),
        once per batch of records read; ``on_held`` what :meth:`held`
        says, at most once per :data:`HELD_TOLD_EVERY` seconds (the worker's gauges: told by
        the follower, they follow a rebalance or a restore even while no event arrives)."""
        self.state = BusState()
        self.directory: PartitionedDirectory | None = None
        self._settings = settings
        self._serde = serde
        self._readers = {topic: catalog.bus_record(name).latest.parsed
                         for topic, name in _RECORD_OF_TOPIC.items()}
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self._contracts: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        self._wanted: set[int] = set()
        self._restore: _Restore | None = None
        self._epochs: dict[int, int] = {}
        """Per state partition, how many times its store was opened: a batch admitted under
        one opening is not routed under another (:meth:`epochs`)."""
        self._waking: asyncio.Future[None] | None = None
        self._on_changes = on_changes
        self._live_from: dict[TopicPartition, int] = {}
        """Per state partition held, the offset from which its records are applied live."""
        self._live: list[Change] = []
        self._on_held = on_held
        self._held_told = 0.0
        self._witness = witness

    async def start(self, provider_topics: Iterable[str] = ()) -> None:
        """Read every contract, open this worker's slot of the state directory, and follow.

        ``provider_topics`` (those the worker routes) must have as many partitions as the
        state topics, or their events would be decided against another subject's partition.
        """
        try:
            await self._start(list(provider_topics))
        except BaseException:
            await self.stop()  # whatever was opened, the slot first: a retry starts clean
            raise

    async def _start(self, provider_topics: list[str]) -> None:
        self.directory = await self._directory(provider_topics)
        self.state.directory = self.directory
        self._contracts = await topic_partitions(self._settings, [CONTRACTS])
        # End offsets are asked on a connection of their own: on the follower's, the request
        # would queue behind its long-polling fetch (up to fetch.max.wait.ms per barrier).
        self._offsets = clients.consumer(self._settings, enable_auto_commit=False)
        await self._offsets.start()
        self._positions = dict(await self._offsets.beginning_offsets(self._contracts))
        consumer = clients.consumer(self._settings, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        self._consumer = consumer
        await consumer.start()
        self._assign()
        await self._reconcile()
        self._task = asyncio.create_task(self._follow(consumer), name="state-follower")
        self._task.add_done_callback(self._on_stopped)
        await self.barrier()

    async def _directory(self, provider_topics: list[str]) -> PartitionedDirectory:
        layout = await topic_layout(self._settings, [*PARTITIONED, *provider_topics])
        count = layout[POPULATION][1]
        apart = sorted(f"{topic} ({partitions})" for topic, (_, partitions) in layout.items()
                       if partitions != count)
        if apart:
            raise TopicError(f"{', '.join(apart)}: every provider topic needs as many "
                             f"partitions as {POPULATION} and {CONSENTS} ({count}), so that a "
                             "subject's events and state share a partition number")
        slot = StateSlot.claim(self._settings.worker_state_dir())
        return PartitionedDirectory(slot, count, {t: layout[t][0] for t in PARTITIONED})

    def hold(self, partitions: Iterable[int]) -> None:
        """The provider partitions now assigned to this worker: their state is read from here
        on (and restored first), that of the others released. Before :meth:`start`, it is
        remembered for it."""
        self._wanted = set(partitions)

    async def stop(self) -> None:
        """Stop following and close what was opened (the stores are kept on disk); the
        follower may be started again."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        offsets, self._offsets = self._offsets, None
        if offsets is not None:
            await offsets.stop()
        directory, self.directory = self.directory, None
        if directory is not None:
            directory.close()
        self._positions = {}
        self._live_from = {}
        self._live = []

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await self._reconcile()
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            # Off the loop: a registry that does not answer must not freeze routing with it.
            await self._serde.fetch_writers(r.value for rs in batches.values() for r in rs)
            reached: dict[int, StorePositions] = {}
            for partition, records in batches.items():
                if partition not in self._positions:
                    continue  # released while its records were on their way
                live_from = self._live_from.get(partition)
                for record in records:
                    self._apply(partition.topic, record.key, record.value,
                                partition.partition, record.offset,
                                live=live_from is not None and record.offset >= live_from)
                if records:
                    self._positions[partition] = records[-1].offset + 1
                    if partition.topic in PARTITIONED:
                        reached.setdefault(partition.partition, {})[partition.topic] = (
                            records[-1].offset + 1)
                    self._count_restored(len(records))
            if reached and self.directory is not None:
                self.directory.commit(reached)
            self._tell_changes()
            self._report_restore()
            self._tell_held()
            await self._notify()

    async def _reconcile(self) -> None:
        """Follow the state partitions of the provider partitions held, from where each
        store left off, and no others."""
        directory, consumer = self.directory, self._consumer
        if directory is None or consumer is None or self._wanted == set(directory.stores):
            return
        beyond = sorted(p for p in self._wanted if p >= directory.count)
        if beyond:  # partitions added to the topics under a running worker
            raise TopicError(f"provider partitions {beyond} have no state partition (the state "
                             f"topics have {directory.count}): partitions were added; every "
                             "topic needs the same count, and the worker stops")
        gone = set(directory.stores) - self._wanted
        directory.release(gone)
        if self._witness is not None:
            self._witness.released(gone)
        if gone:
            heap.give_back()  # what the closed stores held, unless others restore into it
        for tp in [tp for tp in self._positions if tp.topic in PARTITIONED
                   and tp.partition in gone]:
            del self._positions[tp]
            self._live_from.pop(tp, None)
        opened = directory.hold(self._wanted)
        for partition in opened:
            self._epochs[partition] = self._epochs.get(partition, 0) + 1
        added = {TopicPartition(topic, p): store.positions.get(topic, 0)
                 for p, store in opened.items() for topic in PARTITIONED}
        if added and self._witness is not None:  # what the witness was not told is read again
            wanted = await self._witness.opening(sorted(opened))
            added = {tp: min(position, wanted.get((tp.topic, tp.partition), position))
                     for tp, position in added.items()}
        if added and self._offsets is not None:  # a store behind the log's start reads from it
            begins = await self._offsets.beginning_offsets(list(added))
            added = {tp: max(position, begins[tp]) for tp, position in added.items()}
        self._positions.update(added)
        self._assign()
        log.info("state partitions held", partitions=sorted(directory.stores),
                 released=sorted(gone), opened=sorted(opened))
        if added and self._offsets is not None:
            ends = await self._offsets.end_offsets(list(added))
            self._live_from.update(ends)
            self._restore = _Restore(sorted(opened), dict(ends))
            log.info("state partitions restoring", partitions=sorted(opened),
                     rebuilt=sorted(p for p, s in opened.items() if s.rebuilt),
                     records=sum(max(0, end - added[tp]) for tp, end in ends.items()))

    def _assign(self) -> None:
        """Assign the consumer every partition followed, each at its position. aiokafka forgets
        every position on assign (a consumer outside a group then reads from the start): each
        partition kept is sought back to where it was, or contracts, consents and enrolments
        would be read again from their beginning, older records overriding newer ones meanwhile.
        """
        if self._consumer is None:
            return
        self._consumer.assign(list(self._positions))
        for tp, position in self._positions.items():
            self._consumer.seek(tp, position)

    def _tell_held(self) -> None:
        now = time.monotonic()
        if self._on_held is not None and now - self._held_told >= HELD_TOLD_EVERY:
            self._held_told = now
            self._on_held(*self.held())

    def _count_restored(self, records: int) -> None:
        if self._restore is not None:
            self._restore.records += records

    def _report_restore(self) -> None:
        restore = self._restore
        if restore is None:
            return
        now = time.monotonic()
        if self.reached(restore.ends):
            if self.directory is not None:
                for partition in restore.partitions:
                    store = self.directory.stores.get(partition)
                    if store is not None:
                        store.flush()
            log.info("state partitions restored", partitions=restore.partitions,
                     records=restore.records, seconds=round(now - restore.started, 2))
            self._restore = None
            heap.give_back()
        elif now - restore.logged >= PROGRESS_EVERY:
            log.info("state partitions restoring", partitions=restore.partitions,
                     records=restore.records, seconds=round(now - restore.started, 2))
            restore.logged = now

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

    def _tell_changes(self) -> None:
        live, self._live = self._live, []
        if live and self._on_changes is not None:
            self._on_changes(live)

    def _apply(self, topic: str, key: bytes | None, value: bytes | None,
               partition: int = 0, offset: int | None = None, live: bool = False) -> None:
        """Fold one record in; one that cannot be read or does not hold (a contract that no
        longer validates) is logged, by place and never by value, and skipped rather than
        stopping every later one. A population or consent change applied ``live`` is kept to
        be told (:meth:`_tell_changes`)."""
        if value is None:
            if key is not None:
                self.state.forget(topic, key.decode("utf-8", errors="replace"), partition)
            return
        record = None
        try:
            _, datum = self._serde.decode(value, self._readers[topic])
            if topic == CONTRACTS:
                record = to_json(self._readers[topic], datum)
                self.state.apply(topic, record)
                if self._witness is not None and offset is not None:
                    self._witness.applied(topic, partition, offset, record, None)
            else:
                change = _change(topic, datum)
                self._apply_change(topic, change, datum, partition, offset)
                if live:
                    self._live.append(change)
        except MisplacedState:
            log.error("state record on another partition than its subject's, skipped: "
                      "partitions were added to the state topics, or a writer placed it "
                      "itself; no event of that subject reads this partition", topic=topic,
                      partition=partition, offset=offset)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("state record unreadable, skipped", topic=topic, partition=partition,
                      offset=offset, error=record_error(exc, record))

    def _apply_change(self, topic: str, change: Change, datum: Mapping[str, Any],
                      partition: int, offset: int | None) -> None:
        """Fold a population or consent change into the directory, and tell the witness, with
        where the subject stood with the contract before, when it wants it."""
        witness = self._witness
        if witness is None or offset is None or not witness.wants(topic, partition, offset):
            self.state.directory.apply(change, partition)
            return
        before = self.state.directory.file_of(change.subject, partition).get(change.contract_id)
        self.state.directory.apply(change, partition)
        witness.applied(topic, partition, offset, datum, before)

    def holds(self, partition: int) -> bool:
        """Whether the state of ``partition`` is held (wanted and its store open)."""
        return (partition in self._wanted and self.directory is not None
                and partition in self.directory.stores)

    def epochs(self) -> dict[int, int]:
        """The opening of each state partition held now. A partition given away and back
        while a batch waited is opened again, and may be behind what the batch was admitted
        under: the worker leaves such records to be read again."""
        return {p: self._epochs.get(p, 0) for p in range(max(self._wanted, default=-1) + 1)
                if self.holds(p)}

    def held(self) -> tuple[int, int]:
        """How many state partitions are held, and the bytes their stores keep in memory."""
        if self.directory is None:
            return 0, 0
        return len(self.directory.stores), self.directory.memory()

    def _followed(self, tp: TopicPartition) -> bool:
        return tp.topic == CONTRACTS or (tp.topic in PARTITIONED and tp.partition in self._wanted)

    def reached(self, positions: Positions) -> bool:
        """Whether every position named on the state topics, for the partitions this worker
        holds, has been applied. Other topics (a test's own contracts topic) concern no
        routing, nor do state partitions of subjects whose events another worker routes."""
        return all(self._positions.get(tp, -1) >= position
                   for tp, position in positions.items() if self._followed(tp))

    async def barrier(self) -> None:
        """Return once everything on the state topics at call time has been applied, on
        every partition this worker holds or was just given."""
        if self._offsets is None:
            raise RuntimeError("the state follower is not started")
        wanted = [TopicPartition(topic, p) for topic in PARTITIONED for p in self._wanted]
        ends = await self._offsets.end_offsets([*self._contracts, *wanted])
        async with self._progress:
            await self._progress.wait_for(
                lambda: self.reached(ends) or (self._task is not None and self._task.done()))
        self.ensure_following()


def _change(topic: str, datum: Any) -> Change:
    """What a decoded population or consent record changes."""
    if topic == POPULATION:
        return population_change(datum)
    return consent_change(datum)

