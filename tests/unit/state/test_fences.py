"""Fences (:mod:`streams.state.fences`) and the gate that lets a worker's batches pass them.

The writing side and the whole path through real workers are covered by the integration tests
(``test_routing_lifecycle``); here, what a worker decides for each batch: route at once when no
fence is in it or when its state already reached what the fence names, otherwise wait for the
state topics' end offsets (the barrier) first; never route the fence itself; route what only
looks like a fence, so that it becomes a dead letter; wait for a barrier before routing a
partition again after it was revoked or assigned.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import RecordMetadata
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.catalog import Catalog
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.kafka.topics import CONSENTS, POPULATION
from streams.settings import Settings
from streams.state.fences import (
    FENCE_HEADER,
    FENCE_KEY,
    FenceGate,
    Positions,
    encode_fence,
    is_fence,
    positions_after,
    read_fence,
)
from streams.state.follower import StateFollower, StateFollowerStopped
from tests import hostile_inputs

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
                                   b'{"bus.consents": {"0": "many"}}',
                                   b"[" * 100_000,
                                   b'{"bus.consents": {"0": ' + b"9" * 5000 + b"}}",
                                   b'{"bus.consents": {"0": 1e400}}',
                                   b'{"bus.consents": {"0": -Infinity}}'],
                         ids=["none", "empty", "text", "list", "flat", "named", "word", "deep",
                              "huge", "overflowing", "infinite"])
def test_an_unreadable_fence_reads_as_none(value: bytes | None) -> None:
    assert read_fence(value) is None


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=hostile_inputs.QUOTAS["fence values"], deadline=None, database=None)
@given(value=st.one_of(st.binary(max_size=80), _JSON.map(lambda v: json.dumps(v).encode()),
                       st.dictionaries(st.text(max_size=20), st.dictionaries(
                           st.integers().map(str), st.one_of(st.integers(), st.floats()),
                           min_size=1, max_size=3), min_size=1, max_size=3).map(
                           lambda v: json.dumps(v).encode())))
def _any_fence_value(value: bytes) -> None:
    hostile_inputs.tried("fence values")
    positions = read_fence(value)
    assert positions is None or all(isinstance(p, int) for p in positions.values())


def test_anyone_s_value_under_the_fence_header_reads_as_positions_or_none() -> None:
    """Anyone who may write a provider topic may write the fence header: whatever value comes
    with it is read, or is no fence; it never raises in the gate (the batch would fail)."""
    with hostile_inputs.at_least("fence values"):
        _any_fence_value()


def test_a_fence_is_told_by_its_header_not_by_its_value() -> None:
    assert is_fence([("ce_id", b"x"), (FENCE_HEADER, b"1")])
    assert not is_fence([("ce_id", b"x")])
    assert not is_fence([])


@dataclass
class _Record:
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _event(name: str, partition: int = 0) -> _Record:
    return _Record("provider.cnaf.quotient_familial", partition, b"ref",
                   b"event " + name.encode(), [("ce_id", name.encode())])


def _fence(value: bytes | None, partition: int = 0, key: bytes = FENCE_KEY) -> _Record:
    return _Record("provider.cnaf.quotient_familial", partition, key, value,
                   [(FENCE_HEADER, b"1")])


@dataclass
class _State:
    """A state follower at given positions. Its barrier counts the times it was asked, waits
    until the test lets it through (``opened``), then brings the state to the end offsets it
    would have been given, as the real one waits for its follower to apply them."""

    positions: Positions = field(
        default_factory=lambda: {CONSENT_0: 5, CONSENT_1: 5, POPULATION_0: 5})
    ends: Positions = field(default_factory=dict)
    barriers: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: bool = False

    def __post_init__(self) -> None:
        self.opened.set()

    def reached(self, positions: Positions) -> bool:
        return all(self.positions.get(tp, -1) >= p for tp, p in positions.items())

    async def barrier(self) -> None:
        self.barriers += 1
        await self.opened.wait()
        self.positions.update(self.ends)

    def ensure_following(self) -> None:
        if self.stopped:
            raise StateFollowerStopped("stopped")


async def _covered_gate(state: _State, *partitions: int) -> FenceGate:
    """A gate that has routed these partitions since a barrier (as after a first batch); the
    state's positions are left as they were."""
    gate = FenceGate(state)
    ends, state.ends = state.ends, {}
    await gate.admit([_event("first", p) for p in partitions or (0,)])
    state.ends, state.barriers = ends, 0
    return gate


async def test_the_first_batch_of_a_partition_waits_for_a_barrier_and_later_ones_do_not() -> None:
    state = _State()
    gate = FenceGate(state)
    assert await gate.admit([_event("a", 0)]) == [_event("a", 0)]
    assert state.barriers == 1
    assert await gate.admit([_event("b", 0)]) == [_event("b", 0)]
    assert state.barriers == 1
    assert await gate.admit([_event("c", 1)]) == [_event("c", 1)]
    assert state.barriers == 2, "a partition not routed before waits too"


