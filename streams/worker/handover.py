"""Handing partitions over in a planned rebalance: route what was taken, commit, then let go.

**What went wrong.** Faust's consumer, told that its partitions are revoked, first forgets the
offsets acknowledged since its last commit (it commits on a timer), and only then stops the
flow, waits for the events being processed and commits what is acknowledged *from then on*.
Under a steady stream up to a commit interval of routed, written and acknowledged events was
never committed, and whoever took the partition next, this worker included, routed them again:
a worker joining the group, or one stopped, made every subscriber receive events twice.

**What the worker does instead**, before Faust's own revocation, while the partitions are still
assigned (the broker accepts a commit from a member of the current generation, and aiokafka
commits offsets of assigned partitions only, so after the revocation is too late):

1. stop taking events, as Faust would: stop the flow, pause the partitions, clear the buffers
   (what was fetched but not taken is simply read again by the next owner);
2. wait until every event taken is acknowledged: the batch being routed is routed, and every
   batch in flight is written and settled (:mod:`streams.worker.inflight`);
3. commit what is acknowledged, after any commit already under way (one that started before
   the last acknowledgements would leave them out).

Faust's revocation then finds nothing left to forget. The group's assignor is Faust's own, which
keeps co-partitioned topics together: one writer per audit chain. A crash still replays what
was routed and not committed, with the same ids and content.
"""

from __future__ import annotations

import time
from collections.abc import Set

import structlog
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = structlog.get_logger(__name__)


class HandoverConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, settling and committing what it took before a revocation."""

    async def on_partitions_revoked(self, revoked: Set[TP]) -> None:
        """Settle and commit first, then Faust's revocation. Not when stopping: Faust's
        shutdown has already waited for what was taken, and closes the consumer instead."""
        if not self.app.should_stop:
            await self.settle_and_commit()
        await super().on_partitions_revoked(revoked)

    async def settle_and_commit(self) -> None:
        """Stop taking events, wait until all taken are acknowledged, and commit them."""
        assignment = self.assignment()
        if not assignment:
            return
        began = time.perf_counter()
        self.stop_flow()
        self.app.flow_control.suspend()
        self.pause_partitions(assignment)
        self.app.flow_control.clear()
        await self.wait_empty()
        await self.commit_acknowledged()
        log.info("partitions handed over: what was taken is routed and committed",
                 partitions=len(assignment), seconds=round(time.perf_counter() - began, 2))

    async def on_stop(self) -> None:
        """Stopping (SIGTERM), Faust has already waited for the events taken; commit once more
        what they acknowledged, before the consumer leaves the group."""
        await super().on_stop()
        await self.commit_acknowledged()

    async def commit_acknowledged(self) -> None:
        """Commit every acknowledged offset. A commit already under way may have been
        computed before the last acknowledgements, and Faust skips a commit asked for while
        another runs: wait it out first."""
        while await self.maybe_wait_for_commit_to_finish():
            pass
        await self.commit()
