"""Whether the routing workers have reached the replay markers an operator wrote.

A worker commits a batch's offsets only once everything it produced is written (deliveries,
audit records, dead letters: :mod:`streams.worker.inflight`). So once the routers' committed
offset on a partition is past its last replay marker, every record that marker named has been
routed again and its outcome is readable: what ``circulation dlq replay`` waits for before it
says how many failed again. Nothing here reads a record of a provider topic.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from streams.ops.accounting.reading import routers_committed
from streams.settings import Settings

POLL_S = 1.0
"""Seconds between two looks at the routers' committed offsets."""


def behind(committed: dict[TopicPartition, int], positions: dict[TopicPartition, int],
           ) -> list[TopicPartition]:
    """The partitions whose committed offset has not reached the position after their last
    marker."""
    return sorted(tp for tp, position in positions.items() if committed.get(tp, 0) < position)


async def wait_for_routers(settings: Settings, positions: dict[TopicPartition, int],
                           timeout: float) -> list[TopicPartition]:
    """Wait up to ``timeout`` seconds until the routers committed past every marker; return
    the partitions still behind then (none: every marker was routed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        waiting = behind(await routers_committed(settings), positions)
        if not waiting or loop.time() >= deadline:
            return waiting
        await asyncio.sleep(POLL_S)