async def test_a_fence_already_reached_passes_at_once_and_is_not_routed() -> None:
    state = _State()
    gate = await _covered_gate(state)
    batch = [_event("a"), _fence(encode_fence({CONSENT_0: 5, POPULATION_0: 4})), _event("b")]
    assert await gate.admit(batch) == [batch[0], batch[2]]
    assert state.barriers == 0


async def test_a_fence_not_reached_holds_the_batch_until_the_state_caught_up() -> None:
    state = _State(ends={CONSENT_1: 7})
    gate = await _covered_gate(state)
    state.opened.clear()
    batch = [_event("a"), _fence(encode_fence({CONSENT_1: 6})), _event("b")]
    admitted = asyncio.create_task(gate.admit(batch))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not admitted.done(), "the batch went on before the state reached the fence"
    assert state.barriers == 1
    state.opened.set()
    assert await admitted == [batch[0], batch[2]]
    assert state.reached({CONSENT_1: 6})


async def test_one_barrier_serves_every_fence_of_a_batch() -> None:
    state = _State(ends={CONSENT_0: 9, CONSENT_1: 9})
    gate = await _covered_gate(state, 0, 1)
    batch = [_fence(encode_fence({CONSENT_0: 6}), 0), _event("a", 1),
             _fence(encode_fence({CONSENT_1: 8}), 1), _fence(b"garbage", 0)]
    assert await gate.admit(batch) == [batch[1], batch[3]]
    assert state.barriers == 1


@pytest.mark.parametrize("record", [_fence(b"garbage"), _fence(None),
                                    _fence(encode_fence({CONSENT_0: 1}), key=b"other")],
                         ids=["unreadable", "no value", "another key"])
async def test_what_only_looks_like_a_fence_costs_a_barrier_and_is_routed(
        record: _Record) -> None:
    state = _State()
    gate = await _covered_gate(state)
    assert await gate.admit([record, _event("a")]) == [record, _event("a")]
    assert state.barriers == 1


async def test_a_fence_beyond_the_end_offsets_does_not_hold_routing_forever() -> None:
    state = _State(ends={CONSENT_0: 6})
    gate = await _covered_gate(state)
    batch = [_fence(encode_fence({CONSENT_0: 10**12})), _event("a")]
    assert await gate.admit(batch) == [batch[1]]
    assert state.barriers == 1


async def test_a_released_partition_waits_for_a_barrier_again() -> None:
    state = _State()
    gate = await _covered_gate(state, 0, 1)
    gate.release([("provider.cnaf.quotient_familial", 1)])
    assert await gate.admit([_event("a", 0)]) == [_event("a", 0)]
    assert state.barriers == 0, "partition 0 was not released"
    assert await gate.admit([_event("b", 1)]) == [_event("b", 1)]
    assert state.barriers == 1


async def test_a_partition_released_during_a_barrier_stays_released() -> None:
    state = _State()
    gate = FenceGate(state)
    state.opened.clear()
    admitted = asyncio.create_task(gate.admit([_event("a", 0)]))
    await asyncio.sleep(0)
    gate.release([("provider.cnaf.quotient_familial", 0)])  # revoked while the barrier ran
    state.opened.set()
    await admitted
    await gate.admit([_event("b", 0)])
    assert state.barriers == 2, "the barrier asked before the release must not cover it"


async def test_a_stopped_state_follower_stops_routing() -> None:
    state = _State(stopped=True)
    gate = FenceGate(state)
    with pytest.raises(StateFollowerStopped):
        await gate.admit([_event("a")])


def _follower() -> StateFollower:
    follower = StateFollower(Settings(), AvroSerde(SchemaRegistry("http://localhost:1")),
                             Catalog.load())
    follower._positions = {CONSENT_0: 5, CONSENT_1: 5, POPULATION_0: 5}  # as if it read them
    follower._wanted = {0, 1}  # the provider partitions it routes
    return follower


def test_the_follower_reaches_only_what_it_applied_on_the_state_topics() -> None:
    follower = _follower()
    assert follower.reached({CONSENT_0: 5, POPULATION_0: 3})
    assert not follower.reached({CONSENT_0: 6})
    assert not follower.reached({TopicPartition(POPULATION, 1): 1}), (
        "a state partition of a provider partition it routes, not yet read, is not reached")
    assert follower.reached({TopicPartition(CONSENTS, 7): 1}), (
        "the state of partitions whose events other workers route concerns none of its own")
    assert follower.reached({TopicPartition("test.contracts.other", 0): 40}), (
        "another topic concerns no routing")


async def test_a_follower_whose_task_ended_says_why() -> None:
    follower = _follower()

    async def broken() -> None:
        raise ValueError("the state topic went away")

    follower._task = asyncio.create_task(broken())
    await asyncio.gather(follower._task, return_exceptions=True)
    with pytest.raises(StateFollowerStopped, match="the state topic went away"):
        follower.ensure_following()
