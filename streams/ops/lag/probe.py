"""Reads consumer lag off the cluster: one :class:`~streams.ops.lag.model.GroupSample` per watched
group.

A sample of every watched group costs, whatever the number of groups: one ListGroups request per
broker, one OffsetFetch and one FindCoordinator (cached) per group, one DescribeGroups per
coordinator, one Metadata request, two ListOffsets per partition leader (log start and end),
and one fetch for the partitions whose committed offset moved since the last sample and still
lags (the timestamp of the record at the committed offset is kept while that offset stays).

Which groups are watched (:func:`streams.ops.lag.model.is_watched`): every group with committed
offsets on delivery topics (``deliver.*``), and the routing workers' group on provider topics
(``provider.*``); with a subscriber, only that subscriber's groups and delivery topics.
Committed offsets left on topics that no longer exist are ignored: nobody can fall behind on
a topic that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import (
    DescribeGroupsRequest_v1,
    DescribeGroupsRequest_v2,
    DescribeGroupsRequest_v3,
    DescribeGroupsResponse_v3,
)
from aiokafka.protocol.api import Request, RequestStruct

from streams.kafka import clients
from streams.ops.lag.model import (
    ROUTER_GROUP,
    GroupSample,
    PartitionOffsets,
    concerns,
    group_subscriber,
    is_watched,
)
from streams.settings import Settings

log = structlog.get_logger(__name__)

_CONCURRENCY = 16
"""Requests in flight at once (offsets of that many groups fetched together)."""


class LagProbeError(RuntimeError):
    """The cluster could not be asked (unreachable, refused); the message says why."""


@dataclass(frozen=True)
class _Membership:
    state: str | None
    members: int | None
    assigned: frozenset[TopicPartition] | None
    """Partitions assigned to the members; None when an assignment could not be read."""


class LagProbe:
    """Samples every watched consumer group; use as ``async with LagProbe(settings) as p``."""

    def __init__(self, settings: Settings, subscriber: str | None = None,
                 fetch_timeout: float = 5.0) -> None:
        self._settings = settings
        self.subscriber = subscriber
        self._fetch_timeout = fetch_timeout
        self._admin = clients.admin_client(settings, request_timeout_ms=15_000)
        self._client = clients.cluster_client(settings, request_timeout_ms=15_000)
        self._offsets = clients.consumer(settings, enable_auto_commit=False,
                                         request_timeout_ms=15_000)
        self._reader = clients.consumer(settings, enable_auto_commit=False,
                                        auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                        max_partition_fetch_bytes=256 * 1024)
        self._coordinators: dict[str, int] = {}
        self._timestamps: dict[tuple[TopicPartition, int], int] = {}
        self._known: set[str] = set()
        self._limit = asyncio.Semaphore(_CONCURRENCY)

    async def __aenter__(self) -> LagProbe:
        try:
            await self._admin.start()
            await self._client.bootstrap()
            await self._offsets.start()
            await self._reader.start()
        except KafkaError as exc:
            await self.close()
            raise LagProbeError(f"cannot reach Kafka at {self._settings.kafka_bootstrap}: "
                                f"{exc}") from exc
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        for closing in (self._reader.stop(), self._offsets.stop(), self._client.close(),
                        self._admin.close()):
            with contextlib.suppress(Exception):
                await closing

    async def sample(self) -> list[GroupSample]:
        """One observation of every watched group (groups without watched offsets are left out)."""
        try:
            listed = await self._admin.list_consumer_groups()
        except KafkaError as exc:
            raise LagProbeError(f"cannot list consumer groups: {exc}") from exc
        groups = sorted({str(entry[0]) for entry in listed})
        fetched = await asyncio.gather(*(self._group_offsets(g) for g in groups))
        committed: dict[str, dict[TopicPartition, int]] = {}
        failed: dict[str, str] = {}
        for group, (offsets, error) in zip(groups, fetched, strict=True):
            if error is not None:
                if self._relevant_name(group):
                    failed[group] = error
            elif offsets:
                committed[group] = offsets
        self._known = set(committed) | set(failed)
        partitions = sorted({tp for offsets in committed.values() for tp in offsets})
        existing, missing = await self._existing(partitions)
        starts, ends, log_error = await self._log_offsets(sorted(existing))
        at = time.time()
        memberships = await self._memberships(sorted(committed))
        stamps = await self._oldest_unconsumed(committed, existing, starts, ends)
        samples = [GroupSample(group, at, (), error=error) for group, error in failed.items()]
        for group, offsets in committed.items():
            membership = memberships.get(group, _Membership(None, None, None))
            rows = []
            for tp, offset in sorted(offsets.items()):
                if tp.topic in missing:
                    continue
                error = log_error if tp in existing else "partition does not exist"
                end = ends.get(tp)
                if error is None and end is None:
                    error = "log end offset unavailable"
                owned = (None if membership.assigned is None
                         else tp in membership.assigned)
                rows.append(PartitionOffsets(
                    tp.topic, tp.partition, offset, end, starts.get(tp),
                    stamps.get((tp, offset)), error, owned))
            if rows:
                samples.append(GroupSample(group, at, tuple(rows), membership.members,
                                           membership.state))
        return sorted(samples, key=lambda s: s.group)

    def _relevant_name(self, group: str) -> bool:
        """Whether a group whose offsets could not be read should be reported anyway."""
        if group in self._known:
            return True
        if self.subscriber is not None:
            return group_subscriber(group) == self.subscriber
        return group == ROUTER_GROUP or group_subscriber(group) is not None

    def _keep(self, group: str, topic: str) -> bool:
        return is_watched(group, topic) and (
            self.subscriber is None or concerns(self.subscriber, group, topic))

    async def _coordinator(self, group: str) -> int:
        node = self._coordinators.get(group)
        if node is None:
            node = self._coordinators[group] = int(
                await self._client.coordinator_lookup(0, group))
        return node

    async def _group_offsets(self, group: str) -> tuple[dict[TopicPartition, int], str | None]:
        """The group's committed offsets on watched topics, or why they could not be read."""
        async with self._limit:
            for attempt in (1, 2):
                try:
                    node = await self._coordinator(group)
                    answer = await self._admin.list_consumer_group_offsets(
                        group, group_coordinator_id=node)
                except KafkaError as exc:
                    self._coordinators.pop(group, None)  # the coordinator may have moved
                    if attempt == 2:
                        return {}, f"committed offsets unreadable: {exc}"
                    continue
                return {tp: int(meta.offset) for tp, meta in answer.items()
                        if meta.offset >= 0 and self._keep(group, tp.topic)}, None
        raise AssertionError("unreachable")

    async def _existing(self, partitions: list[TopicPartition]
                        ) -> tuple[set[TopicPartition], set[str]]:
        """The partitions that exist, and the topics that do not."""
        topics = sorted({tp.topic for tp in partitions})
        if not topics:
            return set(), set()
        try:
            described = await self._admin.describe_topics(topics)
        except KafkaError as exc:
            raise LagProbeError(f"cannot describe topics: {exc}") from exc
        existing: set[TopicPartition] = set()
        missing: set[str] = set()
        for topic in described:
            if topic["error_code"] != 0:
                missing.add(topic["topic"])
                continue
            existing.update(TopicPartition(topic["topic"], p["partition"])
                            for p in topic["partitions"])
        if missing:
            log.debug("committed offsets on topics that no longer exist", topics=sorted(missing))
        return {tp for tp in partitions if tp in existing}, missing

    async def _log_offsets(self, partitions: list[TopicPartition]
                           ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int],
                                      str | None]:
        """Log start and end offsets of ``partitions`` (end read last: lags never undercount)."""
        if not partitions:
            return {}, {}, None
        try:
            starts = await self._offsets.beginning_offsets(partitions)
            ends = await self._offsets.end_offsets(partitions)
        except KafkaError as exc:
            return {}, {}, f"log offsets unreadable: {exc}"
        return dict(starts), dict(ends), None

    async def _memberships(self, groups: list[str]) -> dict[str, _Membership]:
        """Each group's state, member count and assigned partitions, one request per
        coordinator."""
        by_node: dict[int, list[str]] = defaultdict(list)
        for group in groups:
            with contextlib.suppress(KafkaError):
                by_node[await self._coordinator(group)].append(group)
        answers = await asyncio.gather(
            *(self._client.send(node, _DescribeGroups(names)) for node, names in by_node.items()),
            return_exceptions=True)
        memberships: dict[str, _Membership] = {}
        for answer in answers:
            if isinstance(answer, BaseException):
                log.warning("cannot describe consumer groups", error=str(answer))
                continue
            for described in answer.groups:
                error_code, group, state, protocol_type, _, members = described[:6]
                if error_code != 0:
                    continue
                memberships[group] = _Membership(
                    state, len(members),
                    _assigned(members) if protocol_type == "consumer" else None)
        return memberships

    async def _oldest_unconsumed(
        self, committed: dict[str, dict[TopicPartition, int]], existing: set[TopicPartition],
        starts: dict[TopicPartition, int], ends: dict[TopicPartition, int],
    ) -> dict[tuple[TopicPartition, int], int]:
        """Timestamp of the record at each lagging committed offset (cached while it stays)."""
        wanted = {(tp, offset) for offsets in committed.values() for tp, offset in offsets.items()
                  if tp in existing and starts.get(tp, 0) <= offset < ends.get(tp, -1)}
        stamps = {key: self._timestamps[key] for key in wanted if key in self._timestamps}
        by_partition: dict[TopicPartition, set[int]] = defaultdict(set)
        for tp, offset in wanted - stamps.keys():
            by_partition[tp].add(offset)
        rounds = 0
        while by_partition:  # several groups at different offsets of one partition: one each
            batch = {tp: min(offsets) for tp, offsets in by_partition.items()}
            stamps.update(await self._read_timestamps(batch))
            for tp, offset in batch.items():
                by_partition[tp].discard(offset)
                if not by_partition[tp]:
                    del by_partition[tp]
            rounds += 1
            if rounds >= 3:  # bounded: beyond, ages of the remaining offsets stay unknown
                break
        self._timestamps = stamps
        return stamps

    async def _read_timestamps(self, positions: dict[TopicPartition, int]
                               ) -> dict[tuple[TopicPartition, int], int]:
        """Fetch the first record at or after each position; its timestamp, by position."""
        reader = self._reader
        reader.assign(list(positions))
        for tp, offset in positions.items():
            reader.seek(tp, offset)
        found: dict[tuple[TopicPartition, int], int] = {}
        waiting = set(positions)
        deadline = time.monotonic() + self._fetch_timeout
        try:
            while waiting and time.monotonic() < deadline:
                batches = await reader.getmany(*waiting, timeout_ms=200)
                for tp, records in batches.items():
                    if records and tp in waiting:
                        found[(tp, positions[tp])] = int(records[0].timestamp)
                        waiting.discard(tp)
                        reader.pause(tp)
        except KafkaError as exc:
            log.warning("cannot read the oldest unconsumed records", error=str(exc))
        finally:
            reader.unsubscribe()
        if waiting:
            log.debug("oldest unconsumed record not read in time", partitions=len(waiting))
        return found


