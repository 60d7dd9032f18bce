"""How the routing agent takes its events: in batches, straight from its channel's queue.

**Why not Faust's ``stream.noack_take``.** It gathers a batch through the stream's own iterator,
which yields to the event loop once per event (``await asyncio.sleep(0)`` in Faust's
``_CStreamIterator.next`` and in ``Stream._py_aiter``). A batch therefore admits one event per
turn of the loop, and a turn may hold a routed batch or the consumer thread's hand-over (several
milliseconds): a backlog then drains more slowly than a busy provider writes, and the oldest
waiting event's age keeps climbing (traced: ``tests/benchmarks/HISTORY.md``).

**What :func:`take_batches` does instead.** It moves every event already waiting in the queue
into the batch at once, then waits for more until the batch window closes or the batch is full.
Each event gets the bookkeeping Faust's iterator gives it: an event left over from before a
rebalance (the flow stopped, or an earlier consumer generation) is acknowledged and dropped, as
Faust drops it; any other is tracked as unacknowledged, so that its offset is committed only once
the worker calls :meth:`faust.Stream.ack` for it, after the batch's writes have landed. Nothing is
acknowledged here.

**When the window opens.** For an event that arrives while the agent waits, the window opens
with it. Events that queued while the agent routed the previous batch have already waited: for
them the window opened when that batch was handed over (the earliest they can have arrived), so
no event waits a whole window on top of the previous batch's routing. Counted from the moment the
agent asked for the next batch instead, every event that queued during routing waited for both,
and the batches grew larger.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

from faust.types import ChannelT, EventT, StreamT

Event = EventT[Any]


class _Admission:
    """Faust's per-event bookkeeping on the way into a stream, without the stream's iterator."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.app = stream.app
        self.acking_topics = stream.app.topics.acking_topics
        self.unacked = stream.app.consumer.unacked

    def is_current(self, event: Event) -> bool:
        """Whether ``event`` belongs to the current assignment (else Faust skips it)."""
        app = self.app
        return bool(app.flow_control.is_active()
                    and event.message.generation_id == app.consumer_generation_id)

    def track(self, event: Event) -> None:
        """Count ``event`` in, and hold its offset uncommitted until it is acknowledged."""
        stream, message = self.stream, event.message
        if message.topic in self.acking_topics and not message.tracked:
            message.tracked = True
            self.unacked.add(message)
            stream._on_message_in(message.tp, message.offset, message)
        stream._on_stream_event_in(message.tp, message.offset, stream, event)
        stream.events_total += 1

    async def admit(self, event: Event, batch: list[Event]) -> None:
        """Add ``event`` to ``batch``, tracked; or, if stale, acknowledge and drop it."""
        if self.is_current(event):
            self.track(event)
            batch.append(event)
        else:
            await self.stream.ack(event)


async def _fill(admission: _Admission, queue: Any, batch: list[Event], max_events: int,
                deadline: float) -> None:
    """Add to ``batch`` everything queued, then what comes until ``deadline`` (the loop's
    clock), up to ``max_events``. A full queue is emptied in one go, without yielding to the
    event loop."""
    while len(batch) < max_events:
        while len(batch) < max_events and not queue.empty():
            await admission.admit(queue.get_nowait(), batch)
        if len(batch) >= max_events:
            return
        try:
            async with asyncio.timeout_at(deadline):
                event = await queue.get()
        except TimeoutError:
            return
        await admission.admit(event, batch)


async def take_batches(stream: StreamT[Any], max_events: int,
                       within: float) -> AsyncGenerator[list[Event], None]:
    """Batches of at most ``max_events`` events, unacknowledged, from ``stream``'s channel.

    A batch closes ``within`` seconds after its first event arrived, or as soon as it is full;
    what arrived in the meantime is taken in at once. An event found waiting when the agent
    asks for a batch is taken to have arrived when the previous batch was handed over.
    """
    started = await stream.maybe_start()
    admission = _Admission(stream)
    queue = cast(ChannelT[Any], stream.channel).queue
    clock = asyncio.get_running_loop().time
    handed_over: float | None = None
    try:
        while not stream.should_stop:
            batch: list[Event] = []
            waited = handed_over if handed_over is not None and not queue.empty() else None
            await admission.admit(await queue.get(), batch)
            opened = clock() if waited is None else waited
            await _fill(admission, queue, batch, max_events, opened + within)
            if batch:
                handed_over = clock()
                yield batch
    except StopAsyncIteration:
        # How Faust stops an agent: thrown into its channel. Raised out of this generator it
        # would become a RuntimeError, and a worker stopping in good order would log its agent
        # as crashed. Events taken into an unfinished batch stay unacknowledged: read again.
        return
    finally:
        if started:
            await stream.stop()
            stream.service_reset()
