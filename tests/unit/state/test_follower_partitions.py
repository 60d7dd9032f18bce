"""The state follower across assignments: positions kept, openings told apart, starts retried
clean, misplaced and oversized state refused.

- aiokafka forgets every position on ``assign``, and a consumer outside a group then reads from
  the start: the follower seeks every partition it keeps back to its position, or a rebalance
  would replay contracts, consents and enrolments from their beginning, older records undoing
  newer ones while events are routed.
- A partition given away and back is a new opening of its store (its epoch changes), so a
  batch admitted under the old one is not routed under the new one.
- A start that fails releases its slot: the retry takes the same one, with its stores.
- A state record on another partition than its subject's, and a file grown past its limit, are
  logged by place and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiokafka import TopicPartition

from schemas.catalog import Catalog
from streams.kafka import clients
from streams.kafka.partitioning import subject_partition
from streams.kafka.topics import CONSENTS, CONTRACTS, POPULATION
from streams.settings import Settings
from streams.state import follower as follower_module
from streams.state.directory import (
    MAX_CONTRACTS_PER_SUBJECT,
    Change,
    MemoryDirectory,
    SubjectFileFull,
)
from streams.state.directory_partitions import MisplacedState, PartitionedDirectory
from streams.state.follower import StateFollower
from streams.state.slots import StateSlot

IDENTITY = {CONSENTS: "topic-id-1", POPULATION: "topic-id-2"}
SUBJECT = "sr1_" + "ef" * 32


class _Consumer:
    """What the follower asks of its consumer, recorded as aiokafka 0.14 behaves: ``assign``
    forgets every position (``SubscriptionState.assign_from_user``)."""

    def __init__(self) -> None:
        self.assigned: list[TopicPartition] = []
        self.seeks: dict[TopicPartition, int] = {}

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)
        self.seeks = {}

    def seek(self, tp: TopicPartition, position: int) -> None:
        self.seeks[tp] = position

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0.01)
        return {}


class _NoSchemasToFetch:
    async def fetch_writers(self, values: Any) -> None:
        list(values)


def _follower(tmp_path: Path, held: set[int]) -> StateFollower:
    follower = StateFollower(Settings(), None, Catalog.load())  # type: ignore[arg-type]
    follower.directory = PartitionedDirectory(StateSlot.claim(tmp_path), 3, IDENTITY)
    follower.state.directory = follower.directory
    follower._contracts = [TopicPartition(CONTRACTS, p) for p in range(3)]
    follower._positions = {tp: 100 for tp in follower._contracts}
    follower.hold(held)
    follower.directory.hold(held)
    for p in held:
        for topic in (CONSENTS, POPULATION):
            follower._positions[TopicPartition(topic, p)] = 50
    return follower


async def test_a_new_assignment_keeps_the_positions_of_the_partitions_it_keeps(
        tmp_path: Path) -> None:
    follower = _follower(tmp_path, {0})
    consumer = _Consumer()
    follower._consumer = consumer  # type: ignore[assignment]
    follower.hold([0, 1])
    await follower._reconcile()
    try:
        assert set(consumer.assigned) == set(follower._positions)
        assert consumer.seeks == follower._positions, "every partition at its position"
        assert consumer.seeks[TopicPartition(CONTRACTS, 2)] == 100
        assert consumer.seeks[TopicPartition(POPULATION, 0)] == 50
        assert consumer.seeks[TopicPartition(POPULATION, 1)] == 0, "a new store: from the start"
    finally:
        assert follower.directory is not None
        follower.directory.close()


async def test_a_partition_given_away_and_back_is_another_opening(tmp_path: Path) -> None:
    follower = _follower(tmp_path, set())
    follower._consumer = _Consumer()  # type: ignore[assignment]
    follower.hold([0, 1])
    await follower._reconcile()
    before = follower.epochs()
    follower.hold([0])
    await follower._reconcile()
    assert follower.epochs() == {0: before[0]}, "a partition given away is not held"
    follower.hold([0, 1])
    await follower._reconcile()
    after = follower.epochs()
    assert after[0] == before[0], "a partition kept throughout is the same opening"
    assert after[1] != before[1], "a partition back again is another opening"
    assert follower.directory is not None
    follower.directory.close()


async def test_the_partitions_held_are_told_as_they_change_with_no_event_routed(
        tmp_path: Path) -> None:
    """The worker's gauges (partitions held, their stores' memory) follow a rebalance even
    while no event arrives to route: the follower tells them, not the batches."""
    told: list[tuple[int, int]] = []
    follower = _follower(tmp_path, {0, 1})
    follower._on_held = lambda partitions, memory: told.append((partitions, memory))
    follower._serde = _NoSchemasToFetch()  # type: ignore[assignment]
    consumer = _Consumer()
    follower._consumer = consumer  # type: ignore[assignment]
    following = asyncio.create_task(follower._follow(consumer))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(5):
            while not told:
                await asyncio.sleep(0.01)
        held, memory = told[-1]
        assert held == 2
        assert memory > 0
        follower.hold([0])
        async with asyncio.timeout(5):
            while told[-1][0] != 1:
                await asyncio.sleep(0.01)
        assert 0 < told[-1][1] < memory, "the store given away no longer counts"
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        assert follower.directory is not None
        follower.directory.close()


async def test_a_failed_start_releases_its_slot_for_the_retry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def layout(_: Any, topics: list[str]) -> dict[str, tuple[str, int]]:
        return {t: (IDENTITY.get(t, "id"), 3) for t in topics}

    async def partitions(*_: Any) -> list[TopicPartition]:
        return [TopicPartition(CONTRACTS, 0)]

    class _Unreachable:
        async def start(self) -> None:
            raise ConnectionError("broker unreachable")

        async def stop(self) -> None:
            return None

    monkeypatch.setattr(follower_module, "topic_layout", layout)
    monkeypatch.setattr(follower_module, "topic_partitions", partitions)
    monkeypatch.setattr(clients, "consumer", lambda *_, **__: _Unreachable())
    follower = StateFollower(Settings(state_dir=tmp_path), None, Catalog.load())  # type: ignore[arg-type]
    follower.hold([0])
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await follower.start([])
        assert follower.directory is None
    slot = StateSlot.claim(tmp_path)
    assert slot.path.name == "slot-0", "the failed starts left the first slot free"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slot-0"]
    slot.release()


def test_a_state_record_off_its_subject_s_partition_is_logged_by_place_and_skipped(
        tmp_path: Path) -> None:
    directory = PartitionedDirectory(StateSlot.claim(tmp_path), 3, IDENTITY)
    other = (subject_partition(SUBJECT, 3) + 1) % 3
    directory.hold([other])
    with pytest.raises(MisplacedState):
        directory.apply(Change("lyon", SUBJECT, enrolled=True), other)
    follower = StateFollower(Settings(), None, Catalog.load())  # type: ignore[arg-type]
    follower.state.directory = directory

    class _Serde:
        def decode(self, *_: Any) -> tuple[int, dict[str, Any]]:
            return 1, {"contract_id": "lyon", "subject_ref": SUBJECT, "enrolled": True}

    follower._serde = _Serde()  # type: ignore[assignment]
    with structlog.testing.capture_logs() as logs:
        follower._apply(POPULATION, b"key", b"value", other, 7)
    (entry,) = logs
    assert "another partition than its subject's" in entry["event"]
    assert (entry["partition"], entry["offset"]) == (other, 7)
    assert SUBJECT not in repr(entry)
    assert directory.file_of(SUBJECT, other) == {}
    directory.close()


def test_a_file_names_a_bounded_number_of_contracts() -> None:
    directory = MemoryDirectory()
    for number in range(MAX_CONTRACTS_PER_SUBJECT):
        directory.enrol(f"c-{number}", SUBJECT)
    with pytest.raises(SubjectFileFull):
        directory.enrol("one-more", SUBJECT)
    directory.enrol("c-0", SUBJECT, enrolled=False)  # a release always passes
    directory.enrol("one-more", SUBJECT)
    assert len(directory.file_of(SUBJECT)) == MAX_CONTRACTS_PER_SUBJECT


class _Offsets:
    """The follower's offsets connection: every state partition ends at ``end``."""

    def __init__(self, end: int) -> None:
        self.end = end

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self.end)


