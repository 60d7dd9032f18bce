"""Routed batches being written: route the next batch while the broker acknowledges this one.

Waiting for every replica to acknowledge batch N before routing batch N+1 left a routing worker
idle for much of its time under steady load, and that wait was added to every event's
latency. Here a batch's writes are handed to the producer and the agent goes on with the next
batch; a background task settles batches strictly in the order they were routed: it waits until
a batch's records are all acknowledged, and only then acknowledges its events to Faust, which
commits their offsets.

Why this loses nothing and keeps order:

- aiokafka keeps at most one request in flight per partition, so the records of batch N+1 land
  after those of batch N on every partition they share (a person's deliveries stay in order; an
  audit chain stays linked in offset order).
- An event is acknowledged to Faust only after everything routed from it is written, and batches
  are settled in order, so a committed offset never passes an unwritten record: a crash replays
  the unsettled batches (same event ids) and never skips one.
- A failed write stops settlement: the failure goes to ``on_failure`` (the worker exits), and
  no later batch is acknowledged.

The number of unsettled batches is bounded: routing waits when the limit is reached.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Report = TypeVar("Report")
"""What the worker reports of a batch once it is written (its tally and timings)."""


@dataclass(frozen=True)
class Routed(Generic[Report]):
    """One routed batch: its source events, its written-or-not future, and what to report."""

    events: Sequence[Any]
    written: asyncio.Future[Any]
    report: Report


class InFlight(Generic[Report]):
    """At most ``limit`` routed batches being written, settled in routing order."""

    def __init__(self, limit: int, settle: Callable[[Routed[Report]], Awaitable[None]],
                 on_failure: Callable[[BaseException], None]) -> None:
        """``settle`` acknowledges a written batch's events and records its metrics."""
        self._queue: asyncio.Queue[Routed[Report]] = asyncio.Queue(maxsize=limit)
        self._settle = settle
        self._on_failure = on_failure
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def add(self, batch: Routed[Report]) -> None:
        """Queue a routed batch; waits while ``limit`` batches are still being written."""
        self._raise_failure()
        if self._task is None:
            self._task = asyncio.ensure_future(self._settle_in_order())
        await self._queue.put(batch)

    async def drain(self) -> None:
        """Return once every queued batch is settled (before re-reading audit chain heads,
        and before stopping)."""
        if self._task is not None:
            await self._queue.join()
        self._raise_failure()

    async def stop(self) -> None:
        """Settle what is queued, then stop the settling task."""
        with contextlib.suppress(Exception):
            await self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("an earlier batch could not be written") from self._failure

    async def _settle_in_order(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                if self._failure is None:
                    await batch.written
                    await self._settle(batch)
            except Exception as exc:  # every failure stops settlement
                self._failure = exc
                self._on_failure(exc)
            finally:
                self._queue.task_done()
