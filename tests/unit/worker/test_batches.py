"""The routing agent's batches (:mod:`streams.worker.batches`), taken from a real Faust stream's
channel.

What they must keep of Faust's ``noack_take``: the size limit, the window, the events' order, the
offsets held uncommitted until the worker acknowledges, events left over from an earlier
assignment dropped (and acknowledged, as Faust does), errors thrown into the channel raised, and
the stop Faust throws into it to end an agent taken as the end of the batches. What they must
change: a queue full of events becomes one batch without a turn of the event loop per
event, which is the point of the module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faust.types import EventT
from faust.types.tuples import ConsumerMessage

from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.batches import take_batches

TOPIC = "provider.test.dataset.v1"


class _Channel:
    """A stream of the worker's app over one provider topic, and a way to feed it."""

    def __init__(self) -> None:
        self.app = create_app(Settings())
        self.stream = self.app.stream(self.app.topic(TOPIC))
        self.queue = self.stream.channel.queue
        self.app.topics.acking_topics.add(TOPIC)  # as the conductor marks a subscribed topic
        self.app.flow_control.resume()  # as the worker does once partitions are assigned
        self.offset = 0

    def event(self, generation: int | None = None) -> EventT[Any]:
        """The next record of the topic, delivered to this one channel (one reference)."""
        generation = self.app.consumer_generation_id if generation is None else generation
        message = ConsumerMessage(TOPIC, 0, self.offset, 0.0, 0, [], b"key", b"value", None,
                                  generation_id=generation)
        message.incref()
        self.offset += 1
        return self.app.create_event(b"key", b"value", [], message)

    def put(self, count: int, generation: int | None = None) -> list[EventT[Any]]:
        events = [self.event(generation) for _ in range(count)]
        for event in events:
            self.queue.put_nowait(event)
        return events


@pytest.fixture
async def channel() -> _Channel:
    return _Channel()


async def _next(batches: AsyncIterator[list[EventT[Any]]]) -> list[EventT[Any]]:
    return await asyncio.wait_for(anext(batches), timeout=5)


async def _loop_turns_during(awaitable: Any) -> tuple[Any, int]:
    """``awaitable``'s result, and how many turns the event loop took meanwhile."""
    turns = 0

    async def count() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count())
    try:
        return await awaitable, turns
    finally:
        counter.cancel()


async def test_a_queue_full_of_events_is_one_batch_in_order_without_a_loop_turn_each(
        channel: _Channel) -> None:
    queued = channel.put(300)
    batches = take_batches(channel.stream, 1000, within=0)
    try:
        batch, turns = await _loop_turns_during(_next(batches))
    finally:
        await batches.aclose()
    assert batch == queued
    assert turns < 10, f"{turns} turns of the event loop for one batch of {len(batch)} events"


async def test_a_batch_never_holds_more_than_its_maximum(channel: _Channel) -> None:
    queued = channel.put(25)
    batches = take_batches(channel.stream, 10, within=0)
    try:
        taken = [await _next(batches) for _ in range(3)]
    finally:
        await batches.aclose()
    assert [len(batch) for batch in taken] == [10, 10, 5]
    assert [event for batch in taken for event in batch] == queued


async def test_a_batch_gathers_what_arrives_within_its_window_and_then_closes(
        channel: _Channel) -> None:
    first = channel.put(1)
    loop = asyncio.get_running_loop()
    later: list[EventT[Any]] = []
    loop.call_later(0.02, lambda: later.extend(channel.put(2)))
    batches = take_batches(channel.stream, 1000, within=0.5)
    try:
        gathered = await _next(batches)
        after = channel.put(1)
        closed_alone = await _next(batches)
    finally:
        await batches.aclose()
    assert gathered == first + later
    assert closed_alone == after


async def _held(channel: _Channel, within: float, hold: float) -> tuple[
        list[EventT[Any]], list[EventT[Any]], list[EventT[Any]]]:
    """The agent holds a first batch ``hold`` seconds, while two events arrive; then it asks
    for the next batch, and one more event arrives 50 ms later. Returns the events queued
    meanwhile, the one arriving later, and the next batch."""
    channel.put(1)
    batches = take_batches(channel.stream, 1000, within=within)
    try:
        await _next(batches)
        await asyncio.sleep(hold / 2)
        meanwhile = channel.put(2)
        await asyncio.sleep(hold / 2)
        later: list[EventT[Any]] = []
        asyncio.get_running_loop().call_later(0.05, lambda: later.extend(channel.put(1)))
        batch = await _next(batches)
        await asyncio.sleep(0.1)  # the later event has arrived, in this batch or not
    finally:
        await batches.aclose()
    return meanwhile, later, batch


async def test_events_that_waited_while_the_agent_routed_count_that_wait_in_their_window(
        channel: _Channel) -> None:
    """The window is counted from the hand-over of the previous batch, not from the moment the
    next one is asked for: held longer than the window, the agent gets what waited at once."""
    meanwhile, later, batch = await _held(channel, within=0.2, hold=0.3)
    assert batch == meanwhile
    assert len(later) == 1
    assert later[0] not in batch


async def test_a_short_hold_leaves_the_rest_of_the_window_open(channel: _Channel) -> None:
    meanwhile, later, batch = await _held(channel, within=0.4, hold=0.05)
    assert batch == meanwhile + later


async def test_offsets_stay_uncommitted_until_the_worker_acknowledges(
        channel: _Channel) -> None:
    channel.put(3)
    batches = take_batches(channel.stream, 1000, within=0)
    try:
        batch = await _next(batches)
    finally:
        await batches.aclose()
    unacked = channel.app.consumer.unacked
    assert all(e.message.tracked and e.message in unacked for e in batch)
    assert not any(e.message.acked for e in batch)
    await channel.stream.ack(batch[0])
    assert batch[0].message.acked
    assert not batch[1].message.acked


async def test_events_from_before_a_rebalance_are_dropped_and_acknowledged(
        channel: _Channel) -> None:
    stale = channel.put(2, generation=channel.app.consumer_generation_id - 1)
    current = channel.put(2)
    batches = take_batches(channel.stream, 1000, within=0)
    try:
        batch = await _next(batches)
    finally:
        await batches.aclose()
    assert batch == current
    unacked = channel.app.consumer.unacked
    assert all(e.message.acked and e.message not in unacked for e in stale)


async def test_an_error_thrown_into_the_channel_reaches_the_agent(channel: _Channel) -> None:
    channel.queue._throw(ValueError("undecodable record"))
    batches = take_batches(channel.stream, 1000, within=0)
    try:
        with pytest.raises(ValueError, match="undecodable record"):
            await _next(batches)
    finally:
        await batches.aclose()


async def test_an_agent_stopped_by_faust_ends_its_batches_without_an_error(
        channel: _Channel) -> None:
    """Faust stops an agent by throwing ``StopAsyncIteration`` into its channel: the batches
    end, rather than raise a ``RuntimeError`` that Faust would log as the agent crashing."""
    channel.queue._throw(StopAsyncIteration())
    batches = take_batches(channel.stream, 1000, within=0)
    with pytest.raises(StopAsyncIteration):
        await _next(batches)
