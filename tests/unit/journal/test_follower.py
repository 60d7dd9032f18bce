"""The journal follower's consumer: what it does when retention deleted where it was."""

from __future__ import annotations

from streams.journal.follower import follower_consumer
from streams.settings import Settings


async def test_a_position_deleted_by_retention_resumes_at_the_earliest_record() -> None:
    consumer = follower_consumer(Settings())
    # aiokafka's default, "latest", would skip every record between there and the end.
    assert consumer._auto_offset_reset == "earliest"
    assert consumer._isolation_level == "read_committed"
