"""The routing worker's consumer hands partitions over settled and committed
(:mod:`streams.worker.handover`).

On the worker's real Faust consumer, with only the broker left out (the assignment it reports and
the commit request it sends): events acknowledged since the last commit are committed before the
revocation, where Faust alone forgot them and the next owner routed them again; an event taken and
not yet acknowledged holds the revocation until it is, then is committed too. The same on the
real broker, with worker processes: ``tests/integration/test_planned_rebalance.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.settings import Settings
from streams.worker.app import create_app

TOPIC = "provider.test.dataset.v1"
PARTITION = TP(TOPIC, 0)


class _Broker:
    """What the consumer would ask the broker: its assignment, and the offsets committed."""

    def __init__(self, consumer: Any) -> None:
        self.assigned = {PARTITION}
        self.commits: list[dict[TP, int]] = []
        consumer.assignment = lambda: set(self.assigned)
        consumer._commit = self._commit

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        self.commits.append(dict(offsets))
        return True

    def committed(self) -> int | None:
        """The last offset committed for the partition."""
        offsets = [c[PARTITION] for c in self.commits if PARTITION in c]
        return offsets[-1] if offsets else None


@pytest.fixture
async def consumer() -> Any:
    """The worker's consumer, made in the running loop as the worker makes it."""
    app = create_app(Settings())
    app.topics.acking_topics.add(TOPIC)  # as the conductor marks a subscribed topic
    return app.consumer


def _taken(consumer: Any, offsets: range) -> list[ConsumerMessage]:
    """Messages taken by the agent and not acknowledged yet (as the agent's batches track them)."""
    messages = []
    for offset in offsets:
        message = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, [], b"key", b"value", None,
                                  generation_id=consumer.app.consumer_generation_id)
        message.tracked = True
        consumer.track_message(message)
        messages.append(message)
    return messages


async def test_what_was_acknowledged_since_the_last_commit_is_committed_before_revocation(
        consumer: Any) -> None:
    broker = _Broker(consumer)
    for message in _taken(consumer, range(5)):
        consumer.ack(message)
    await consumer.on_partitions_revoked({PARTITION})
    assert broker.committed() == 5


async def test_an_event_being_routed_holds_the_revocation_until_acknowledged_then_committed(
        consumer: Any) -> None:
    broker = _Broker(consumer)
    first, *rest = _taken(consumer, range(3))
    consumer.ack(first)
    revocation = asyncio.ensure_future(consumer.on_partitions_revoked({PARTITION}))
    await asyncio.sleep(0.3)
    assert not revocation.done(), "revoked while an event taken was not acknowledged"
    assert not consumer.app.flow_control.is_active(), "still taking events while handing over"
    for message in rest:
        consumer.ack(message)
    await asyncio.wait_for(revocation, timeout=5)
    assert broker.committed() == 3
