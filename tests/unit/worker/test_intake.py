"""The routing worker's Faust consumer: the configured fetch wait, and at most one task per record.

Both are overrides of Faust internals (:mod:`streams.worker.intake`). Were a Faust or Python upgrade
to rename or reshape what is overridden, the override would silently stop applying: busy partitions
would stall again behind idle ones, or each record would cost four tasks again. These tests fail
instead, and check that the cheaper hand-over keeps Faust's behaviour: a delivery blocked when the
flow stops (a rebalance) is abandoned, and a failing one raises. A delivery that need not wait
takes no task at all; one that waits is driven on from where it waited, so these tests also check
that it gets what it waited for: a value, an exception, a cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from streams.settings import Settings
from streams.worker.app import create_app


async def test_the_worker_consumer_lets_the_broker_hold_a_fetch_only_as_configured() -> None:
    app = create_app(Settings(fetch_max_wait_ms=37))
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # as Faust does
    try:
        assert consumer._fetch_max_wait_ms == 37
        assert consumer._group_id == app.conf.id  # still the consumer Faust builds, group and all
    finally:
        await consumer.stop()


@pytest.fixture
async def consumer() -> Any:
    """The worker's consumer, made in the running loop as the worker makes it."""
    return create_app(Settings()).consumer


class _Tasks:
    """Counts the tasks created on the running loop."""

    def __init__(self) -> None:
        self.created = 0

    def __enter__(self) -> _Tasks:
        loop = asyncio.get_running_loop()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
            self.created += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.get_running_loop().set_task_factory(None)


async def _handed_over(consumer: Any, delivery: Any) -> Any:
    """What Faust's drain loop does with each fetched record."""
    return await consumer.wait_first(delivery, consumer.suspend_flow.wait())


async def _delivered_at_once() -> str:  # the stream's buffer has room: nothing to wait for
    return "delivered"


async def _delivered_after_a_wait() -> str:
    await asyncio.sleep(0)
    return "delivered"


@pytest.mark.parametrize(("delivery", "tasks_expected"),
                         [(_delivered_at_once, 0), (_delivered_after_a_wait, 1)],
                         ids=["need-not-wait", "waits"])
async def test_a_record_is_handed_over_with_a_task_only_if_its_delivery_waits(
        consumer: Any, delivery: Callable[[], Awaitable[str]], tasks_expected: int) -> None:
    with _Tasks() as tasks:
        result = await _handed_over(consumer, delivery())
    assert result.results == ["delivered"]
    assert not result.stopped
    assert tasks.created == tasks_expected


async def test_a_delivery_that_waits_gets_what_it_waited_for(consumer: Any) -> None:
    loop = asyncio.get_running_loop()
    room, refused = loop.create_future(), loop.create_future()

    async def delivery() -> tuple[str, str]:
        first = await room  # suspends: driven on by the task from here
        try:
            await refused
        except LookupError as exc:
            return first, str(exc)
        return first, "not refused"

    loop.call_later(0.01, room.set_result, "room")
    loop.call_later(0.02, refused.set_exception, LookupError("refused"))
    result = await asyncio.wait_for(_handed_over(consumer, delivery()), timeout=5)
    assert result.results == [("room", "refused")]


async def test_a_delivery_failing_after_a_wait_raises(consumer: Any) -> None:
    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("undecodable record")

    with pytest.raises(ValueError, match="undecodable record"):
        await asyncio.wait_for(_handed_over(consumer, failing()), timeout=5)


async def _never_drains() -> None:
    await asyncio.Event().wait()  # a full stream buffer: waits on a future, cancelled there


async def _keeps_busy() -> None:
    while True:  # never waits on a future: the cancellation is thrown into it
        await asyncio.sleep(0)


def _abandonable(waiting: Callable[[], Awaitable[None]]) -> tuple[Any, asyncio.Event]:
    """A delivery that does ``waiting`` forever, and the event it sets once cancelled."""
    abandoned = asyncio.Event()

    async def delivery() -> None:
        try:
            await waiting()
        except asyncio.CancelledError:
            abandoned.set()
            raise

    return delivery(), abandoned


@pytest.mark.parametrize("waiting", [_never_drains, _keeps_busy], ids=["blocked", "busy"])
async def test_a_delivery_waiting_when_the_flow_stops_is_abandoned(
        consumer: Any, waiting: Callable[[], Awaitable[None]]) -> None:
    delivery, abandoned = _abandonable(waiting)
    asyncio.get_running_loop().call_later(0.05, consumer.stop_flow)
    await asyncio.wait_for(_handed_over(consumer, delivery), timeout=5)
    await asyncio.wait_for(abandoned.wait(), timeout=5)


async def test_a_delivery_is_abandoned_when_the_drain_is_cancelled(consumer: Any) -> None:
    delivery, abandoned = _abandonable(_never_drains)
    drain = asyncio.create_task(_handed_over(consumer, delivery))
    await asyncio.sleep(0.05)
    drain.cancel()
    await asyncio.wait_for(abandoned.wait(), timeout=5)


async def test_a_failing_delivery_raises(consumer: Any) -> None:
    async def failing() -> None:
        raise ValueError("undecodable record")

    with pytest.raises(ValueError, match="undecodable record"):
        await _handed_over(consumer, failing())


async def test_with_the_flow_already_stopped_the_delivery_is_not_awaited(consumer: Any) -> None:
    consumer.stop_flow()
    finished = asyncio.Event()

    async def slow() -> None:
        await asyncio.sleep(0.2)
        finished.set()

    await asyncio.wait_for(_handed_over(consumer, slow()), timeout=5)
    assert not finished.is_set()  # as with mode's wait_first: the stopped flow wins
