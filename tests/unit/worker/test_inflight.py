"""In-flight batches are acknowledged in routing order, only once written, and never past a
failed write."""

from __future__ import annotations

import asyncio

import pytest

from streams.worker.inflight import InFlight, Routed


class Recorder:
    """What the worker would do on settlement and on failure, written down."""

    def __init__(self) -> None:
        self.settled: list[str] = []
        self.failures: list[BaseException] = []

    async def settle(self, batch: Routed) -> None:
        self.settled.extend(batch.events)

    def fail(self, exc: BaseException) -> None:
        self.failures.append(exc)


def _pending() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


async def test_batches_are_settled_in_routing_order_even_when_written_out_of_order() -> None:
    recorder = Recorder()
    inflight = InFlight(4, recorder.settle, recorder.fail)
    first, second = _pending(), _pending()
    await inflight.add(Routed(["a1", "a2"], first, None))
    await inflight.add(Routed(["b1"], second, None))

    second.set_result(None)
    await asyncio.sleep(0.01)
    assert recorder.settled == []  # b is written, but a is not: nothing may be acknowledged

    first.set_result(None)
    await inflight.drain()
    assert recorder.settled == ["a1", "a2", "b1"]
    await inflight.stop()


async def test_a_failed_write_stops_settlement_and_later_routing() -> None:
    recorder = Recorder()
    inflight = InFlight(4, recorder.settle, recorder.fail)
    failed, later = _pending(), _pending()
    await inflight.add(Routed(["a"], failed, None))
    await inflight.add(Routed(["b"], later, None))
    failed.set_exception(ConnectionError("broker gone"))
    later.set_result(None)
    await asyncio.sleep(0.01)

    assert recorder.settled == []  # b was written, but acknowledging it would skip a
    assert [str(e) for e in recorder.failures] == ["broker gone"]
    with pytest.raises(RuntimeError, match="earlier batch could not be written"):
        await inflight.add(Routed(["c"], _pending(), None))
    await inflight.stop()


async def test_routing_waits_when_the_limit_of_unwritten_batches_is_reached() -> None:
    recorder = Recorder()
    inflight = InFlight(1, recorder.settle, recorder.fail)
    writes = [_pending() for _ in range(3)]
    await inflight.add(Routed(["a"], writes[0], None))  # taken by the settling task
    await inflight.add(Routed(["b"], writes[1], None))  # queued: the limit is reached
    third = asyncio.ensure_future(inflight.add(Routed(["c"], writes[2], None)))
    await asyncio.sleep(0.01)
    assert not third.done()

    writes[0].set_result(None)
    await asyncio.sleep(0.01)
    assert third.done()
    for write in writes[1:]:
        write.set_result(None)
    await inflight.drain()
    assert recorder.settled == ["a", "b", "c"]
    await inflight.stop()
