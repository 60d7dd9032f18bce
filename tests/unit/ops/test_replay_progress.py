"""What ``dlq replay`` waits for: the routers' committed offsets past every marker."""

from __future__ import annotations

from aiokafka import TopicPartition

from streams.ops.replay_progress import behind

A, B = TopicPartition("provider.cnaf.qf", 0), TopicPartition("provider.cnaf.qf", 1)


def test_a_partition_is_behind_until_its_committed_offset_passes_its_last_marker() -> None:
    positions = {A: 10, B: 4}
    assert behind({}, positions) == [A, B]
    assert behind({A: 9, B: 4}, positions) == [A]
    assert behind({A: 10, B: 7}, positions) == []
