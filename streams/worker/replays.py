"""Replaying dead-lettered records: a marker in a batch becomes the records it names, read again.

A replay marker (:mod:`streams.routing.replay_markers`) sits on the provider partition whose
records it names, so the worker that meets it owns that partition and its audit chain. The
worker reads those records again from the same partition, with a consumer of its own assigned
the partition (no group: it moves no committed offset), and routes them in the marker's place,
marked as replays, under the state in force at the marker: the cause of their dead letter
(a schema the registry did not hold, a worker behind the catalog) is meant to be fixed by then.

A record it names that is itself a fence or a marker is not replayed (a forged marker must not
make the worker act on control records twice); one the partition no longer holds (retention)
is logged and skipped. A marker that does not read as one is left in the batch: routed, it
becomes a dead letter naming ``value``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka import clients
from streams.routing.records import SourceRecord
from streams.routing.replay_markers import is_marker_read, is_replay_marker, read_marker
from streams.settings import Settings
from streams.state.fences import is_fence

log = structlog.get_logger(__name__)

FETCH_WAIT_MS = 100
"""How long the broker may hold one fetch of the records to replay (they are all there)."""


class ReplayReader:
    """Reads again, by their coordinates, the records the replay markers of a batch name."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def expand(self, records: Sequence[SourceRecord]) -> list[SourceRecord]:
        """``records`` with each readable replay marker replaced by the records it names, read
        again and marked as replays; everything else as it was, in order."""
        if not any(is_replay_marker(r.headers) for r in records):
            return list(records)
        expanded: list[SourceRecord] = []
        for record in records:
            offsets = _asked(record) if is_replay_marker(record.headers) else None
            if offsets is None:
                expanded.append(record)
                continue
            replayed = await self._read(record.topic, record.partition, offsets)
            log.info("replay marker met: records routed again", topic=record.topic,
                     partition=record.partition, marker_offset=record.offset,
                     asked=len(offsets), replayed=len(replayed))
            expanded += replayed
        return expanded

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = clients.consumer(self._settings, enable_auto_commit=False,
                                        auto_offset_reset="earliest",
                                        fetch_max_wait_ms=FETCH_WAIT_MS)
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def _read(self, topic: str, partition: int, offsets: list[int]) -> list[SourceRecord]:
        """The records at ``offsets`` (sorted, all before an existing record) of the partition,
        as replays; those no longer there, fences and markers left out."""
        consumer = await self._started()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        found: dict[int, Any] = {}
        for offset in offsets:
            if offset in found:
                continue
            consumer.seek(tp, offset)
            while await consumer.position(tp) <= offset:
                for fetched in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if fetched.offset in offsets:
                        found[fetched.offset] = fetched
        gone = [o for o in offsets if o not in found]
        if gone:
            log.warning("records named by a replay marker are no longer on their partition",
                        topic=topic, partition=partition, missing=len(gone))
        replayed = [_replayed(found[o]) for o in offsets if o in found]
        return [r for r in replayed if not (is_fence(r.headers) or is_replay_marker(r.headers))]


def _asked(marker: SourceRecord) -> list[int] | None:
    """The offsets ``marker`` asks to replay; None when it does not read as a marker."""
    if not is_marker_read(marker.key, marker.value, marker.offset, marker.headers):
        return None
    return read_marker(marker.value, marker.offset)


def _replayed(record: Any) -> SourceRecord:
    """A consumed record as the router reads it, marked as a replay."""
    return SourceRecord(record.topic, record.partition, record.offset, record.timestamp,
                        record.key, record.value, list(record.headers or []), replay=True)
