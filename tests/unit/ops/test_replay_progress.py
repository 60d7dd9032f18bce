"""What ``dlq replay`` waits for: the routers' committed offsets past every marker."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from streams.ops import replay_progress
from streams.ops.replay_progress import behind, wait_for_routers

A, B = TopicPartition("provider.cnaf.qf", 0), TopicPartition("provider.cnaf.qf", 1)


def test_a_partition_is_behind_until_its_committed_offset_passes_its_last_marker() -> None:
    positions = {A: 10, B: 4}
    assert behind({}, positions) == [A, B]
    assert behind({A: 9, B: 4}, positions) == [A]
    assert behind({A: 10, B: 7}, positions) == []


async def test_the_wait_ends_with_the_partitions_still_behind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([{A: 3}, {A: 10, B: 1}, {A: 10, B: 1}])

    async def committed(_: object) -> dict[TopicPartition, int]:
        return next(answers)

    monkeypatch.setattr(replay_progress, "routers_committed", committed)
    monkeypatch.setattr(replay_progress, "POLL_S", 0)
    assert await wait_for_routers(None, {A: 10}, timeout=60) == []  # type: ignore[arg-type]
    assert await wait_for_routers(None, {B: 4}, timeout=0) == [B]  # type: ignore[arg-type]
