"""Fences (:mod:`streams.fences`) and how a worker's state follower lets a batch pass them.

The writing side and the whole path through real workers are covered by the integration tests
(``test_routing_lifecycle``); here, what a worker decides for each batch: route at once when no
fence is in it or when its state already reached what the fence names, otherwise wait for the
state topics' end offsets (the barrier) first, and never route or audit the fence itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import RecordMetadata

from schemas.catalog import Catalog
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.fences import FENCE_HEADER, encode_fence, is_fence, positions_after, read_fence
from streams.settings import Settings
from streams.state import StateFollower
from streams.topics import CONSENTS, POPULATION

CONSENT_0 = TopicPartition(CONSENTS, 0)
CONSENT_1 = TopicPartition(CONSENTS, 1)
POPULATION_0 = TopicPartition(POPULATION, 0)


def _sent(partition: TopicPartition, offset: int) -> RecordMetadata:
    return RecordMetadata(partition.topic, partition.partition, partition, offset, -1, -1, -1)


def test_a_fence_names_the_position_after_the_last_record_of_each_partition() -> None:
    written = [_sent(CONSENT_0, 4), _sent(CONSENT_1, 9), _sent(CONSENT_0, 7),
               _sent(CONSENT_0, 5)]
    assert positions_after(written) == {CONSENT_0: 8, CONSENT_1: 10}


def test_a_fence_reads_back_what_was_written() -> None:
    positions = {CONSENT_0: 8, CONSENT_1: 10, POPULATION_0: 3}
    assert read_fence(encode_fence(positions)) == positions


@pytest.mark.parametrize("value", [None, b"", b"not json", b"[1, 2]", b'{"bus.consents": 3}',
                                   b'{"bus.consents": {"zero": 3}}',
                                   b'{"bus.consents": {"0": "many"}}'])
def test_an_unreadable_fence_reads_as_none(value: bytes | None) -> None:
    assert read_fence(value) is None


def test_a_fence_is_told_by_its_header_not_by_its_value() -> None:
    assert is_fence([("ce_id", b"x"), (FENCE_HEADER, b"1")])
    assert not is_fence([("ce_id", b"x")])
    assert not is_fence([])


@dataclass
class _Record:
    headers: list[tuple[str, bytes]]
    value: bytes | None


def _event(name: str) -> _Record:
    return _Record([("ce_id", name.encode())], b"event " + name.encode())


def _fence(value: bytes | None) -> _Record:
    return _Record([(FENCE_HEADER, b"1")], value)


@dataclass
class _Follower(StateFollower):
    """A follower at given positions whose barrier, instead of asking a broker, records that it
    was asked and brings the state to the end offsets it would have been given."""

    ends: dict[TopicPartition, int] = field(default_factory=dict)
    barriers: int = 0

    def __post_init__(self) -> None:
        super().__init__(Settings(), AvroSerde(SchemaRegistry("http://localhost:1")),
                         Catalog.load())
        self._positions = {CONSENT_0: 5, CONSENT_1: 5, POPULATION_0: 5}

    async def barrier(self) -> None:
        self.barriers += 1
        self._positions.update(self.ends)


async def test_a_batch_without_fence_passes_without_asking_the_broker() -> None:
    follower = _Follower()
    batch = [_event("a"), _event("b")]
    assert await follower.pass_fences(batch) == batch
    assert follower.barriers == 0


async def test_a_fence_already_reached_passes_at_once_and_is_not_routed() -> None:
    follower = _Follower()
    batch = [_event("a"), _fence(encode_fence({CONSENT_0: 5, POPULATION_0: 4})), _event("b")]
    assert await follower.pass_fences(batch) == [batch[0], batch[2]]
    assert follower.barriers == 0


async def test_a_fence_not_reached_holds_the_batch_until_the_state_caught_up() -> None:
    follower = _Follower(ends={CONSENT_1: 7})
    batch = [_event("a"), _fence(encode_fence({CONSENT_1: 6})), _event("b")]
    assert await follower.pass_fences(batch) == [batch[0], batch[2]]
    assert follower.barriers == 1
    assert follower.reached({CONSENT_1: 6})


async def test_one_barrier_serves_every_fence_of_a_batch_it_covers() -> None:
    follower = _Follower(ends={CONSENT_0: 9, CONSENT_1: 9})
    batch = [_fence(encode_fence({CONSENT_0: 6})), _event("a"),
             _fence(encode_fence({CONSENT_1: 8}))]
    assert await follower.pass_fences(batch) == [batch[1]]
    assert follower.barriers == 1


@pytest.mark.parametrize("value", [b"garbage", None])
async def test_an_unreadable_fence_costs_a_barrier_and_nothing_else(value: bytes | None) -> None:
    follower = _Follower()
    batch = [_fence(value), _event("a")]
    assert await follower.pass_fences(batch) == [batch[1]]
    assert follower.barriers == 1


async def test_a_fence_beyond_the_end_offsets_does_not_hold_routing_forever() -> None:
    follower = _Follower(ends={CONSENT_0: 6})
    batch = [_fence(encode_fence({CONSENT_0: 10**12})), _event("a")]
    assert await follower.pass_fences(batch) == [batch[1]]
    assert follower.barriers == 1


async def test_partitions_the_worker_does_not_follow_hold_nothing() -> None:
    follower = _Follower()
    batch = [_fence(encode_fence({TopicPartition("test.contracts.other", 0): 40})), _event("a")]
    assert await follower.pass_fences(batch) == [batch[1]]
    assert follower.barriers == 0


async def test_newly_assigned_partitions_cost_one_barrier_before_the_next_batch() -> None:
    follower = _Follower()
    follower.reassigned()
    assert await follower.pass_fences([_event("a")]) == [_event("a")]
    assert follower.barriers == 1
    assert await follower.pass_fences([_event("b")]) == [_event("b")]
    assert follower.barriers == 1, "only the first batch after an assignment asks"
