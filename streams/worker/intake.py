"""How provider records come into the routing worker's Faust app: two costs of Faust removed.

**The fetch wait.** Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``, and
aiokafka keeps one fetch in flight per broker, sent only for the partitions that have no
unconsumed records buffered. A busy worker therefore often sends a fetch for its *idle*
partitions alone; the broker holds it the full 1.5 s, since nothing arrives there, and meanwhile
the busy partitions cannot be fetched at all: under steady load, routing stopped for most of
every fetch wait, which made the latency seconds instead of milliseconds. A short wait
bounds that stall, at the price of an idle worker asking the broker a few dozen times a second.
Faust has no setting for it, so the consumer thread creates its aiokafka consumer as Faust does,
then tells it the wait before it starts (aiokafka hands the value to its fetcher at start).

**Four tasks per record.** Faust's consumer hands each fetched record to the streams with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: the delivery is raced
against the flow being stopped (a rebalance), so that a delivery blocked on a full stream buffer
is abandoned rather than deadlocking the rebalance. mode's ``wait_first`` makes that race out of
four tasks (the delivery, the flow event, the service's stopped and crashed events) and an
``asyncio.wait``: measured alone, the largest single cost of a record's way into the agent.
:class:`_OneTaskConsumer` runs the same race with the delivery as the only task, against one
future that :meth:`stop_flow` resolves (what it gained: ``tests/benchmarks/HISTORY.md``). Any
other ``wait_first`` call, or this one while the flow is already stopped, goes to mode's.

**No task at all when the stream's buffer has room.** Even one task per record cost the latency
its worst stalls. Each task takes two turns of the event loop, and a turn may hold a routed
batch, so the records of one fetch reached the stream over many turns, and Faust asked aiokafka
for more records only after that. Meanwhile aiokafka holds the records it has fetched and
fetches nothing more from the broker for its prefetch backoff, then sends a fetch that names
only the idle partitions, which the broker holds for the whole fetch wait: every event behind
such a stall waited for it, while a plain consumer of the same topic read it at once. A delivery
almost never waits (the stream's buffer is rarely full), so
:meth:`_OneTaskConsumer._deliver` runs its first step at once; only a delivery that does wait
is handed, from where it stopped, to the task raced against the flow, as above.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from functools import partial
from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults

from streams.kafka import record_reader
from streams.worker.handover import HandoverConsumer


class RoutingApp(faust.App):
    """The routing worker's Faust app: its consumer lets the broker hold a fetch only
    ``fetch_max_wait_ms`` and hands records to the streams with one task each."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms

    def _new_transport(self) -> Any:
        """Faust's aiokafka transport (the ``kafka://`` one), with the consumer below."""
        return _Transport(self.conf.broker_consumer, self)


class _ShortFetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        record_reader.install()  # a header name that is not UTF-8 must not stop routing
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = cast(RoutingApp, self.app).fetch_max_wait_ms
        return consumer


def waits_on(awaitable: Any, event: asyncio.Event) -> bool:
    """Whether ``awaitable`` is a not yet started ``event.wait()`` coroutine."""
    frame = getattr(awaitable, "cr_frame", None)
    return (asyncio.iscoroutine(awaitable) and frame is not None
            and getattr(awaitable, "cr_code", None) is asyncio.Event.wait.__code__
            and frame.f_locals.get("self") is event)


class _OneTaskConsumer(HandoverConsumer):
    """Faust's aiokafka consumer, racing each record's delivery against a stopped flow with
    one task instead of four (see the module's docstring), and handing its partitions over
    settled and committed (:mod:`streams.worker.handover`)."""

    _flow_stopped: asyncio.Future[None] | None = None

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ShortFetchThread(self, loop=self.loop, beacon=self.beacon)

    def stop_flow(self) -> None:
        super().stop_flow()
        if self._flow_stopped is not None and not self._flow_stopped.done():
            self._flow_stopped.set_result(None)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        if (len(coros) == 2 and timeout is None and asyncio.iscoroutine(coros[0])
                and waits_on(coros[1], self.suspend_flow) and not self.suspend_flow.is_set()):
            coros[1].close()  # never started: the future below stands for it
            return await self._deliver(coros[0])
        return await super().wait_first(*coros, timeout=timeout)

    async def _deliver(self, delivery: Coroutine[Any, Any, Any]) -> WaitResults:
        """Run ``delivery``: at once if it completes without waiting, the usual case; else on
        from where it waits, in a task abandoned if the flow is stopped first (or if this
        consumer's drain is cancelled, which is how a stopping consumer ends it)."""
        try:
            awaited = delivery.send(None)
        except StopIteration as delivered:
            return WaitResults([delivery], [delivered.value], False)
        if self._flow_stopped is None or self._flow_stopped.done():
            self._flow_stopped = self.loop.create_future()
        task = self.loop.create_task(_resumed(delivery, awaited))
        try:
            await asyncio.wait((task, self._flow_stopped), return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return WaitResults([delivery], [task.result()], False)
            return WaitResults([], [], False)
        finally:
            if not task.done():
                task.cancel()


class _Resumption:
    """Awaiting it drives a coroutine on from its first wait, which the caller already reached
    by running its first step: what the coroutine waits on goes up to the awaiting task, and
    what the task sends or throws back (a result, a cancellation) goes down to the coroutine,
    as if the task had run it from the start (what ``await`` itself does)."""

    __slots__ = ("_awaited", "_coroutine")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], awaited: Any) -> None:
        self._coroutine = coroutine
        self._awaited = awaited

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, awaited = self._coroutine, self._awaited
        while True:
            try:
                sent = yield awaited
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as thrown:  # handed to the coroutine, which decides
                step = partial(coroutine.throw, thrown)
            else:
                step = partial(coroutine.send, sent)
            try:
                awaited = step()
            except StopIteration as finished:
                return finished.value


async def _resumed(coroutine: Coroutine[Any, Any, Any], awaited: Any) -> Any:
    """``coroutine``'s result, driving it on from its first wait (see :class:`_Resumption`)."""
    return await _Resumption(coroutine, awaited)


class _Transport(faust_aiokafka.Transport):
    Consumer = _OneTaskConsumer