def _assigned(members: Iterable[Any]) -> frozenset[TopicPartition] | None:
    """The union of the members' assignments (consumer protocol); None when unreadable."""
    assigned: set[TopicPartition] = set()
    for member in members:
        raw = member[4] if len(member) > 4 else None
        if not raw:
            continue
        try:
            assignment = ConsumerProtocolMemberAssignment.decode(bytes(raw))
            assigned.update(assignment.partitions())
        except (ValueError, TypeError, IndexError, UnicodeDecodeError):
            return None
    return frozenset(assigned)


class _DescribeGroupsV3(RequestStruct):  # type: ignore[misc]
    """DescribeGroups v3 paired with its own response schema (aiokafka 0.14 pairs it with v2's,
    which fails to decode the answer)."""

    API_KEY = 15
    API_VERSION = 3
    RESPONSE_TYPE = DescribeGroupsResponse_v3
    SCHEMA = DescribeGroupsRequest_v3.SCHEMA


class _DescribeGroups(Request[DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2  # type: ignore[misc]
                              | _DescribeGroupsV3]):
    API_KEY = 15

    def __init__(self, groups: list[str]) -> None:
        self._groups = groups

    def build(self, request_struct_class: Any) -> Any:
        if request_struct_class.API_VERSION >= 3:
            return request_struct_class(self._groups, False)
        return request_struct_class(self._groups)
