"""A worker's share of the reference directory: the stores of the partitions it routes.

Population and consent records are written to the partition their subject's events use
(:func:`~streams.kafka.partitioning.subject_partition`): partition ``p`` of the state topics
holds every file an event of partition ``p`` of any provider topic may need, and no other. A
worker assigned partitions {0, 2} of the provider topics therefore holds the stores of state
partitions 0 and 2 only; another worker holds the rest. This is Kafka Streams' co-partitioning,
and it needs every provider topic to have as many partitions as the state topics (the worker
checks it before it starts).

Changes read by the state follower are gathered per partition and written with the positions
they reach in one batch (:meth:`PartitionedDirectory.commit`), so a store never holds a change
without the position that covers it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streams.kafka.partitioning import subject_partition
from streams.state.directory import Change, SubjectFile
from streams.state.directory_store import DirectoryStore, Positions
from streams.state.slots import StateSlot


class MisplacedState(ValueError):
    """A state record on another partition than its subject's: no event of the subject reads
    it there. Written so by partitions added to the state topics (subjects move, their records
    do not) or by a writer placing records itself."""


class PartitionNotHeld(RuntimeError):
    """Routing asked for a partition's files this worker does not hold: a bug, not a record's
    fault (the batch stops and is replayed, rather than its events being dead-lettered)."""


class PartitionedDirectory:
    """The directory's stores for the partitions this worker holds, by partition number."""

    def __init__(self, slot: StateSlot, count: int, identity: Mapping[str, str]) -> None:
        self.slot = slot
        self.count = count
        """Partitions of the state topics (and of every provider topic)."""
        self.identity = dict(identity)
        self.stores: dict[int, DirectoryStore] = {}
        self._pending: dict[int, dict[str, SubjectFile]] = {}

    def partition_of(self, subject: str) -> int:
        return subject_partition(subject, self.count)

    def file_of(self, subject: str, partition: int) -> SubjectFile:
        pending = self._pending.get(partition)
        if pending is not None and subject in pending:
            return pending[subject]
        store = self.stores.get(partition)
        if store is None:
            raise PartitionNotHeld(f"state partition {partition} is not held by this worker")
        return store.file_of(subject)

    def apply(self, change: Change, partition: int) -> None:
        """Fold ``change`` (kept pending until :meth:`commit`); a change for a partition not
        held (released while its records were on their way) is dropped with it, one about a
        subject of another partition refused (:class:`MisplacedState`)."""
        if partition not in self.stores:
            return
        if subject_partition(change.subject, self.count, cached=False) != partition:
            raise MisplacedState(f"a state record on partition {partition} for a subject of "
                                 "another partition")
        file = self.file_of(change.subject, partition)
        self._pending.setdefault(partition, {})[change.subject] = change.applied_to(file)

    def commit(self, positions: Mapping[int, Positions]) -> None:
        """Write the pending changes of each partition with the positions they reach."""
        for partition, reached in positions.items():
            store = self.stores.get(partition)
            if store is not None:
                store.write(self._pending.pop(partition, NO_PENDING), reached)
        self._pending.clear()

    def hold(self, partitions: Iterable[int]) -> dict[int, DirectoryStore]:
        """Open the stores of ``partitions`` not yet held; returns them, by partition."""
        opened = {p: DirectoryStore(self.slot.partition(p), self.identity)
                  for p in sorted(set(partitions) - set(self.stores))}
        self.stores.update(opened)
        return opened

    def release(self, partitions: Iterable[int]) -> None:
        """Close the stores of ``partitions`` (kept on disk: they may come back)."""
        for partition in set(partitions) & set(self.stores):
            self._pending.pop(partition, None)
            self.stores.pop(partition).close()

    def memory(self) -> int:
        """Bytes the held stores keep in memory."""
        return sum(store.memory() for store in self.stores.values())

    def close(self) -> None:
        self.release(list(self.stores))
        self.slot.release()


NO_PENDING: Mapping[str, SubjectFile] = {}