class _Record:
    def __init__(self, offset: int) -> None:
        self.offset, self.key, self.value = offset, b"key", b"value"


class _LastBatch(Exception):
    """Ends the follower's loop once the batches given were read."""


class _ReadingConsumer(_Consumer):
    def __init__(self, batches: list[dict[TopicPartition, list[_Record]]]) -> None:
        super().__init__()
        self.batches = batches

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[_Record]]:
        if not self.batches:
            raise _LastBatch
        return self.batches.pop(0)


async def test_only_changes_applied_live_are_told_not_a_restore_s_replays(
        tmp_path: Path) -> None:
    """What a newly held partition reads up to its end offset of then was told by whoever held
    it before (or is a restart's replay); what comes after is told once, here."""
    partition = subject_partition(SUBJECT, 3)
    told: list[Change] = []
    follower = StateFollower(Settings(), None, Catalog.load(), told.extend)  # type: ignore[arg-type]
    follower.directory = PartitionedDirectory(StateSlot.claim(tmp_path), 3, IDENTITY)
    follower.state.directory = follower.directory

    class _Serde:
        async def fetch_writers(self, _: Any) -> None:
            return None

        def decode(self, *_: Any) -> tuple[int, dict[str, Any]]:
            return 1, {"contract_id": "lyon", "subject_ref": SUBJECT, "status": "granted"}

    follower._serde = _Serde()  # type: ignore[assignment]
    follower._offsets = _Offsets(end=3)  # type: ignore[assignment]
    tp = TopicPartition(CONSENTS, partition)
    follower._consumer = _ReadingConsumer(  # type: ignore[assignment]
        [{tp: [_Record(0), _Record(1)]}, {tp: [_Record(2), _Record(3)]}, {tp: [_Record(4)]}])
    follower.hold([partition])
    try:
        with pytest.raises(_LastBatch):
            await follower._follow(follower._consumer)  # type: ignore[arg-type]
        assert told == [Change("lyon", SUBJECT, consent="granted")] * 2, \
            "offsets 3 and 4 are live, 0 to 2 a restore's"
    finally:
        follower.directory.close()
